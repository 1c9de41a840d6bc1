"""Data side of alta: class-incremental streams, raw dataset sources and transform presets.

ALTA (Li et al., IEEE TMM 2023) is evaluated on class-incremental streams of CIFAR-10, CIFAR-100
and Tiny-ImageNet; :class:`ScenarioStream` builds those (``ScenarioStream.from_name``) or splits
any labelled dataset into experiences.
"""

from .datasets import DATASETS, DataRootError, list_datasets, load_sources, reference_class_names
from .stream import Experience, ExperienceDataset, ScenarioStream
from .transforms import (
    TRANSFORM_PRESETS,
    dataset_stats,
    list_transform_presets,
    make_transform,
    to_rgb8,
)

__all__ = [
    "DATASETS",
    "DataRootError",
    "TRANSFORM_PRESETS",
    "Experience",
    "ExperienceDataset",
    "ScenarioStream",
    "dataset_stats",
    "list_datasets",
    "list_transform_presets",
    "load_sources",
    "make_transform",
    "reference_class_names",
    "to_rgb8",
]
