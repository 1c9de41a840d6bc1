"""The settings of the training loops: one :class:`LoopConfig`, validated once.

The loops of :mod:`alta.loop` (:func:`~alta.loop.fit.fit_experience`,
:func:`~alta.loop.fit.run_stream`, :func:`~alta.loop.group.run_group`) and the batches they
draw (:func:`~alta.loop.batches.epoch_batches`) read their settings from one frozen
:class:`LoopConfig`. Its defaults are the reference protocol of ALTA (Li et al., "Cross-Modal
Alternating Learning with Task-Aware Representations for Continual Learning", IEEE TMM 2023;
reference code ``main.py``): 30 epochs per experience, batch 32, evaluation every 10 epochs.

The training-feature cache modes (``train_cache``):

- ``"none"``: images are loaded and augmented every epoch and encoded by the frozen image
  encoder at every step (faithful to the reference);
- ``"fixed"``: each training image is encoded once under the experience's deterministic test
  transform (no augmentation), then only the small heads run (exact for that protocol);
- ``"views:K"``: K augmented views per image are encoded once; every epoch draws one of them per
  image (an approximation of per-epoch augmentation).

A training budget is given in epochs (ALTA's protocol) or in iterations (``iterations``: the
optimizer steps per experience, as ZSCL and MoE-Adapters train 1,000 per task at batch 64). With
iterations, the data is cycled in shuffled passes until the budget is spent and ``epochs`` cuts
the budget into that many rounds of equal length; a round then plays the part of an epoch: the
learning rate and the alternating schedule step at its end, ``eval_every`` and the statistics
count rounds, and a checkpoint after a round resumes bit-identically
(:func:`~alta.loop.batches.round_batches`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config import MAX_BATCH_SIZE, ConfigSection, check_int, check_seed, set_canonical
from ..errors import ConfigError

__all__ = ["LoopConfig", "CACHE_MODES", "MAX_CACHE_VIEWS", "parse_cache_mode"]

CACHE_MODES = ("none", "fixed", "views:K")
MAX_CACHE_VIEWS = 1000  # K views of every training image are encoded up front
MAX_NUM_WORKERS = 64


def parse_cache_mode(mode: Any) -> tuple[str, int]:
    """Parse a training-feature cache mode.

    Args:
        mode: ``"none"``, ``"fixed"`` or ``"views:K"`` with K in ``[1, MAX_CACHE_VIEWS]``.

    Returns:
        ``(kind, views)``: ``("none", 0)``, ``("fixed", 1)`` or ``("views", K)``.

    Raises:
        ConfigError: for anything else.
    """
    if mode == "none":
        return "none", 0
    if mode == "fixed":
        return "fixed", 1
    if isinstance(mode, str) and mode.startswith("views:"):
        try:
            k = int(mode.split(":", 1)[1])
        except ValueError:
            k = 0
        if k > MAX_CACHE_VIEWS:
            raise ConfigError(f"feature cache mode is {mode!r}: K views of every training image are encoded up "
                              f"front, so K must be in [1, {MAX_CACHE_VIEWS}] (e.g. 'views:4')")
        if k >= 1:
            return "views", k
    raise ConfigError(f"feature cache mode must be 'none', 'fixed' or 'views:K' with K >= 1 (e.g. 'views:4'), got {mode!r}")


@dataclass(frozen=True)
class LoopConfig(ConfigSection):
    """Settings of the training loops, validated once, here.

    The defaults are the reference protocol (docs/method.md, Training protocol): 30 epochs per experience, batch
    32, evaluation every 10 epochs. A run's configuration builds one from its ``train``,
    ``eval`` and ``data`` sections (:attr:`alta.run.config.RunConfig.loop`).

    Attributes:
        epochs: Epochs per experience (30 in the paper; 100 for the joint upper bound); with
            ``iterations``, the number of rounds the budget is cut into (at most ``iterations``).
        iterations: Training budget in optimizer steps per experience (``None``: the budget is
            ``epochs`` passes over the data). ZSCL and MoE-Adapters: 1,000 at batch 64.
        batch_size: Training batch size B (32).
        seed: Run seed: shuffling, augmentation and cached views derive from
            ``(seed, experience, epoch, sample)``.
        train_cache: Training-feature cache mode: ``"none"`` (faithful: images encoded every
            step), ``"fixed"`` or ``"views:K"`` (see :mod:`alta.loop.config`).
        eval_every: Evaluate the experiences seen so far every this many epochs (0: only at
            experience ends).
        eval_batch_size: Test batch size.
        num_workers: DataLoader workers (never changes results).
        eval_before_snapshot: Evaluate the experience just trained before
            ``learner.end_experience`` snapshots its prompts, as the reference code does
            (``main.py`` evaluates inside its epoch loop; default ``False``: after).
        distributed: Run data-parallel over the ranks of the process group (torchrun; see
            :mod:`alta.loop.parallel`): each rank trains on its shard of every global batch of
            ``batch_size``, features are cached and evaluations counted on shards. The results
            are those of one process. Without a process group it changes nothing.

    Raises:
        ConfigError: a value out of range (the message names the field).

    Examples:
        >>> LoopConfig(epochs=5, train_cache="fixed").batch_size
        32
    """

    _SECTION: ClassVar[str] = ""

    epochs: int = 30
    iterations: int | None = None
    batch_size: int = 32
    seed: int = 0
    train_cache: str = "none"
    eval_every: int = 10
    eval_batch_size: int = 256
    num_workers: int = 0
    eval_before_snapshot: bool = False
    distributed: bool = False

    def __post_init__(self) -> None:
        check_int(self.epochs, "epochs", low=1)
        check_int(self.iterations, "iterations", low=1, optional=True,
                  why="optimizer steps per experience (ZSCL: 1000), or null for a budget in epochs")
        if self.iterations is not None and self.epochs > self.iterations:
            raise ConfigError(
                f"config key 'epochs' is {self.epochs} but config key 'iterations' is {self.iterations}: with a "
                f"budget in "
                f"iterations, epochs is the number of rounds the {self.iterations} steps are cut into (the unit of "
                f"checkpoints, of the learning-rate schedule and of eval_every), so it must be at most "
                f"{self.iterations}; e.g. iterations 1000 with epochs 10 (rounds of 100 steps)"
            )
        check_int(self.batch_size, "batch_size", low=1, high=MAX_BATCH_SIZE,
                  why="images per training step (the paper uses 32)")
        check_seed(self.seed, "seed")
        try:
            kind, views = parse_cache_mode(self.train_cache)
        except ConfigError as exc:
            raise ConfigError(f"config key 'train_cache': {exc}") from None
        set_canonical(self, "_cache", (kind, views))
        check_int(self.eval_every, "eval_every", low=0)
        check_int(self.eval_batch_size, "eval_batch_size", low=1, high=MAX_BATCH_SIZE,
                  why="test images per forward pass (default 256; it does not change results)")
        check_int(self.num_workers, "num_workers", low=0, high=MAX_NUM_WORKERS,
                  why="DataLoader worker processes; a few per CPU core at most (0 loads in the main process)")
        for name in ("eval_before_snapshot", "distributed"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config key {name!r} must be true or false, got {getattr(self, name)!r}")

    @property
    def cache_kind(self) -> str:
        """``"none"``, ``"fixed"`` or ``"views"``: the kind of :attr:`train_cache`."""
        return self._cache[0]

    @property
    def cache_views(self) -> int:
        """K of ``"views:K"`` (1 for ``"fixed"``, 0 for ``"none"``)."""
        return self._cache[1]

    def replace(self, **changes: Any) -> "LoopConfig":
        """A copy with ``changes`` (validated)."""
        return dataclasses.replace(self, **changes)
