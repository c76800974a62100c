"""``downtime-operator run|migrate|api``: the command line, validated before anything starts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from downtime_operator.api.server import ListenError
from downtime_operator.settings import SettingsError, load_api_settings, load_operator_settings
from downtime_operator.standalone import add_standalone_commands
from downtime_operator.wiring import migrate, run_api, run_operator

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="downtime-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the Kubernetes operator")
    commands.add_parser("migrate", help="apply the PostgreSQL migrations and exit")
    commands.add_parser("api", help="run the admin HTTP API alone")
    add_standalone_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "standalone", None) is not None:  # monitor, cleanup: their own settings
        return int(args.standalone(args, env=os.environ))
    try:
        settings = load_operator_settings(os.environ)
        api = load_api_settings(os.environ) if args.command in ("run", "api") else None
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
    if args.command == "api":
        assert api is not None
        if not api.keys:
            print(
                "downtime-operator: api needs ADMIN_API_KEYS or ADMIN_API_KEYS_FILE",
                file=sys.stderr,
            )
            return EXIT_USAGE
    try:
        if args.command == "api":
            assert api is not None
            asyncio.run(run_api(settings, api))
        else:
            asyncio.run(run_operator(settings, api))
    except ListenError as exc:
        print(f"downtime-operator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
