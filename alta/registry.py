"""A small registry for named things: method variants, backbones, datasets, buffer policies.

Modelled on timm's model registry: entries are registered with a decorator, listed with
``list_*`` and created with ``create_*``; a duplicate name raises, and an unknown name raises
a :class:`~alta.errors.ConfigError` that lists the valid names, the closest match and how to
register one.

A registry with an entry-point ``group`` also holds plug-ins (:mod:`alta.plugins`): the entry
points of installed packages, loaded once at its first lookup, and what user code registers
(``alta run --import``); :meth:`Registry.origin` says where each came from.
"""

from __future__ import annotations

import contextlib
import difflib
from types import ModuleType
from typing import Any, Callable, Generic, Iterator, TypeVar

from . import plugins
from .errors import ConfigError, PluginError
from .plugins import PluginOrigin

__all__ = ["Registry", "pluralize", "registries", "preserved"]

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
        group: The entry-point group of its plug-ins (``"alta.methods"``; see
            :data:`alta.plugins.ENTRY_POINT_GROUPS`), loaded at the first lookup; ``None``: none.
        check: ``check(name, entry) -> entry``, run on every entry added: it refuses an entry that
            does not follow the registry's protocol (a :class:`ConfigError` or ``TypeError``,
            raised as a :class:`~alta.errors.PluginError` naming a plug-in) and may convert it.
        registry_name: How code names the registry (``METHODS``), for messages.

    Examples:
        >>> methods = Registry("method")
        >>> @methods.register("mlp")
        ... def make_mlp(): ...
        >>> methods.names()
        ['mlp']
    """

    def __init__(self, kind: str, *, plural: str | None = None, group: str | None = None,
                 check: Callable[[str, Any], T] | None = None, registry_name: str | None = None) -> None:
        self.kind = kind
        self.kinds = plural if plural is not None else pluralize(kind)
        self.group = group
        self.registry_name = registry_name or "the registry"
        self._check = check
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._origins: dict[str, PluginOrigin] = {}
        self._loaded = group is None
        _REGISTRIES.append(self)

    # ------------------------------------------------------------------ plug-ins
    def _load_entry_points(self) -> None:
        """Register the entry points of :attr:`group` (once; all or none of them).

        Raises:
            PluginError: a plug-in failed to import, or registered something that is refused.
        """
        if self._loaded:
            return
        self._loaded = True  # first: a plug-in's own lookups must not load the group again
        before = (dict(self._entries), dict(self._aliases), dict(self._origins))
        try:
            for ep, origin in plugins.entry_points_of(self.group):
                with plugins.loading(origin):
                    entry = plugins.load_entry_point(ep, origin, kind=self.kind)
                    if isinstance(entry, ModuleType):  # a module that registers itself when imported
                        if ep.name not in self._entries:
                            raise PluginError(
                                f"the {self.kind} plug-in {ep.name!r} of {origin.describe()} names the module "
                                f"{entry.__name__}, which registered no {self.kind} named {ep.name!r} when imported; "
                                f"point the entry point at the object to register ('{entry.__name__}:OBJECT')")
                    else:
                        self.add(ep.name, entry)
        except BaseException:
            self._entries, self._aliases, self._origins = before
            self._loaded = False  # the next lookup raises again: a broken plug-in is never skipped
            raise

    def origin(self, name: str) -> PluginOrigin | None:
        """Where the entry ``name`` (or an alias) came from; ``None`` for alta's own."""
        return self._origins.get(self.resolve(name))

    def describe(self, name: str) -> str:
        """``method 'x'`` or ``method plug-in 'x' (package p 1.0 ...)``, for messages."""
        origin = self._origins.get(name)
        return f"{self.kind} {name!r}" if origin is None else f"{self.kind} plug-in {name!r} ({origin.describe()})"

    def unregister(self, name: str) -> None:
        """Remove ``name`` (and its aliases): for tests and notebooks that register again.

        Raises:
            ConfigError: ``name`` is unknown.
        """
        name = self.resolve(name)
        del self._entries[name]
        self._origins.pop(name, None)
        self._aliases = {a: n for a, n in self._aliases.items() if n != name}

    def how_to_register(self) -> str:
        """The sentence telling how to add an entry (plug-in registries only)."""
        if self.group is None:
            return ""
        return plugins.HOW_TO_REGISTER.format(group=self.group, registry=self.registry_name)

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

        An entry added from outside alta (an entry point, ``alta run --import``, a user's
        module) is recorded with its :class:`~alta.plugins.PluginOrigin`.

        Raises:
            ConfigError: if ``name`` or an alias is already registered (a
                :class:`~alta.errors.PluginError` naming the plug-in, for one).
            PluginError: a plug-in's entry that the registry's ``check`` refuses.
        """
        loading = plugins.current_origin()
        origin = loading.origin if loading is not None else plugins.caller_origin(__file__)
        who = f"the {self.kind} plug-in {name!r} of {origin.describe()}" if origin is not None else None
        if not isinstance(name, str) or not name:
            raise (PluginError if who else ConfigError)(
                f"{who or f'a {self.kind}'}: a registered name must be a non-empty string, got {name!r}")
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                holder = self._origins.get(self._aliases.get(key, key))
                by = f" by {holder.describe()}" if holder is not None else " (built into alta)"
                message = (f"a {self.kind} named {key!r} is already registered{by}; pick another name "
                           f"(registered {self.kinds}: {', '.join(self._entries)})")
                raise PluginError(f"{who} cannot be registered: {message}") if who else ConfigError(message)
        if self._check is not None:
            try:
                entry = self._check(name, entry)
            except (ConfigError, TypeError, ValueError) as exc:
                if who is None:
                    raise
                raise PluginError(f"{who} does not follow the {self.kind} protocol: {exc}") from None
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        if origin is not None:
            self._origins[name] = origin
        if loading is not None:
            loading.registered.append((self.kind, name))

    def resolve(self, name: str) -> str:
        """Return the canonical name for ``name`` (following aliases).

        Raises:
            ConfigError: if ``name`` is unknown; the message lists the valid names and the
                closest match.
        """
        self._load_entry_points()
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
        how = self.how_to_register()
        raise ConfigError(
            f"unknown {self.kind} {name!r}{hint} Valid {self.kinds}: {', '.join(self.names())}"
            + (f" (aliases: {', '.join(sorted(self._aliases))})" if self._aliases else "")
            + (f". To add one: {how}" if how else "")
        )

    def get(self, name: str) -> T:
        """Return the entry registered under ``name`` (or one of its aliases).

        Raises:
            ConfigError: if ``name`` is unknown (lists valid names and the closest match).
        """
        return self._entries[self.resolve(name)]

    def names(self) -> list[str]:
        """Canonical names, in registration order (alta's own, then plug-ins)."""
        self._load_entry_points()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        self._load_entry_points()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load_entry_points()
        return len(self._entries)

    def _state(self) -> tuple:
        return dict(self._entries), dict(self._aliases), dict(self._origins), self._loaded

    def _set_state(self, state: tuple) -> None:
        entries, aliases, origins, self._loaded = state
        self._entries, self._aliases, self._origins = dict(entries), dict(aliases), dict(origins)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


_REGISTRIES: list[Registry] = []


def registries() -> list[Registry]:
    """Every registry created so far (the plug-in registries: those with a ``group``)."""
    return [r for r in _REGISTRIES if r.group is not None]


@contextlib.contextmanager
def preserved():
    """Restore every registry, and forget the files :func:`alta.plugins.import_plugin` imported,
    when the block ends: for tests and notebooks that register plug-ins and want them gone after.

    Examples:
        >>> from alta.methods import METHODS
        >>> with preserved():
        ...     _ = plugins.import_plugin("examples/linear_probe.py")  # doctest: +SKIP
        >>> "linear_probe" in METHODS  # doctest: +SKIP
        False
    """
    states = {id(r): r._state() for r in _REGISTRIES}
    imported = plugins.imported_plugins()
    try:
        yield
    finally:
        for registry in _REGISTRIES:
            if id(registry) in states:
                registry._set_state(states[id(registry)])
        plugins._restore_imported(imported)
