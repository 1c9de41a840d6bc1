"""Small fixtures of the official layouts of the MTIL datasets and DomainNet, with the real file
names and index files and tiny images, for tests (never downloaded).

Each ``build_<dataset>(root, per_class=...)`` writes the layout torchvision reads (the folder that
``load_sources(name, root=root)`` finds under ``root``) and returns that dataset folder. Every
class gets ``per_class`` training and ``per_class`` test images (the split files say which), all
copies of one 4x4 JPEG, so a fixture of hundreds of classes is written in a fraction of a second.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from alta.data.datasets import DOMAINNET_DOMAINS, shipped_classes


@lru_cache(maxsize=1)
def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def put_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes())


def write_lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def build_aircraft(root: Path, per_class: int = 1) -> Path:
    """``fgvc-aircraft-2013b/data/``: variants.txt, images_variant_{train,val,trainval,test}.txt, images/."""
    base = root / "fgvc-aircraft-2013b" / "data"
    variants = shipped_classes("aircraft").ids
    write_lines(base / "variants.txt", variants)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for k, variant in enumerate(variants):
        for i in range(per_class):
            for s, (split, lines) in enumerate(splits.items()):
                image_id = f"{s + 1}{k:03d}{i:03d}"
                lines.append(f"{image_id} {variant}")
                put_image(base / "images" / f"{image_id}.jpg")
    for split, lines in splits.items():
        write_lines(base / f"images_variant_{split}.txt", lines)
    write_lines(base / "images_variant_trainval.txt", splits["train"] + splits["val"])
    return base


def build_caltech101(root: Path, per_class: int = 5) -> Path:
    """torchvision's ``caltech101/101_ObjectCategories/<folder>/image_NNNN.jpg`` (with BACKGROUND_Google)."""
    base = root / "caltech101" / "101_ObjectCategories"
    for folder in (*shipped_classes("caltech101-zscl").ids, "BACKGROUND_Google"):
        for i in range(1, per_class + 1):
            put_image(base / folder / f"image_{i:04d}.jpg")
    return base


def build_dtd(root: Path, per_class: int = 1, partition: int = 1) -> Path:
    """torchvision's ``dtd/dtd/``: images/<class>/<class>_NNNN.jpg and labels/{train,val,test}<p>.txt."""
    base = root / "dtd" / "dtd"
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for folder in shipped_classes("dtd").ids:
        for s, lines in enumerate(splits.values()):
            for i in range(per_class):
                name = f"{folder}_{s * 100 + i + 1:04d}.jpg"
                lines.append(f"{folder}/{name}")
                put_image(base / "images" / folder / name)
    for split, lines in splits.items():
        write_lines(base / "labels" / f"{split}{partition}.txt", lines)
    return base


def build_eurosat(root: Path, per_class: int = 10) -> Path:
    """torchvision's ``eurosat/2750/<Class>/<Class>_N.jpg``."""
    base = root / "eurosat" / "2750"
    for folder in shipped_classes("eurosat").ids:
        for i in range(1, 2 * per_class + 1):
            put_image(base / folder / f"{folder}_{i}.jpg")
    return base


def build_flowers102(root: Path, per_class: int = 1) -> Path:
    """torchvision's ``flowers-102/``: jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat."""
    base = root / "flowers-102"
    num_classes = len(shipped_classes("flowers102").ids)
    labels = np.repeat(np.arange(1, num_classes + 1), 3 * per_class)  # image k has label labels[k - 1]
    for image_id in range(1, labels.size + 1):
        put_image(base / "jpg" / f"image_{image_id:05d}.jpg")
    ids = np.arange(1, labels.size + 1).reshape(num_classes, 3, per_class)
    scipy.io.savemat(base / "imagelabels.mat", {"labels": labels[None, :]})
    scipy.io.savemat(base / "setid.mat", {"trnid": ids[:, 0].reshape(1, -1), "valid": ids[:, 1].reshape(1, -1),
                                          "tstid": ids[:, 2].reshape(1, -1)})
    return base


def build_food101(root: Path, per_class: int = 1) -> Path:
    """torchvision's ``food-101/``: images/<class>/<id>.jpg, meta/{classes,train,test}.txt and the .json files."""
    base = root / "food-101"
    classes = shipped_classes("food101").ids
    write_lines(base / "meta" / "classes.txt", classes)
    for s, split in enumerate(("train", "test")):
        entries = {c: [f"{c}/{s * 1000 + k * 10 + i}" for i in range(per_class)] for k, c in enumerate(classes)}
        for listed in entries.values():
            for entry in listed:
                put_image(base / "images" / f"{entry}.jpg")
        write_lines(base / "meta" / f"{split}.txt", [e for listed in entries.values() for e in listed])
        (base / "meta" / f"{split}.json").write_text(json.dumps(entries), encoding="utf-8")
    return base


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def build_mnist(root: Path, per_class: int = 2) -> Path:
    """torchvision's ``MNIST/raw/``: the four idx files (image k of a split is filled with its label)."""
    base = root / "MNIST" / "raw"
    for prefix in ("train", "t10k"):
        labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
        images = np.broadcast_to(labels[:, None, None] * 20, (labels.size, 28, 28))
        write_idx(base / f"{prefix}-images-idx3-ubyte", images)
        write_idx(base / f"{prefix}-labels-idx1-ubyte", labels)
    return base


