"""Multi-domain streams: every experience is a whole dataset (or a domain), with its own class names.

The CLIP continual-learning field reports a second protocol beside class-incremental splits of
one dataset: **MTIL**, Multi-domain Task-Incremental Learning (Zheng et al., "Preventing
Zero-Shot Transfer Degradation in Continual Learning of Vision-Language Models", ICCV 2023,
ZSCL), where the experiences are 11 datasets learned one after the other, and its task-agnostic
variant **X-TAIL** (Xu et al., "Advancing Cross-domain Discriminability in Continual Learning of
Vision-Language Models", NeurIPS 2024, RAIL). A :class:`MultiDomainStream` joins the datasets'
label spaces into one: dataset k's classes are the labels ``[offset_k, offset_k + C_k)``, in the
dataset's own label order, so an :class:`~alta.data.Experience` is exactly one dataset and every
piece of alta that works on a class-incremental stream works on it unchanged:

- task-IL accuracy (the logits of the sample's own experience) is MTIL's: each test image is
  classified among its own dataset's classes (the task identity is given);
- class-IL accuracy over a head of every class (``head="all"``) is X-TAIL's: each test image is
  classified among the union of all domains' class names, learned or not;
- the accuracy matrix of :func:`~alta.run_stream` is the full T x T one (every experience is
  evaluated after every experience, future ones included): :func:`alta.metrics.mtil_summary`
  reads Transfer, Avg and Last from it.

A class name may repeat across datasets ("river" in EuroSAT and SUN397): each copy is its own
label with the same hand-written prompt. With the task identity given (MTIL) nothing changes;
under X-TAIL their zero-shot logits tie, and ``argmax`` picks the lower label (RAIL does not
de-duplicate either). Within one dataset, names must be distinct as CLIP reads them
(:func:`alta.classnames.check_distinguishable`).

**Domain-incremental** streams (``kind="domain"``: every experience brings the same classes in a
new domain, DomainNet's six domains as S-Prompts and MoE-Adapters++ run them) use the same
layout: domain k's copy of class c is label ``k * C + c`` (S-Prompts' ``label + C * task_id``),
so each domain has its own prompts, snapshotted when the domain ends. A prediction counts for
domain-IL accuracy when it names the right class in any domain (S-Prompts'
``y_pred % C == y_true % C``): :attr:`MultiDomainStream.class_to_concept` gives the class of
every label and :func:`alta.metrics.domain_il_accuracy` counts it from the confusion matrix.

Few-shot streams (5-shot MTIL as in ZSCL/MoE-Adapters, 16-shot X-TAIL as in RAIL and DIKI) keep
``shots`` training images per class, drawn from a seed (:func:`alta.data.few_shot_indices`); the
test sets stay whole.

Named sequences (:func:`list_sequences`) build the protocols' streams from registered datasets
(:meth:`MultiDomainStream.from_sequence`).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import check_choice, check_int, check_seed
from ..errors import ConfigError, DataError
from ..registry import Registry
from ..seeding import derive_seed
from .datasets import DOMAINNET_DOMAINS, load_sources
from .experience import KEEP, Experience, ExperienceDataset, read_targets
from .fewshot import few_shot_indices
from .splits import check_names, identifier_names
from .templates import dataset_templates
from .transforms import _DATASET_STATS, make_transform

__all__ = ["Domain", "MultiDomainStream", "SequenceSpec", "SequenceEntry", "SEQUENCES",
           "list_sequences", "register_sequence", "STREAM_KINDS"]

STREAM_KINDS = ("task", "domain")
SEQUENCE_IL_SETTINGS = ("task-il", "class-il")  # the settings a sequence's results are read in
ENTRY_FALLBACKS = ("root", "default", "none")  # where a SequenceEntry is read when none of its folders exists


def _check_domain(k: int, domain: Domain) -> None:
    """Refuse a domain whose name or templates cannot be used: a name must be a non-empty string
    (it keys the results), templates ``None`` or a non-empty list of strings each with one ``{}``
    where the class name goes (a template without it gives every class the same prompt)."""
    if not isinstance(domain.name, str) or not domain.name.strip():
        raise ConfigError(f"domain {k} needs a name (a non-empty string such as 'aircraft': it names the dataset in "
                          f"results), got {domain.name!r}")
    templates = domain.templates
    if templates is None:
        return
    if isinstance(templates, (str, bytes)) or not isinstance(templates, (list, tuple)) or not templates:
        raise ConfigError(f"domain {k} ({domain.name!r}): templates must be None or a non-empty list of templates "
                          f"(e.g. ['a photo of a {{}}.']), got {templates!r}"[:400])
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if bad:
        raise ConfigError(f"domain {k} ({domain.name!r}): template {bad[0]!r} needs exactly one '{{}}' where the class "
                          f"name goes, e.g. 'a photo of a {{}}.' (without it every class gets the same prompt)")


@dataclass(frozen=True)
class Domain:
    """One dataset (or domain) of a multi-domain stream.

    Attributes:
        name: What the dataset is called in results (``"aircraft"``, ``"clipart"``).
        train: Training source yielding ``(x, original label)``, with ``targets`` ideally.
        test: Test source, same labels.
        class_names: One readable name per original label, in label order.
        templates: The dataset's prompt templates (each with one ``{}``), the first being the
            single template; ``None``: the learner's own template.
        transform: Training transform of this domain (``None``: the stream's).
        test_transform: Test transform of this domain (``None``: the stream's).
    """

    name: str
    train: Dataset
    test: Dataset
    class_names: Sequence[str]
    templates: Sequence[str] | None = None
    transform: Callable | None = None
    test_transform: Callable | None = None


class MultiDomainStream:
    """A stream whose experiences are datasets (or domains), their label spaces joined.

    Args:
        domains: The datasets in training order (at least one).
        kind: ``"task"`` (MTIL / X-TAIL: each dataset its own classes) or ``"domain"`` (every
            domain has the same class names, in the same order: a domain-incremental stream).
        transform: Training transform of the domains that have none of their own.
        test_transform: Test transform of the domains that have none of their own.
        shots: Keep ``shots`` training images per class (few-shot), drawn from ``shot_seed``
            (:func:`alta.data.few_shot_indices`; a class with fewer keeps them all); ``None``:
            every training image.
        shot_seed: Seed of the few-shot draw (dataset k's draw uses ``derive_seed(shot_seed, k)``).
        name: The stream's name in results (e.g. the sequence name).

    Raises:
        ConfigError: no domain, an unknown kind, bad ``shots`` or seed, two domains of one name, a
            domain without a name, templates that are not a list of strings with one ``{}`` each.
        DataError: a domain whose class names are empty, not distinct within the domain, fewer
            than its labels, or (``kind="domain"``) not the same as the first domain's; a domain
            without training or test samples.

    Examples:
        >>> stream = MultiDomainStream([Domain("digits", train, test, names), ...])  # doctest: +SKIP
        >>> [e.num_classes for e in stream]  # doctest: +SKIP
        [10, 10, 10, 200]
    """

    def __init__(
        self,
        domains: Sequence[Domain],
        *,
        kind: str = "task",
        transform: Callable | None = None,
        test_transform: Callable | None = None,
        shots: int | None = None,
        shot_seed: int = 0,
        name: str | None = None,
    ) -> None:
        domains = list(domains)
        if not domains or not all(isinstance(d, Domain) for d in domains):
            raise ConfigError(f"MultiDomainStream needs a non-empty list of Domain, got {domains!r}"[:300])
        if kind not in STREAM_KINDS:
            raise ConfigError(f"kind must be one of {STREAM_KINDS} ('task': a dataset per experience, 'domain': the "
                              f"same classes in a new domain per experience), got {kind!r}")
        check_int(shots, "shots", low=1, optional=True,
                  why="training samples kept per class (5 for MTIL few-shot, 16 for X-TAIL)")
        check_seed(shot_seed, "shot_seed")
        for k, domain in enumerate(domains):
            _check_domain(k, domain)
        names = [d.name for d in domains]
        if len(set(names)) != len(names):
            raise ConfigError(f"the domains of a stream need distinct names, got {names}")
        self._domains = domains
        self._kind = kind
        self._shots, self._shot_seed = shots, shot_seed
        self._name = name
        self._transform, self._test_transform = transform, test_transform
        self._class_names: list[str] = []
        self._offsets: list[int] = []
        self._train_targets: list[torch.Tensor] = []
        self._test_targets: list[torch.Tensor] = []
        self._train_indices: list[torch.Tensor] = []
        self._test_indices: list[torch.Tensor] = []
        first_names = None
        for k, domain in enumerate(domains):
            where = f"domain {k} ({domain.name!r})"
            try:
                domain_names = check_names(list(domain.class_names) if isinstance(domain.class_names, tuple)
                                           else domain.class_names)
            except DataError as exc:
                raise DataError(f"{where}: {exc}") from None
            if kind == "domain":
                if first_names is None:
                    first_names = domain_names
                elif domain_names != first_names:
                    raise DataError(
                        f"{where} names its classes differently from domain 0 ({domains[0].name!r}): a "
                        f"domain-incremental stream has the same classes, in the same order, in every domain "
                        f"(e.g. {domain_names[:3]} vs {first_names[:3]})"
                    )
            train_targets = read_targets(domain.train, what=f"{where}: train source")
            test_targets = read_targets(domain.test, what=f"{where}: test source")
            C = len(domain_names)
            for split, targets in (("train", train_targets), ("test", test_targets)):
                if targets.numel() and int(targets.max()) >= C:
                    raise DataError(f"{where}: {C} class names but its {split} labels go up to {int(targets.max())}; "
                                    "expected one name per label")
                if targets.numel() == 0:
                    raise DataError(f"{where} has no {split} samples; every experience needs training and test "
                                    "samples (an empty test set would be scored 0% and distort the metrics)")
            train_indices = torch.arange(train_targets.numel())
            if shots is not None:
                train_indices = few_shot_indices(train_targets, shots, seed=derive_seed(shot_seed, k), name=where)
            self._offsets.append(len(self._class_names))
            self._class_names += domain_names
            self._train_targets.append(train_targets)
            self._test_targets.append(test_targets)
            self._train_indices.append(train_indices)
            self._test_indices.append(torch.arange(test_targets.numel()))
        self._sizes = [len(self._domain_names(k)) for k in range(len(domains))]
        self._class_to_experience = torch.repeat_interleave(torch.arange(len(domains)),
                                                            torch.tensor(self._sizes, dtype=torch.long))
        self._identifier_names = identifier_names(self._class_names)

    def _domain_names(self, k: int) -> list[str]:
        start = self._offsets[k]
        stop = self._offsets[k + 1] if k + 1 < len(self._offsets) else len(self._class_names)
        return self._class_names[start:stop]

    # ---- construction from a name ----------------------------------------------------------

    @classmethod
    def from_sequence(
        cls,
        name: str,
        *,
        root: str | os.PathLike | None = None,
        roots: Mapping[str, str | os.PathLike] | None = None,
        transform: str | Callable | None = "clip",
        test_transform: str | Callable | None = None,
        resolution: int = 224,
        shots: int | None = None,
        shot_seed: int = 0,
        sources: Mapping[str, tuple[Dataset, Dataset]] | None = None,
    ) -> "MultiDomainStream":
        """Build a named sequence (:func:`list_sequences`): ``mtil-order1``, ``mtil-order2``,
        ``xtail``, the ``cpu`` stand-in ``standin``, ...

        Args:
            name: A registered sequence.
            root: Folder holding the datasets: each dataset is read from the first of its usual
                folder names that exists under ``root`` (:attr:`SequenceEntry.folders`), else
                from ``root`` itself (torchvision's layouts keep their own sub-folder).
            roots: ``{dataset: folder}``, a dataset's own folder (wins over ``root``).
            transform: Training transform: a preset name (normalised with each dataset's
                statistics where alta knows them) or a callable.
            test_transform: Test transform (``None``: the test side of the preset, or the same
                callable).
            resolution: The backbone's input size in pixels (for preset names).
            shots: Training images kept per class (5-shot MTIL, 16-shot X-TAIL); ``None``: all.
            shot_seed: Seed of the few-shot draw.
            sources: ``{label: (train, test)}`` already read by :meth:`sequence_sources` with
                the same roots (read here when ``None``).

        Returns:
            The stream; :attr:`name` is the sequence's name.

        Raises:
            ConfigError: unknown sequence (lists them), a ``roots`` key that is not one of its
                datasets.
            DataError: a dataset missing under its root (the message names the dataset, the
                folder tried and the layout expected).
        """
        spec = SEQUENCES.get(name)
        if sources is None:
            sources = cls.sequence_sources(name, root=root, roots=roots)
        domains = []
        for entry in spec.entries:
            train, test = sources[entry.label]
            stats = entry.dataset if entry.dataset in _DATASET_STATS else None
            train_tf = _resolve(transform, train=True, resolution=resolution, dataset=stats)
            test_tf = (_resolve(test_transform, train=False, resolution=resolution, dataset=stats)
                       if test_transform is not None else
                       _resolve(transform, train=False, resolution=resolution, dataset=stats)
                       if isinstance(transform, str) else transform)
            domains.append(Domain(entry.label, train, test, list(train.class_names) if entry.class_names is None
                                  else list(entry.class_names), templates=entry.known_templates(),
                                  transform=train_tf, test_transform=test_tf))
        return cls(domains, kind=spec.kind, shots=shots, shot_seed=shot_seed, name=spec.name)

    @staticmethod
    def sequence_sources(name: str, *, root: str | os.PathLike | None = None,
                         roots: Mapping[str, str | os.PathLike] | None = None) -> dict[str, tuple[Dataset, Dataset]]:
        """Read the ``(train, test)`` sources of every dataset of a named sequence (file lists or
        arrays, no image decoded): the check that its data is there.

        Args:
            name: A registered sequence.
            root: Folder holding its datasets (see :meth:`from_sequence`).
            roots: ``{dataset: folder}``, a dataset's own folder.

        Returns:
            ``{label: (train, test)}`` (:attr:`SequenceEntry.label`) in training order.

        Raises:
            ConfigError: unknown sequence, a ``roots`` key that is not one of its datasets.
            DataError: a dataset missing or malformed (the message names the sequence, the
                dataset and the folder tried; :class:`~alta.data.DataRootError` when the folder
                is the problem).
        """
        spec = SEQUENCES.get(name)
        roots = dict(roots or {})
        unknown = sorted(set(roots) - {e.dataset for e in spec.entries})
        if unknown:
            raise ConfigError(f"roots names {unknown}, which are not datasets of sequence {spec.name!r} "
                              f"({[e.dataset for e in spec.entries]})")
        out = {}
        for entry in spec.entries:
            where = entry.root_for(root, roots.get(entry.dataset))
            try:
                out[entry.label] = entry.load(where)
            except DataError as exc:
                raise type(exc)(f"sequence {spec.name!r}, dataset {entry.dataset!r} (read from "
                                f"{where if where is not None else 'its default location'}): {exc}") from None
        return out

    # ---- the sequence ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._domains)

    def _experience(self, k: int) -> Experience:
        domain = self._domains[k]
        offset, size = self._offsets[k], self._sizes[k]
        label_map = torch.arange(offset, offset + size)  # original label c of domain k -> offset_k + c
        transform = domain.transform if domain.transform is not None else self._transform
        test_transform = domain.test_transform if domain.test_transform is not None else self._test_transform
        return Experience(
            index=k,
            classes=list(range(offset, offset + size)),
            class_names=self._domain_names(k),
            train=ExperienceDataset(domain.train, self._train_indices[k], label_map=label_map, transform=transform,
                                    source_targets=self._train_targets[k]),
            test=ExperienceDataset(domain.test, self._test_indices[k], label_map=label_map,
                                   transform=test_transform, source_targets=self._test_targets[k]),
            class_to_experience=self._class_to_experience.clone(),
            num_experiences=len(self._domains),
        )

    def __getitem__(self, index):
        """``stream[k]`` -> the :class:`Experience` of dataset k; ``stream[a:b]`` -> a list."""
        if isinstance(index, slice):
            return [self._experience(k) for k in range(*index.indices(len(self)))]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"stream indices must be int or slice, got {type(index).__name__}")
        k = int(index) + len(self) if index < 0 else int(index)
        if not 0 <= k < len(self):
            raise IndexError(f"experience {index} out of range for a stream of {len(self)} experiences")
        return self._experience(k)

    def __iter__(self) -> Iterator[Experience]:
        return (self._experience(k) for k in range(len(self)))

    # ---- metadata ----------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        """The sequence's name (:meth:`from_sequence`), else the one given, else ``None``."""
        return self._name

    @property
    def kind(self) -> str:
        """``"task"`` (a dataset per experience) or ``"domain"`` (the same classes per domain)."""
        return self._kind

    @property
    def joint(self) -> bool:
        """Always ``False`` (no joint bound of a multi-domain stream)."""
        return False

    @property
    def num_experiences(self) -> int:
        """T, the number of datasets (domains)."""
        return len(self)

    @property
    def eval_experiences(self) -> list[Experience]:
        """Every experience: each is evaluated after every experience (the full T x T matrix)."""
        return list(self)

    @property
    def domain_names(self) -> list[str]:
        """The datasets' (domains') names, in training order."""
        return [d.name for d in self._domains]

    @property
    def num_classes(self) -> int:
        """C, the classes of all datasets together."""
        return len(self._class_names)

    @property
    def class_names(self) -> list[str]:
        """Every label's name (``class_names[label]``), dataset after dataset."""
        return list(self._class_names)

    @property
    def classes_per_experience(self) -> list[int]:
        """The number of classes of each dataset, in training order."""
        return list(self._sizes)

    @property
    def class_to_experience(self) -> torch.Tensor:
        """The dataset (experience) of every label, LongTensor (C,)."""
        return self._class_to_experience.clone()

    @property
    def class_to_concept(self) -> torch.Tensor:
        """The class every label stands for across domains, LongTensor (C,): for a
        domain-incremental stream ``label mod C_domain`` (the class in any domain); otherwise the
        label itself (a dataset's classes are its own)."""
        labels = torch.arange(self.num_classes)
        return labels % self._sizes[0] if self._kind == "domain" else labels

    @property
    def class_templates(self) -> list[tuple[str, ...] | None]:
        """Every label's prompt templates (its dataset's; ``None`` where the dataset has none)."""
        return [None if d.templates is None else tuple(d.templates)
                for d, size in zip(self._domains, self._sizes) for _ in range(size)]

    @property
    def domain_templates(self) -> dict[str, list[str] | None]:
        """Each dataset's prompt templates (``None``: none), for run summaries."""
        return {d.name: None if d.templates is None else list(d.templates) for d in self._domains}

    @property
    def shots(self) -> int | None:
        """Training images kept per class (``None``: all)."""
        return self._shots

    @property
    def shot_seed(self) -> int:
        """Seed of the few-shot draw."""
        return self._shot_seed

    @property
    def class_order(self) -> list[int]:
        """Labels in order (the joined label space has no permutation)."""
        return list(range(self.num_classes))

    @property
    def split_info(self) -> dict | None:
        """The summary's one train/test split file of a stream (:attr:`ScenarioStream.split_info`):
        ``None`` here, each dataset having its own (:attr:`domain_split_info`)."""
        return None

    @property
    def domain_split_info(self) -> dict[str, dict]:
        """Where each dataset's train/test split comes from, when its loader says
        (:attr:`~alta.data.datasets.LabelledSource.split_info`), for run summaries."""
        return {d.name: dict(info) for d in self._domains if (info := getattr(d.train, "split_info", None))}

    @property
    def class_order_source(self) -> str:
        """``"native"``: every dataset keeps its own label order."""
        return "native"

    @property
    def class_names_source(self) -> str:
        """``"dataset"``: each dataset's names."""
        return "dataset"

    @property
    def names_look_like_identifiers(self) -> bool:
        """True when some class names are WordNet ids or bare numbers."""
        return bool(self._identifier_names)

    def with_transforms(self, *, transform: Callable | None = KEEP,
                        test_transform: Callable | None = KEEP) -> "MultiDomainStream":
        """The same stream with other transforms for every domain (nothing is reloaded)."""
        other = copy.copy(self)
        other._domains = [Domain(d.name, d.train, d.test, d.class_names, d.templates,
                                 transform=d.transform if transform is KEEP else transform,
                                 test_transform=d.test_transform if test_transform is KEEP else test_transform)
                          for d in self._domains]
        return other

    def __repr__(self) -> str:
        shots = f", shots={self._shots}" if self._shots is not None else ""
        return (f"MultiDomainStream({self._name or 'custom'}, kind={self._kind!r}, domains={self.domain_names}, "
                f"classes_per_experience={self._sizes}{shots})")


def _resolve(spec, *, train: bool, resolution: int, dataset: str | None):
    if spec is None or callable(spec) and not isinstance(spec, str):
        return spec
    if isinstance(spec, str):
        return make_transform(spec, train=train, resolution=resolution, dataset=dataset)
    raise ConfigError(f"transform must be a preset name, a callable or None, got {type(spec).__name__} {spec!r}")


# --------------------------------------------------------------------------------------------
# Named sequences
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceEntry:
    """One dataset of a named sequence.

    Attributes:
        dataset: Its name in :data:`alta.data.DATASETS` (read with :func:`alta.data.load_sources`).
        label: Its name in results (default: ``dataset``).
        folders: Folder names tried under the sequence's root, first found wins; none found:
            the root itself (``fallback="root"``) or the dataset's own default location
            (``fallback="default"``, e.g. Fashion-MNIST's Debian folder).
        fallback: ``"root"``, ``"default"`` or ``"none"`` (the dataset reads no files).
        templates: Its prompt templates (``None``: the dataset's known list,
            :func:`alta.data.dataset_templates`, if it has one).
        class_names: Names replacing the dataset's (``None``: the dataset's).
        options: Options of the dataset (:func:`alta.data.load_sources`).
    """

    dataset: str
    label: str = ""
    folders: tuple[str, ...] = ()
    fallback: str = "root"
    templates: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"SequenceEntry needs the name of a registered dataset, got {self.dataset!r}")
        check_choice(self.fallback, None, ENTRY_FALLBACKS, what=f"the fallback of sequence entry {self.dataset!r}")
        if isinstance(self.folders, str):
            raise ConfigError(f"folders of the sequence entry {self.dataset!r} must be a tuple of folder names, got the "
                              f"string {self.folders!r}; write ({self.folders!r},)")
        if not self.label:
            object.__setattr__(self, "label", self.dataset)

    def root_for(self, root: str | os.PathLike | None, own: str | os.PathLike | None) -> Path | None:
        """The folder this dataset is read from (see :attr:`folders`)."""
        if self.fallback == "none":
            return None
        if own is not None:
            return Path(own).expanduser()
        if root is not None:
            base = Path(root).expanduser()
            for folder in self.folders:
                if (base / folder).is_dir():
                    return base / folder
            if self.fallback == "root":
                return base
        return None

    def load(self, root: Path | None):
        """The dataset's ``(train, test)`` sources."""
        return load_sources(self.dataset, root=root, options=self.options or None)

    def known_templates(self) -> tuple[str, ...] | None:
        """Its templates: :attr:`templates`, else the dataset's known list
        (:func:`alta.data.dataset_templates`: ZSCL's for the MTIL datasets), else ``None``."""
        if self.templates is not None:
            return tuple(self.templates)
        return tuple(dataset_templates(self.dataset, default=())) or None


@dataclass(frozen=True)
class SequenceSpec:
    """A named multi-domain sequence.

    Attributes:
        name: Registry name.
        entries: Its datasets in training order.
        kind: ``"task"`` or ``"domain"`` (:class:`MultiDomainStream`).
        il_setting: The setting its papers report: ``task-il`` (MTIL) or ``class-il`` (X-TAIL).
        description: One line for listings.
        source: Where the sequence is defined (paper, repository and file).
    """

    name: str
    entries: tuple[SequenceEntry, ...]
    kind: str
    il_setting: str
    description: str
    source: str


SEQUENCES: Registry[SequenceSpec] = Registry("sequence")


def list_sequences() -> list[str]:
    """Names of the registered multi-domain sequences (:meth:`MultiDomainStream.from_sequence`)."""
    return SEQUENCES.names()


def register_sequence(name: str, entries: Sequence[SequenceEntry], *, kind: str = "task", il_setting: str = "task-il",
                      description: str = "", source: str = "", aliases: tuple[str, ...] = ()) -> SequenceSpec:
    """Register a multi-domain sequence of registered datasets (then usable as ``data.dataset``,
    ``--dataset`` and :meth:`MultiDomainStream.from_sequence`).

    Args:
        name: The sequence's name.
        entries: Its datasets in training order (:class:`SequenceEntry`; labels distinct).
        kind: ``"task"`` or ``"domain"``.
        il_setting: The setting its results are read in (``task-il``: MTIL, ``class-il``: X-TAIL).
        description: One line for ``alta list sequences``.
        source: Where it is defined.
        aliases: Other names.

    Returns:
        The :class:`SequenceSpec`.

    Raises:
        ConfigError: a name already registered, no entry, two entries of one label, a bad kind or
            ``il_setting``.
    """
    entries = tuple(entries)
    labels = [e.label for e in entries]
    if not entries or not all(isinstance(e, SequenceEntry) for e in entries):
        raise ConfigError(f"sequence {name!r} needs a non-empty list of SequenceEntry")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"the datasets of sequence {name!r} need distinct labels, got {labels}")
    if kind not in STREAM_KINDS:
        raise ConfigError(f"kind must be one of {STREAM_KINDS}, got {kind!r}")
    check_choice(il_setting, None, SEQUENCE_IL_SETTINGS, what=f"the il_setting of sequence {name!r}")
    spec = SequenceSpec(name, entries, kind, il_setting, description, source)
    SEQUENCES.add(name, spec, aliases=aliases)
    return spec


# The stand-in of the machines alta is tested on: the real datasets at hand, one per experience.
_STANDIN = (
    SequenceEntry("digits", fallback="none", templates=('a photo of the number: "{}".',)),
    SequenceEntry("fashion-mnist", folders=("fashion-mnist", "FashionMNIST"), fallback="default",
                  templates=("a photo of a {}.", "a black and white photo of a {}.",
                             "a low resolution photo of a {}.")),
    SequenceEntry("seq-cifar10", label="cifar10", folders=("cifar10", "cifar-10", "CIFAR10")),  # ZSCL's templates
    SequenceEntry("seq-tinyimagenet", label="tinyimagenet",
                  folders=("tiny-imagenet-200", "tiny-imagenet-200-sample"),
                  templates=("a photo of a {}.", "a low resolution photo of a {}.", "a photo of the {}.")),
)
register_sequence(
    "digits-twice", (SequenceEntry("digits", fallback="none", templates=('a photo of the number: "{}".',)),
                     SequenceEntry("digits", label="digits-again", fallback="none",
                                   templates=("a photo of a {}.", "a drawing of the number {}."))),
    il_setting="task-il",
    description="plumbing only: scikit-learn's bundled digits twice, under two template lists (no files; for "
                "smoke tests and examples, not a benchmark)", source="alta")
register_sequence(
    "standin", _STANDIN, il_setting="task-il",
    description="stand-in sequence of the real data at hand: digits, Fashion-MNIST, CIFAR-10, the Tiny-ImageNet "
                "sample (for MTIL-style and X-TAIL-style runs on a CPU; not a published benchmark)",
    source="alta (the cpu scale of benchmarks/run.py mtil); templates: ZSCL's for CIFAR-10 "
           "(alta.data.dataset_templates), alta's for the others")

# MTIL (ZSCL, ICCV 2023): the 11 datasets in alphabetical order (Order I), and ZSCL's permutation of
# them (Order II: results.ipynb `statistics(order=2)`; DIKI's MTIL_order_2). Each dataset is read
# from its torchvision folder under the root (docs/datasets.md).
_MTIL_ORDER1 = (
    SequenceEntry("aircraft"), SequenceEntry("caltech101-zscl", label="caltech101"),
    SequenceEntry("seq-cifar100", label="cifar100", folders=("cifar100", "cifar-100", "CIFAR100")),
    SequenceEntry("dtd"), SequenceEntry("eurosat"),
    SequenceEntry("flowers102"), SequenceEntry("food101"), SequenceEntry("mnist"), SequenceEntry("oxford-pet"),
    SequenceEntry("stanford-cars"), SequenceEntry("sun397"),
)
MTIL_ORDER2 = (9, 6, 7, 8, 5, 10, 0, 1, 3, 4, 2)  # positions in Order I
_MTIL_SOURCE = ("Zheng et al., ICCV 2023 (ZSCL); github.com/Thunderbeee/ZSCL mtil/scripts/*.sh (Order I), "
                "mtil/results.ipynb (Order II)")
register_sequence(
    "mtil-order1", _MTIL_ORDER1, il_setting="task-il", aliases=("mtil",),
    description="MTIL Order I (ZSCL): the 11 datasets, alphabetical", source=_MTIL_SOURCE)
register_sequence(
    "mtil-order2", tuple(_MTIL_ORDER1[k] for k in MTIL_ORDER2), il_setting="task-il",
    description="MTIL Order II (ZSCL's permutation [9, 6, 7, 8, 5, 10, 0, 1, 3, 4, 2] of Order I)",
    source=_MTIL_SOURCE)
register_sequence(
    "xtail", tuple(e for e in _MTIL_ORDER1 if e.label != "cifar100"), il_setting="class-il",
    description="X-TAIL (RAIL): MTIL Order I without CIFAR100, scored over every domain's classes",
    source="Xu et al., NeurIPS 2024 (RAIL); github.com/linghan1997/Regression-based-Analytic-Incremental-Learning "
           "configs/analytic_clip.yaml")

# Domain-incremental DomainNet (S-Prompts' sessions, as MoE-Adapters++ runs it): the same 345 classes in
# each of the six domains, in the official split files' order.
register_sequence(
    "domainnet", tuple(SequenceEntry("domainnet", label=domain, options={"domains": [domain]})
                       for domain in DOMAINNET_DOMAINS),
    kind="domain", il_setting="class-il",
    description="DomainNet, domain-incremental: the same 345 classes in each of its six domains (clipart, "
                "infograph, painting, quickdraw, real, sketch); domain-IL accuracy in the summary",
    source="Wang et al., NeurIPS 2022 (S-Prompts), github.com/iamwangyabin/S-Prompts utils/data.py (iDomainNet)")
