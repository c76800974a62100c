"""Where settings come from: each field declares its sources beside it, one loader reads them.

Every command loads its settings the same way: environment variables first (a variable that is
set but empty counts as unset), then the command's flags, which win. A bad value stops the
command with a SettingsError whose message names the flag or variable the value came from, and
never repeats a secret.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, SecretStr, ValidationError, ValidationInfo
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

Model = TypeVar("Model", bound=BaseModel)
_ORIGINS = "origins"
"""Validation context key: which flag or variable each given value came from, by path."""


class SettingsError(ValueError):
    """A setting is invalid; the message names the flag or environment variable."""


@dataclass(frozen=True)
class Source:
    """Where a field's value may come from (``Annotated`` metadata on the field)."""

    env: tuple[str, ...] = ()
    """Environment variables, in order of preference (aliases after the main name)."""
    flag: str | None = None
    """Its flag on the commands that take flags; it overrides the environment."""
    argument: str | None = None
    """Instead of a flag: a positional argument, shown as this name (``INCIDENT_ID``)."""
    short: str | None = None
    metavar: str | None = None
    switch: bool | None = None
    """The value the flag sets when it takes no argument (``--verbose``: True)."""
    repeatable: bool = False
    """The flag may be given several times; the field (a tuple) gets every value, in order."""

    @property
    def name(self) -> str:
        """How an error names the setting when no value was given for it."""
        return self.flag or self.argument or self.env[0]


@dataclass(frozen=True)
class Defaults:
    """A command's own defaults for a group it composes (``Annotated`` metadata on the group)."""

    values: Mapping[str, object]


@dataclass(frozen=True)
class Setting:
    """A field that has sources, and its dotted path in a command's settings (the flag's dest)."""

    path: str
    source: Source
    field: FieldInfo
    default: object
    """The command's default: the group's own, unless the command gives one (``Defaults``)."""


def settings_of(
    model: type[BaseModel], prefix: str = "", defaults: Mapping[str, object] | None = None
) -> Iterator[Setting]:
    """Every sourced field of ``model`` and of the groups it composes, in declaration order."""
    for name, field in model.model_fields.items():
        group = _group(field)
        if group is not None:
            given = _metadata(field, Defaults)
            yield from settings_of(group, f"{prefix}{name}.", given.values if given else None)
            continue
        source = _metadata(field, Source)
        if source is not None:
            default = (defaults or {}).get(name, field.get_default(call_default_factory=True))
            yield Setting(f"{prefix}{name}", source, field, default)


def load_settings(
    model: type[Model], env: Mapping[str, str], flags: Mapping[str, object] | None = None
) -> Model:
    """``model`` from ``env``, then ``flags`` (dotted paths to values; None: not given)."""
    raw = _defaults(model)
    origins: dict[str, str] = {}
    for setting in settings_of(model):
        for variable in setting.source.env:
            if env.get(variable):
                _put(raw, setting.path, env[variable])
                origins[setting.path] = variable
                break
        given = setting.source.flag or setting.source.argument
        if given is not None and flags and flags.get(setting.path) is not None:
            _put(raw, setting.path, flags[setting.path])
            origins[setting.path] = given
    try:
        return model.model_validate(raw, context={_ORIGINS: origins})
    except ValidationError as exc:
        messages = (_message(model, error, origins) for error in exc.errors())
        raise SettingsError("; ".join(messages)) from exc


def named(info: ValidationInfo, model: type[BaseModel], path: str) -> str:
    """The flag or variable ``path``'s value came from, else the one that would set it: for
    checks across fields, whose messages name their settings themselves."""
    origins: Mapping[str, str] = (info.context or {}).get(_ORIGINS, {})
    if path in origins:
        return origins[path]
    return next(s.source.name for s in settings_of(model) if s.path == path)


def _message(model: type[BaseModel], error: ErrorDetails, origins: Mapping[str, str]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    setting = _setting_at(model, error["loc"])
    if setting is None:  # a check across fields: its message already names them
        return message
    # Our own messages quote the value when it helps; pydantic's do not.
    if error["type"] != "value_error" and not _mentions_secret(setting.field.annotation):
        message += f" (got {error['input']!r})"
    return f"{origins.get(setting.path, setting.source.name)}: {message}"


def _setting_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> Setting | None:
    """The sourced field an error is about; the rest of ``loc`` points inside its value."""
    by_path = {setting.path: setting for setting in settings_of(model)}
    for end in range(len(loc), 0, -1):
        setting = by_path.get(".".join(str(part) for part in loc[:end]))
        if setting is not None:
            return setting
    return None


def _mentions_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_mentions_secret(arg) for arg in get_args(annotation))


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    """One entry per group (groups are required: the loader always builds them)."""
    raw: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        group = _group(field)
        if group is not None:
            defaults = _metadata(field, Defaults)
            raw[name] = {**(defaults.values if defaults else {}), **_defaults(group)}
    return raw


def _put(raw: dict[str, Any], path: str, value: object) -> None:
    *groups, name = path.split(".")
    for group in groups:
        raw = raw[group]
    raw[name] = value


def _group(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


Meta = TypeVar("Meta", Source, Defaults)


def _metadata(field: FieldInfo, kind: type[Meta]) -> Meta | None:
    return next((item for item in field.metadata if isinstance(item, kind)), None)
