"""CIFAR-10 and CIFAR-100 (Seq-CIFAR-10, 5 x 2; Seq-CIFAR-100, 10 x 10): torchvision's layout or
image folders.

References:
    A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from ...classnames import readable
from .base import ArraySource, DataRootError, LabelledSource, class_key, register
from .folders import layout_error, named_folder_sources, need_root

logger = logging.getLogger("alta.data.datasets")


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# CIFAR-100 fine labels in their native label order (alphabetical), with the dataset's spelling.
CIFAR100_CLASSES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
    butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab
    crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
    lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
    oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
    possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
    spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
    train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
)



def _cifar_layouts(torchvision_dir: str) -> str:
    return (
        f"  (a) torchvision: root/{torchvision_dir}/... (what torchvision downloads)\n"
        "  (b) image folders: root/train/<class>/*.png|jpg and root/test/<class>/* "
        "(or root/val/<class>/*), one folder per class named as the dataset's class"
    )


def cifar_sources(
    dataset: str,
    root: Path | None,
    *,
    download: bool,
    torchvision_dir: str,
    tv_class: str,
    known: Sequence[str],
) -> tuple[LabelledSource, LabelledSource]:
    """CIFAR's (train, test) sources from torchvision's files (downloaded with ``download``) or
    from ``train/<class>/`` + ``test/<class>/`` folders; ``dataset`` names them."""
    layouts = _cifar_layouts(torchvision_dir)
    root = need_root(dataset, root, layouts, can_download=True)
    if root.name == torchvision_dir:
        root = root.parent
    if (root / "train").is_dir():
        return named_folder_sources(dataset, root, known, layouts)
    if (root / torchvision_dir).is_dir() or download:
        import torchvision.datasets as tvd

        sources = []
        for split, train in (("train", True), ("test", False)):
            try:
                tv = getattr(tvd, tv_class)(str(root), train=train, download=download)
            except (RuntimeError, OSError) as err:  # "Dataset not found or corrupted"; offline download
                what = "the download failed" if download else "torchvision could not read it"
                raise layout_error(dataset, root, f"{what} ({err})", layouts, can_download=True) from err
            names = [readable(c) for c in tv.classes]
            if [class_key(c) for c in tv.classes] != [class_key(c) for c in known]:
                raise DataRootError(
                    f"{dataset}: torchvision's class list {tv.classes[:5]}... differs from the "
                    f"expected {list(known[:5])}...; is root holding the right dataset? Fix: point "
                    f"root at the {dataset} data"
                )
            sources.append(
                ArraySource(tv.data, tv.targets, names,
                            identity=f"{dataset}|torchvision|{root}|{split}")
            )
        return sources[0], sources[1]
    raise layout_error(dataset, root, "no CIFAR data found", layouts, can_download=True)


@register("seq-cifar10", 2, "CIFAR-10, 5 experiences x 2 classes, native class order", can_download=True)
def _load_cifar10(root: Path | None, *, download: bool):
    return cifar_sources("seq-cifar10", root, download=download, torchvision_dir="cifar-10-batches-py",
                  tv_class="CIFAR10", known=CIFAR10_CLASSES)


@register("seq-cifar100", 10, "CIFAR-100 fine labels, 10 experiences x 10 classes", can_download=True)
def _load_cifar100(root: Path | None, *, download: bool):
    return cifar_sources("seq-cifar100", root, download=download, torchvision_dir="cifar-100-python",
                  tv_class="CIFAR100", known=CIFAR100_CLASSES)
