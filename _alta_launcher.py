"""The ``alta`` console script's entry point: ``alta.cli.main`` behind a quiet start.

``import alta`` imports torch, which takes seconds. A Ctrl-C (or a SIGTERM from a scheduler) in
those seconds would otherwise print a ``KeyboardInterrupt`` traceback from inside torch's
imports. This module lives outside the ``alta`` package so that it is imported before torch:
it catches the interrupt, says so in one line and exits with 130 (143 for SIGTERM), like an
interrupt later in the run.
"""

from __future__ import annotations

import signal
import sys

__all__ = ["main"]


class _Terminated(KeyboardInterrupt):
    """SIGTERM while alta is starting."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def main() -> int:
    """Import alta (interruptible without a traceback), then run :func:`alta.cli.main`.

    Returns:
        The exit status of ``alta`` (130 / 143 when interrupted / terminated while starting).
    """
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except (ValueError, OSError):  # pragma: no cover - not the main thread
        previous = None
    try:
        from alta.cli import main as cli_main
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        print(f"\nalta: {'terminated (SIGTERM)' if terminated else 'interrupted'} while starting; nothing was done",
              file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
