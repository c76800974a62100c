"""``downtime-operator run|migrate``: the command line, validated before anything starts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from downtime_operator.settings import SettingsError, load_operator_settings
from downtime_operator.wiring import migrate, run_operator

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="downtime-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the Kubernetes operator")
    commands.add_parser("migrate", help="apply the PostgreSQL migrations and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_operator_settings(os.environ)
    except SettingsError as exc:
        print(f"downtime-operator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "migrate":
        applied = asyncio.run(migrate(settings))
        print(
            f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
        )
        return 0
    asyncio.run(run_operator(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
