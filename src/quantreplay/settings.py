"""One way to build every settings object from a config section, and one way to reject a bad value.

A settings class is a frozen dataclass that inherits `Settings`; each field is declared with `setting(default,
check, "what it must be")`, so its default, its check and its message live on one line. Cross-field rules go in
`_check_fields`, which raises `SettingError` naming the field it blames. `parse(cls, values, key)` builds the
object from a config mapping (lists become tuples, unknown keys are refused) and every error names the config
key, e.g. `training.stages.math.lr: must be positive, got -1`. The defaults of a section that a settings class
reads live in that class only; the schema gives those keys their types and descriptions.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields


class SettingError(ValueError):
    """A settings value is wrong: `name` is the field, `problem` says what it must be and what it got."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def setting(default=MISSING, check: Callable[[object], bool] | None = None, what: str = "", **kwargs):
    """A settings field: its default (mutable ones are copied per instance), a value check and the message
    completing 'must be ...' when the check fails."""
    metadata = {"check": check, "what": what}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


# Checks that several settings share.
def positive(value) -> bool:
    return value > 0


def non_negative(value) -> bool:
    return value >= 0


def fraction(value) -> bool:
    return 0 < value < 1


def one_of(*options) -> Callable[[object], bool]:
    return lambda value: value in options


def _type_ok(value, hint) -> bool:
    """Whether `value` has the annotated type (int, float, bool, str, None, tuples and dicts of them, unions)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        (item, *_) = typing.get_args(hint)
        return isinstance(value, tuple) and all(_type_ok(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


_TYPE_NAMES = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}


def _type_name(hint) -> str:
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0]).removeprefix('an ').removeprefix('a ')}s"
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args and len(args) < len(typing.get_args(hint)):
        return " or ".join(_type_name(a) for a in args) + " or null"
    return _TYPE_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


@dataclass(frozen=True)
class Settings:
    """Base of every settings dataclass: checks each field's type and value, then `_check_fields`."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            # The value as the config wrote it: a list, not the tuple it is held as.
            shown = list(value) if isinstance(value, tuple) else value
            if not _type_ok(value, hints[f.name]):
                raise SettingError(f.name, f"must be {_type_name(hints[f.name])}, got {shown!r}")
            check = f.metadata.get("check")
            if check is not None and value is not None and not check(value):
                raise SettingError(f.name, f"must be {f.metadata['what']}, got {shown!r}")
        self._check_fields()

    def _check_fields(self) -> None:
        """Rules between fields; raise SettingError naming the field at fault."""

    def to_dict(self) -> dict:
        """The settings as a config mapping (tuples as lists), which `parse` turns back into the same object."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


S = typing.TypeVar("S", bound=Settings)


def parse(cls: type[S], values: Mapping, key: str) -> S:
    """`cls` from the config section `values` at config key `key`; missing keys take the class's defaults.

    Raises SettingError whose message starts with the config key of the bad value (`key.field: ...`).
    """
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise SettingError(f"{key}.{unknown[0]}", f"unknown key; choose from {', '.join(names)}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except SettingError as error:
        raise SettingError(f"{key}.{error.name}", error.problem) from None
    except TypeError as error:
        # A required field without a default, left out of the section.
        raise SettingError(key, str(error).split("__init__() ", 1)[-1]) from None
