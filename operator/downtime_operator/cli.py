"""``downtime-operator run|migrate|api|monitor|cleanup|report|maintenance|rotate-keys``: one parser.

Settings first: each command names its settings model; ``monitor``, ``cleanup``, ``report``
and ``rotate-keys`` take the flags
and arguments their settings declare (the parser is built from those declarations), the others
read the environment only.
A usage error (a bad flag or variable) exits with status 2 before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic_core import PydanticUndefined

from downtime_operator.adapters.admin_client import AdminApiError, post_json
from downtime_operator.api.server import ListenError
from downtime_operator.log_setup import setup_logging
from downtime_operator.report_command import run_report
from downtime_operator.settings import (
    CleanupSettings,
    CommandSettings,
    MaintenanceSettings,
    MonitorSettings,
    OperatorSettings,
    ReportSettings,
    RotateKeysSettings,
    Setting,
    SettingsError,
    load_settings,
    settings_of,
)
from downtime_operator.standalone import run_cleanup, run_monitor, run_rotate_keys
from downtime_operator.wiring import migrate, run_api, run_operator

EXIT_USAGE = 2
"""Bad flags or variables: the systemd unit does not restart on it."""

S = TypeVar("S", bound=CommandSettings)


@dataclass(frozen=True)
class Command(Generic[S]):
    """A sub-command: its settings, what runs it, and whether it takes its settings' flags."""

    settings: type[S]
    run: Callable[[S], int]
    help: str
    takes_flags: bool = False

    def __call__(self, flags: Mapping[str, object], env: Mapping[str, str]) -> int:
        settings = load_settings(self.settings, env, flags)
        setup_logging(settings.logging)
        return self.run(settings)


def _run(settings: OperatorSettings) -> int:
    asyncio.run(run_operator(settings, settings.api))
    return 0


def _api(settings: OperatorSettings) -> int:
    if not settings.api.keys:
        raise SettingsError("ADMIN_API_KEYS or ADMIN_API_KEYS_FILE must name at least one key")
    asyncio.run(run_api(settings, settings.api))
    return 0


def _migrate(settings: OperatorSettings) -> int:
    applied = asyncio.run(migrate(settings))
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


def _monitor(settings: MonitorSettings) -> int:
    return asyncio.run(run_monitor(settings, api=settings.api if settings.serves_api else None))


def _cleanup(settings: CleanupSettings) -> int:
    return asyncio.run(run_cleanup(settings, env=os.environ))


def _report(settings: ReportSettings) -> int:
    return asyncio.run(run_report(settings))


def _rotate_keys(settings: RotateKeysSettings) -> int:
    return asyncio.run(run_rotate_keys(settings))


def _maintenance(settings: MaintenanceSettings) -> int:
    body = {
        "namespace": settings.namespace,
        "monitors": list(settings.monitors),
        "duration": settings.duration,
        "reason": settings.reason,
    }
    try:
        window = asyncio.run(
            post_json(
                url=settings.api_url,
                key=settings.api_key.get_secret_value(),
                path="/admin/downtime/maintenance",
                body=body,
            )
        )
    except AdminApiError as exc:
        print(f"downtime-operator maintenance: {exc}", file=sys.stderr)
        return 1
    print(f"{window['namespace']}/{window['name']}: {window['start']} .. {window['end']}")
    return 0


COMMANDS: Mapping[str, Command[Any]] = {
    "run": Command(OperatorSettings, _run, "run the Kubernetes operator"),
    "migrate": Command(OperatorSettings, _migrate, "apply the PostgreSQL migrations and exit"),
    "api": Command(OperatorSettings, _api, "run the admin HTTP API alone"),
    "monitor": Command(
        MonitorSettings,
        _monitor,
        "watch one URL without Kubernetes (incidents in SQLite or PostgreSQL)",
        takes_flags=True,
    ),
    "cleanup": Command(
        CleanupSettings,
        _cleanup,
        "delete resolved incidents older than N days, with their CRs and log files",
        takes_flags=True,
    ),
    "report": Command(
        ReportSettings,
        _report,
        "print an incident's post-mortem report (Markdown) from the store",
        takes_flags=True,
    ),
    "maintenance": Command(
        MaintenanceSettings,
        _maintenance,
        "start an ad-hoc maintenance window through the admin API (operator or monitor)",
        takes_flags=True,
    ),
    "rotate-keys": Command(
        RotateKeysSettings,
        _rotate_keys,
        "re-encrypt captured logs, log files and response bodies under the active key",
        takes_flags=True,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="downtime-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=command.help,
            description=command.help
            + ("; flags override the environment variables" if command.takes_flags else ""),
        )
        if command.takes_flags:
            for setting in settings_of(command.settings):
                if setting.source.argument is not None:
                    _add_argument(sub, setting, setting.source.argument)
                elif setting.source.flag is not None:
                    _add_flag(sub, setting, setting.source.flag)
    return parser


def _add_argument(parser: argparse.ArgumentParser, setting: Setting, name: str) -> None:
    text = (setting.field.description or "").replace("%", "%%")  # argparse formats help
    parser.add_argument(setting.path, metavar=name, help=text)


def _add_flag(parser: argparse.ArgumentParser, setting: Setting, flag: str) -> None:
    """Not given: None, so the environment (or the default) applies."""
    source = setting.source
    names = [flag, *([source.short] if source.short else [])]
    text = (setting.field.description or "").replace("%", "%%")  # argparse formats help
    if source.env:
        text += f"; env {' or '.join(source.env)}"
    # A required flag (no default) and a repeatable one (default: none given) show none.
    shown = setting.default is not None and setting.default is not PydanticUndefined
    if source.switch is None and shown and not source.repeatable:
        text += f"; default {setting.default}"
    if source.repeatable:
        parser.add_argument(
            *names, dest=setting.path, metavar=source.metavar, action="append", help=text
        )
    elif source.switch is None:
        parser.add_argument(*names, dest=setting.path, metavar=source.metavar, help=text)
    else:
        parser.add_argument(
            *names, dest=setting.path, action="store_const", const=source.switch, help=text
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name: str = args.command
    try:
        return COMMANDS[name](vars(args), os.environ)
    except SettingsError as exc:
        print(f"downtime-operator {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ListenError as exc:  # not a usage error: the port may be free on the next start
        print(f"downtime-operator {name}: {exc}", file=sys.stderr)
        return 1
