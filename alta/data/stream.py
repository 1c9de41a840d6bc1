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
import logging
import os
from typing import Any, Callable, Iterator, Mapping, Sequence, overload

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .datasets import DATASETS, LabelledSource, load_sources
from .experience import KEEP, Experience, ExperienceDataset, read_targets
from .splits import (
    Split,
    apply_split,
    check_names,
    divisors,
    identifier_names,
    read_class_names,
    resolve_order,
    split_sizes,
)
from .transforms import _DATASET_STATS, make_transform

__all__ = ["ScenarioStream"]

logger = logging.getLogger(__name__)


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
        initial_classes, classes_per_experience = apply_split(
            split, num_experiences=num_experiences, classes_per_experience=classes_per_experience,
            initial_classes=initial_classes)
        names = check_names(class_names)
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

        order, order_kind = resolve_order(C, class_order, seed)
        sizes = split_sizes(C, num_experiences=num_experiences,
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
        initial_classes, classes_per_experience = apply_split(
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
    def split_info(self) -> dict | None:
        """Where the train/test split of the data comes from, when its loader says
        (:attr:`~alta.data.datasets.LabelledSource.split_info`: a split file and its SHA-256, the
        SHA-256 of a pre-split archive's file list, a seeded split), for run summaries; ``None``
        otherwise."""
        info = getattr(self._train, "split_info", None)
        return dict(info) if info else None

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
        self, *, transform: Callable | None = KEEP, test_transform: Callable | None = KEEP
    ) -> ScenarioStream:
        """A stream over the same data and split with other transforms (nothing is reloaded).

        Args:
            transform: New training transform (omit to keep the current one; ``None`` removes it).
            test_transform: New test transform (omit to keep; ``None`` removes it).

        Returns:
            A new stream sharing the sources with this one.
        """
        other = copy.copy(self)
        if transform is not KEEP:
            other._transform = transform
        if test_transform is not KEEP:
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
                f"(the data has {C} classes; valid num_experiences: {divisors(C)})"
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
        f"{origin}; pass classes_per_experience (valid: {divisors(rest)}) or num_experiences "
        f"(valid: {[1 + d for d in divisors(rest)]}) together with initial_classes"
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
