"""Prompt templates per dataset: ZSCL's template ensembles for the MTIL datasets.

CLIP's zero-shot classifier (Radford et al., ICML 2021; open_clip's ``build_zero_shot_classifier``)
encodes each class name in several prompts and averages the normalised text features; which
prompts is part of the protocol. ZSCL's MTIL (Zheng et al., ICCV 2023) gives each dataset its own
list: it trains with the first template and evaluates with the average over all of them.
:func:`dataset_templates` returns that list (``alta/data/templates.tsv``, with its source in its
header); :data:`SINGLE_TEMPLATE` is the one prompt CLIP's README and RAIL's X-TAIL use for every
dataset.

Examples:
    >>> dataset_templates("aircraft")
    ['a photo of a {}, a type of aircraft.', 'a photo of the {}, a type of aircraft.']
    >>> dataset_templates("stanford-cars", ensemble=False)
    ['a photo of a {}, a type of car.']
    >>> dataset_templates("digits", default=[SINGLE_TEMPLATE])
    ['a photo of a {}.']

References:
    Z. Zheng et al., "Preventing Zero-Shot Transfer Degradation in Continual Learning of
    Vision-Language Models" (ZSCL), ICCV 2023 (github.com/Thunderbeee/ZSCL,
    ``mtil/src/datasets/collections.py`` and ``cifar10.py``).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Sequence

from ..errors import ConfigError
from .datasets import DATASETS

__all__ = ["SINGLE_TEMPLATE", "ZSCL_DATASETS", "dataset_templates", "list_template_datasets"]

#: The single prompt of CLIP's README example and of RAIL's X-TAIL evaluation.
SINGLE_TEMPLATE = "a photo of a {}."

#: ZSCL's dataset names (its ``--train-dataset`` values, in its ``dataset_list`` order, which is
#: MTIL's Order I with CIFAR10 added) -> alta's dataset names. MTIL leaves CIFAR10 out.
ZSCL_DATASETS = {
    "Aircraft": "aircraft",
    "Caltech101": "caltech101-zscl",
    "CIFAR10": "seq-cifar10",
    "CIFAR100": "seq-cifar100",
    "DTD": "dtd",
    "EuroSAT": "eurosat",
    "Flowers": "flowers102",
    "Food": "food101",
    "MNIST": "mnist",
    "OxfordPet": "oxford-pet",
    "StanfordCars": "stanford-cars",
    "SUN397": "sun397",
}
# alta's caltech101 (its own split, CoOp's names) is the same images: ZSCL's Caltech101 list fits it
_EXTRA = {"caltech101": "Caltech101"}


@functools.lru_cache(maxsize=1)
def _template_table() -> dict[str, tuple[str, ...]]:
    """``alta/data/templates.tsv`` keyed by alta's dataset names."""
    text = (resources.files("alta.data") / "templates.tsv").read_text(encoding="utf-8")
    by_zscl: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            zscl, _, template = line.partition("\t")
            by_zscl.setdefault(zscl, []).append(template)
    table = {name: tuple(by_zscl[zscl]) for zscl, name in ZSCL_DATASETS.items()}
    table.update({name: tuple(by_zscl[zscl]) for name, zscl in _EXTRA.items()})
    return table


def list_template_datasets() -> list[str]:
    """Names of the datasets :func:`dataset_templates` has a template list for."""
    return [name for name in DATASETS.names() if name in _template_table()]


def dataset_templates(dataset: str, *, ensemble: bool = True, default: Sequence[str] | None = None) -> list[str]:
    """The prompt templates of a dataset, ``"{}"`` where the class name goes.

    Args:
        dataset: A name of :func:`~alta.data.list_datasets` (aliases accepted) or ZSCL's name of
            the dataset (``"StanfordCars"``, :data:`ZSCL_DATASETS`).
        ensemble: ``True``: ZSCL's whole list (its evaluation averages the text features over
            it); ``False``: its first template only (the one ZSCL trains with).
        default: Returned (as a list) for a registered dataset without a template list, e.g.
            ``[SINGLE_TEMPLATE]``; ``None`` makes that an error.

    Returns:
        The templates, in ZSCL's order; e.g. 34 for ``caltech101-zscl``, 18 for ``seq-cifar100``.

    Raises:
        ConfigError: an unknown dataset name (with the valid ones), or a dataset without a
            template list when ``default`` is ``None`` (naming those that have one).

    References:
        github.com/Thunderbeee/ZSCL, ``mtil/src/datasets/collections.py`` (each dataset's
        ``self.templates``), commit b96e714.
    """
    name = ZSCL_DATASETS.get(dataset) or DATASETS.resolve(dataset)
    templates = _template_table().get(name)
    if templates is None:
        if default is None:
            raise ConfigError(
                f"dataset {name!r} has no template list (datasets with ZSCL's lists: "
                f"{', '.join(list_template_datasets())}); pass default=[SINGLE_TEMPLATE] "
                f"({SINGLE_TEMPLATE!r}) or your own templates for it"
            )
        templates = tuple(default)
    return list(templates if ensemble else templates[:1])
