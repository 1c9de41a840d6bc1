"""Configuration sections: frozen dataclasses built from mappings, validated once.

Every object a run builds is configured by a small frozen dataclass written next to it (STYLE.md
habit 3), in the manner of open_clip's architecture configs:

==========================================  ======================  =========================
section                                     YAML section            configures
==========================================  ======================  =========================
:class:`alta.run.sections.DataConfig`        ``data``                the stream
:class:`alta.learner_config.LearnerConfig`         ``model``               backbone and learner
:class:`alta.buffer.BufferConfig`           ``buffer``              the replay memory
:class:`alta.optim.OptimConfig`             ``optim``               SGD and its lr schedule
:class:`alta.run.sections.TrainConfig`          ``train``               the loop and the schedule
:class:`alta.run.sections.EvalConfig`         ``eval``                evaluation
:class:`alta.run.config.RunConfig`          (top level)             the whole run
==========================================  ======================  =========================

A section derives from :class:`ConfigSection`: its ``__post_init__`` validates each value once
(with the helpers below, whose messages name the dotted key), and :meth:`ConfigSection.from_dict`
checks types and refuses an unknown key by name, with the closest valid key (never the refused
one) and the list of valid keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any, Mapping, Sequence, Union

from .errors import ConfigError

__all__ = ["ConfigSection", "in_section", "check_int", "check_number", "check_choice", "check_seed", "resolve_name", "case_hint",
           "unknown_key_error", "coerce", "INT_MAX", "MAX_BATCH_SIZE"]

INT_MAX = 2**63 - 1  # torch and NumPy take 64-bit signed integers; also the largest seed
MAX_BATCH_SIZE = 1_000_000  # far above any real run: an extra digit is refused instead of exhausting memory


def check_int(value: Any, key: str, *, low: int | None = None, high: int = INT_MAX, optional: bool = False,
              why: str = "") -> None:
    """Refuse anything but an integer in ``[low, high]`` (or ``None`` when ``optional``).

    Raises:
        ConfigError: naming ``key``, what was received and what is expected.
    """
    if value is None and optional:
        return
    ok = not isinstance(value, bool) and isinstance(value, int)
    if ok and (low is None or value >= low) and value <= high:
        return
    if high == INT_MAX:
        need = f"an integer >= {low}" if low is not None else "an integer"
        if isinstance(value, int) and not isinstance(value, bool) and value > high:
            need += " below 2**63"
    else:
        need = f"an integer in [{low if low is not None else '-inf'}, {high:_}]"
    raise ConfigError(f"config key {key!r} must be {need}{' or null' if optional else ''}, got {value!r}"
                      f"{'; ' + why if why else ''}")


def check_seed(value: Any, key: str) -> None:
    """Refuse anything but a seed, an integer in [0, 2**63)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT_MAX:
        raise ConfigError(f"config key {key!r} must be an integer in [0, 2**63) (a seed), got {value!r}; "
                          f"e.g. {key}: 42")


def check_number(value: Any, key: str, *, positive: bool = False, nonnegative: bool = False) -> None:
    """Refuse anything but a finite number (``> 0`` or ``>= 0`` as asked)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (not positive or value > 0) and (not nonnegative or value >= 0):
        return
    need = "a positive number" if positive else "a number >= 0" if nonnegative else "a finite number"
    raise ConfigError(f"config key {key!r} must be {need}, got {value!r}")


def case_hint(value: Any, candidates) -> str | None:
    """The candidate equal to ``value`` up to case (``'ALTA'`` -> ``'alta'``), or the closest one
    compared without case."""
    if not isinstance(value, str):
        return None
    lowered: dict[str, str] = {}
    for candidate in candidates:
        lowered.setdefault(candidate.lower(), candidate)
    if value.lower() in lowered:
        return lowered[value.lower()]
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def closest_choice(value: Any, choices: Sequence[str]) -> str | None:
    """The choice closest to a refused ``value`` (spelling, then case), or ``None``."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return close[0] if close else case_hint(value, choices)


