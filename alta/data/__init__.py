"""Data side of alta: class-incremental streams, raw dataset sources and transform presets.

ALTA (Li et al., IEEE TMM 2023) is evaluated on class-incremental streams of CIFAR-10, CIFAR-100
and Tiny-ImageNet; :class:`ScenarioStream` builds those (``ScenarioStream.from_name``) or splits
any labelled dataset into experiences. :mod:`alta.data.splits` reads the field's
vocabulary (``B50-Inc10`` splits, named class orders such as ``icarl-1993``, class-name files).
"""

from .datasets import DATASETS, DataRootError, list_datasets, load_sources, reference_class_names
from .splits import CLASS_ORDERS, Split, list_class_orders, parse_split, read_class_names
from .stream import Experience, ExperienceDataset, ScenarioStream
from .transforms import (
    TRANSFORM_PRESETS,
    dataset_stats,
    list_transform_presets,
    make_transform,
    to_rgb8,
)

__all__ = [
    "CLASS_ORDERS",
    "DATASETS",
    "DataRootError",
    "TRANSFORM_PRESETS",
    "Experience",
    "ExperienceDataset",
    "ScenarioStream",
    "Split",
    "dataset_stats",
    "list_class_orders",
    "list_datasets",
    "list_transform_presets",
    "load_sources",
    "make_transform",
    "parse_split",
    "read_class_names",
    "reference_class_names",
    "to_rgb8",
]
