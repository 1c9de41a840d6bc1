"""alta: continual learning with CLIP, implementing ALTA.

ALTA: W. Li, B.-B. Gao, B. Xia, J. Wang, J. Liu, Y. Liu, C. Wang, F. Zheng, "Cross-Modal
Alternating Learning with Task-Aware Representations for Continual Learning", IEEE Transactions
on Multimedia, 2023 (reference code: github.com/vijaylee/ALTA).

The public surface is what ``__all__`` lists: four core objects users wire into their own loops
(:class:`ScenarioStream` and :class:`MultiDomainStream`, :class:`MemoryBuffer`,
:class:`CrossModalLearner`, :class:`AlternatingSchedule`), the factories and listings of named things, evaluation and the
convenience loops, metrics, what your own method is made of (:class:`LearnerMethod`,
:class:`LossTerm`: docs/own-method.md), and the error hierarchy. Importing alta has no side
effects and downloads nothing; plug-ins (:mod:`alta.plugins`) are loaded at the first lookup of a
name.
"""

from . import distributed, metrics
from ._version import __version__
from .backbones import ClipBackbone, list_backbones, load_backbone
from .buffer import MemoryBuffer, list_buffer_policies
from .data import Experience, MultiDomainStream, ScenarioStream, list_datasets, list_sequences, make_transform
from .errors import (
    AltaError,
    BackboneError,
    CheckpointError,
    ConfigError,
    DataError,
    ShapeError,
    StateError,
)
from .learner import CrossModalLearner
from .loop import (
    Callback,
    DataParallelStep,
    EvaluationResult,
    FeatureCache,
    GroupMember,
    Learner,
    LoopConfig,
    StreamResult,
    callbacks,
    epoch_batches,
    evaluate,
    fit_experience,
    loggers,
    run_group,
    run_stream,
    train_step,
)
from .losses import LossTerm, TermValue
from .methods import LearnerMethod, get_method, list_methods
from .optim import build_optimizer
from .schedule import AlternatingSchedule

__all__ = [
    "__version__",
    # core objects
    "ScenarioStream",
    "MultiDomainStream",
    "MemoryBuffer",
    "CrossModalLearner",
    "AlternatingSchedule",
    # factories and listings
    "load_backbone",
    "list_backbones",
    "list_methods",
    "get_method",
    "list_datasets",
    "list_sequences",
    "list_buffer_policies",
    "make_transform",
    "build_optimizer",
    # the step, evaluation, loops, callbacks, metrics
    "train_step",
    "DataParallelStep",
    "epoch_batches",
    "evaluate",
    "fit_experience",
    "run_stream",
    "run_group",
    "GroupMember",
    "LoopConfig",
    "Callback",
    "callbacks",
    "loggers",
    "distributed",
    "metrics",
    "protocols",
    # your own method: a learner factory, loss terms (docs/own-method.md)
    "LearnerMethod",
    "LossTerm",
    "TermValue",
    # supporting types
    "Learner",
    "ClipBackbone",
    "Experience",
    "EvaluationResult",
    "FeatureCache",
    "StreamResult",
    # errors
    "AltaError",
    "BackboneError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ShapeError",
    "StateError",
]


def __getattr__(name: str):
    """``alta.protocols``: the run layer's named protocols, imported on first use (importing
    alta does not load the run application)."""
    if name == "protocols":
        from .run import protocols  # noqa: PLC0415 - the lazy top-level attribute

        return protocols
    raise AttributeError(f"module 'alta' has no attribute {name!r}")