def check_choice(value: Any, key: str | None, choices: tuple[str, ...], *, what: str | None = None) -> None:
    """Refuse a value not in ``choices``, suggesting the closest one.

    Raises:
        ConfigError: naming the config ``key`` (or ``what`` the value is, for a value that is not a
            config key), the value, the closest choice and the valid ones.
    """
    if value in choices:
        return
    match = closest_choice(value, choices)
    hint = f"; did you mean {match!r}?" if match else "."
    raise ConfigError(f"{what or f'config key {key!r}'} is {value!r}{hint} Valid values: {', '.join(choices)}")


def resolve_name(registry, value: Any, key: str) -> str:
    """``registry.resolve(value)``, with a case-insensitive suggestion when the name is unknown
    (``'ALTA'`` -> ``'alta'``)."""
    try:
        return registry.resolve(value)
    except ConfigError as exc:
        message = str(exc)
        if not isinstance(value, str):
            raise
        exact = next((c for c in (value.lower(), value.upper()) if c in registry), None)
        match = exact if exact is not None else None if "did you mean" in message else case_hint(
            value, registry.names())
        if match is None:
            raise
        hint = f"; did you mean {match!r}?{' (names are case-sensitive)' if exact is not None else ''}"
        if "did you mean" in message:
            message = re.sub(r"; did you mean .*?\?", lambda _: hint, message, count=1)
        elif ". Valid " in message:
            message = message.replace(". Valid ", f"{hint} Valid ", 1)
        else:
            message = f"{message.rstrip()} ({key}{hint})"
        raise ConfigError(message) from None


@contextlib.contextmanager
def in_section(section: str, *names: str, **renamed: str):
    """Name the keys of a lower layer's :class:`ConfigError` as keys of ``section``: a check
    written once in the object that owns a value (``config key 'batch_size' ...``) then reads
    ``config key 'train.batch_size' ...`` in a run configuration.

    Args:
        section: The section (``"train"``).
        names: Keys spelt the same in both layers.
        renamed: ``owner_key="section_key"`` for keys spelt differently (``eval_every="every"``).
    """
    try:
        yield
    except ConfigError as exc:
        message = str(exc)
        for owner, key in {**{n: n for n in names}, **renamed}.items():
            message = message.replace(f"config key {owner!r}", f"config key '{section}.{key}'")
        raise ConfigError(message) from None


def default_of(function: Any, parameter: str) -> Any:
    """The default value of ``parameter`` in ``function``'s signature: a config section that
    configures a function takes its defaults from there, so each is written once.

    Raises:
        KeyError: ``function`` has no such parameter, or it has no default.
    """
    value = inspect.signature(function).parameters[parameter].default
    if value is inspect.Parameter.empty:
        raise KeyError(f"{function.__qualname__}() gives {parameter!r} no default")
    return value


def set_canonical(instance: Any, attr: str, value: Any) -> None:
    """Store a normalised value on a frozen dataclass during ``__post_init__`` (construction)."""
    object.__setattr__(instance, attr, value)


# --------------------------------------------------------------------------------------------
# Typed construction from mappings
# --------------------------------------------------------------------------------------------


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return "a list of strings" if item is str else "a list of integers"
    if origin is dict:
        return "a mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) if a is not type(None) else "null" for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a field's type (ints are accepted for floats, YAML's ``1e-5``
    string too).

    Raises:
        ConfigError: a value of the wrong type.
    """
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        for arg in typing.get_args(hint):
            if arg is not type(None):
                try:
                    return coerce(value, arg, key)
                except ConfigError:
                    pass
    elif hint is bool or hint is str:
        if isinstance(value, hint):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            item = typing.get_args(hint)[0]
            try:
                return tuple(coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
            except ConfigError:
                if len(typing.get_args(hint)) == 2 and value:  # tuple[X, ...]: say what the whole list must be
                    raise ConfigError(f"config key {key!r} must be {_type_name(hint)}, got {value!r}") from None
                raise
    elif origin is dict:
        if isinstance(value, Mapping):
            key_hint, value_hint = typing.get_args(hint)
            return {coerce(k, key_hint, key): v if value_hint is Any else coerce(v, value_hint, f"{key}.{k}")
                    for k, v in value.items()}
    else:  # typing.Any (the values of data.options: checked by the dataset)
        return value
    raise ConfigError(f"config key {key!r} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})")


def field_hints(cls: type) -> dict[str, Any]:
    """The type of every field of a config dataclass (class variables such as ``_SECTION`` left
    out: they are no keys)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def all_keys(root: type) -> list[str]:
    """Every key of a config class, dotted (``seed``, ``train.epochs``, ...)."""
    keys = []
    for name, hint in field_hints(root).items():
        keys += [f"{name}.{f.name}" for f in fields(hint)] if is_dataclass(hint) else [name]
    return keys


