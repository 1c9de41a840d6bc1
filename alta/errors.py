"""The one error hierarchy of alta.

Every error alta raises on purpose derives from :class:`AltaError`, so a caller can catch
``AltaError`` for "the user asked for something alta cannot do" and let real bugs through.
The concrete classes also derive from the matching built-in (``ValueError``, ``FileNotFoundError``,
``RuntimeError``) so code written against the built-ins keeps working.

Messages follow one pattern: what was received, what was expected, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AltaError",
    "ConfigError",
    "PluginError",
    "DataError",
    "BackboneError",
    "ShapeError",
    "StateError",
    "CheckpointError",
    "TrainingError",
    "OutputError",
    "ResourceError",
]


class AltaError(Exception):
    """Root of every error alta raises on purpose."""


class ConfigError(AltaError, ValueError):
    """A configuration value, name or combination of options is invalid."""


class PluginError(ConfigError):
    """A plug-in (a method, loss term, dataset, backbone source, buffer policy or logger registered
    by an installed package's entry point, by ``alta run --import`` or by user code) cannot be
    loaded, does not follow its protocol, or is not the one a saved run was made with. The message
    names the plug-in and where it comes from."""


class DataError(AltaError, ValueError):
    """A dataset, data root, class list or class order is missing or malformed."""


class BackboneError(AltaError, RuntimeError):
    """A CLIP backbone cannot be built or loaded (unknown name, weights not available offline)."""


class ShapeError(AltaError, ValueError):
    """A tensor does not have the shape, size or dtype the receiver needs."""


class StateError(AltaError, RuntimeError):
    """An operation was called in the wrong order (e.g. evaluation before any experience)."""


class CheckpointError(AltaError, RuntimeError):
    """A checkpoint or saved state is corrupt, incomplete, or belongs to a different run."""


class TrainingError(AltaError, RuntimeError):
    """Training diverged: a non-finite (NaN or infinite) loss, gradient or parameter."""


class OutputError(AltaError, OSError):
    """A result or checkpoint cannot be written: the disk is full, or the run's output folder was
    deleted or renamed while the run was writing to it."""


class ResourceError(AltaError, MemoryError):
    """Memory for a tensor cannot be allocated (a huge buffer or batch, a GPU that is too small)."""
