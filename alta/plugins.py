"""Plug-ins: user code that registers methods, loss terms, datasets, backbone sources, buffer
policies and loggers with alta's registries, and where each registered thing came from.

Three ways in, the ecosystem's conventions (pytest's ``pytest11``, the ``console_scripts`` of
every package):

- **Entry points** of an installed package, one group per kind (:data:`ENTRY_POINT_GROUPS`)::

      # the plug-in package's pyproject.toml
      [project.entry-points."alta.methods"]
      linear_probe = "my_package.probe:METHOD"

  A registry loads its group once, lazily (at its first lookup) and deterministically (entry
  points sorted by name), and registers each object under the entry point's name. An entry point
  may also name a module that registers itself when imported. A plug-in that fails to import is
  reported with its error (:class:`~alta.errors.PluginError`), never skipped.
- ``alta run --import MODULE_OR_FILE`` (:func:`import_plugin`) for a quick experiment: a module
  name or a ``.py`` file whose code registers with the same registries (``METHODS.add(...)``).
- Code that registers in the running process (a script, a notebook).

Every registration made from outside alta gets a :class:`PluginOrigin` (package and version,
module, file and its SHA-256), recorded in a run's ``config.yaml`` and ``summary.json``; a resumed
run refuses to continue when a plug-in it was made with is missing or changed.

This module sits at the bottom of the pieces (it imports only :mod:`alta.errors`); the
registries (:mod:`alta.registry`) call it.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from .errors import PluginError
from .io import file_sha256 as io_file_sha256

__all__ = ["ENTRY_POINT_GROUPS", "PluginOrigin", "import_plugin", "entry_points_of", "loading", "caller_origin",
           "current_origin", "file_sha256", "imported_plugins"]

logger = logging.getLogger("alta.plugins")

#: The entry-point group of each kind of plug-in (the registry that reads it).
ENTRY_POINT_GROUPS = {
    "method": "alta.methods",
    "loss term": "alta.loss_terms",
    "dataset": "alta.datasets",
    "backbone source": "alta.backbone_sources",
    "buffer policy": "alta.buffer_policies",
    "logger": "alta.loggers",
}

HOW_TO_REGISTER = ("an entry point in group {group!r} of an installed package, or `alta run --import MODULE_OR_FILE` "
                   "with code that calls {registry}.add (docs/own-method.md)")


def file_sha256(path: str | os.PathLike | None) -> str | None:
    """SHA-256 of a file's bytes (``None`` for no file or an unreadable one)."""
    if path is None:
        return None
    try:
        return io_file_sha256(path)
    except OSError:
        return None