def _suggest_keys(key: str, where: str, valid: list[str], root: type | None) -> list[str]:
    """The keys a misspelt ``where + key`` probably meant: in its own section first (exact up to
    case, then close), then among every dotted key of ``root``: the same key up to case
    (``Train.Epochs``), the same last part (``trian.epochs`` or a bare ``epochs`` ->
    ``train.epochs``), a misspelt section, a close match."""
    match = case_hint(key, valid)
    if match is not None:
        return [where + match]
    if root is None:
        return []
    full = where + key
    everything = all_keys(root)
    lowered = {k.lower(): k for k in everything}
    if full.lower() in lowered:
        return [lowered[full.lower()]]
    leaf = full.rpartition(".")[2].lower()
    same_leaf = [k for k in everything if k.rpartition(".")[2].lower() == leaf]
    if same_leaf:
        return same_leaf[:3]
    head, dot, rest = full.partition(".")
    section = case_hint(head, [f.name for f in fields(root)]) if dot else None
    if section is not None:
        hint = typing.get_type_hints(root)[section]
        inner = case_hint(rest, [f.name for f in fields(hint)]) if is_dataclass(hint) else None
        return [f"{section}.{inner or rest}"]
    match = case_hint(full, everything)
    return [match] if match is not None else []


def unknown_key_error(key: str, where: str, valid: list[str], root: type | None = None) -> ConfigError:
    """The error for an unknown key ``where + key`` (``where`` is ``"train."`` or ``""``): the
    closest valid keys (never the refused key itself) and the valid keys of its section."""
    refused = where + str(key)
    close = [c for c in _suggest_keys(str(key), where, valid, root) if c != refused]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
    section = f"section {where[:-1]!r}" if where else "the top level"
    return ConfigError(f"unknown config key {refused!r}{hint} Valid keys of {section}: {', '.join(valid)}")


def build_from_dict(cls: type, data: Mapping[str, Any] | None, where: str = "", root: type | None = None) -> Any:
    """``cls(**data)`` with nested sections built recursively, types checked and unknown keys
    refused (see :func:`unknown_key_error`)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        what = f"section {where[:-1]!r}" if where else "a config"
        raise ConfigError(f"{what} must be a mapping of keys to values, got {type(data).__name__} {data!r}")
    hints = field_hints(cls)
    valid = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise unknown_key_error(str(key), where, valid, root)
        hint = hints[key]
        if is_dataclass(hint):
            kwargs[key] = build_from_dict(hint, value, f"{where}{key}.", root)
        else:
            kwargs[key] = coerce(value, hint, f"{where}{key}")
    return cls(**kwargs)


def plain(value: Any) -> Any:
    """Tuples to lists, recursively (YAML/JSON-ready)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class ConfigSection:
    """Mixin of the frozen config dataclasses: ``from_dict`` and ``to_dict``.

    A subclass is a ``@dataclass(frozen=True)`` whose ``__post_init__`` validates its values.
    """

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None):
        """Build the section from a mapping (parsed YAML); missing keys take their defaults.

        Raises:
            ConfigError: an unknown key (named, with the closest valid key and the valid keys),
                a value of the wrong type, or an invalid value.
        """
        where = getattr(cls, "_SECTION", "")
        return build_from_dict(cls, data, f"{where}." if where else "", cls if not where else None)

    def to_dict(self) -> dict[str, Any]:
        """Every value, defaults included, as plain nested dicts and lists (YAML/JSON-ready)."""
        return plain(dataclasses.asdict(self))
