"""alta: ALTA continual learning with CLIP (Li et al., IEEE TMM 2023)."""

from ._version import __version__
from .errors import (
    AltaError,
    BackboneError,
    CheckpointError,
    ConfigError,
    DataError,
    ShapeError,
    StateError,
)

__all__ = [
    "__version__",
    "AltaError",
    "BackboneError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ShapeError",
    "StateError",
]
