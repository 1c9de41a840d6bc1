"""The ``alta`` command line: run the experiments of ALTA and its reference configurations.

ALTA: Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023; reference code github.com/vijaylee/ALTA. The reference is run as
``python main.py --config-file configs/il_cifar10.yaml --method cprompt --il_setting task-il
--visual RN50 --buffer_size 500 --seed 1``; the same words work here::

    alta run                                   # offline demo: digits, tiny random CLIP, ALTA
    alta run --config il_cifar10 --data-root data/cifar10 --visual RN50
    alta run --config-file configs/il_cifar10.yaml --method cprompt --il_setting task-il \\
             --visual RN50 --buffer_size 500 --seed 1 --data-root data/cifar10
    alta run --resume runs/il_cifar10-...      # continue an interrupted run
    alta run --method alta,mlp,cprompt --buffer-size 200,500   # a run group: six runs in one pass
    alta run --seeds 0 1 2 --output-dir runs/g  # a run per seed + aggregate.json (mean ± std)
    alta report runs/g runs/h                  # Markdown (--format latex|csv) table side by side
    alta config show --config il_cifar10 --visual ViT-B/16   # the resolved config, no run
    alta list methods|backbones|datasets|configs

This module only turns argv into a :class:`~alta.run.config.RunConfig` and prints; the work is
done by :func:`alta.run.driver.run_experiment`, which scripts can call directly.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from tqdm.contrib.logging import logging_redirect_tqdm

from .. import distributed as dist
from ..data import DataRootError
from ..errors import AltaError, ConfigError
from .commands import HANDLERS, data_hint, run_variants
from .parser import build_parser
from .resolve import resolve_run_config
from .signals import Terminated, interrupt_status, sigterm_as_interrupt

__all__ = ["main", "build_parser", "resolve_run_config", "run_variants"]

class _Handler(logging.StreamHandler):
    """Logs to the current ``sys.stderr`` (looked up at every record, so captured streams work)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _rank_tag() -> str:
    """`` (rank r of N)`` in a data-parallel run, else nothing: which process an error is from."""
    return f" (rank {dist.get_rank()} of {dist.get_world_size()})" if dist.is_distributed() else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alta`` console script.

    Args:
        argv: Arguments without the program name (``None``: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for usage and configuration errors, 1 for other errors
        alta detects (missing data, weights unavailable offline, damaged checkpoints, a diverged
        run, a full disk), 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM, handled
        like Ctrl-C: what is complete is checkpointed and the resume command printed).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    if args.command is None:
        parser.print_help()
        return 0

    log = logging.getLogger("alta")
    handler = _Handler()
    handler.setFormatter(logging.Formatter("[alta] %(message)s"))
    previous_level, previous_propagate = log.level, log.propagate
    log.addHandler(handler)
    # alta's lines go to its own handler only: a library that configures the root logger (open_clip
    # logs through logging.warning) must not print each of them a second time
    log.propagate = False
    log.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    try:
        with sigterm_as_interrupt(), logging_redirect_tqdm(loggers=[log]):
            return HANDLERS[args.command](args)
    except KeyboardInterrupt as exc:
        print(f"\nalta: {'terminated (SIGTERM)' if isinstance(exc, Terminated) else 'interrupted'}", file=sys.stderr)
        return interrupt_status(exc)
    except ConfigError as exc:
        print(f"alta: error{_rank_tag()}: {exc}", file=sys.stderr)
        return 2
    except AltaError as exc:
        print(f"alta: error{_rank_tag()}: {exc}{data_hint(exc) if isinstance(exc, DataRootError) else ''}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"alta: error{_rank_tag()}: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"alta: error{_rank_tag()}: out of memory; use a smaller --batch-size, eval.batch_size or buffer.size (--set KEY=N), "
              "a smaller backbone, or fewer --num-workers", file=sys.stderr)
        return 1
    finally:
        log.removeHandler(handler)
        log.setLevel(previous_level)
        log.propagate = previous_propagate