@dataclass(frozen=True)
class PluginOrigin:
    """Where a registered thing came from (anything not built into alta).

    Attributes:
        source: ``"entry point"`` (an installed package), ``"import"`` (``alta run --import``) or
            ``"code"`` (registered by a module of the running program).
        module: The module that holds or registered it.
        distribution: The installed package (entry points; modules of installed packages).
        version: Its version.
        group: The entry-point group.
        file: The module's file (absolute path).
        sha256: SHA-256 of that file.
    """

    source: str
    module: str
    distribution: str | None = None
    version: str | None = None
    group: str | None = None
    file: str | None = None
    sha256: str | None = None

    def identity(self) -> dict[str, Any]:
        """What must be equal for a resumed run: the package version of an entry point, else the
        file's hash (the module's name when it has no file)."""
        if self.source == "entry point" or (self.distribution and self.version and not self.sha256):
            return {"distribution": self.distribution, "version": self.version}
        return {"sha256": self.sha256} if self.sha256 else {"module": self.module}

    def record(self, kind: str, name: str) -> dict[str, Any]:
        """The plug-in's entry in ``config.yaml`` / ``summary.json``."""
        out = {"kind": kind, "name": name, "source": self.source, "module": self.module}
        for key in ("distribution", "version", "group", "file", "sha256"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "PluginOrigin":
        """The origin written by :meth:`record`."""
        return cls(**{k: record.get(k) for k in ("source", "module", "distribution", "version", "group", "file",
                                                  "sha256")})

    def describe(self) -> str:
        """One line: ``package alta-probe 1.0 (entry point in alta.methods, module alta_probe)``."""
        if self.source == "entry point":
            return (f"package {self.distribution} {self.version} (entry point in {self.group}, module "
                    f"{self.module})")
        where = self.file or f"module {self.module}"
        digest = f", sha256 {self.sha256[:12]}" if self.sha256 else ""
        package = f", package {self.distribution} {self.version}" if self.distribution else ""
        how = "--import" if self.source == "import" else "registered by"
        return f"{how} {where}{package}{digest}"

    @property
    def import_spec(self) -> str:
        """What ``--import`` imports it again: the file of a file import, else the module's name."""
        as_file = self.file and (self.module.startswith("_alta_import_") or self.module == Path(self.file).stem)
        return self.file if as_file else self.module

    def how_to_restore(self) -> str:
        """What makes this plug-in available again (for messages)."""
        if self.source == "entry point":
            return f"install {self.distribution}=={self.version} (pip install '{self.distribution}=={self.version}')"
        if self.source == "import":
            return f"pass --import {self.import_spec} as when the run started"
        if self.file:
            return (f"register it again before resuming: {self.file} registered it (on the command line: "
                    f"--import {self.file})")
        return f"register it again before resuming, as module {self.module} did"


@dataclass
class _Loading:
    """The plug-in being loaded: registrations made meanwhile get its origin."""

    origin: PluginOrigin
    registered: list[tuple[str, str]] = field(default_factory=list)


_LOADING: contextvars.ContextVar[_Loading | None] = contextvars.ContextVar("alta_plugin_loading", default=None)
# --import'ed modules and files: key -> (module, origin, what they registered)
_IMPORTED: dict[str, tuple[ModuleType, PluginOrigin, list[tuple[str, str]]]] = {}


@contextlib.contextmanager
def loading(origin: PluginOrigin) -> Iterator[_Loading]:
    """Registrations made inside the block are attributed to ``origin``."""
    state = _Loading(origin)
    token = _LOADING.set(state)
    try:
        yield state
    finally:
        _LOADING.reset(token)


def current_origin() -> _Loading | None:
    """The plug-in being loaded (inside :func:`loading`), or ``None``."""
    return _LOADING.get()


def _distribution_of(module: str) -> tuple[str | None, str | None]:
    """The installed package that provides ``module``'s top-level package, and its version."""
    top = module.partition(".")[0]
    try:
        names = importlib.metadata.packages_distributions().get(top) or []
    except Exception:  # noqa: BLE001 - a broken metadata folder elsewhere must not break a run
        return None, None
    for name in sorted(names):
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None


def caller_origin(skip_file: str) -> PluginOrigin | None:
    """Who is registering, seen from the call stack: ``None`` for alta itself (a module of the
    ``alta`` package registering at import time), else a ``"code"`` origin naming the first
    module outside alta on the stack (a user's script or module).

    Args:
        skip_file: The registry's own file (its frames are skipped).
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename != skip_file:
            name = frame.f_globals.get("__name__", "")
            if name == "alta" or name.startswith("alta."):
                if frame.f_code.co_name == "<module>":
                    return None  # alta's own module-level registrations: built in
            elif not (name.startswith("importlib") or frame.f_code.co_filename.startswith("<frozen")):
                file = frame.f_globals.get("__file__")
                return PluginOrigin("code", name or "?", file=os.path.abspath(file) if file else None,
                                    sha256=file_sha256(file))
        frame = frame.f_back
    return None


def entry_points_of(group: str) -> list[tuple[importlib.metadata.EntryPoint, PluginOrigin]]:
    """The entry points of ``group``, sorted by name (then package), each with its origin;
    one entry point listed twice (a package on the path twice) is taken once."""
    seen: dict[tuple[str, str], Any] = {}
    for ep in importlib.metadata.entry_points(group=group):
        seen.setdefault((ep.name, ep.value), ep)
    out = []
    for ep in sorted(seen.values(), key=lambda e: (e.name, e.dist.name if e.dist else "", e.value)):
        dist = ep.dist
        out.append((ep, PluginOrigin("entry point", ep.module, distribution=dist.name if dist else None,
                                     version=dist.version if dist else None, group=group)))
    return out


def _where(exc: BaseException, file: str | None = None) -> str:
    """`` (at FILE:LINE)``: the innermost frame of the plug-in's own code in a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if file is None or os.path.abspath(f.filename) == file] or frames
    outside = [f for f in mine if "importlib" not in f.filename and not f.filename.startswith("<frozen")]
    frame = (outside or mine or [None])[-1]
    return f" (at {frame.filename}:{frame.lineno})" if frame is not None else ""


def load_entry_point(ep: importlib.metadata.EntryPoint, origin: PluginOrigin, *, kind: str) -> Any:
    """``ep.load()``; an error is raised as a :class:`PluginError` naming the plug-in.

    Raises:
        PluginError: the entry point's module failed to import, or lacks the named object.
    """
    try:
        return ep.load()
    except Exception as exc:  # noqa: BLE001 - any error of the plug-in's code: named, never swallowed
        raise PluginError(
            f"the {kind} plug-in {ep.name!r} of {origin.describe()} failed to load ({ep.value}): "
            f"{type(exc).__name__}: {exc}{_where(exc)}. Fix or uninstall the package "
            f"(pip uninstall {origin.distribution}); alta loads every entry point of group {origin.group!r}"
        ) from exc


def import_plugin(spec: str | os.PathLike) -> tuple[ModuleType, PluginOrigin, list[tuple[str, str]]]:
    """Import a module or a ``.py`` file whose code registers with alta's registries
    (``alta run --import``); importing the same one again does nothing.

    A file is imported as a module named after its stem (``examples/linear_probe.py`` ->
    ``linear_probe``); a package must be importable (installed, or on ``PYTHONPATH``) and is named
    by its module name.

    Args:
        spec: A module name (``my_package.probe``) or the path of a ``.py`` file.

    Returns:
        ``(module, origin, registered)``: ``registered`` lists the ``(kind, name)`` pairs it
        registered.

    Raises:
        PluginError: no such file or module; the code raised (its error and line are named); a
            file imported before in this process has changed since.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    as_file = text.endswith(".py") or os.sep in text or (os.altsep and os.altsep in text) or path.is_file()
    if as_file:
        if not path.is_file():
            what = ("is a folder, not a file" if path.is_dir() else
                    "exists but is not a regular file" if path.exists() else "no such file")
            raise PluginError(f"--import {text}: {what}; give the path of a .py file that registers a plug-in "
                              f"(e.g. {text.rstrip('/')}/plugin.py), or an importable module name (e.g. "
                              f"my_package.plugin)")
        file = str(path.resolve())
        key = f"file:{file}"
        digest = file_sha256(file)
        if key in _IMPORTED:
            module, origin, registered = _IMPORTED[key]
            if origin.sha256 != digest:
                raise PluginError(f"--import {text}: the file changed since it was imported in this process "
                                  f"(sha256 {origin.sha256[:12]} -> {digest[:12]}); start a new process to use the "
                                  f"new code")
            return module, origin, registered
        stem = path.stem
        name = stem if stem.isidentifier() and stem not in sys.modules else f"_alta_import_{stem}_{digest[:12]}"
        origin = PluginOrigin("import", name, file=file, sha256=digest)
        module_spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickle look a module up by name
        with loading(origin) as state:
            try:
                module_spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - the plug-in's own error, named with its line
                sys.modules.pop(name, None)
                raise _import_error(text, exc, file) from exc
    else:
        key = f"module:{text}"
        if key in _IMPORTED:
            return _IMPORTED[key]
        try:
            found = importlib.util.find_spec(text)
        except (ImportError, ValueError) as exc:
            found, error = None, exc
        else:
            error = None
        if found is None:
            raise PluginError(f"--import {text}: no module named {text!r}{f' ({error})' if error else ''}; give an "
                              f"importable module (installed, or on PYTHONPATH) or the path of a .py file")
        file = os.path.abspath(found.origin) if found.origin and os.path.isfile(found.origin) else None
        distribution, version = _distribution_of(text)
        origin = PluginOrigin("import", text, distribution=distribution, version=version, file=file,
                              sha256=file_sha256(file))
        with loading(origin) as state:
            try:
                module = importlib.import_module(text)
            except Exception as exc:  # noqa: BLE001 - the plug-in's own error, named with its line
                raise _import_error(text, exc, file) from exc
    _IMPORTED[key] = (module, origin, state.registered)
    if state.registered:  # said once, when the code runs (a later call returns the cached import)
        logger.info("--import %s: %s", text, ", ".join(f"{kind} {name!r}" for kind, name in state.registered))
    else:
        logger.warning("--import %s registered nothing (a plug-in calls e.g. alta.methods.METHODS.add(name, ...) "
                       "when imported)", text)
    return module, origin, state.registered


def _import_error(spec: str, exc: Exception, file: str | None) -> PluginError:
    """The error of an ``--import`` whose code raised: a registry's refusal as it is (it names the
    plug-in), alta's errors with the line that raised them, anything else with its type too."""
    if isinstance(exc, PluginError):
        return exc
    from_alta = type(exc).__module__ == "alta.errors"
    what = str(exc) if from_alta else f"failed: {type(exc).__name__}: {exc}"
    return PluginError(f"--import {spec}{':' if from_alta else ''} {what}{_where(exc, file)}")


def imported_plugins() -> dict[str, tuple[ModuleType, PluginOrigin, list[tuple[str, str]]]]:
    """What :func:`import_plugin` imported in this process, by key (a copy)."""
    return dict(_IMPORTED)


def _restore_imported(state: dict[str, tuple[ModuleType, PluginOrigin, list[tuple[str, str]]]]) -> None:
    """Forget the imports made since ``state`` (:func:`alta.registry.preserved`)."""
    for key in [k for k in _IMPORTED if k not in state]:
        module = _IMPORTED.pop(key)[0]
        if key.startswith("file:"):
            sys.modules.pop(module.__name__, None)
