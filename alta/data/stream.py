"""Class-incremental scenario streams: a labelled dataset split into experiences.

ALTA (Li et al., IEEE TMM 2023) is evaluated class-incrementally on the mammoth streams
Seq-CIFAR-10 (5 x 2 classes), Seq-CIFAR-100 (10 x 10) and Seq-TinyImageNet (10 x 20), classes in
the dataset's native order. :class:`ScenarioStream` turns any labelled (train, test) pair of
datasets into such a stream: a plain sequence of :class:`Experience` objects (as in continuum's
``ClassIncremental``), each holding the train and test samples of its classes.

Labels are *positions in the class order*: with ``class_order=[3, 1, ...]`` original class 3 is
delivered as label 0. So the classes of experience t are always a contiguous label range, and a
learner never needs the permutation (``stream.to_original`` gives it back).

Iteration keeps no state: ``for e in stream`` builds fresh :class:`Experience` objects from data
computed once in the constructor, so two loops over one stream never interfere.

Splits and orders can be given as papers write them (``split="B50-Inc10"``,
``class_order="icarl-1993"``, see :mod:`alta.data.splits`). ``joint=True`` gives the joint
upper bound: one training experience of every class, evaluated on ``stream.eval_experiences``,
the experiences of the sequential split.

Examples:
    >>> stream = ScenarioStream.from_name("digits", num_experiences=5)  # doctest: +SKIP
    >>> for experience in stream:  # doctest: +SKIP
    ...     loader = DataLoader(experience.train, batch_size=32, shuffle=True)

References:
    W. Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
    Learning", IEEE Transactions on Multimedia, 2023 (reference code github.com/vijaylee/ALTA).
    G. M. van de Ven, A. S. Tolias, "Three scenarios for continual learning", arXiv:1904.07734.
    A. Douillard, T. Lesort, "Continuum: Simple Management of Complex Continual Learning
    Scenarios", arXiv:2102.06253, 2021.
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
from typing import Any, Callable, Iterator, Mapping, Sequence, overload

import numpy as np
import torch
from torch.utils.data import Dataset

from ..classnames import check_distinguishable
from ..errors import ConfigError, DataError
from .datasets import DATASETS, LabelledSource, check_class_names, load_sources, readable
from .splits import Split, identifier_names, parse_split, read_class_names, resolve_class_order
from .transforms import _DATASET_STATS, make_transform

__all__ = ["Experience", "ExperienceDataset", "ScenarioStream", "transform_identity"]

logger = logging.getLogger(__name__)

_KEEP: Any = object()  # sentinel of with_transforms: keep the current transform


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


# --------------------------------------------------------------------------------------------
# Splitting helpers
# --------------------------------------------------------------------------------------------


def _check_count(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise ConfigError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _split_sizes(
    num_classes: int,
    *,
    num_experiences: int | None,
    classes_per_experience: int | None,
    initial_classes: int | None,
) -> list[int]:
    """Number of classes of each experience."""
    num_experiences = _check_count(num_experiences, "num_experiences")
    classes_per_experience = _check_count(classes_per_experience, "classes_per_experience")
    initial_classes = _check_count(initial_classes, "initial_classes")
    C = num_classes
    if num_experiences is None and classes_per_experience is None:
        if initial_classes == C:
            return [C]
        raise ConfigError(
            f"give num_experiences or classes_per_experience to split the {C} classes into "
            f"experiences; valid num_experiences: {_divisors(C)}"
            + (" (add initial_classes for an unevenly sized first experience)"
               if initial_classes is None else "")
        )
    if initial_classes is not None and initial_classes > C:
        raise ConfigError(
            f"initial_classes={initial_classes} exceeds the {C} classes of the dataset; expected "
            f"1..{C}"
        )
    first = initial_classes if initial_classes is not None else 0
    rest = C - first
    if initial_classes is None:
        valid_t = _divisors(C)
        valid_k = _divisors(C)
    else:
        valid_t = [1] if rest == 0 else [1 + d for d in _divisors(rest)]
        valid_k = _divisors(rest) if rest else []
    hint = (
        "; or set initial_classes so that the remaining classes divide evenly"
        if initial_classes is None
        else f"; or change initial_classes={initial_classes} (the {rest} remaining classes are split "
             "evenly over the other experiences)"
    )
    what = f"{C} classes" if initial_classes is None else f"{rest} classes left after initial_classes={initial_classes}"
    if num_experiences is not None:
        if num_experiences not in valid_t:
            raise ConfigError(
                f"num_experiences={num_experiences} does not split the {what} evenly; valid "
                f"num_experiences: {valid_t}{hint}"
            )
        others = num_experiences - (1 if initial_classes is not None else 0)
        size = rest // others if others else 0
        if classes_per_experience is not None and others and classes_per_experience != size:
            raise ConfigError(
                f"num_experiences={num_experiences} and classes_per_experience="
                f"{classes_per_experience} disagree: {num_experiences} experiences of the "
                f"{C} classes" + (f" after initial_classes={initial_classes}" if initial_classes else "")
                + f" have {size} classes each; give only one of them"
            )
    else:
        assert classes_per_experience is not None
        if classes_per_experience not in valid_k:
            raise ConfigError(
                f"classes_per_experience={classes_per_experience} does not split the {what} "
                f"evenly; valid classes_per_experience: {valid_k or 'none (no classes left)'}{hint}"
            )
        size = classes_per_experience
        others = rest // size
    sizes = ([first] if initial_classes is not None else []) + [size] * others
    assert sum(sizes) == C and all(s > 0 for s in sizes), sizes
    return sizes


def _resolve_order(num_classes: int, class_order: Any, seed: int | None) -> tuple[list[int], str]:
    """The class order and how it was chosen (``native``, ``seed=N``, ``explicit``, a registered
    name such as ``icarl-1993``, or ``file:/path``)."""
    class_order, described = resolve_class_order(class_order, num_classes)
    if class_order is not None and seed is not None:
        raise ConfigError(
            f"got both class_order and seed={seed!r}; they are alternatives: pass class_order for an "
            "explicit permutation or seed to draw one, not both"
        )
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(
                f"seed must be an int in [0, 2**64) or None, got {type(seed).__name__} {seed!r}"[:300]
                + "; pass e.g. seed=1993 to draw a class order, or None for the native order"
            )
        if not 0 <= int(seed) < 2**64:
            raise ConfigError(
                f"seed must be an int in [0, 2**64) (the range torch.Generator accepts), got "
                f"{int(seed)}; reduce it, e.g. seed % 2**64"
            )
        generator = torch.Generator().manual_seed(int(seed))
        return torch.randperm(num_classes, generator=generator).tolist(), f"seed={int(seed)}"
    if class_order is None:
        return list(range(num_classes)), "native"
    if isinstance(class_order, torch.Tensor):
        class_order = class_order.tolist()
    elif isinstance(class_order, np.ndarray):
        class_order = class_order.tolist()
    if isinstance(class_order, (str, bytes)) or not isinstance(class_order, Sequence):
        raise DataError(
            f"class_order must be a list of the {num_classes} original class ids, got "
            f"{type(class_order).__name__} {class_order!r}"
        )
    order = list(class_order)
    bad = [c for c in order if isinstance(c, bool) or not isinstance(c, (int, np.integer))]
    if bad:
        raise DataError(f"class_order must hold integer class ids, got {bad[:5]}")
    order = [int(c) for c in order]
    if sorted(order) != list(range(num_classes)):
        duplicates = sorted({c for c in order if order.count(c) > 1})
        missing = sorted(set(range(num_classes)) - set(order))
        outside = sorted(c for c in set(order) if not 0 <= c < num_classes)
        raise DataError(
            f"class_order must be a permutation of the dataset's labels 0..{num_classes - 1}; "
            f"received {len(order)} ids (missing: {missing[:10]}, duplicated: {duplicates[:10]}, "
            f"out of range: {outside[:10]}). Fix: list every original class id exactly once"
        )
    return order, described or "explicit"


def _apply_split(
    split: str | Split | None,
    *,
    num_experiences: int | None,
    classes_per_experience: int | None,
    initial_classes: int | None,
) -> tuple[int | None, int | None]:
    """``(initial_classes, classes_per_experience)`` of a ``B<base>-Inc<increment>`` split; the
    given counts when ``split`` is ``None``.

    Raises:
        ConfigError: a split together with explicit counts (they would contradict each other).
    """
    if split is None:
        return initial_classes, classes_per_experience
    given = {k: v for k, v in (("num_experiences", num_experiences), ("initial_classes", initial_classes),
                               ("classes_per_experience", classes_per_experience)) if v is not None}
    if given:
        raise ConfigError(
            f"got split={str(split)!r} and {', '.join(f'{k}={v!r}' for k, v in given.items())}; a split "
            "already fixes the counts. Fix: give the split alone, or the counts alone"
        )
    parsed = split if isinstance(split, Split) else parse_split(split)
    return parsed.initial_classes, parsed.classes_per_experience


def _check_names(class_names: Any) -> list[str]:
    names = check_class_names(class_names, what="ScenarioStream")
    bad = [(i, n) for i, n in enumerate(names) if not isinstance(n, str) or not readable(n)]
    if bad:
        raise DataError(
            f"class names must be non-empty strings (CLIP prompts are built from them, with "
            f"underscores read as spaces); received {bad[:5]} (index, name). Fix: give every "
            "label a readable name"
        )
    check_distinguishable(names, error=DataError)  # the same rule as CrossModalLearner's
    return names


# --------------------------------------------------------------------------------------------
# ScenarioStream
# --------------------------------------------------------------------------------------------


class ScenarioStream:
    """A class-incremental stream: a (train, test) pair of datasets split into experiences.

    Args:
        train: Training dataset yielding ``(x, y)`` with integer ``y`` in [0, C). Labels are read
            from ``train.targets`` (list/ndarray/tensor, torchvision's convention) when present;
            otherwise the dataset is iterated once at construction (which loads every sample).
        test: Test dataset, same label space.
        class_names: Human-readable name of each original label (length C).
        num_experiences: T. Give this or ``classes_per_experience`` (both only if consistent).
        classes_per_experience: Classes per experience (after the first one when
            ``initial_classes`` is set).
        initial_classes: Size of the first experience; the remaining classes are split evenly.
        class_order: Class order, a permutation of the original ids (position -> id): a list,
            tensor or array; a registered name (:func:`alta.data.splits.list_class_orders`:
            ``"icarl-1993"``, the iCaRL/PyCIL order ``np.random.seed(1993);
            np.random.permutation(C)``; ``"dytox-cifar100"``, the DyTox / Continual-CLIP
            CIFAR-100 order); or the path of a file of ids.
        seed: Draw the class order with ``torch.randperm`` from
            ``torch.Generator().manual_seed(seed)``. The default (both ``None``) keeps the native
            order, ALTA's protocol. ``seed=1993`` is *not* the iCaRL order (that one is drawn
            through NumPy): pass ``class_order="icarl-1993"`` for it.
        transform: Applied to training inputs ``x`` (``None``: delivered as the dataset gives
            them, e.g. a dataset that transforms by itself).
        test_transform: Applied to test inputs.
        split: The split as papers write it, ``"B50-Inc10"`` (:func:`~alta.data.splits.parse_split`),
            instead of ``initial_classes``/``classes_per_experience``.
        joint: The joint-training upper bound: one training experience holding every class,
            while :attr:`eval_experiences` keeps the experiences of the sequential split, so
            the joint run's accuracies are reported per experience like a continual run's. Each
            class keeps its sequential experience id in ``class_to_experience`` (task-IL masks
            per sequential experience).

    Raises:
        ConfigError: counts that do not split the classes evenly (the message lists the valid
            values), both ``class_order`` and ``seed``, or a seed that is not an int in
            [0, 2**64).
        DataError: ``class_order`` not a permutation of the labels (or an unreadable class-order
            file), fewer class names than labels,
            ``class_names`` not a list/tuple (a set or dict has no reliable order), names empty
            once underscores become spaces, names that are not valid UTF-8 or that CLIP's
            tokenizer reads alike (case, whitespace; :func:`alta.classnames.check_distinguishable`,
            the rule the learner applies too), non-integer labels, ``train``/``test`` not a single
            map-style dataset (e.g. a list of datasets), or an experience without training or
            test samples (it names the experience, its classes and the split). A class without
            samples inside an experience that has others only logs a warning, and so do class
            names that look like identifiers (WordNet ids, bare numbers: CLIP would read
            "a photo of a n01440764"); :attr:`names_look_like_identifiers` records it.

    Examples:
        >>> stream = ScenarioStream(train, test, names, num_experiences=5)  # doctest: +SKIP
        >>> [e.classes for e in stream]  # doctest: +SKIP
        [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    """

    def __init__(
        self,
        train: Dataset,
        test: Dataset,
        class_names: Sequence[str],
        *,
        num_experiences: int | None = None,
        classes_per_experience: int | None = None,
        initial_classes: int | None = None,
        class_order: Sequence[int] | torch.Tensor | None = None,
        seed: int | None = None,
        transform: Callable | None = None,
        test_transform: Callable | None = None,
        split: str | Split | None = None,
        joint: bool = False,
    ) -> None:
        if not isinstance(joint, bool):
            raise ConfigError(f"joint must be True or False, got {type(joint).__name__} {joint!r}")
        initial_classes, classes_per_experience = _apply_split(
            split, num_experiences=num_experiences, classes_per_experience=classes_per_experience,
            initial_classes=initial_classes)
        names = _check_names(class_names)
        C = len(names)
        train_targets = read_targets(train, what="train dataset")
        test_targets = read_targets(test, what="test dataset")
        for split, targets in (("train", train_targets), ("test", test_targets)):
            if targets.numel() and int(targets.max()) >= C:
                raise DataError(
                    f"received {C} class names but the {split} labels go up to "
                    f"{int(targets.max())} ({int(targets.max()) + 1} classes); expected one name "
                    "per label. Fix: pass a name for every label"
                )
        if C == 0:
            raise DataError("received no class names and no labels; expected a labelled dataset")
        for split, targets in (("training", train_targets), ("test", test_targets)):
            absent = torch.nonzero(torch.bincount(targets, minlength=C) == 0).flatten().tolist()
            if absent:
                logger.warning("classes %s (original ids) have no %s samples", absent[:10], split)

        order, order_kind = _resolve_order(C, class_order, seed)
        sizes = _split_sizes(C, num_experiences=num_experiences,
                             classes_per_experience=classes_per_experience,
                             initial_classes=initial_classes)

        label_map = torch.empty(C, dtype=torch.long)
        label_map[torch.tensor(order, dtype=torch.long)] = torch.arange(C)
        class_to_experience = torch.repeat_interleave(
            torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long)
        )

        self._train = train
        self._test = test
        self._train_targets = train_targets
        self._test_targets = test_targets
        self._original_names = names
        self._names = [names[c] for c in order]
        self._order = order
        self._order_kind = order_kind
        self._label_map = label_map
        self._sizes = sizes
        self._class_to_experience = class_to_experience
        self._transform = transform
        self._test_transform = test_transform
        self._name: str | None = None
        self._joint = joint
        self._names_source = "given"
        self._identifier_names = identifier_names(names)
        if self._identifier_names:
            logger.warning(
                "%d of the %d class names look like identifiers, not words (e.g. %s): CLIP will read "
                "prompts such as 'a photo of a %s' and its text encoder gains nothing from them. Give "
                "readable names: class_names= a list, a file with one name per line, or a "
                "'folder<TAB>name' map such as Tiny-ImageNet's words.txt",
                len(self._identifier_names), C, ", ".join(self._identifier_names[:3]),
                self._identifier_names[0],
            )
        # Indices of every experience's samples, computed once: iteration is then stateless.
        train_exp = class_to_experience[label_map[train_targets]]
        test_exp = class_to_experience[label_map[test_targets]]
        self._train_indices = [torch.nonzero(train_exp == t).flatten() for t in range(len(sizes))]
        self._test_indices = [torch.nonzero(test_exp == t).flatten() for t in range(len(sizes))]
        self._check_experiences_have_samples()

    def _check_experiences_have_samples(self) -> None:
        """Refuse an experience without training or test samples (it would learn nothing, or be
        scored 0% on nothing and pull the metrics down)."""
        for t in range(len(self._sizes)):
            for split, indices in (("train", self._train_indices[t]), ("test", self._test_indices[t])):
                if indices.numel():
                    continue
                start = sum(self._sizes[:t])
                labels = list(range(start, start + self._sizes[t]))
                classes = ", ".join(
                    f"{self._names[c]!r} (label {c}, original id {self._order[c]})" for c in labels[:8]
                ) + (" ..." if len(labels) > 8 else "")
                raise DataError(
                    f"experience {t} (0-based, of {len(self._sizes)}; classes {classes}) has no {split} "
                    f"samples: the {split} dataset holds no sample of any of its classes. Every "
                    "experience needs training and test samples (an experience without test "
                    "samples would be scored 0% and distort the metrics). Fix: add "
                    f"{split} samples of these classes, or remove the classes from the dataset "
                    "(and class_names) before building the stream"
                )

    # ---- construction from a name ----------------------------------------------------------

    @classmethod
    def from_name(
        cls,
        name: str,
        *,
        root: str | os.PathLike | None = None,
        download: bool = False,
        transform: str | Callable | None = "reference",
        test_transform: str | Callable | None = None,
        resolution: int = 224,
        num_experiences: int | None = None,
        classes_per_experience: int | None = None,
        initial_classes: int | None = None,
        class_order: Sequence[int] | torch.Tensor | str | os.PathLike | None = None,
        seed: int | None = None,
        split: str | Split | None = None,
        class_names: Sequence[str] | Mapping[str, str] | str | os.PathLike | None = None,
        joint: bool = False,
        dataset_options: Mapping[str, Any] | None = None,
        sources: tuple[LabelledSource, LabelledSource] | None = None,
    ) -> ScenarioStream:
        """Build a registered stream (see :func:`alta.data.list_datasets`).

        Args:
            name: ``"seq-cifar10"``, ``"seq-cifar100"``, ``"seq-tinyimagenet"``, ``"digits"``,
                ``"fashion-mnist"``, ``"image-folder"``, ``"imagenet-r"``, ``"cub200"``,
                ``"caltech101"``, ``"imagenet-subset"`` or another registered name.
            root: Folder holding the data (layouts in :mod:`alta.data.datasets`); ignored by
                ``digits``; ``fashion-mnist`` defaults to the Debian package's folder.
            download: Let torchvision download CIFAR-10/100 or Fashion-MNIST into ``root``.
            transform: Training transform: a preset name (:func:`list_transform_presets`) or a
                callable, or ``None`` for raw PIL images.
            test_transform: Test transform: a preset name or callable. When ``None``: the test
                side of the ``transform`` preset if that is a name, the same callable if it is a
                callable (e.g. the ``preprocess`` returned by ``clip.load``), else ``None``.
            resolution: Backbone input size in pixels (for preset names).
            num_experiences: T; when neither this nor ``classes_per_experience`` is given, the
                benchmark's default split is used (5 x 2, 10 x 10, 10 x 20; ``image-folder``
                has none and needs one of them).
            classes_per_experience: Classes per experience.
            initial_classes: Size of the first experience. Without ``num_experiences`` and
                ``classes_per_experience``, the remaining classes use the benchmark's default
                classes per experience when it divides them (``initial_classes`` = C gives one
                experience); otherwise a ConfigError lists the valid values.
            class_order: Class order: original ids, a registered name (``"icarl-1993"``,
                ``"dytox-cifar100"``) or a file of ids (see :class:`ScenarioStream`).
            seed: Seed of a drawn class order.
            split: ``"B50-Inc10"``-style split, instead of the counts.
            class_names: Readable names replacing the dataset's (e.g. WordNet-id folders): a list
                in label order, a ``{folder: name}`` mapping, or the path of a file with one name
                per line or ``folder<TAB>name`` lines (Tiny-ImageNet's ``words.txt``; maps are
                looked up by the dataset's class folders, ``train.class_ids``).
            joint: The joint upper bound, evaluated per experience of the sequential split (see
                :class:`ScenarioStream`).
            dataset_options: Options of the dataset (``DATASETS.get(name).options``), e.g.
                ``{"split_seed": 1}`` (``imagenet-r``, ``caltech101``), ``{"class_list": path}``
                (``imagenet-subset``), ``{"train_per_class": 30}`` (``caltech101``).
            sources: The ``(train, test)`` sources of this dataset already read by
                :func:`alta.data.load_sources` with the same ``root``, ``download`` and
                ``dataset_options`` (read here when ``None``): a caller that checks the data
                before a slow step (such as loading pretrained weights) reads it once.

        Returns:
            The stream; ``stream.name`` is ``name``.

        Raises:
            ConfigError: unknown name (lists valid ones), bad counts, split or options.
            DataError: missing or wrongly laid out ``root`` (shows the expected layout), class
                names that do not fit the dataset's classes.
        """
        spec = DATASETS.get(name)
        canonical = DATASETS.resolve(name)
        initial_classes, classes_per_experience = _apply_split(
            split, num_experiences=num_experiences, classes_per_experience=classes_per_experience,
            initial_classes=initial_classes)
        if sources is None:
            train, test = load_sources(canonical, root=root, download=download, options=dataset_options)
        else:
            train, test = _check_sources(sources, canonical)
        names, names_source = list(train.class_names), "dataset"
        if class_names is not None:
            names, names_source = read_class_names(
                class_names, class_ids=getattr(train, "class_ids", train.class_names),
                what=f"{canonical}: class_names")
        if num_experiences is None and classes_per_experience is None:
            classes_per_experience = _default_split(
                canonical, spec.classes_per_experience, len(train.class_names), initial_classes
            )
        stats_name = canonical if canonical in _DATASET_STATS else None
        train_tf = _resolve_transform(transform, train=True, resolution=resolution, dataset=stats_name)
        if test_transform is None:
            test_tf = (
                _resolve_transform(transform, train=False, resolution=resolution, dataset=stats_name)
                if isinstance(transform, str)
                else transform
            )
        else:
            test_tf = _resolve_transform(test_transform, train=False, resolution=resolution,
                                         dataset=stats_name)
        stream = cls(
            train,
            test,
            names,
            num_experiences=num_experiences,
            classes_per_experience=classes_per_experience,
            initial_classes=initial_classes,
            class_order=class_order,
            seed=seed,
            transform=train_tf,
            test_transform=test_tf,
            joint=joint,
        )
        stream._name = canonical
        stream._names_source = names_source
        return stream

    # ---- the sequence ------------------------------------------------------------------------

    def __len__(self) -> int:
        return 1 if self._joint else len(self._sizes)

    def _experience(self, t: int) -> Experience:
        if self._joint:
            return self._joint_experience()
        return self._sequential_experience(t)

    def _joint_experience(self) -> Experience:
        """Every class in one experience; classes keep their sequential experience ids."""
        classes = list(range(len(self._names)))
        return Experience(
            index=0,
            classes=classes,
            class_names=list(self._names),
            train=ExperienceDataset(self._train, torch.cat(self._train_indices).sort().values,
                                    label_map=self._label_map, transform=self._transform,
                                    source_targets=self._train_targets),
            test=ExperienceDataset(self._test, torch.cat(self._test_indices).sort().values,
                                   label_map=self._label_map, transform=self._test_transform,
                                   source_targets=self._test_targets),
            class_to_experience=self._class_to_experience.clone(),
            num_experiences=1,
        )

    def _sequential_experience(self, t: int) -> Experience:
        start = sum(self._sizes[:t])
        classes = list(range(start, start + self._sizes[t]))
        return Experience(
            index=t,
            classes=classes,
            class_names=[self._names[c] for c in classes],
            train=ExperienceDataset(self._train, self._train_indices[t], label_map=self._label_map,
                                    transform=self._transform, source_targets=self._train_targets),
            test=ExperienceDataset(self._test, self._test_indices[t], label_map=self._label_map,
                                   transform=self._test_transform, source_targets=self._test_targets),
            class_to_experience=self._class_to_experience.clone(),
            num_experiences=len(self._sizes),
        )

    @overload
    def __getitem__(self, index: int) -> Experience: ...

    @overload
    def __getitem__(self, index: slice) -> list[Experience]: ...

    def __getitem__(self, index):
        """``stream[t]`` -> :class:`Experience` t; ``stream[a:b]`` -> list of experiences."""
        if isinstance(index, slice):
            return [self._experience(t) for t in range(*index.indices(len(self)))]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"stream indices must be int or slice, got {type(index).__name__}")
        t = int(index)
        if t < 0:
            t += len(self)
        if not 0 <= t < len(self):
            raise IndexError(f"experience {index} out of range for a stream of {len(self)} experiences")
        return self._experience(t)

    def __iter__(self) -> Iterator[Experience]:
        return (self._experience(t) for t in range(len(self)))

    # ---- metadata ----------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        """Registry name when built with :meth:`from_name`, else ``None``."""
        return self._name

    @property
    def num_experiences(self) -> int:
        """T, the number of training experiences (1 for a joint stream)."""
        return len(self)

    @property
    def joint(self) -> bool:
        """Whether this is the joint upper bound (one training experience of every class)."""
        return self._joint

    @property
    def eval_experiences(self) -> list[Experience]:
        """The experiences to evaluate on: those of the sequential split, for a joint stream
        too (so its accuracies line up, experience by experience, with a continual run's).
        For a continual stream, the same as ``list(stream)``."""
        return [self._sequential_experience(t) for t in range(len(self._sizes))]

    @property
    def class_order_source(self) -> str:
        """How the class order was chosen: ``native``, ``seed=N``, ``explicit``, a registered
        name (``icarl-1993``, ``dytox-cifar100``) or ``file:/path`` (for run summaries)."""
        return self._order_kind

    @property
    def class_names_source(self) -> str:
        """Where the class names came from: ``dataset`` (its folders or known names), ``list``,
        ``file`` or ``map`` (given to :meth:`from_name`), ``given`` (passed to the constructor)."""
        return self._names_source

    @property
    def names_look_like_identifiers(self) -> bool:
        """True when some class names are WordNet ids or bare numbers (a warning was logged):
        CLIP then reads ids, not words. Record it in run summaries."""
        return bool(self._identifier_names)

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self._names)

    @property
    def class_names(self) -> list[str]:
        """Class names in class order (``class_names[label]``)."""
        return list(self._names)

    @property
    def class_order(self) -> list[int]:
        """Original class id of every label (position -> original id)."""
        return list(self._order)

    @property
    def classes_per_experience(self) -> list[int]:
        """Number of classes of each training experience, e.g. ``[2, 2, 2, 2, 2]`` (``[C]`` for a
        joint stream; its evaluation split is ``[e.num_classes for e in stream.eval_experiences]``)."""
        return [len(self._names)] if self._joint else list(self._sizes)

    @property
    def class_to_experience(self) -> torch.Tensor:
        """Experience id of every label, LongTensor of shape (C,)."""
        return self._class_to_experience.clone()

    @property
    def transform(self) -> Callable | None:
        """Training transform."""
        return self._transform

    @property
    def test_transform(self) -> Callable | None:
        """Test transform."""
        return self._test_transform

    def to_original(self, labels):
        """Map delivered labels (positions in the class order) to the dataset's original ids.

        Args:
            labels: An int, a list/tuple of ints, an integer tensor or an integer NumPy array.

        Returns:
            The same kind of object holding original ids (a list for a list or tuple).

        Raises:
            DataError: a label outside [0, C), or not an integer (e.g. ``1.5``, a float tensor).
        """
        return self._map(labels, torch.tensor(self._order, dtype=torch.long), "label")

    def from_original(self, labels):
        """Map original class ids to delivered labels (the inverse of :meth:`to_original`)."""
        return self._map(labels, self._label_map, "original class id")

    def _map(self, labels, table: torch.Tensor, what: str):
        C = self.num_classes
        if isinstance(labels, np.ndarray):
            if labels.dtype.kind not in "iu":
                raise DataError(
                    f"{what}s must be integers, got a NumPy array of dtype {labels.dtype}; "
                    "expected an int, a sequence of ints or an integer tensor/array"
                )
            return self._map(torch.from_numpy(labels.astype(np.int64)), table, what).numpy()
        if isinstance(labels, torch.Tensor):
            if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
                raise DataError(
                    f"{what}s must be integers, got a tensor of dtype {labels.dtype}; expected an "
                    "integer tensor (cast exact values with .long(); fractional labels are not "
                    "class ids)"
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= C):
                raise DataError(f"{what}s must lie in [0, {C}), got range "
                                f"[{int(labels.min())}, {int(labels.max())}]")
            return table.to(labels.device)[labels.long()]
        if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
            if not 0 <= int(labels) < C:
                raise DataError(f"{what} must lie in [0, {C}), got {labels}")
            return int(table[int(labels)])
        if isinstance(labels, (list, tuple, range)):
            return [self._map(v, table, what) for v in labels]
        raise DataError(
            f"{what}s must be an int, a list/tuple of ints or an integer tensor/array, got "
            f"{type(labels).__name__} {labels!r}"[:300] + f"; labels are class ids in [0, {C})"
        )

    def with_transforms(
        self, *, transform: Callable | None = _KEEP, test_transform: Callable | None = _KEEP
    ) -> ScenarioStream:
        """A stream over the same data and split with other transforms (nothing is reloaded).

        Args:
            transform: New training transform (omit to keep the current one; ``None`` removes it).
            test_transform: New test transform (omit to keep; ``None`` removes it).

        Returns:
            A new stream sharing the sources with this one.
        """
        other = copy.copy(self)
        if transform is not _KEEP:
            other._transform = transform
        if test_transform is not _KEEP:
            other._test_transform = test_transform
        return other

    def __repr__(self) -> str:
        return (
            f"ScenarioStream({self._name or 'custom'!s}, num_experiences={len(self)}, "
            + (f"joint=True, eval_split={self._sizes}, " if self._joint else "")
            + f"num_classes={self.num_classes}, classes_per_experience={self.classes_per_experience}, "
            f"class_order={self._order_kind}, train={len(self._train_targets)}, "
            f"test={len(self._test_targets)})"
        )


def _default_split(
    name: str, default: int | None, num_classes: int, initial_classes: object
) -> int | None:
    """``classes_per_experience`` of ``from_name`` when the caller gave no split.

    Without ``initial_classes`` it is the benchmark's default. With ``initial_classes`` the
    remaining classes are split with the default size when it divides them; when
    ``initial_classes`` covers every class the stream has one experience (``None`` here).
    """
    C = num_classes
    if isinstance(initial_classes, bool) or not isinstance(initial_classes, (int, np.integer)):
        if default is None:
            raise ConfigError(
                f"{name!r} has no default split: pass num_experiences or classes_per_experience "
                f"(the data has {C} classes; valid num_experiences: {_divisors(C)})"
            )
        return default  # a bad initial_classes value is reported by the split check
    rest = C - int(initial_classes)
    if rest == 0:
        return None  # initial_classes == C: one experience
    if rest < 0:
        return default  # initial_classes > C: reported by the split check
    if default is not None and rest % default == 0:
        return default
    origin = (
        f"{name!r} has no default split" if default is None
        else f"the default split of {name!r} ({default} classes per experience, the benchmark's) "
             f"does not divide the {rest} classes left after initial_classes={int(initial_classes)}"
    )
    raise ConfigError(
        f"{origin}; pass classes_per_experience (valid: {_divisors(rest)}) or num_experiences "
        f"(valid: {[1 + d for d in _divisors(rest)]}) together with initial_classes"
    )


def _resolve_transform(spec, *, train: bool, resolution: int, dataset: str | None):
    if spec is None or callable(spec) and not isinstance(spec, str):
        return spec
    if isinstance(spec, str):
        return make_transform(spec, train=train, resolution=resolution, dataset=dataset)
    raise ConfigError(
        f"transform must be a preset name, a callable or None, got {type(spec).__name__} {spec!r}"
    )


def _check_sources(sources: Any, dataset: str) -> tuple[LabelledSource, LabelledSource]:
    """``sources`` as :func:`~alta.data.load_sources` returns them for ``dataset``: a (train, test)
    pair of that dataset's sources, in that order (told by their ``identity``,
    ``<dataset>|...|<split>``)."""
    if (not isinstance(sources, (tuple, list)) or len(sources) != 2
            or not all(isinstance(part, LabelledSource) for part in sources)):
        got = (f"a {type(sources).__name__} of {len(sources)}: {', '.join(type(p).__name__ for p in sources)}"
               if isinstance(sources, (tuple, list)) else type(sources).__name__)
        raise TypeError(f"sources must be the (train, test) pair of LabelledSource returned by "
                        f"alta.data.load_sources({dataset!r}, ...), got {got}")
    train, test = sources
    other = [part.identity for part in sources if part.identity.split("|", 1)[0] != dataset]
    if other:
        raise ConfigError(f"sources are not {dataset!r}'s: {', '.join(map(repr, other))}; pass "
                          f"alta.data.load_sources({dataset!r}, ...) for this dataset")
    if train.identity.rsplit("|", 1)[-1] != "train" or test.identity.rsplit("|", 1)[-1] == "train":
        raise ConfigError(f"sources must be (train, test) in that order, got ({train.identity!r}, {test.identity!r})")
    return train, test
