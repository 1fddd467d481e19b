"""Settings as data: the base of every config dataclass, which reads and writes plain dicts strictly and checks
each value's type and range when it is made."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from functools import cache


class ConfigError(ValueError):
    """A setting that is unknown, of the wrong type or out of range; the message names its key."""


def setting(
    default,
    help: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    above: bool = False,
    choices=None,
    metavar=None,
):
    """A field whose value (each element, for tuples) lies in [low, high] (above ``low``, if ``above``) or in
    ``choices``; None passes where the field's type allows it. ``help`` is its command-line help."""
    metadata = {"low": low, "high": high, "above": above, "choices": choices, "help": help, "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata)


@cache
def _hints(cls: type) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls)


def _coerce(value, hint, key: str):
    """``value`` as the annotated type (lists as tuples, ints as floats), or a ConfigError naming ``key``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _coerce(value, inner, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: must be a list, not {value!r}")
        fixed = args[-1] is not Ellipsis
        if fixed and len(value) != len(args):
            raise ConfigError(f"{key}: must hold {len(args)} values, not {len(value)}")
        return tuple(_coerce(item, args[i] if fixed else args[0], key) for i, item in enumerate(value))
    if isinstance(hint, type) and issubclass(hint, Settings):
        return value if isinstance(value, hint) else hint.from_dict(value, prefix=f"{key}.")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: must be of type {hint.__name__}, not {value!r}")
    return value


def _range_problem(item, metadata) -> str | None:
    choices, low, high = metadata.get("choices"), metadata.get("low"), metadata.get("high")
    if choices is not None and item not in choices:
        return f"must be one of {', '.join(map(str, choices))}, not {item!r}"
    if low is not None and (item <= low if metadata.get("above") else item < low):
        return f"must be {'above' if metadata.get('above') else 'at least'} {low:g}, not {item}"
    if high is not None and item > high:
        return f"must be at most {high:g}, not {item}"
    return None


def _check_range(value, metadata, key: str) -> None:
    for item in value if isinstance(value, tuple) else (value,):
        problem = None if item is None else _range_problem(item, metadata)
        if problem:
            raise ConfigError(f"{key}: {problem}")


class Settings:
    """The base of the frozen config dataclasses: every value is checked (and lists become tuples) when one is
    made, ``check`` adds the checks that span fields, and ``from_dict`` refuses keys it does not know."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = _coerce(getattr(self, field.name), _hints(type(self))[field.name], field.name)
            _check_range(value, field.metadata, field.name)
            object.__setattr__(self, field.name, value)
        self.check()

    def check(self) -> None:
        """Checks across fields; raise ConfigError."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, prefix: str = ""):
        """The settings in ``values`` over the defaults; a key this class lacks is a ConfigError naming it."""
        if not isinstance(values, dict):
            raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: must be a table of settings, not {values!r}")
        unknown = sorted(set(values) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown setting {prefix}{unknown[0]}")
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{prefix}{error}") from None


def option_type(kind: type, low: float | None = None, high: float | None = None, above: bool = False):
    """An argparse type: text as ``kind`` in [low, high] (above ``low``, if ``above``), refused as argparse refuses
    a value it cannot read."""
    bounds = {"low": low, "high": high, "above": above}

    def parse(text: str):
        value = kind(text)
        problem = _range_problem(value, bounds)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int value" message
    return parse


def add_options(parser, cls: type[Settings], section: str, skip=()) -> None:
    """One option ``--field-name`` per field of ``cls`` but those in ``skip``, storing into ``SECTION.field`` only
    when given, so that a config file's values hold where no flag is."""
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        hint = _hints(cls)[field.name]
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        kind = args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
        meta = field.metadata
        bounds = (meta.get("low"), meta.get("high"), meta.get("above", False))
        help_text = meta.get("help", "")
        if all(field.default is not value for value in (None, False, ())) and "default" not in help_text:
            values = field.default if isinstance(field.default, tuple) else (field.default,)
            shown = " ".join(f"{value:g}" if isinstance(value, float) else str(value) for value in values)
            help_text = f"{help_text} (default: {shown})".lstrip()
        options = {
            "dest": f"{section}.{field.name}",
            "default": argparse.SUPPRESS,
            "help": help_text.replace("%", "%%"),
        }
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            items = typing.get_args(kind)
            fixed = items[-1] is not Ellipsis
            options |= {
                "nargs": len(items) if fixed else "+",
                "type": option_type(items[0], *bounds),
            }
            options["metavar"] = meta.get("metavar") or field.name.upper()
        else:
            options |= {
                "type": option_type(kind, *bounds),
                "choices": meta.get("choices"),
                "metavar": meta.get("metavar") or (None if meta.get("choices") else field.name.upper()),
            }
        parser.add_argument("--" + field.name.replace("_", "-"), **options)


def given_options(args: argparse.Namespace, section: str) -> dict:
    """The values of the options that ``add_options`` made for ``section`` and the command line gave."""
    prefix = f"{section}."
    return {key[len(prefix) :]: value for key, value in vars(args).items() if key.startswith(prefix)}