def build_oxford_pet(root: Path, per_class: int = 1) -> Path:
    """torchvision's ``oxford-iiit-pet/``: images/<Breed>_<n>.jpg, annotations/{trainval,test}.txt."""
    base = root / "oxford-iiit-pet"
    splits: dict[str, list[str]] = {"trainval": [], "test": []}
    for k, breed in enumerate(shipped_classes("oxford-pet").ids):
        species = 1 if breed[0].isupper() else 2  # the dataset's convention: cats capitalised
        for s, lines in enumerate(splits.values()):
            for i in range(per_class):
                image_id = f"{breed}_{s * 100 + i + 1}"
                lines.append(f"{image_id} {k + 1} {species} {i + 1}")
                put_image(base / "images" / f"{image_id}.jpg")
    for split, lines in splits.items():
        write_lines(base / "annotations" / f"{split}.txt", lines)
    return base


def cars_annotations(fnames, classes=None) -> np.ndarray:
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"] + (["class"] if classes is not None else []) + ["fname"]
    table = np.zeros((1, len(fnames)), dtype=[(f, "O") for f in fields])
    for i, fname in enumerate(fnames):
        for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"):
            table[0, i][f] = np.array([[1]], dtype=np.uint8)
        if classes is not None:
            table[0, i]["class"] = np.array([[classes[i]]], dtype=np.uint8)
        table[0, i]["fname"] = np.array([fname])
    return table


def build_stanford_cars(root: Path, per_class: int = 1) -> Path:
    """torchvision's ``stanford_cars/``: devkit/{cars_meta,cars_train_annos,cars_test_annos}.mat,
    cars_train/, cars_test/ and cars_test_annos_withlabels.mat beside devkit/."""
    base = root / "stanford_cars"
    names = shipped_classes("stanford-cars").ids
    meta = np.empty((1, len(names)), dtype=object)
    meta[0, :] = [np.array([n]) for n in names]
    (base / "devkit").mkdir(parents=True)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": meta})
    classes = [k + 1 for k in range(len(names)) for _ in range(per_class)]
    for split, annotation_file in (("train", base / "devkit" / "cars_train_annos.mat"),
                                   ("test", base / "cars_test_annos_withlabels.mat")):
        fnames = [f"{i + 1:05d}.jpg" for i in range(len(classes))]
        for fname in fnames:
            put_image(base / f"cars_{split}" / fname)
        scipy.io.savemat(annotation_file, {"annotations": cars_annotations(fnames, classes)})
        if split == "test":  # the devkit's test annotations: no labels
            scipy.io.savemat(base / "devkit" / "cars_test_annos.mat", {"annotations": cars_annotations(fnames)})
    return base


def build_sun397(root: Path, per_class: int = 3) -> Path:
    """torchvision's ``SUN397/``: ClassName.txt, <letter>/<class>/sun_*.jpg, and partition 1's
    Training_01.txt / Testing_01.txt (from Partitions.zip) in it."""
    base = root / "SUN397"
    class_ids = shipped_classes("sun397").ids
    write_lines(base / "ClassName.txt", class_ids)
    training, testing = [], []
    for k, class_id in enumerate(class_ids):
        files = [f"{class_id}/sun_{(k * 7919 + i * 104729) % 1000003:07x}{i}.jpg" for i in range(per_class)]
        for file in files:
            put_image(base / file.lstrip("/"))
        training.append(files[0])
        testing.extend(files[1:])
    write_lines(base / "Training_01.txt", training)
    write_lines(base / "Testing_01.txt", testing)
    return base


def build_domainnet(root: Path, per_class: int = 1, full_domains=("clipart", "real")) -> Path:
    """``domainnet/``: <domain>/<class>/<file> and the official <domain>_{train,test}.txt for the six
    domains; every class in ``full_domains``, the first three classes in the others."""
    base = root / "domainnet"
    classes = shipped_classes("domainnet").ids
    for domain in DOMAINNET_DOMAINS:
        kept = range(len(classes)) if domain in full_domains else range(3)
        for s, split in enumerate(("train", "test")):
            lines = []
            for label in kept:
                for i in range(per_class):
                    relative = f"{domain}/{classes[label]}/{domain}_{label:03d}_{s}{i:05d}.jpg"
                    put_image(base / relative)
                    lines.append(f"{relative} {label}")
            write_lines(base / f"{domain}_{split}.txt", lines)
    return base


BUILDERS = {
    "aircraft": build_aircraft,
    "caltech101-zscl": build_caltech101,
    "dtd": build_dtd,
    "eurosat": build_eurosat,
    "flowers102": build_flowers102,
    "food101": build_food101,
    "mnist": build_mnist,
    "oxford-pet": build_oxford_pet,
    "stanford-cars": build_stanford_cars,
    "sun397": build_sun397,
    "domainnet": build_domainnet,
}
