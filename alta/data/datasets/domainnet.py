"""DomainNet: 345 classes in six domains (clipart, infograph, painting, quickdraw, real, sketch),
read from the official split files.

A domain-incremental stream (S-Prompts, MoE-Adapters++) brings the same 345 classes again in
each domain: :func:`load_domainnet_domain` reads one domain's (train, test) sources, labels
0..344 in every domain. The registered ``domainnet`` dataset is the union of the chosen domains
(all six by default): one 345-class dataset whose sources say which domain each sample comes from
(``sample_domains``).

References:
    X. Peng et al., "Moment Matching for Multi-Source Domain Adaptation", ICCV 2019.
    Y. Wang et al., "S-Prompts Learning with Pre-trained Transformers: An Occam's Razor for Domain
    Incremental Learning", NeurIPS 2022 (github.com/iamwangyabin/S-Prompts, ``utils/data.py``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch

from ...errors import ConfigError, DataError
from .base import ImageFileSource, register
from .folders import check_listed, index_lines, layout_error, need_root
from .names import shipped_classes

logger = logging.getLogger("alta.data.datasets")


DOMAINNET_DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
_DOMAINNET_LAYOUT = (
    "  root/domainnet/ (root may be that folder itself) with one folder per domain, <domain>/<class>/<file> "
    "(clipart, infograph, painting, quickdraw, real, sketch; the zips unpack so), and the official split files "
    "<domain>_train.txt, <domain>_test.txt ('<domain>/<class>/<file> <label>' lines) beside them or in "
    "splits/ (Dassl's layout).\n  alta cannot download DomainNet: fetch the images and the txt split files from "
    "http://ai.bu.edu/M3SDA/"
)


class MultiDomainSource(ImageFileSource):
    """Image files of several domains sharing one label space.

    Args:
        paths: One image file per sample (N).
        targets: Label of each sample (N,), shared by all domains.
        class_names: Name of each label.
        identity: Stable description for cache keys.
        class_ids: What the data calls each label (the class folders).
        sample_domains: Domain of each sample, an index into ``domains`` (N,).
        domains: Name of each domain.

    Raises:
        DataError: as :class:`~alta.data.datasets.ImageFileSource`.
    """

    def __init__(self, paths, targets, class_names, *, identity: str, class_ids, sample_domains,
                 domains: Sequence[str]) -> None:
        super().__init__(paths, targets, class_names, identity=identity, class_ids=class_ids)
        self.sample_domains = torch.as_tensor(sample_domains, dtype=torch.long).reshape(-1)
        self.domains = list(domains)
        assert self.sample_domains.shape == self.targets.shape


def domainnet_base(root: Path) -> Path:
    """The DomainNet folder: ``root/domainnet/`` or ``root``, whichever holds a domain folder."""
    for base in (root / "domainnet", root / "DomainNet", root):
        if any((base / d).is_dir() for d in DOMAINNET_DOMAINS):
            return base
    raise layout_error("domainnet", root, f"no domain folder ({', '.join(DOMAINNET_DOMAINS)}) found",
                       _DOMAINNET_LAYOUT, can_download=False)


def split_file(base: Path, root: Path, domain: str, split: str) -> Path:
    """``<domain>_<split>.txt`` beside the domain folders or in ``splits/``."""
    name = f"{domain}_{split}.txt"
    for folder in (base, base / "splits"):
        if (folder / name).is_file():
            return folder / name
    raise layout_error("domainnet", root, f"missing {base / name} (the official split file of the {domain} domain; "
                       f"{base / 'splits' / name} is read too)", _DOMAINNET_LAYOUT, can_download=False, base=base)


def read_domain_split(base: Path, root: Path, domain: str, split: str) -> tuple[list[str], list[int]]:
    """Image paths and labels of one official split file, each line's class folder checked
    against its label."""
    classes = shipped_classes("domainnet")
    index = split_file(base, root, domain, split)
    if not (base / domain).is_dir():
        raise layout_error("domainnet", root, f"missing the image folder {base / domain} (listed by {index})",
                           _DOMAINNET_LAYOUT, can_download=False, base=base)
    paths, targets = [], []
    for number, line in index_lines("domainnet", index):
        relative, _, label_text = line.rpartition(" ")
        parts = relative.split("/")
        label = int(label_text) if label_text.isdigit() else -1
        if len(parts) < 3 or parts[0] != domain or not 0 <= label < len(classes.ids) or parts[1] != classes.ids[label]:
            raise DataError(
                f"domainnet: {index} line {number} is {line!r}; expected '{domain}/<class>/<file> <label>' with a "
                f"label in 0..{len(classes.ids) - 1} whose class folder is that label's "
                f"({classes.ids[label] if 0 <= label < len(classes.ids) else '?'}). Fix: restore the official file"
            )
        paths.append(os.path.join(base, *parts))
        targets.append(label)
    absent = sorted(set(range(len(classes.ids))) - set(targets))
    if absent:  # Dassl notes that t-shirt (327) has no image in painting_train.txt
        logger.warning("domainnet: %s lists no image of %d class(es): %s%s", index, len(absent),
                       ", ".join(classes.ids[k] for k in absent[:5]), " ..." if len(absent) > 5 else "")
    check_listed("domainnet", root, base, paths, index, _DOMAINNET_LAYOUT)
    return paths, targets


def check_domains(domains: object) -> list[str]:
    """The domain names of a ``domains`` option (one name or a sequence of distinct names).

    Raises:
        ConfigError: an unknown, repeated or empty choice.
    """
    chosen = [domains] if isinstance(domains, str) else domains
    if not isinstance(chosen, (list, tuple)) or not chosen or any(d not in DOMAINNET_DOMAINS for d in chosen) \
            or len(set(chosen)) != len(chosen):
        raise ConfigError(f"domainnet: option domains is {domains!r}; expected one of {', '.join(DOMAINNET_DOMAINS)} "
                          "or a list of distinct ones (e.g. ['clipart', 'real'])")
    return list(chosen)


def load_domainnet_domain(root: str | os.PathLike | None, domain: str) -> tuple[ImageFileSource, ImageFileSource]:
    """One DomainNet domain's (train, test) sources from the official split files.

    Every domain has the same 345 classes, labels 0..344 in the official order, named as the
    class folders with ``_`` as spaces (``alta/data/class_names/domainnet.tsv``), so the
    experiences of a domain-incremental stream share one label space.

    Args:
        root: Folder holding ``domainnet/`` (or that folder itself); see the layout in the error
            a wrong root gets.
        domain: One of :data:`DOMAINNET_DOMAINS`.

    Returns:
        ``(train, test)`` raw sources, identities ``domainnet|<folder>|<domain>|train`` / ``...|test``.

    Raises:
        ConfigError: an unknown domain.
        DataRootError: no root, or a missing domain folder or split file (named).
        DataError: a split file line that is not ``<domain>/<class>/<file> <label>`` with the label
            of its class folder.
    """
    (domain,) = check_domains(domain)
    path = need_root("domainnet", None if root is None else Path(root).expanduser().resolve(), _DOMAINNET_LAYOUT,
                     can_download=False)
    base = domainnet_base(path)
    classes = shipped_classes("domainnet")
    sources = []
    for split in ("train", "test"):
        paths, targets = read_domain_split(base, path, domain, split)
        sources.append(ImageFileSource(paths, targets, classes.names, identity=f"domainnet|{base}|{domain}|{split}",
                                       class_ids=classes.ids))
    return sources[0], sources[1]


@register("domainnet", None, "DomainNet, 345 classes, the union of its six domains (official split files)",
          options=("domains",))
def _load_domainnet(root: Path | None, *, download: bool, domains: str | Sequence[str] = DOMAINNET_DOMAINS):
    """DomainNet (Peng et al., ICCV 2019): the official train and test files of the ``domains``
    (all six by default, in the order given) joined into one 345-class dataset
    (:class:`MultiDomainSource`, ``sample_domains`` saying each sample's domain). One domain:
    ``domains="real"``; a domain-incremental stream reads each with :func:`load_domainnet_domain`."""
    chosen = check_domains(list(domains) if isinstance(domains, tuple) else domains)
    root = need_root("domainnet", root, _DOMAINNET_LAYOUT, can_download=False)
    base = domainnet_base(root)
    classes = shipped_classes("domainnet")
    sources = []
    for split in ("train", "test"):
        paths: list[str] = []
        targets: list[int] = []
        sample_domains: list[int] = []
        for k, domain in enumerate(chosen):
            domain_paths, domain_targets = read_domain_split(base, root, domain, split)
            paths += domain_paths
            targets += domain_targets
            sample_domains += [k] * len(domain_paths)
        sources.append(MultiDomainSource(paths, targets, classes.names, class_ids=classes.ids,
                                         identity=f"domainnet|{base}|{'+'.join(chosen)}|{split}",
                                         sample_domains=sample_domains, domains=chosen))
    return sources[0], sources[1]
