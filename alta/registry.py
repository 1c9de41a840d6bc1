"""A small registry for named things: method variants, backbones, datasets, buffer policies.

Modelled on timm's model registry: entries are registered with a decorator, listed with
``list_*`` and created with ``create_*``; a duplicate name raises, and an unknown name raises
a :class:`~alta.errors.ConfigError` that lists the valid names and the closest match.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

__all__ = ["Registry", "pluralize"]

T = TypeVar("T")


def pluralize(noun: str) -> str:
    """English plural of a registry kind: ``"policy"`` -> ``"policies"``, ``"preset"`` -> ``"presets"``.

    Only the last word changes (``"buffer policy"`` -> ``"buffer policies"``). Covers the regular
    rules (consonant + y -> ies; s, x, z, ch, sh -> es; else s); pass ``plural=`` to
    :class:`Registry` for irregular nouns.
    """
    if not noun:
        return noun
    lower = noun.lower()
    if lower.endswith("y") and len(noun) > 1 and lower[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    return noun + "s"


class Registry(Generic[T]):
    """A name -> entry mapping with helpful errors.

    Args:
        kind: What the registry holds, used in error messages (e.g. ``"method"``).
        plural: Plural of ``kind`` for messages; derived by :func:`pluralize` when omitted.

    Examples:
        >>> methods = Registry("method")
        >>> @methods.register("mlp")
        ... def make_mlp(): ...
        >>> methods.names()
        ['mlp']
    """

    def __init__(self, kind: str, *, plural: str | None = None) -> None:
        self.kind = kind
        self.kinds = plural if plural is not None else pluralize(kind)
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator that registers ``entry`` under ``name`` (and optional aliases).

        Raises:
            ConfigError: if ``name`` or an alias is already registered.
        """

        def decorator(entry: T) -> T:
            self.add(name, entry, aliases=aliases)
            return entry

        return decorator

    def add(self, name: str, entry: T, *, aliases: tuple[str, ...] = ()) -> None:
        """Register ``entry`` under ``name`` (and optional aliases).

        Raises:
            ConfigError: if ``name`` or an alias is already registered.
        """
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ConfigError(
                    f"a {self.kind} named {key!r} is already registered; pick another name "
                    f"(registered {self.kinds}: {', '.join(self.names())})"
                )
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name

    def resolve(self, name: str) -> str:
        """Return the canonical name for ``name`` (following aliases).

        Raises:
            ConfigError: if ``name`` is unknown; the message lists the valid names and the
                closest match.
        """
        if not isinstance(name, str):
            raise ConfigError(
                f"{self.kind} name must be a string, got {type(name).__name__} {name!r}; "
                f"valid {self.kinds}: {', '.join(self.names())}"
            )
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        candidates = [*self._entries, *self._aliases]
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ConfigError(
            f"unknown {self.kind} {name!r}{hint} Valid {self.kinds}: {', '.join(self.names())}"
            + (f" (aliases: {', '.join(sorted(self._aliases))})" if self._aliases else "")
        )

    def get(self, name: str) -> T:
        """Return the entry registered under ``name`` (or one of its aliases).

        Raises:
            ConfigError: if ``name`` is unknown (lists valid names and the closest match).
        """
        return self._entries[self.resolve(name)]

    def names(self) -> list[str]:
        """Canonical names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
