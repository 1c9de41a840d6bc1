"""Output folders of ``alta run``: claimed atomically, held exclusively while a run writes.

Two runs must never write into one folder (their ``metrics.jsonl`` would interleave and one
``summary.json`` would replace the other). A folder is therefore *claimed* before anything is
loaded:

- a new run creates the folder, takes an exclusive lock on it and publishes its ``config.yaml``
  with :func:`os.link` from a complete temporary file, which fails when ``config.yaml`` exists:
  of two runs started together on one folder exactly one wins, the other gets a
  :class:`~alta.errors.ConfigError` (or, for the default folder name, takes the next free name
  ``<name>-2``, ``<name>-3``, ...);
- a resumed run takes the lock on the run's existing folder.

The lock is an advisory ``flock`` on the folder itself, released by the kernel when the process
ends however it ends (``SIGKILL`` included), so a killed run never leaves a stale lock behind:
``alta run --resume`` works at once. Where ``flock`` is unavailable (Windows, some network file
systems) the ``config.yaml`` link alone decides between new runs.

A new run that fails before its first result (an unknown backbone, missing data, Ctrl-C while
loading) gives its claim back: its ``config.yaml`` and the folders it created are removed, so
the same command can simply be run again.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from .. import distributed as dist
from ..errors import ConfigError, OutputError
from ..io import write_json
from .config import config_differences, load_saved_config

__all__ = ["RUN_FILES", "RunDir", "claim_run_dir", "claim_run_dir_on_main", "check_output_dir"]

logger = logging.getLogger("alta.run")

RUN_FILES = ("config.yaml", "checkpoint.pt", "metrics.jsonl", "summary.json")
_MAX_NAMES = 1000  # default names tried: <name>, <name>-2, ..., <name>-1000

_EXPECTED = ("expected a new or empty folder for a new run (or the folder of an earlier run with --resume) in a "
             "place you can write to")


class _Busy(Exception):
    """The folder is locked by another process."""


class _Taken(Exception):
    """The folder already holds a run."""

    def __init__(self, present: list[str]) -> None:
        super().__init__(present)
        self.present = present


class RunDir:
    """A claimed output folder (see the module docstring); a context manager.

    Attributes:
        path: The folder.
        resume: Whether it was claimed to resume the run in it.
        started: Set by :meth:`mark_started` once results are being written; a new run that
            ends with an exception before that is given back (:meth:`abandon`).
    """

    def __init__(self, path: Path, *, resume: bool, lock_fd: int | None, created: list[Path],
                 wrote_config: bool) -> None:
        self.path = path
        self.resume = resume
        self.started = False
        self._fd = lock_fd
        self._created = created
        self._wrote_config = wrote_config
        try:
            st = os.fstat(lock_fd) if lock_fd is not None else os.stat(path)
            self._identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:  # pragma: no cover - the folder was just claimed
            self._identity = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, resume={self.resume}, held={self.held})"

    @property
    def held(self) -> bool:
        """Whether this process still holds the folder's lock."""
        return self._fd is not None

    def check_present(self) -> None:
        """Check that the folder is still the one claimed (a run calls it before it writes).

        Raises:
            OutputError: the folder was deleted or renamed (or replaced by another folder) since
                it was claimed; the message says where it went when the system can tell.
        """
        try:
            st = os.stat(self.path)
            same = self._identity is None or (st.st_dev, st.st_ino) == self._identity
        except OSError:
            same = False
        if same:
            return
        now = None
        if self._fd is not None:
            try:
                now = os.readlink(f"/proc/self/fd/{self._fd}")  # Linux: where the claimed folder is now
            except OSError:
                now = None
        if now is not None and not now.endswith(" (deleted)") and Path(now) != self.path.absolute():
            where = (f"it was renamed to {now}; the run stopped so that nothing is written elsewhere. Continue it "
                     f"there with `alta run --resume {now}`")
        elif now is not None and now.endswith(" (deleted)"):
            where = "it was deleted, with the run's results and checkpoint; start a new run"
        else:
            where = ("it was deleted or renamed; if it was renamed, continue the run from its new place with "
                     "`alta run --resume NEW_PLACE`")
        raise OutputError(f"the output folder {self.path} of this run is gone: {where}. alta never re-creates a "
                          f"run folder behind your back (it would hold an incomplete, unresumable run)")

    def mark_started(self) -> None:
        """Results are being written: the folder is kept whatever happens next."""
        self.started = True

    def release(self) -> None:
        """Release the lock (idempotent); the folder and its files stay."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)  # closing the only descriptor releases the flock
            except OSError:  # pragma: no cover
                pass

    def abandon(self) -> None:
        """Give the claim of a run that never started back: remove the ``config.yaml`` this claim
        wrote and the folders it created (when empty), then release the lock."""
        try:
            if not self.resume and not self.started:
                if self._wrote_config:
                    try:
                        (self.path / "config.yaml").unlink()
                    except OSError:
                        pass
                for folder in reversed(self._created):
                    try:
                        folder.rmdir()
                    except OSError:  # not empty (something else was written there) or gone
                        break
        finally:
            self.release()

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self.started and not self.resume:
            self.abandon()
        else:
            self.release()

    def __del__(self) -> None:  # a claim dropped without release (a script's bug): free the lock
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


# --------------------------------------------------------------------------------------------
# Checks and locks
# --------------------------------------------------------------------------------------------


def check_output_dir(path: str | os.PathLike, *, resume: bool = False) -> None:
    """Cheap checks of an output folder before anything is loaded: it must not be a file, it
    must be (or become) a folder in a writable place.

    Raises:
        ConfigError: says what was received and what is expected.
    """
    path = Path(path)
    if "\x00" in str(path):
        raise ConfigError(f"output folder {str(path)!r} holds a NUL character; {_EXPECTED}")
    try:
        _check_output_dir(path, resume=resume)
    except OSError as exc:  # a name too long, a folder that cannot be listed, ...
        raise _os_error(path, exc) from None


def _check_output_dir(path: Path, *, resume: bool) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output folder {path} is an existing file, not a folder; {_EXPECTED}. Choose another "
                          f"--output-dir")
    if resume:
        if not path.is_dir():
            raise ConfigError(f"cannot resume {path}: there is no such folder; --resume expects the folder of an "
                              f"earlier `alta run` (holding its config.yaml)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot resume {path}: the folder is not writable by this user; {_EXPECTED}")
        return
    ancestor = path
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"output folder {path} cannot be created: {ancestor} is a file, not a folder; {_EXPECTED}. "
                          f"Choose another --output-dir")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        what = "the folder is" if ancestor == path else f"{ancestor} is"
        raise ConfigError(f"output folder {path} is not writable ({what} not writable by this user); {_EXPECTED}. "
                          f"Choose another --output-dir")


def _lock(path: Path) -> int | None:
    """An exclusive, non-blocking ``flock`` on the folder; ``None`` where locks are unavailable.

    Raises:
        _Busy: another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the config.yaml link alone decides
        return None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise _Busy() from None
        logger.debug("no lock on %s (%s): relying on the config.yaml link", path, exc)
        return None  # e.g. ENOLCK on a network file system
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        same = False
    if not same:  # the folder was removed (a run giving its claim back) between open and lock
        os.close(fd)
        raise _Busy()
    return fd


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p``; returns the folders this call created, outermost first."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
                created.append(folder)
            except FileExistsError:
                if not folder.is_dir():
                    raise
    except OSError:
        for folder in reversed(created):  # leave nothing behind
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return created


