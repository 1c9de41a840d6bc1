"""Signals of the ``alta`` command: SIGTERM (what Slurm sends) handled like Ctrl-C."""

from __future__ import annotations

import contextlib
import signal

__all__ = ["Terminated", "interrupt_status", "sigterm_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm and other schedulers send): handled like Ctrl-C, exit status 143."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def interrupt_status(exc: BaseException) -> int:
    """128 + the signal: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While the command runs, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except (ValueError, OSError):  # not the main thread (main() called from a thread): leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
