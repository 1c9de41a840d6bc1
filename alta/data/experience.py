"""What a stream is made of: :class:`Experience` (one step of the stream) and
:class:`ExperienceDataset` (a view of a raw source with relabelled targets and a transform).

An experience of a class-incremental stream (ALTA, Li et al., IEEE TMM 2023, Sec. 4) holds the
train and test samples of its classes, relabelled to the stream's label space; its datasets
know a key that identifies their samples and transform, so frozen image features are cached
safely (:class:`~alta.loop.cache.FeatureCache`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import secrets
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError

__all__ = ["Experience", "ExperienceDataset", "read_targets", "transform_identity", "KEEP"]

logger = logging.getLogger("alta.data.stream")

KEEP: Any = object()  # sentinel of with_transforms: keep the current transform


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


def read_targets(dataset: Dataset, *, what: str = "dataset") -> torch.Tensor:
    """Integer labels of every sample of ``dataset``, without loading images when possible.

    Labels are read from ``dataset.targets`` (list, ndarray or tensor, the torchvision
    convention) when present; otherwise the dataset is iterated once (``dataset[i][1]`` for every
    i), which loads every sample: give large datasets a ``targets`` attribute.

    Args:
        dataset: A map-style dataset yielding ``(x, y)`` with integer ``y``.
        what: Name used in error messages.

    Returns:
        LongTensor of labels.

    Shape:
        Output: (N,), N = ``len(dataset)``.

    Raises:
        DataError: non-integer or negative labels, or ``targets`` of the wrong length.
    """
    _check_dataset(dataset, what)
    length = len(dataset)  # type: ignore[arg-type]
    targets = getattr(dataset, "targets", None)
    if targets is None:
        logger.info("%s has no .targets attribute; reading labels by loading all %d samples",
                    what, length)
        targets = []
        for i in range(length):
            try:
                sample = dataset[i]
                if isinstance(sample, (str, bytes)) or len(sample) < 2:
                    raise TypeError(f"got {type(sample).__name__} of length {len(sample)}")
                label = sample[1]
            except (TypeError, ValueError, IndexError, KeyError) as err:
                raise DataError(
                    f"{what}: cannot read the label of sample {i} ({type(err).__name__}: {err}); "
                    "expected dataset[i] to be an (x, y) pair with an integer label y. Fix: give "
                    "the dataset a .targets list of labels, or make it return (x, y)"
                ) from err
            targets.append(label)
    if isinstance(targets, torch.Tensor):
        array = targets.detach().cpu().numpy()
    elif isinstance(targets, np.ndarray):
        array = targets
    else:
        try:
            array = np.asarray([int(t) if isinstance(t, torch.Tensor) else t for t in targets])
        except (TypeError, ValueError) as err:
            raise DataError(f"{what}: cannot read integer labels from its targets ({err})") from err
    array = array.reshape(-1) if array.ndim > 1 and array.size == length else array
    if array.ndim != 1 or array.shape[0] != length:
        raise DataError(
            f"{what}: targets has shape {tuple(array.shape)} but the dataset has {length} samples; "
            "expected one integer label per sample"
        )
    if length and not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0):
            array = array.astype(np.int64)
        else:
            raise DataError(
                f"{what}: labels must be integers, got dtype {array.dtype} (e.g. {array[:3].tolist()})"
            )
    result = torch.as_tensor(array.astype(np.int64, copy=False))
    if length and int(result.min()) < 0:
        raise DataError(
            f"{what}: labels must be class ids in [0, C), got a negative label {int(result.min())}"
        )
    return result


def _check_dataset(dataset: object, what: str) -> None:
    """Refuse what is not a single map-style dataset (lists of datasets, arrays, iterables)."""
    if isinstance(dataset, (list, tuple)):
        inner = {type(item).__name__ for item in dataset[:5]}
        per_experience = bool(dataset) and all(isinstance(item, Dataset) for item in dataset[:5])
        fix = (
            "To build a stream from one dataset per experience, concatenate them "
            "(torch.utils.data.ConcatDataset) and let ScenarioStream split the classes"
            if per_experience
            else "Wrap tensors in torch.utils.data.TensorDataset(images, labels), or write a "
            "Dataset with a .targets attribute"
        )
        raise DataError(
            f"{what} must be one map-style torch Dataset yielding (x, y) (with .targets ideally), "
            f"got a {type(dataset).__name__} of {len(dataset)} item{'' if len(dataset) == 1 else 's'} "
            f"({', '.join(sorted(inner)) or 'empty'}); plain lists cannot be identified in "
            f"feature-cache keys. {fix}"
        )
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise DataError(
            f"{what} must be a map-style dataset (with __len__ and __getitem__, yielding (x, y)), "
            f"got {type(dataset).__name__}; iterable-style datasets cannot be split into "
            "experiences. Fix: use a map-style Dataset (e.g. torchvision.datasets.*, "
            "torch.utils.data.TensorDataset)"
        )


def _tensor_digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().to(torch.int64).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # the default repr of objects and functions
_LAMBDA = re.compile(r"\bLambda\(")  # torchvision's Lambda: "Lambda()" or "Lambda(<name>, types=...)"


def transform_identity(transform: Callable | None) -> str | None:
    """The text that identifies ``transform`` in cache keys, or ``None`` if nothing does.

    A transform is identified by its ``repr`` when that spells out what it does: torchvision's
    transforms and :func:`~alta.data.make_transform` presets list their parameters. Two kinds of
    ``repr`` do not: one holding a memory address (the default ``<... object at 0x...>``, a
    function, a lambda, a ``functools.partial``), and torchvision's ``Lambda``, whose ``repr``
    omits the function (``Lambda()``), so different functions give equal text.

    Args:
        transform: A transform, or ``None``.

    Returns:
        ``repr(transform)``, ``"None"`` for no transform, or ``None`` when the ``repr`` does
        not identify it (give such a transform a ``__repr__`` that lists its parameters).
    """
    text = repr(transform)
    if _ADDRESS.search(text) or _LAMBDA.search(text):
        return None
    return text


def _transform_key(transform: Callable | None) -> str:
    """``transform_identity``, or a token of this very object (never shared with another one)."""
    identity = transform_identity(transform)
    return identity if identity is not None else f"object={_object_token(transform)}"


def _source_identity(source: Dataset) -> str:
    identity = getattr(source, "identity", None)
    if isinstance(identity, str):
        return identity
    cls = type(source)
    parts = [f"{cls.__module__}.{cls.__qualname__}"]
    for attr in ("root", "split", "train"):
        value = getattr(source, attr, None)
        if value is not None:
            if attr == "root" and isinstance(value, (str, os.PathLike)):
                value = os.path.abspath(os.fspath(value))
            parts.append(f"{attr}={value!r}")
    for attr in _SOURCE_TRANSFORMS:  # a dataset that transforms by itself (torchvision's convention)
        value = getattr(source, attr, None)
        if value is not None:
            parts.append(f"{attr}={_transform_key(value)}")
    parts.append(f"n={len(source)}")  # type: ignore[arg-type]
    if getattr(source, "root", None) is None:
        # Nothing ties an in-memory dataset to its contents: key it to this very object in this
        # process, so a cache can never hand its entries to another dataset (entries on disk are
        # then not reused by a later process; give the dataset an ``identity`` string for that).
        parts.append(f"object={_object_token(source)}")
    return "|".join(parts)


_SOURCE_TRANSFORMS = ("transform", "target_transform")

_OBJECT_TOKENS: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def _object_token(source: Any) -> str:
    """A random token for this object, for as long as it lives (a new object never inherits it)."""
    try:
        token = _OBJECT_TOKENS.get(source)
        if token is None:
            token = _OBJECT_TOKENS[source] = secrets.token_hex(16)
        return token
    except TypeError:  # not weak-referenceable or not hashable: fall back to this process's id
        return f"{os.getpid()}-{id(source)}"


# --------------------------------------------------------------------------------------------
# ExperienceDataset / Experience
# --------------------------------------------------------------------------------------------


class ExperienceDataset(Dataset):
    """The samples of one experience (or any subset of a source), relabelled and transformed.

    ``dataset[i] = (transform(x), label)`` where ``x`` is the raw sample ``source[indices[i]][0]``
    and ``label = label_map[original label]`` is the label's position in the stream's class order.
    Built by :class:`ScenarioStream`; cheap to copy with another transform.

    Args:
        source: Raw labelled dataset yielding ``(x, y)``.
        indices: Indices into ``source`` of the samples, in delivery order.
        label_map: ``label_map[y]`` is the delivered label of original label ``y``.
        transform: Applied to ``x``; ``None`` returns ``x`` as the source gives it.
        source_targets: Original labels of every sample of ``source`` (read with
            ``source.targets`` or by iterating once when omitted).

    Shape:
        indices: (N,). label_map: (C,). targets: (N,).

    Raises:
        DataError: indices out of range, or a sample's label missing from ``label_map``.
    """

    def __init__(
        self,
        source: Dataset,
        indices: Sequence[int] | torch.Tensor,
        *,
        label_map: Sequence[int] | torch.Tensor,
        transform: Callable | None = None,
        source_targets: torch.Tensor | None = None,
    ) -> None:
        self.source = source
        self.transform = transform
        self._indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        self._label_map = torch.as_tensor(label_map, dtype=torch.long).reshape(-1)
        if source_targets is None:
            source_targets = read_targets(source, what=type(source).__name__)
        self._source_targets = source_targets
        n = source_targets.shape[0]
        if self._indices.numel() and (int(self._indices.min()) < 0 or int(self._indices.max()) >= n):
            raise DataError(
                f"indices must lie in [0, {n}) for a source of {n} samples, got range "
                f"[{int(self._indices.min())}, {int(self._indices.max())}]"
            )
        original = source_targets[self._indices]
        if original.numel() and int(original.max()) >= self._label_map.numel():
            raise DataError(
                f"label_map covers labels [0, {self._label_map.numel()}) but a sample has label "
                f"{int(original.max())}; expected one entry per class"
            )
        self._targets = self._label_map[original]
        self._index_list: list[int] = self._indices.tolist()
        self._target_list: list[int] = self._targets.tolist()

    @property
    def targets(self) -> torch.Tensor:
        """Delivered labels (positions in the class order), shape (N,); no image is loaded.

        The tensor is shared, do not modify it in place.
        """
        return self._targets

    @property
    def indices(self) -> torch.Tensor:
        """Indices into the source of the samples, shape (N,) (a copy)."""
        return self._indices.clone()

    @property
    def label_map(self) -> torch.Tensor:
        """Original label -> delivered label, shape (C,) (a copy)."""
        return self._label_map.clone()

    def __len__(self) -> int:
        return len(self._index_list)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        x = self.source[self._index_list[index]][0]
        if self.transform is not None:
            x = self.transform(x)
        return x, self._target_list[index]

    def with_transform(self, transform: Callable | None) -> ExperienceDataset:
        """The same samples and labels with another transform (no data is read or copied)."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def cache_key(self) -> str:
        """A stable key for caches of anything computed from these samples (e.g. image features).

        It covers the source's identity (dataset name, resolved root path and split for the
        built-in sources; class name, ``root``/``split``/``train`` attributes and length for other
        datasets), a hash of the source's labels, the exact indices, the label mapping and
        the transform (and a source's own ``transform``/``target_transform``). A transform is
        keyed by its ``repr`` when that identifies it (:func:`transform_identity`); one that is
        not identified (a ``Lambda``, a function, an object with the default ``repr``) is keyed
        to that very object in this process, so its entries are reused only with the same
        object and never across processes (:attr:`transform_identified` is then ``False`` and
        :class:`~alta.loop.cache.FeatureCache` keeps them off disk).

        Returns:
            A 64-character hex SHA-256 digest (safe as a file name).
        """
        parts = [
            "alta.ExperienceDataset.v1",
            _source_identity(self.source),
            "source_targets=" + _tensor_digest(self._source_targets),
            "indices=" + _tensor_digest(self._indices),
            "label_map=" + _tensor_digest(self._label_map),
            "transform=" + _transform_key(self.transform),
        ]
        # surrogateescape: a root path that is not valid UTF-8 still gives a stable key
        return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()

    @property
    def transform_identified(self) -> bool:
        """Whether :meth:`cache_key` identifies the transforms (see :func:`transform_identity`).

        ``False`` when the transform, or the source's own ``transform``/``target_transform``,
        has a ``repr`` that does not say what it does; caches then must not share the features
        with another process or store them on disk.
        """
        transforms = [self.transform] + [getattr(self.source, a, None) for a in _SOURCE_TRANSFORMS]
        return all(t is None or transform_identity(t) is not None for t in transforms)

    def __repr__(self) -> str:
        return (
            f"ExperienceDataset(source={_source_identity(self.source)!r}, n={len(self)}, "
            f"transform={'None' if self.transform is None else type(self.transform).__name__})"
        )


@dataclass(frozen=True, eq=False, repr=False)
class Experience:
    """One step of a class-incremental stream.

    Attributes:
        index: Position t of the experience in the stream (0-based).
        classes: Labels of its classes: a contiguous range of positions in the class order.
        class_names: Human-readable names of ``classes``.
        train: Training samples of ``classes``.
        test: Test samples of ``classes``.
        class_to_experience: Experience id of every label of the stream (all C classes, future
            ones included); the same for every experience of a stream. Shape (C,).
        num_experiences: T, the number of experiences of the stream.
    """

    index: int
    classes: list[int]
    class_names: list[str]
    train: ExperienceDataset
    test: ExperienceDataset
    class_to_experience: torch.Tensor
    num_experiences: int

    @property
    def num_classes(self) -> int:
        """Number of classes of this experience."""
        return len(self.classes)

    def __repr__(self) -> str:
        span = f"{self.classes[0]}..{self.classes[-1]}" if self.classes else "-"
        return (
            f"Experience({self.index + 1}/{self.num_experiences}, classes={span}, "
            f"train={len(self.train)}, test={len(self.test)})"
        )
