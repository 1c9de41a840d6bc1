"""The CLIP continual-learning datasets in their official layouts, as small synthetic fixtures.

Every fixture writes a few tiny images per class with the real file names and index files
(ImageNet-R's wnid folders, CUB-200-2011's four index files, Caltech-101's
101_ObjectCategories, ILSVRC-2012's train/val trees and LOC files), then checks counts,
labels, names and splits.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import pytest
import torch
from PIL import Image

from alta.data import ScenarioStream, load_sources
from alta.data.datasets import IMAGE_EXTENSIONS
from alta.data.splits import read_name_map
from alta.errors import ConfigError, DataError


def _image(path: Path, color=(10, 20, 30), size=(4, 3)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_image_extensions_are_torchvisions():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert IMAGE_EXTENSIONS == IMG_EXTENSIONS


# ---- ImageNet-R -----------------------------------------------------------------------------------

IMAGENET_R = read_name_map(resources.files("alta.data") / "imagenet_r_classes.tsv")
RENDITIONS = ("art_0.jpg", "cartoon_1.jpg", "deviantart_2.jpg", "painting_3.jpg", "sketch_4.jpg")


def test_packaged_imagenet_r_names():
    assert len(IMAGENET_R) == 200 and len(set(IMAGENET_R.values())) == 200
    wnids = list(IMAGENET_R)
    assert wnids == sorted(wnids) and all(len(w) == 9 and w[0] == "n" for w in wnids)
    assert IMAGENET_R["n01443537"] == "goldfish" and IMAGENET_R["n02085620"] == "chihuahua"
    assert IMAGENET_R["n12267677"] == "acorn"


@pytest.fixture(scope="module")
def imagenet_r_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imr")
    for k, wnid in enumerate(IMAGENET_R):
        for j, name in enumerate(RENDITIONS):
            _image(root / "imagenet-r" / wnid / name, color=(k, j, 0))
    return root


def test_imagenet_r_seeded_80_20_split(imagenet_r_root):
    train, test = load_sources("imagenet-r", root=imagenet_r_root)
    assert train.class_names == list(IMAGENET_R.values()) and train.class_ids == list(IMAGENET_R)
    assert len(train) == 800 and len(test) == 200  # 5 images per class: 4 train, 1 test
    assert torch.bincount(train.targets).tolist() == [4] * 200
    assert torch.bincount(test.targets).tolist() == [1] * 200
    assert not set(train.paths) & set(test.paths)
    for source in (train, test):
        for index in (0, len(source) // 2, len(source) - 1):
            assert Path(source.paths[index]).parent.name == source.class_ids[int(source.targets[index])]
    again, _ = load_sources("imagenet-r", root=imagenet_r_root / "imagenet-r")  # root may be the folder
    assert again.paths == train.paths
    other, other_test = load_sources("imagenet-r", root=imagenet_r_root, options={"split_seed": 1})
    assert other.paths != train.paths and len(other_test) == 200
    half, half_test = load_sources("imagenet-r", root=imagenet_r_root, options={"test_fraction": 0.4})
    assert len(half_test) == 400 and len(half) == 600


def test_imagenet_r_stream_is_10x20_with_readable_names(imagenet_r_root):
    stream = ScenarioStream.from_name("imagenet-r", root=imagenet_r_root, resolution=32)
    assert stream.classes_per_experience == [20] * 10
    assert stream[0].class_names[:2] == ["goldfish", "great white shark"]
    assert not stream.names_look_like_identifiers and stream.class_names_source == "dataset"


def test_imagenet_r_options_and_layout_errors(tmp_path, imagenet_r_root):
    with pytest.raises(ConfigError, match="takes no option 'split_sed'.*did you mean 'split_seed'"):
        load_sources("imagenet-r", root=imagenet_r_root, options={"split_sed": 1})
    with pytest.raises(ConfigError, match="test_fraction must be a number in"):
        load_sources("imagenet-r", root=imagenet_r_root, options={"test_fraction": 1.0})
    _image(tmp_path / "imagenet-r" / "n99999999" / "art_0.jpg")
    with pytest.raises(DataError, match="not ImageNet-R WordNet ids.*n99999999"):
        load_sources("imagenet-r", root=tmp_path)


def test_imagenet_r_presplit_layout(tmp_path, caplog):
    wnids = list(IMAGENET_R)[:2]
    for side, count in (("train", 3), ("test", 2)):
        for wnid in wnids:
            for j in range(count):
                _image(tmp_path / "imagenet-r" / side / wnid / f"art_{j}.jpg")
    with caplog.at_level(logging.WARNING):
        train, test = load_sources("imagenet-r", root=tmp_path)
    assert "holds 2 of the 200 ImageNet-R classes" in caplog.text
    assert (len(train), len(test)) == (6, 4) and train.class_names == ["goldfish", "great white shark"]


# ---- CUB-200-2011 ---------------------------------------------------------------------------------

CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")


def _write_cub(root: Path, per_class: int = 4) -> dict[str, tuple[int, bool]]:
    base = root / "CUB_200_2011"
    base.mkdir(parents=True)
    (base / "classes.txt").write_text("".join(f"{k + 1} {c}\n" for k, c in enumerate(CUB_CLASSES)))
    images, labels, split, truth = [], [], [], {}
    image_id = 0
    for k, folder in enumerate(CUB_CLASSES):
        stem = folder.split(".", 1)[1].replace("footed", "Footed")
        for j in range(per_class):
            image_id += 1
            rel = f"{folder}/{stem}_{j:04d}_{100 + j}.jpg"
            _image(base / "images" / rel, color=(k * 50, j, 0))
            is_train = j % 2 == 0
            images.append(f"{image_id} {rel}\n")
            labels.append(f"{image_id} {k + 1}\n")
            split.append(f"{image_id} {int(is_train)}\n")
            truth[rel] = (k, is_train)
    (base / "images.txt").write_text("".join(images))
    (base / "image_class_labels.txt").write_text("".join(labels))
    (base / "train_test_split.txt").write_text("".join(split))
    return truth


def test_cub200_official_split_labels_and_names(tmp_path):
    truth = _write_cub(tmp_path)
    train, test = load_sources("cub200", root=tmp_path)
    assert train.class_names == ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    assert train.class_ids == list(CUB_CLASSES)
    assert (len(train), len(test)) == (6, 6)
    for source, is_train in ((train, True), (test, False)):
        for path, label in zip(source.paths, source.targets.tolist()):
            rel = Path(path).relative_to(tmp_path / "CUB_200_2011" / "images").as_posix()
            assert truth[rel] == (label, is_train)
    image, label = train[0]
    assert image.mode == "RGB" and label == 0
    stream = ScenarioStream.from_name("cub200", root=tmp_path / "CUB_200_2011", num_experiences=3, resolution=32)
    assert [e.class_names for e in stream] == [[n] for n in train.class_names]


def test_cub200_inconsistent_index_files(tmp_path):
    _write_cub(tmp_path)
    split = tmp_path / "CUB_200_2011" / "train_test_split.txt"
    split.write_text("\n".join(split.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataError, match="different image ids"):
        load_sources("cub200", root=tmp_path)
    (tmp_path / "CUB_200_2011" / "classes.txt").unlink()
    with pytest.raises(DataError, match="missing classes.txt"):
        load_sources("cub200", root=tmp_path)


# ---- Caltech-101 ----------------------------------------------------------------------------------

CALTECH_FOLDERS = ("BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "Motorbikes", "accordion",
                   "airplanes", "car_side")


def _write_caltech(root: Path, folders=CALTECH_FOLDERS, per_class: int = 5) -> Path:
    base = root / "101_ObjectCategories"
    for k, folder in enumerate(folders):
        for j in range(per_class):
            _image(base / folder / f"image_{j + 1:04d}.jpg", color=(k * 20, j, 0))
    return base


def test_caltech101_excludes_background_and_splits_per_class(tmp_path):
    _write_caltech(tmp_path)
    train, test = load_sources("caltech101", root=tmp_path)
    assert train.class_ids == ["Faces", "Faces_easy", "Leopards", "Motorbikes", "accordion", "airplanes", "car_side"]
    assert train.class_names == ["face", "face easy", "leopard", "motorbike", "accordion", "airplane", "car side"]
    assert torch.bincount(train.targets).tolist() == [4] * 7 and torch.bincount(test.targets).tolist() == [1] * 7
    assert not set(train.paths) & set(test.paths)
    again, _ = load_sources("caltech101", root=tmp_path / "101_ObjectCategories")
    assert again.paths == train.paths  # seeded: same split
    thirty, rest = load_sources("caltech101", root=tmp_path, options={"train_per_class": 2})
    assert torch.bincount(thirty.targets).tolist() == [2] * 7 and len(rest) == 21
    with_bg, _ = load_sources("caltech101", root=tmp_path, options={"include_background": True})
    assert with_bg.class_ids[0] == "BACKGROUND_Google" and len(with_bg.class_names) == 8


def test_caltech101_user_split_files(tmp_path):
    _write_caltech(tmp_path, folders=("accordion", "airplanes"), per_class=3)
    (tmp_path / "train.txt").write_text("accordion/image_0001.jpg\n101_ObjectCategories/airplanes/image_0002.jpg\n")
    (tmp_path / "test.txt").write_text("accordion/image_0003.jpg\nairplanes/image_0001.jpg\n")
    train, test = load_sources("caltech101", root=tmp_path,
                               options={"train_list": tmp_path / "train.txt", "test_list": tmp_path / "test.txt"})
    assert [Path(p).name for p in train.paths] == ["image_0001.jpg", "image_0002.jpg"]
    assert train.targets.tolist() == [0, 1] and test.targets.tolist() == [0, 1]
    (tmp_path / "test.txt").write_text("accordion/image_0001.jpg\n")
    with pytest.raises(DataError, match="both train_list and test_list"):
        load_sources("caltech101", root=tmp_path,
                     options={"train_list": tmp_path / "train.txt", "test_list": tmp_path / "test.txt"})
    with pytest.raises(ConfigError, match="give both train_list and test_list"):
        load_sources("caltech101", root=tmp_path, options={"train_list": tmp_path / "train.txt"})


def test_caltech101_101_classes_train_as_11_plus_10x9(tmp_path):
    folders = ["BACKGROUND_Google", *[f"category_{k:03d}" for k in range(101)]]
    _write_caltech(tmp_path, folders=folders, per_class=2)
    stream = ScenarioStream.from_name("caltech101", root=tmp_path, initial_classes=11, classes_per_experience=10,
                                      resolution=32)
    assert stream.num_classes == 101 and stream.classes_per_experience == [11] + [10] * 9
    assert stream[0].class_names[0] == "category 000"
    assert ScenarioStream.from_name("caltech101", root=tmp_path, split="B11-Inc10",
                                    resolution=32).classes_per_experience == [11] + [10] * 9


# ---- ImageNet subsets -----------------------------------------------------------------------------

WNIDS = ("n01440764", "n01443537", "n01484850")
SYNSETS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
           "n01484850": "great white shark, white shark"}


def _write_ilsvrc(root: Path, *, flat_val: bool = False) -> None:
    for k, wnid in enumerate(WNIDS):
        for j in range(3):
            _image(root / "train" / wnid / f"{wnid}_{1000 + j}.JPEG", color=(k, j, 1))
    lines = ["ImageId,PredictionString"]
    for j in range(6):
        wnid = WNIDS[j % 3]
        name = f"ILSVRC2012_val_{j + 1:08d}"
        _image(root / "val" / (f"{name}.JPEG" if flat_val else f"{wnid}/{name}.JPEG"))
        lines.append(f"{name},{wnid} 1 2 3 4")
    if flat_val:
        (root.parent / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    (root.parent / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in SYNSETS.items()))


def test_imagenet_subset_class_list_and_synset_names(tmp_path):
    root = tmp_path / "ILSVRC2012"
    _write_ilsvrc(root)
    (tmp_path / "imagenet2.txt").write_text("n01484850\nn01440764\n")
    train, test = load_sources("imagenet-subset", root=root, options={"class_list": tmp_path / "imagenet2.txt"})
    assert train.class_ids == ["n01440764", "n01484850"]  # sorted wnid order, as ImageFolder on the subset
    assert train.class_names == ["tench", "great white shark"]
    assert (len(train), len(test)) == (6, 4)
    assert torch.bincount(test.targets).tolist() == [2, 2]
    everything, _ = load_sources("imagenet-subset", root=root)
    assert everything.class_ids == list(WNIDS)


def test_imagenet_subset_dytox_split_file_and_flat_val(tmp_path):
    base = tmp_path / "ILSVRC" / "Data" / "CLS-LOC"
    _write_ilsvrc(base, flat_val=True)
    (tmp_path / "LOC_val_solution.csv").write_text((base.parent / "LOC_val_solution.csv").read_text())
    (tmp_path / "train_100.txt").write_text(  # DyTox / PODNet split-file lines: path label
        "train/n01443537/n01443537_1000.JPEG 0\ntrain/n01443537/n01443537_1001.JPEG 0\n"
        "train/n01440764/n01440764_1000.JPEG 1\n")
    train, test = load_sources("imagenet-subset", root=tmp_path, options={"class_list": tmp_path / "train_100.txt"})
    assert train.class_ids == ["n01443537", "n01440764"]  # the split file's labels
    assert train.class_names == ["goldfish", "tench"]
    assert torch.bincount(test.targets).tolist() == [2, 2] and len(train) == 6
    assert all(Path(p).parent == base / "val" for p in test.paths)
    (tmp_path / "bad.txt").write_text("n09999999\n")
    with pytest.raises(DataError, match="no folder for 1 class.*n09999999"):
        load_sources("imagenet-subset", root=tmp_path, options={"class_list": tmp_path / "bad.txt"})


# ---- image-folder: torchvision's ImageFolder rules, class names ----------------------------------


def _write_wnid_tree(root: Path) -> None:
    for split, count in (("train", 2), ("val", 1)):
        for k, wnid in enumerate(WNIDS[:2]):
            for j in range(count):
                _image(root / split / wnid / "images" / f"{wnid}_{j}.JPEG", color=(k, j, 2))


def test_image_folder_recurses_with_torchvision_extension_rules(tmp_path):
    for split in ("train", "test"):
        _image(tmp_path / split / "cat" / "a.PNG")
        _image(tmp_path / split / "cat" / "nested" / "deeper" / "b.jpg")
        _image(tmp_path / split / "dog" / "c.webp")
        (tmp_path / split / "dog" / "notes.txt").write_text("not an image")
        Image.new("RGB", (4, 3)).save(tmp_path / split / "dog" / "d.gif")  # not an ImageFolder extension
    train, _ = load_sources("image-folder", root=tmp_path)
    from torchvision.datasets import ImageFolder

    reference = ImageFolder(str(tmp_path / "train"))
    assert train.paths == [p for p, _ in reference.samples]
    assert train.targets.tolist() == reference.targets == [0, 0, 1]


def test_image_folder_with_words_map_gets_readable_names(tmp_path, caplog):
    _write_wnid_tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        plain = ScenarioStream.from_name("image-folder", root=tmp_path, num_experiences=1, resolution=32)
    assert plain.class_names == ["n01440764", "n01443537"] and plain.names_look_like_identifiers
    assert "look like identifiers" in caplog.text and "a photo of a n01440764" in caplog.text
    words = tmp_path / "words.txt"
    words.write_text("n00001740\tentity\n" + "".join(f"{w}\t{n}\n" for w, n in SYNSETS.items()))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        named = ScenarioStream.from_name("image-folder", root=tmp_path, num_experiences=2, resolution=32,
                                         class_names=words)
    assert named.class_names == ["tench", "goldfish"] and named.class_names_source == "map"
    assert not named.names_look_like_identifiers and "identifiers" not in caplog.text
    assert named[1].class_names == ["goldfish"]
    listed = ScenarioStream.from_name("image-folder", root=tmp_path, num_experiences=2, resolution=32,
                                      class_names=["fish one", "fish two"])
    assert listed.class_names == ["fish one", "fish two"] and listed.class_names_source == "list"
    with pytest.raises(DataError, match="image-folder: class_names has 3 names but the dataset has 2"):
        ScenarioStream.from_name("image-folder", root=tmp_path, num_experiences=2, class_names=["a", "b", "c"])


def test_learner_accepts_a_stream_with_readable_names(tmp_path, tiny_clip):
    from alta import CrossModalLearner

    _write_wnid_tree(tmp_path)
    stream = ScenarioStream.from_name("image-folder", root=tmp_path, num_experiences=2, resolution=32,
                                      class_names={"n01440764": "tench", "n01443537": "goldfish"})
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names)
    learner.begin_experience(stream[0])  # names agree: accepted
    other = CrossModalLearner(tiny_clip, class_names=["tench", "carp"])
    with pytest.raises(ConfigError, match="pass class_names="):
        other.begin_experience(stream[1])


def test_dataset_option_types_are_checked(tmp_path):
    _write_caltech(tmp_path, folders=("accordion", "airplanes"), per_class=2)
    with pytest.raises(ConfigError, match="include_background must be True or False"):
        load_sources("caltech101", root=tmp_path, options={"include_background": "yes"})
    with pytest.raises(ConfigError, match="train_list must be the path of a file, got int"):
        load_sources("caltech101", root=tmp_path, options={"train_list": 1, "test_list": 2})
    with pytest.raises(ConfigError, match="split_seed must be an int >= 0"):
        load_sources("caltech101", root=tmp_path, options={"split_seed": -1})
    with pytest.raises(ConfigError, match="class_list must be the path of a file"):
        load_sources("imagenet-subset", root=tmp_path, options={"class_list": ["n01440764"]})


def test_caltech101_labels_match_torchvision(tmp_path):
    from torchvision.datasets import Caltech101

    _write_caltech(tmp_path / "caltech101", per_class=2)  # torchvision's root/caltech101/101_ObjectCategories
    reference = Caltech101(str(tmp_path), target_type="category", download=False)
    train, test = load_sources("caltech101", root=tmp_path)
    assert train.class_ids == reference.categories  # sorted, BACKGROUND_Google left out
    labels = sorted(zip(train.paths + test.paths, train.targets.tolist() + test.targets.tolist()))
    expected = sorted(
        (str(tmp_path / "caltech101" / "101_ObjectCategories" / reference.categories[y] / f"image_{i:04d}.jpg"), y)
        for y, i in zip(reference.y, reference.index)
    )
    assert labels == expected