def _publish(path: Path, text: str) -> None:
    """Create ``path`` with ``text``, atomically and only if it does not exist.

    Raises:
        FileExistsError: it exists.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        try:
            os.link(tmp, path)  # fails if path exists: the atomic claim
        except FileExistsError:
            raise
        except OSError as exc:  # a file system without hard links: exclusive creation instead
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(out, "wb") as handle:
                handle.write(text.encode("utf-8"))
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read once: reading it means setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _present(path: Path) -> list[str]:
    return [name for name in RUN_FILES if (path / name).exists()]


def _claim_new(path: Path, config_text: str) -> RunDir:
    """Claim one folder for a new run (no retries).

    Raises:
        _Busy, _Taken: the folder is in use or holds a run. OSError: it cannot be created.
    """
    created = _make_dirs(path)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
    fd = _lock(path)
    try:
        present = _present(path)
        if present:
            raise _Taken(present)
        try:
            _publish(path / "config.yaml", config_text)
        except FileExistsError:
            raise _Taken(_present(path) or ["config.yaml"]) from None
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    return RunDir(path, resume=False, lock_fd=fd, created=created, wrote_config=True)


def _os_error(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot use the output folder {path}: {exc.strerror or exc}; {_EXPECTED}. Choose another "
                       f"--output-dir")


def _taken_error(path: Path, present: list[str], config: Any) -> ConfigError:

    try:
        same = not config_differences(load_saved_config(path / "config.yaml"), config)
    except Exception:  # noqa: BLE001 - unreadable, damaged, another format: not "the same run"
        same = False
    advice = (f"it holds this same run: continue it with `alta run --resume {path}`"
              if same and "summary.json" not in present else
              f"continue it with `alta run --resume {path}`, or choose a new --output-dir")
    return ConfigError(f"output folder {path} already holds a run ({', '.join(present)}); {advice}. alta never "
                       f"overwrites results")


def _busy_error(path: Path, *, resume: bool) -> ConfigError:
    if resume:
        return ConfigError(f"cannot resume {path}: another alta process is running this run right now (the folder "
                           f"is locked). Wait for it to finish (or stop it), then resume; two processes never "
                           f"write into one run folder")
    return ConfigError(f"output folder {path} is in use by another `alta run` right now (started with the same "
                       f"--output-dir?); a new run needs a folder of its own: choose another --output-dir")


def claim_run_dir(output_dir: str | os.PathLike, config: Any, *, resume: bool = False,
                  next_free: bool = False) -> RunDir:
    """Claim an output folder for a run (see the module docstring).

    Args:
        output_dir: The folder.
        config: The run's :class:`~alta.run.config.RunConfig` (written as ``config.yaml`` by
            a new run).
        resume: Claim the existing folder of a run to continue it.
        next_free: When ``output_dir`` is in use or holds a run, try ``<output_dir>-2``,
            ``-3``, ... (the default names of ``alta run``).

    Returns:
        The held :class:`RunDir`; release it (or use it as a context manager) when done.

    Raises:
        ConfigError: a file where a folder is expected, an unwritable place, a folder that
            holds another run or is in use by another process, or (``resume``) a folder that
            is not a run's.
    """
    path = Path(output_dir)
    check_output_dir(path, resume=resume)
    if resume:
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"cannot resume {path}: it holds no config.yaml, so it is not the folder of an "
                              f"`alta run` (or the run never started). Start a new run instead")
        try:
            fd = _lock(path)
        except _Busy:
            raise _busy_error(path, resume=True) from None
        except OSError as exc:
            raise _os_error(path, exc) from None
        return RunDir(path, resume=True, lock_fd=fd, created=[], wrote_config=False)

    text = config.to_yaml()
    candidates = [path] + ([path.with_name(f"{path.name}-{n}") for n in range(2, _MAX_NAMES + 1)]
                           if next_free else [])
    for candidate in candidates:
        try:
            claimed = _claim_new(candidate, text)
        except _Busy:
            if not next_free:
                raise _busy_error(candidate, resume=False) from None
        except _Taken as taken:
            if not next_free:
                raise _taken_error(candidate, taken.present, config) from None
        except OSError as exc:
            if next_free and candidate.exists() and not candidate.is_dir():
                continue  # a file of that name: the next name
            raise _os_error(candidate, exc) from None
        else:
            if candidate != path:
                logger.info("%s is taken (a run started in the same second?): results go to %s", path, candidate)
            return claimed
    raise ConfigError(f"no free output folder among {path} and {path.name}-2 .. -{_MAX_NAMES}; choose an "
                      f"--output-dir")


def claim_run_dir_on_main(output_dir: str | os.PathLike, config: Any, *, resume: bool = False,
                          next_free: bool = False) -> RunDir:
    """:func:`claim_run_dir` for a run on one process or on N (``torchrun``).

    Rank 0 claims the folder (lock, ``config.yaml``) and tells the other ranks which folder it
    got, or why it got none; they then hold an unlocked :class:`RunDir` of the same folder
    (rank 0 alone writes into it, see :mod:`alta.distributed`). Every rank must call it. In one
    process it is :func:`claim_run_dir`.

    Raises:
        ConfigError: as :func:`claim_run_dir`, on every rank (with rank 0's message).
    """

    if not dist.is_distributed():
        return claim_run_dir(output_dir, config, resume=resume, next_free=next_free)
    claimed, outcome = None, None
    if dist.is_main_process():
        try:
            claimed = claim_run_dir(output_dir, config, resume=resume, next_free=next_free)
            outcome = ("claimed", str(claimed.path))
        except ConfigError as exc:
            outcome = ("refused", str(exc))
    outcome = dist.broadcast_object(outcome)
    if outcome[0] == "refused":
        raise ConfigError(outcome[1])
    if claimed is not None:
        return claimed
    return RunDir(Path(outcome[1]), resume=resume, lock_fd=None, created=[], wrote_config=False)


# -------------------------------------------------------------------------- run groups

GROUP_FILE = "group.json"  # a run group's folder: the member folders, in order
GROUP_FORMAT = "alta.run-group"


def write_group_file(root: str | os.PathLike, members: list[str]) -> Path:
    """Write ``root/group.json`` listing a run group's member folders (names inside ``root``),
    atomically; creates ``root``.

    Raises:
        ConfigError: a member name that is not a plain folder name, or twice.
    """

    _check_members(list(members), Path(root) / GROUP_FILE)
    return write_json(Path(root) / GROUP_FILE, {"format": GROUP_FORMAT, "members": list(members)})


def read_group_file(root: str | os.PathLike) -> list[Path]:
    """The member folders of the run group in ``root`` (``alta run --method a,b`` wrote its
    ``group.json``), in order.

    Raises:
        ConfigError: no ``group.json``, or one that is not alta's (unreadable, another format,
            members missing, empty, not plain folder names, or listed twice).
    """
    import json

    path = Path(root) / GROUP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{root} is not a run-group folder: no {GROUP_FILE} there") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != GROUP_FORMAT:
        raise ConfigError(f"{path} is not an alta run-group file (expected format {GROUP_FORMAT!r}, got "
                          f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r})")
    members = data.get("members")
    _check_members(members, path)
    return [Path(root) / name for name in members]


def _check_members(members: Any, path: Path) -> None:
    if not isinstance(members, list) or not members:
        raise ConfigError(f"{path}: 'members' must be a non-empty list of member folder names, got {members!r}"[:300])
    for name in members:
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or os.sep in name:
            raise ConfigError(f"{path}: member {name!r} is not a folder name inside the group's folder")
    twice = sorted({name for name in members if members.count(name) > 1})
    if twice:
        raise ConfigError(f"{path}: member(s) {', '.join(twice)} listed twice; each member folder once")
