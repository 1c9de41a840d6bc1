"""Raw dataset sources: real layouts (shared data), synthetic folder trees and idx files."""

from __future__ import annotations

import gzip
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alta.data import DataRootError, ScenarioStream, list_datasets, load_sources, reference_class_names
from alta.data.datasets import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_CLASSES,
    ArraySource,
    ImageFileSource,
    read_idx,
)
from alta.errors import ConfigError, DataError


def _save(path: Path, size=(6, 5), mode="RGB", color=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the idx format, gzip-compressed when ``path`` ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def test_registry_names():
    assert list_datasets() == [
        "seq-cifar10", "seq-cifar100", "seq-tinyimagenet", "digits", "fashion-mnist", "image-folder",
        "imagenet-r", "cub200", "caltech101", "caltech101-zscl", "imagenet-subset", "aircraft", "dtd", "eurosat",
        "flowers102", "food101", "mnist", "oxford-pet", "stanford-cars", "sun397", "domainnet",
        "objectnet", "ucf101", "cil-cifar100", "cil-cub", "cil-imagenet-r", "cil-objectnet", "cil-cars", "cil-ucf",
        "cil-aircraft", "cil-food", "cil-sun",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="did you mean 'seq-cifar10'"):
        load_sources("seq-cifar-10")


def test_cifar100_names_are_the_native_alphabetical_fine_labels():
    assert len(CIFAR100_CLASSES) == 100 == len(set(CIFAR100_CLASSES))
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    assert CIFAR100_CLASSES[1] == "aquarium_fish" and CIFAR100_CLASSES[-1] == "worm"


# ---- CIFAR ------------------------------------------------------------------------------------


@pytest.mark.data
def test_cifar10_image_folders(cifar10_root):
    train, test = load_sources("seq-cifar10", root=cifar10_root)
    assert train.class_names == list(CIFAR10_CLASSES)
    assert len(train) == 50_000 and len(test) == 10_000
    assert torch.bincount(train.targets).tolist() == [5000] * 10
    assert torch.bincount(test.targets).tolist() == [1000] * 10
    for index in (0, 12_345, 49_999):
        image, label = train[index]
        assert Path(train.paths[index]).parent.name == CIFAR10_CLASSES[label]
        assert image.mode == "RGB" and image.size == (32, 32)
    assert str(cifar10_root.resolve()) in train.identity and train.identity.endswith("train")


def test_cifar_folders_are_mapped_by_name_not_sorted_order(tmp_path):
    # Folder names in another spelling; sorted order differs from the native order.
    spellings = {c: c.upper() if c in ("truck", "bird") else c for c in CIFAR10_CLASSES}
    for split in ("train", "test"):
        for k, c in enumerate(CIFAR10_CLASSES):
            _save(tmp_path / split / spellings[c] / "0.png", color=(k * 20, 0, 0))
    train, test = load_sources("seq-cifar10", root=tmp_path)
    for source in (train, test):
        labels = {Path(p).parent.name.lower(): int(y) for p, y in zip(source.paths, source.targets)}
        assert labels == {c: k for k, c in enumerate(CIFAR10_CLASSES)}
        assert source[CIFAR10_CLASSES.index("truck")][0].getpixel((0, 0))[0] == 9 * 20


def test_cifar100_folders_give_readable_names(tmp_path):
    for split in ("train", "val"):  # val/ is accepted for test/
        for c in CIFAR100_CLASSES:
            _save(tmp_path / split / c / "a.jpg")
    train, test = load_sources("seq-cifar100", root=tmp_path)
    assert train.class_names[1] == "aquarium fish" and train.class_names[41] == "lawn mower"
    assert all("_" not in n for n in train.class_names)
    assert len(train) == len(test) == 100
    assert train.targets.tolist() == list(range(100))


def test_cifar_folder_mismatch_lists_missing_classes(tmp_path):
    for split in ("train", "test"):
        for c in CIFAR10_CLASSES[:-1]:
            _save(tmp_path / split / c / "0.png")
        _save(tmp_path / split / "lorry" / "0.png")
    with pytest.raises(DataError, match=r"missing: \['truck'\].*unexpected: \['lorry'\]"):
        load_sources("seq-cifar10", root=tmp_path)


def test_cifar_torchvision_layout_is_wrapped(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    (tmp_path / "cifar-10-batches-py").mkdir()
    calls = []

    def fake_cifar10(root, *, train, download):
        calls.append((root, train, download))
        n = 4 if train else 2
        return types.SimpleNamespace(
            data=np.full((n, 32, 32, 3), 7, dtype=np.uint8),
            targets=[9, 0, 1, 2][:n],
            classes=list(CIFAR10_CLASSES),
        )

    monkeypatch.setattr(tvd, "CIFAR10", fake_cifar10)
    train, test = load_sources("seq-cifar10", root=tmp_path)
    assert calls == [(str(tmp_path), True, False), (str(tmp_path), False, False)]
    assert isinstance(train, ArraySource) and train.targets.tolist() == [9, 0, 1, 2]
    image, label = train[0]
    assert image.mode == "RGB" and image.size == (32, 32) and label == 9
    assert "torchvision" in test.identity


@pytest.mark.parametrize("name", ["seq-cifar10", "seq-cifar100", "fashion-mnist"])
def test_missing_root_shows_layouts_and_download(tmp_path, name):
    with pytest.raises(DataError) as info:
        load_sources(name, root=tmp_path / "nowhere")
    message = str(info.value)
    assert "nowhere" in message and "layout" in message and "download=True" in message


def test_missing_root_none_for_cifar(tmp_path):
    with pytest.raises(DataError, match="(?s)no root given.*download=True"):
        load_sources("seq-cifar100")


# ---- Tiny-ImageNet ------------------------------------------------------------------------------


def _annotations(root: Path) -> list[tuple[str, str]]:
    lines = (root / "val" / "val_annotations.txt").read_text().splitlines()
    return [tuple(line.split("\t")[:2]) for line in lines if line.strip()]


@pytest.mark.data
def test_tinyimagenet_sample(tiny_imagenet_root):
    train, test = load_sources("seq-tinyimagenet", root=tiny_imagenet_root)
    wnids = (tiny_imagenet_root / "wnids.txt").read_text().split()
    assert len(train.class_names) == 200 == len(set(train.class_names))
    assert train.class_names[:2] == ["Egyptian cat", "reel"]
    assert torch.bincount(train.targets, minlength=200).tolist() == [5] * 200
    for path, label in zip(train.paths, train.targets.tolist()):
        assert Path(path).parent.parent.name == wnids[label]
    expected = [(f, wnids.index(w)) for f, w in _annotations(tiny_imagenet_root)]
    assert [(Path(p).name, y) for p, y in zip(test.paths, test.targets.tolist())] == expected
    assert test.identity.endswith("val")


@pytest.mark.data
def test_tinyimagenet_grayscale_images_come_out_rgb(tiny_imagenet_root):
    train, _ = load_sources("seq-tinyimagenet", root=tiny_imagenet_root)
    gray = [i for i, p in enumerate(train.paths[:200]) if Image.open(p).mode != "RGB"]
    assert gray, "the sample holds grayscale training images in its first classes"
    image, _ = train[gray[0]]
    assert image.mode == "RGB" and image.size == (64, 64)


@pytest.mark.data
def test_tinyimagenet_root_may_be_the_parent(tiny_imagenet_root, tmp_path):
    (tmp_path / "tiny-imagenet-200").symlink_to(tiny_imagenet_root, target_is_directory=True)
    train, _ = load_sources("seq-tinyimagenet", root=tmp_path)
    assert len(train) == 1000


def test_tinyimagenet_missing_layout_says_no_download(tmp_path):
    (tmp_path / "wnids.txt").write_text("n01\n")
    with pytest.raises(DataError) as info:
        load_sources("seq-tinyimagenet", root=tmp_path, download=True)
    message = str(info.value)
    assert "words.txt" in message and "val/val_annotations.txt" in message
    assert "cannot download" in message and "not supported" in message


# ---- digits -------------------------------------------------------------------------------------


def test_digits_split_is_deterministic_and_disjoint():
    train, test = load_sources("digits", root="/ignored")
    assert len(train) + len(test) == 1797
    assert train.class_names[:3] == ["zero", "one", "two"] and len(train.class_names) == 10
    # Every 5th sample of each class is a test sample.
    counts = torch.bincount(test.targets).tolist()
    totals = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert counts == [n // 5 for n in totals]
    image, label = test[0]
    assert image.mode == "RGB" and image.size == (8, 8) and label == int(test.targets[0])
    pixels = np.asarray(train[0][0])
    assert pixels.dtype == np.uint8 and pixels.max() <= 255
    train2, _ = load_sources("digits")
    assert torch.equal(train.targets, train2.targets)
    assert np.array_equal(train.images, train2.images)
    # No image is in both splits (the 1,797 digits hold no pixel-identical pair across them).
    flat = {bytes(x) for x in train.images.reshape(len(train), -1)}
    assert not any(bytes(x) in flat for x in test.images.reshape(len(test), -1))


# ---- Fashion-MNIST ------------------------------------------------------------------------------


def _fake_fashion(folder: Path, *, gz: bool) -> None:
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", 20), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x-idx3-ubyte" + (".gz" if gz else ""))
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == np.uint8 and np.array_equal(out, array)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="not an idx file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + np.asarray([10], dtype=">u4").tobytes() + b"\x00" * 3)
    with pytest.raises(DataError, match="truncated"):
        read_idx(short)


@pytest.mark.parametrize("layout", ["flat-gz", "torchvision-raw"])
def test_fashion_mnist_idx_layouts(tmp_path, layout):
    if layout == "flat-gz":
        _fake_fashion(tmp_path, gz=True)
    else:
        _fake_fashion(tmp_path / "FashionMNIST" / "raw", gz=False)
    train, test = load_sources("fashion-mnist", root=tmp_path)
    assert len(train) == 20 and len(test) == 10
    assert train.class_names == list(FASHION_MNIST_CLASSES)
    assert train.class_names[0] == "t-shirt" and train.class_names[9] == "ankle boot"
    image, label = test[3]
    assert image.mode == "RGB" and image.size == (28, 28) and label == 3


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)
def test_fashion_mnist_debian_files():
    train, test = load_sources("fashion-mnist")  # root=None -> the Debian folder
    assert len(train) == 60_000 and len(test) == 10_000
    assert torch.bincount(test.targets).tolist() == [1000] * 10


# ---- image folders --------------------------------------------------------------------------------


def make_image_folder(root: Path, classes=("zebra", "apple_tree", "cat"), *, test_dir="test") -> None:
    """A small tree with images of mixed sizes, modes and formats."""
    modes = [("RGB", (10, 7), "a.png"), ("L", (5, 9), "b.jpg"), ("RGBA", (12, 12), "c.PNG"),
             ("P", (3, 4), "d.bmp")]
    for k, c in enumerate(classes):
        for mode, size, name in modes[: 2 + k]:
            _save(root / "train" / c / name, size=size, mode=mode)
        _save(root / test_dir / c / "t.png", size=(9, 9), mode="L")
    (root / "train" / classes[0] / "notes.txt").write_text("not an image")


@pytest.mark.parametrize("test_dir", ["test", "val"])
def test_image_folder_tree(tmp_path, test_dir):
    make_image_folder(tmp_path, test_dir=test_dir)
    train, test = load_sources("image-folder", root=tmp_path)
    assert isinstance(train, ImageFileSource)
    assert train.class_names == ["apple tree", "cat", "zebra"]  # sorted folder names
    assert torch.bincount(train.targets).tolist() == [3, 4, 2]
    assert test.targets.tolist() == [0, 1, 2]
    for index in range(len(train)):
        image, label = train[index]
        assert image.mode == "RGB"
        assert Path(train.paths[index]).parent.name == ["apple_tree", "cat", "zebra"][label]
    assert test_dir in test.identity


def test_image_folder_mismatched_classes(tmp_path):
    make_image_folder(tmp_path)
    _save(tmp_path / "test" / "dog" / "x.png")
    with pytest.raises(DataError, match=r"only in test: \['dog'\]"):
        load_sources("image-folder", root=tmp_path)


def test_image_folder_bad_layouts(tmp_path):
    with pytest.raises(DataError, match="no train/ folder"):
        load_sources("image-folder", root=tmp_path)
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no test/ or val/"):
        load_sources("image-folder", root=tmp_path)
    (tmp_path / "test" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        load_sources("image-folder", root=tmp_path)
    with pytest.raises(DataError, match="no root given"):
        load_sources("image-folder")


def test_image_folder_class_without_test_images_is_an_error(tmp_path):
    make_image_folder(tmp_path)
    (tmp_path / "test" / "cat" / "t.png").unlink()
    with pytest.raises(DataError) as info:
        load_sources("image-folder", root=tmp_path)
    message = str(info.value)
    assert "class 'cat' has no test images" in message and str(tmp_path / "test" / "cat") in message
    assert "Fix" in message and not isinstance(info.value, DataRootError)


def test_image_folder_rejects_folder_names_without_letters(tmp_path):
    make_image_folder(tmp_path, classes=("zebra", "_", "cat"))
    with pytest.raises(DataError, match=r"\['_'\].*empty class name.*rename"):
        load_sources("image-folder", root=tmp_path)


# Links to folders inside a class folder, or a class folder linked back into its split folder:
# (where the link is, where it points, what the refusal says it is)
_FOLDER_LINKS = {
    "self-loop": ("train/cat/self", ".", "a loop"),
    "parent loop": ("train/cat/up", "..", "a loop"),
    "sibling loop": ("train/cat/zebras", "../zebra", "another class's folder"),
    "outside the root": ("train/cat/extra", "{outside}", "outside the class folder"),
    "inside the class": ("train/cat/again", "sub", "read twice"),
    "class-folder loop": ("train/loop", "../train", "a loop"),
    "class folder to a sibling": ("train/cat2", "cat", "two labels"),
}


@pytest.mark.parametrize("case", list(_FOLDER_LINKS))
def test_links_to_folders_that_would_mislabel_images_are_refused_naming_the_link(tmp_path, case):
    """A link that would loop, relabel another class's images or pull a foreign tree under a class
    is refused with the link's path, never followed (os.walk(followlinks=True) read 1,312 images of
    every class as "cat" for ``cat/up -> ..``)."""
    root = tmp_path / "data"
    make_image_folder(root)
    _save(root / "train" / "cat" / "sub" / "s.png")
    outside = tmp_path / "elsewhere"
    _save(outside / "x.png")
    where, target, kind = _FOLDER_LINKS[case]
    (root / where).symlink_to(target.format(outside=outside), target_is_directory=True)
    with pytest.raises(DataError) as info:
        load_sources("image-folder", root=root)
    message = str(info.value)
    assert str(root / where) in message and kind in message and "Fix" in message


def test_a_class_folder_linked_from_elsewhere_is_read(tmp_path):
    """The usual way to build a subset (ImageNet-100 from ImageNet): class folders that are links
    to folders outside the dataset root."""
    make_image_folder(tmp_path / "data")
    _save(tmp_path / "store" / "dog" / "a.png")
    _save(tmp_path / "store" / "dog" / "b.png")
    (tmp_path / "data" / "train" / "dog").symlink_to(tmp_path / "store" / "dog", target_is_directory=True)
    (tmp_path / "data" / "test" / "dog").symlink_to(tmp_path / "store" / "dog", target_is_directory=True)
    train, _ = load_sources("image-folder", root=tmp_path / "data")
    assert train.class_names == ["apple tree", "cat", "dog", "zebra"]
    assert torch.bincount(train.targets).tolist() == [3, 4, 2, 2]


def test_a_file_link_to_itself_is_skipped_with_its_name(tmp_path, caplog):
    make_image_folder(tmp_path)
    (tmp_path / "train" / "cat" / "me.png").symlink_to("me.png")  # ELOOP when opened
    with caplog.at_level("WARNING", logger="alta"):
        train, _ = load_sources("image-folder", root=tmp_path)
    assert torch.bincount(train.targets).tolist() == [3, 4, 2]
    assert str(tmp_path / "train" / "cat" / "me.png") in caplog.text


def test_an_image_folder_root_one_level_off_says_where_train_is(tmp_path):
    make_image_folder(tmp_path / "pets")
    with pytest.raises(DataRootError, match=r"holds pets/train/: root is one level deeper"):
        load_sources("image-folder", root=tmp_path)
    with pytest.raises(DataRootError, match=r"is a split folder itself: root is the folder above it"):
        load_sources("image-folder", root=tmp_path / "pets" / "train")


def test_images_in_sub_folders_of_a_class_are_read_as_it_and_said(tmp_path, caplog):
    """As torchvision's ImageFolder: a sub-folder's images belong to the class; the log says how
    many (20 images of train/cat/more/ changed the data without a word)."""
    make_image_folder(tmp_path)
    for k in range(2):
        _save(tmp_path / "train" / "cat" / "more" / f"{k}.png")
    _save(tmp_path / "train" / "cat" / "more" / "x.gif")  # not an ImageFolder extension: skipped, reported
    with caplog.at_level("INFO", logger="alta"):
        train, _ = load_sources("image-folder", root=tmp_path)
    assert torch.bincount(train.targets).tolist() == [3, 6, 2]
    assert f"2 of the 11 images of {tmp_path / 'train'} are in sub-folders of their class folders" in caplog.text
    assert "x.gif (no image extension)" in caplog.text


def test_cifar_folder_class_without_test_images_is_an_error(tmp_path):
    for split in ("train", "test"):
        for c in CIFAR10_CLASSES:
            if not (split == "test" and c == "frog"):
                _save(tmp_path / split / c / "0.png")
            else:
                (tmp_path / split / c).mkdir(parents=True)
    with pytest.raises(DataError, match="class 'frog' has no test images"):
        load_sources("seq-cifar10", root=tmp_path)


def _write_tiny(root: Path, *, val_wnids=("n01", "n02")) -> None:
    (root / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("n01\nn02\n")
    (root / "words.txt").write_text("n01\tcat, kitty\nn02\tdog\n")
    for wnid in ("n01", "n02"):
        _save(root / "train" / wnid / "images" / f"{wnid}_0.JPEG")
    lines = []
    for k, wnid in enumerate(val_wnids):
        _save(root / "val" / "images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t5\t5")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tinyimagenet_class_without_val_images_is_an_error(tmp_path):
    _write_tiny(tmp_path)
    train, test = load_sources("seq-tinyimagenet", root=tmp_path)
    assert train.class_names == ["cat", "dog"] and test.targets.tolist() == [0, 1]
    _write_tiny(tmp_path / "b", val_wnids=("n01",))
    with pytest.raises(DataError, match=r"no validation \(test\) images.*n02 \('dog'\)"):
        load_sources("seq-tinyimagenet", root=tmp_path / "b")


@pytest.mark.parametrize("damaged", ["wnids.txt", "words.txt", "val/val_annotations.txt"])
def test_tinyimagenet_damaged_index_files_are_named(tmp_path, damaged):
    _write_tiny(tmp_path)
    (tmp_path / damaged).write_bytes(b"\xff\xfe\x00\x80 binary")  # not UTF-8: a bare UnicodeDecodeError before
    with pytest.raises(DataError, match=f"seq-tinyimagenet: cannot read .*{Path(damaged).name}.*UTF-8"):
        load_sources("seq-tinyimagenet", root=tmp_path)


def test_tinyimagenet_validation_images_listed_but_missing_are_named(tmp_path):
    _write_tiny(tmp_path)
    for image in (tmp_path / "val" / "images").iterdir():
        image.unlink()  # a half-extracted val/: reported at load, not at the first evaluation
    with pytest.raises(DataRootError, match=r"val_0.JPEG is listed in .*val_annotations.txt but is not there"):
        load_sources("seq-tinyimagenet", root=tmp_path)


# ---- error kinds: only root/layout problems are DataRootError -----------------------------------


def test_layout_errors_are_data_root_errors(tmp_path):
    for call in (
        lambda: load_sources("seq-cifar10", root=tmp_path / "nowhere"),
        lambda: load_sources("image-folder"),
        lambda: load_sources("seq-tinyimagenet", root=tmp_path),
    ):
        with pytest.raises(DataRootError):
            call()
    make_image_folder(tmp_path / "f")
    _save(tmp_path / "f" / "test" / "dog" / "x.png")
    with pytest.raises(DataRootError, match="only in test"):
        load_sources("image-folder", root=tmp_path / "f")
    for split in ("train", "test"):
        for c in (*CIFAR10_CLASSES[:-1], "lorry"):
            _save(tmp_path / "c" / split / c / "0.png")
    with pytest.raises(DataRootError, match="unexpected"):
        load_sources("seq-cifar10", root=tmp_path / "c")


@pytest.mark.parametrize("content", ["truncated", "garbage", "empty"])
def test_corrupt_image_error_names_the_file_and_is_no_root_error(tmp_path, content):
    make_image_folder(tmp_path)
    path = tmp_path / "train" / "cat" / "a.png"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a png", "empty": b""}[content])
    train, _ = load_sources("image-folder", root=tmp_path)
    index = train.paths.index(str(path))
    with pytest.raises(DataError) as info:
        train[index]
    message = str(info.value)
    assert f"cannot read image file {str(path)!r}" in message and "replace or delete" in message
    assert not isinstance(info.value, DataRootError) and "download" not in message


@pytest.mark.parametrize("names", [{"a", "b"}, {0: "a", 1: "b"}, "ab"])
def test_sources_refuse_unordered_class_names(names):
    with pytest.raises(DataError, match="list"):
        ArraySource(np.zeros((2, 3, 3), np.uint8), [0, 1], names, identity="x")
    with pytest.raises(DataError, match="list"):
        ImageFileSource(["a.png", "b.png"], [0, 1], names, identity="x")


# ---- high bit depths ----------------------------------------------------------------------------


def _write_pgm16(path: Path, array: np.ndarray, maxval: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"P5\n{array.shape[1]} {array.shape[0]}\n{maxval}\n".encode()
    path.write_bytes(header + array.astype(">u2").tobytes())


GRADIENT16 = np.linspace(0, 65535, 256).round().astype(np.uint16).reshape(16, 16)


@pytest.mark.parametrize(
    "name, array, expected",
    [
        # 16-bit: v / 257, so 0..65535 maps onto 0..255 exactly.
        ("g16.png", GRADIENT16, np.round(GRADIENT16 / 257.0)),
        ("g16.tif", GRADIENT16, np.round(GRADIENT16 / 257.0)),
        ("g16.pgm", GRADIENT16, np.round(GRADIENT16 / 257.0)),
        # float in [0, 1]: v * 255.
        ("f01.tif", np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16),
         np.round(np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16).astype(np.float64) * 255)),
        # float outside [0, 1]: min-max scaled.
        ("fwide.tif", np.linspace(-10, 1010, 256, dtype=np.float32).reshape(16, 16),
         np.round(np.linspace(0, 255, 256).reshape(16, 16))),
        # 32-bit int TIFF with values <= 65535: read as 16-bit.
        ("i32.tif", GRADIENT16.astype(np.int32), np.round(GRADIENT16 / 257.0)),
    ],
)
def test_high_bit_depth_images_are_rescaled_not_clipped(tmp_path, name, array, expected):
    path = tmp_path / name
    if name.endswith(".pgm"):
        _write_pgm16(path, array, 65535)
    else:
        Image.fromarray(array).save(path)
    assert Image.open(path).mode in ("I;16", "I", "F")
    source = ImageFileSource([path], [0], ["x"], identity="t")
    image, _ = source[0]
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.dtype == np.uint8
    assert (pixels == pixels[..., :1]).all()  # gray repeated over the channels
    assert np.abs(pixels[..., 0].astype(int) - expected).max() <= 1
    assert len(np.unique(pixels)) >= 250  # a gradient stays a gradient
    converted = np.asarray(_convert_rgb(Image.open(path)))
    assert np.array_equal(converted, pixels)  # ConvertRGB applies the same rule to PIL images


def _convert_rgb(image):
    from alta.data.transforms import ConvertRGB

    with image:
        image.load()
        return ConvertRGB()(image)


def test_dark_16bit_pgm_stays_dark(tmp_path):
    # A 16-bit file whose values are all small is 16-bit data, not 8-bit: it stays near black.
    path = tmp_path / "dark.pgm"
    _write_pgm16(path, np.array([[0, 100, 200, 514]], dtype=np.uint16), 65535)
    image, _ = ImageFileSource([path], [0], ["x"], identity="t")[0]
    assert np.asarray(image)[0, :, 0].tolist() == [0, 0, 1, 2]


@pytest.mark.parametrize("kind", ["nan", "wide-int", "negative-int"])
def test_unmappable_high_bit_depth_images_are_refused(tmp_path, kind):
    path = tmp_path / f"{kind}.tif"
    if kind == "nan":
        array = np.zeros((4, 4), np.float32)
        array[1, 1] = np.nan
    elif kind == "wide-int":
        array = np.arange(16, dtype=np.int32).reshape(4, 4) * 1_000_000
    else:
        array = np.arange(16, dtype=np.int32).reshape(4, 4) - 3
    Image.fromarray(array).save(path)
    with pytest.raises(DataError, match=f"{path}.*Fix"):
        ImageFileSource([path], [0], ["x"], identity="t")[0]


def test_eight_bit_modes_are_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(gray).convert("I").save(tmp_path / "g.tif")  # mode I holding 8-bit values
    source = ImageFileSource([tmp_path / "g.png", tmp_path / "g.tif"], [0, 0], ["x"], identity="t")
    for index in (0, 1):
        assert np.array_equal(np.asarray(source[index][0])[..., 0], gray)


# ---- the reference code's class names ----------------------------------------------------------


def test_reference_class_names_keep_cifar_spelling_and_ship_the_curated_tiny_list():
    cifar100 = reference_class_names("seq-cifar100")
    assert cifar100 == list(CIFAR100_CLASSES) and "aquarium_fish" in cifar100  # underscores kept
    assert reference_class_names("seq-cifar10") == list(CIFAR10_CLASSES)
    tiny = reference_class_names("seq-tinyimagenet")
    assert len(tiny) == len(set(tiny)) == 200
    assert tiny[:3] == ["Egyptian Mau", "fishing casting reel", "volleyball"]
    assert tiny[-1] == "African bush elephant" and "potter's wheel" in tiny
    assert not any(name.startswith("#") or name != name.strip() for name in tiny)  # header skipped
    assert reference_class_names("digits") is None  # not a benchmark of the reference code
    with pytest.raises(ConfigError, match="seq-tinyimagenet"):
        reference_class_names("seq-tinyimagnet")


def test_reference_tiny_names_line_up_with_wnids(tiny_imagenet_root):
    """Line k names wnid k: most names are a words.txt synonym of the wnid at the same position."""
    wnids = (tiny_imagenet_root / "wnids.txt").read_text().split()
    synonyms = {}
    for line in (tiny_imagenet_root / "words.txt").read_text(encoding="utf-8").splitlines():
        wnid, _, text = line.partition("\t")
        synonyms[wnid] = [s.strip().lower() for s in text.split(",")]
    tiny = reference_class_names("seq-tinyimagenet")
    first = [synonyms[w][0] for w in wnids]
    assert sum(name.lower() != f for name, f in zip(tiny, first)) == 41  # the names that tokenise differently
    listed = sum(name.lower() in synonyms[w] for name, w in zip(tiny, wnids))
    shifted = sum(name.lower() in synonyms[w] for name, w in zip(tiny, wnids[1:] + wnids[:1]))
    assert listed >= 170 and shifted <= 5


def test_stream_takes_the_reference_names(tiny_imagenet_root):
    stream = ScenarioStream.from_name("seq-tinyimagenet", root=tiny_imagenet_root, transform="plain",
                                      resolution=32, class_names=reference_class_names("seq-tinyimagenet"))
    assert stream.class_names[0] == "Egyptian Mau" and stream[0].class_names[0] == "Egyptian Mau"
    default = ScenarioStream.from_name("seq-tinyimagenet", root=tiny_imagenet_root, transform="plain", resolution=32)
    assert default.class_names[0] == "Egyptian cat"
    with pytest.raises(DataError, match="3 names but the dataset has 200"):
        ScenarioStream.from_name("seq-tinyimagenet", root=tiny_imagenet_root, class_names=["a", "b", "c"])


def test_stream_class_names_override_offline():
    names = [f"digit_{k}" for k in range(10)]
    stream = ScenarioStream.from_name("digits", transform="plain", resolution=8, class_names=names)
    assert stream.class_names == names and stream[1].class_names == ["digit_2", "digit_3"]
    assert ScenarioStream.from_name("digits", transform="plain", resolution=8).class_names[0] == "zero"
    with pytest.raises(DataError, match="9 names but the dataset has 10"):
        ScenarioStream.from_name("digits", transform="plain", resolution=8, class_names=names[:9])
