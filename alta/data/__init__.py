"""Data side of alta: class-incremental streams, raw dataset sources and transform presets.

ALTA (Li et al., IEEE TMM 2023) is evaluated on class-incremental streams of CIFAR-10, CIFAR-100
and Tiny-ImageNet; :class:`ScenarioStream` builds those (``ScenarioStream.from_name``) or splits
any labelled dataset into experiences. :mod:`alta.data.splits` reads the field's
vocabulary (``B50-Inc10`` splits, named class orders such as ``icarl-1993``, class-name files).
The datasets of MTIL (ZSCL, Zheng et al., ICCV 2023) come with ZSCL's class names and prompt
templates (:func:`dataset_templates`); :func:`few_shot_source` draws k training samples per class
from a seed. :class:`MultiDomainStream` builds the multi-domain streams of MTIL and X-TAIL (a
dataset per experience, label spaces joined; ``MultiDomainStream.from_sequence``).
"""

from .datasets import (
    DATASETS,
    DOMAINNET_DOMAINS,
    DataRootError,
    list_datasets,
    load_domainnet_domain,
    load_sources,
    reference_class_names,
)
from .fewshot import few_shot_indices, few_shot_source
from .multidomain import SEQUENCES, Domain, MultiDomainStream, list_sequences
from .splits import CLASS_ORDERS, Split, list_class_orders, parse_split, read_class_names
from .stream import Experience, ExperienceDataset, ScenarioStream
from .templates import SINGLE_TEMPLATE, ZSCL_DATASETS, dataset_templates, list_template_datasets
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
    "DOMAINNET_DOMAINS",
    "DataRootError",
    "Domain",
    "MultiDomainStream",
    "SEQUENCES",
    "TRANSFORM_PRESETS",
    "ZSCL_DATASETS",
    "Experience",
    "ExperienceDataset",
    "SINGLE_TEMPLATE",
    "ScenarioStream",
    "Split",
    "dataset_stats",
    "dataset_templates",
    "few_shot_indices",
    "few_shot_source",
    "list_class_orders",
    "list_datasets",
    "list_template_datasets",
    "list_sequences",
    "list_transform_presets",
    "load_domainnet_domain",
    "load_sources",
    "make_transform",
    "parse_split",
    "read_class_names",
    "reference_class_names",
    "to_rgb8",
]
