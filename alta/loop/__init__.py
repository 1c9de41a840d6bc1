"""The loop: ALTA's training step, the loops over experiences and streams, and what runs around them.

The middle layer of alta (the pieces below it at :mod:`alta`, the run application above it at
:mod:`alta.run`). It imports only the pieces, and nothing below it imports it:

- :class:`LoopConfig` (:mod:`alta.loop.config`): the loops' only settings object;
- :func:`train_step` (:mod:`alta.loop.step`) and its data-parallel hook
  :class:`DataParallelStep` (:mod:`alta.loop.parallel`);
- :func:`epoch_batches` (:mod:`alta.loop.batches`): one epoch's batches, cached or not
  (:func:`round_batches`: one round of a budget in iterations; :func:`training_batches`: either);
- :func:`fit_experience`, :func:`run_stream` (:mod:`alta.loop.fit`) and :func:`run_group`
  (:mod:`alta.loop.group`), returning :class:`StreamResult` (:mod:`alta.loop.result`);
- :func:`evaluate` (:mod:`alta.loop.evaluation`), the :class:`FeatureCache`
  (:mod:`alta.loop.cache`), the :class:`Callback` events (:mod:`alta.loop.callbacks`) and the
  divergence checks (:mod:`alta.loop.divergence`);
- :class:`Learner` (:mod:`alta.loop.protocol`): what all of them need from a learner.

ALTA: Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023 (reference code github.com/vijaylee/ALTA, ``main.py``).
"""

from .batches import epoch_batches, round_batches, training_batches
from .cache import CachedFeatures, FeatureCache, encode_dataset
from .callbacks import Callback, CallbackList, MainProcessOnly, ProgressBar
from .config import CACHE_MODES, LoopConfig, parse_cache_mode
from .divergence import DivergenceMonitor
from .evaluation import EvaluationResult, evaluate, parameter_counts, task_il_mask
from .fit import ExperienceTrainer, evaluate_stream, fit_experience, run_stream, stream_experiences
from .group import GroupMember, run_group
from .parallel import DataParallelStep, sharded_text_features
from .protocol import Learner, check_learner
from .result import StreamResult
from .step import LocalStep, train_step

__all__ = [
    "LoopConfig",
    "CACHE_MODES",
    "parse_cache_mode",
    "train_step",
    "LocalStep",
    "DataParallelStep",
    "sharded_text_features",
    "epoch_batches",
    "round_batches",
    "training_batches",
    "fit_experience",
    "run_stream",
    "evaluate_stream",
    "ExperienceTrainer",
    "stream_experiences",
    "run_group",
    "GroupMember",
    "StreamResult",
    "evaluate",
    "EvaluationResult",
    "task_il_mask",
    "parameter_counts",
    "FeatureCache",
    "CachedFeatures",
    "encode_dataset",
    "Callback",
    "CallbackList",
    "MainProcessOnly",
    "ProgressBar",
    "DivergenceMonitor",
    "Learner",
    "check_learner",
]
