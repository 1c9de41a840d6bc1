"""The nine datasets of the CLIP class-incremental suite (PROOF / C3Box line): their pre-split
archives, the official layouts the suite's subsets can be read from, the shipped names, templates
and split file, and the class order PyCIL draws with seed 1993.

Fixtures write tiny images under the real folder names; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from importlib import resources

import numpy as np
import pytest
import torch
from dataset_layouts import build_aircraft, build_food101, build_stanford_cars, build_sun397
from helpers import make_suite_archive, write_image

from alta.classnames import check_distinguishable, readable
from alta.data import ScenarioStream, load_sources
from alta.data.datasets import CIFAR100_CLASSES, DATASETS, DataRootError
from alta.data.datasets.cil_suite import SUITE, is_suite_dataset, suite_dataset
from alta.data.datasets.imagenet_r import read_split_file, resolve_split_file
from alta.data.splits import CLASS_ORDERS, read_name_map
from alta.errors import ConfigError, DataError

COUNTS = {"cil-cifar100": 100, "cil-cub": 200, "cil-imagenet-r": 200, "cil-objectnet": 200, "cil-cars": 100,
          "cil-ucf": 100, "cil-aircraft": 100, "cil-food": 100, "cil-sun": 300}


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """Every suite dataset's pre-split archive, one training and one test image per class."""
    root = tmp_path_factory.mktemp("suite")
    for spec in SUITE.values():
        make_suite_archive(root, spec)
    return root


# ---- what alta ships ----------------------------------------------------------------------------


def test_the_suite_is_nine_datasets_with_prooфs_counts_splits_and_aliases():
    assert {name: spec.num_classes for name, spec in SUITE.items()} == COUNTS
    assert {spec.key: spec.splits for spec in SUITE.values()} == {
        "cifar100": ("B0-Inc10", "B50-Inc10"), "cub": ("B0-Inc20", "B100-Inc20"),
        "imagenet_r": ("B0-Inc20", "B100-Inc20"), "objectnet": ("B0-Inc20", "B100-Inc20"),
        "cars": ("B0-Inc10", "B50-Inc10"), "ucf": ("B0-Inc10", "B50-Inc10"), "aircraft": ("B0-Inc10", "B50-Inc10"),
        "food": ("B0-Inc10", "B50-Inc10"), "sun": ("B0-Inc30", "B150-Inc30")}
    assert DATASETS.resolve("cars") == "cil-cars" and suite_dataset("sun").name == "cil-sun"
    assert is_suite_dataset("cil-aircraft") and is_suite_dataset("sun") and not is_suite_dataset("nope")
    assert not is_suite_dataset("aircraft") and not is_suite_dataset("seq-cifar100")  # official datasets
    for spec in SUITE.values():
        assert DATASETS.get(spec.name).classes_per_experience == int(spec.splits[0].split("Inc")[1])


@pytest.mark.parametrize("name", list(SUITE))
def test_shipped_class_lists_are_in_imagefolder_order_and_distinguishable(name):
    spec = SUITE[name]
    classes = spec.classes
    assert len(classes) == spec.num_classes
    folders = [c.folder for c in classes]
    assert folders == sorted(folders) and len(set(folders)) == len(folders)  # label i = i-th folder, sorted
    names = [c.name for c in classes]
    check_distinguishable([readable(n) for n in names], error=DataError)  # CLIP can tell them apart
    assert all("{}" in t and t.count("{") == 1 for t in spec.templates)


def test_shipped_names_agree_with_the_datasets_own_lists():
    assert [c.name for c in SUITE["cil-cifar100"].classes] == [readable(c) for c in CIFAR100_CLASSES]
    cub = SUITE["cil-cub"].classes
    assert [c.name for c in cub] == [readable(re.sub(r"^\d+\.", "", c.folder)) for c in cub]
    assert cub[0].folder == "001.Black_footed_Albatross" and cub[-1].folder == "200.Common_Yellowthroat"
    wnids = list(read_name_map(resources.files("alta.data") / "imagenet_r_classes.tsv"))
    assert [c.folder for c in SUITE["cil-imagenet-r"].classes] == wnids
    assert SUITE["cil-imagenet-r"].classes[1].name == "great_white_shark"  # PROOF keeps the underscore
    cars = SUITE["cil-cars"].classes
    assert sorted(int(c.official) for c in cars) == list(range(1, 101))  # classes 1-100 of cars_meta.mat
    assert cars[0].name == "AM General Hummer SUV 2000"
    assert [c.name for c in SUITE["cil-food"].classes][-1] == "tuna tartare"  # waffles (the 101st) dropped
    assert SUITE["cil-ucf"].classes[-1].name == "Writing On Board"  # Yo Yo (the 101st) dropped
    sun = SUITE["cil-sun"].classes
    assert sun[0].name == "abbey" and sun[-1].name == "ski slope"
    assert sum(len(c.official.split(",")) for c in sun) == 325  # SUN397 categories the 300 names merge
    assert SUITE["cil-aircraft"].classes[0].name == "707-320" and "F-16A/B" in [c.name for c in SUITE["cil-aircraft"].classes]


def test_the_shipped_imagenet_r_split_file_is_rapfs():
    path, info = resolve_split_file("rapf", dataset="t")
    sources = json.loads((resources.files("alta.data") / "split_files" / "SOURCES.json").read_text())
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == sources[path.name]["sha256"]
    assert info["sha256"] == "ecf0b2e74696f38d0180ab60cf632a9cb417b5522df20d57bc587911e3b59f81"
    assert "github.com/linlany/RAPF" in info["source"]
    train, test, skipped = read_split_file(path, dataset="t")
    assert (len(train), len(test), skipped) == (24000, 6000, ["n02437616/test_img_R.py"])
    assert not set(train) & set(test)
    wnids = list(read_name_map(resources.files("alta.data") / "imagenet_r_classes.tsv"))
    assert sorted({p.split("/")[0] for p in train}) == wnids == sorted({p.split("/")[0] for p in test})


# ---- the pre-split archives -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SUITE))
def test_archives_load_with_the_suites_counts_and_names(archives, name):
    spec = SUITE[name]
    train, test = load_sources(name, root=archives)
    assert train.class_names == test.class_names == [c.name for c in spec.classes]
    assert len(train.class_names) == COUNTS[name]
    assert torch.bincount(train.targets, minlength=COUNTS[name]).tolist() == [1] * COUNTS[name]
    assert len(test) == COUNTS[name]
    if name == "cil-cifar100":  # image folders here (torchvision's arrays are hashed by labels and pixels)
        assert train.split_info["kind"] == "folders" and len(train.split_info["sha256"]) == 64
        return
    assert train.class_ids == [c.folder for c in spec.classes]
    info = train.split_info
    assert info["kind"] == "folders" and re.fullmatch(r"[0-9a-f]{64}", info["sha256"])
    assert (info["num_train"], info["num_test"]) == (COUNTS[name], COUNTS[name])
    again, _ = load_sources(spec.aliases[0] if spec.aliases else name, root=archives / spec.folders[0])
    assert again.paths == train.paths and again.split_info["sha256"] == info["sha256"]  # root may be the folder


def test_the_split_fingerprint_changes_with_the_split_not_with_the_location(tmp_path, archives):
    import shutil

    first, _ = load_sources("cars", root=archives)
    shutil.copytree(archives / "cars", tmp_path / "cars")
    moved, _ = load_sources("cars", root=tmp_path)
    assert moved.split_info["sha256"] == first.split_info["sha256"]
    write_image(tmp_path / "cars" / "train" / SUITE["cil-cars"].classes[7].folder / "one_more.jpg")
    changed, _ = load_sources("cars", root=tmp_path)
    assert changed.split_info["sha256"] != first.split_info["sha256"]


def test_c3box_val_folder_and_sun_subcategory_folders(tmp_path):
    spec = SUITE["cil-sun"]
    make_suite_archive(tmp_path, spec, train=2, test=1, test_dir="val")
    train, test = load_sources("sun", root=tmp_path)
    assert len(train.class_names) == 300 and torch.bincount(train.targets).tolist() == [2] * 300
    balcony = train.class_names.index("balcony")
    paths = [p for p, y in zip(train.paths, train.targets.tolist()) if y == balcony]
    assert {p.split("/")[-2] for p in paths} == {"exterior", "interior"}  # merged SUN397 categories


def test_archive_errors_say_what_is_wrong(tmp_path, caplog):
    spec = SUITE["cil-food"]
    with pytest.raises(DataRootError, match=r"(?s)cil-food: no train/ \+ test/.*food101/train/<class>/"):
        load_sources("food", root=tmp_path)
    base = make_suite_archive(tmp_path, spec)
    (base / "train" / "waffles").mkdir()  # the 101st class of Food-101
    write_image(base / "train" / "waffles" / "a.jpg")
    with pytest.raises(DataRootError, match="differ from those of"):
        load_sources("food", root=tmp_path)
    write_image(base / "test" / "waffles" / "a.jpg")
    with pytest.raises(DataRootError, match="holds 101 class folders, but the suite's Food-101 .100 classes. has 100"):
        load_sources("food", root=tmp_path)
    for side in ("train", "test"):
        (base / side / "waffles" / "a.jpg").unlink()
        (base / side / "waffles").rmdir()
        (base / side / "apple_pie").rename(base / side / "zzz_renamed")
    with caplog.at_level(logging.WARNING, logger="alta.data.datasets"):
        train, _ = load_sources("food", root=tmp_path)
    assert "named by position" in caplog.text and len(train.class_names) == 100
    make_suite_archive(tmp_path / "imr", SUITE["cil-imagenet-r"])
    with pytest.raises(DataError, match="apply to the official layout"):
        load_sources("cil-imagenet-r", root=tmp_path / "imr", options={"split_file": "rapf"})


# ---- official layouts ------------------------------------------------------------------------------

OBJECTNET_FOLDERS = [c.folder for c in SUITE["cil-objectnet"].classes] + [f"zz_extra_{k:03d}" for k in range(113)]


@pytest.fixture(scope="module")
def objectnet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("objectnet")
    base = root / "objectnet-1.0"
    mapping = {f: readable(f).capitalize() for f in OBJECTNET_FOLDERS}
    (base / "mappings").mkdir(parents=True)
    (base / "mappings" / "folder_to_objectnet_label.json").write_text(json.dumps(mapping))
    for k, folder in enumerate(OBJECTNET_FOLDERS):
        for j in range(5):
            write_image(base / "images" / folder / f"{k:03d}{j}.png", color=(k % 256, j, 0))
    return root


def test_objectnet_official_layout_has_its_313_classes(objectnet_root):
    train, test = load_sources("objectnet", root=objectnet_root)
    assert len(train.class_names) == 313 and train.class_names[0] == "Air freshener"
    assert torch.bincount(train.targets).tolist() == [4] * 313 and torch.bincount(test.targets).tolist() == [1] * 313
    assert train.split_info["kind"] == "seeded"


def test_the_suites_objectnet_from_the_official_layout(objectnet_root):
    train, test = load_sources("cil-objectnet", root=objectnet_root)
    assert train.class_names == [c.name for c in SUITE["cil-objectnet"].classes]  # the first 200 folders
    assert len(train) == 800 and len(test) == 200
    assert "the suite's 200 classes" in train.split_info["source"]
    other, _ = load_sources("cil-objectnet", root=objectnet_root, options={"split_seed": 3})
    assert other.paths != train.paths


UCF_ACTIONS = [re.sub("_", "", c.folder) for c in SUITE["cil-ucf"].classes] + ["YoYo"]


def _ucf_frames(base, actions):
    for k, action in enumerate(actions):
        folder = "_".join(re.findall("[A-Z][^A-Z]*", action))
        for g in (1, 2):
            write_image(base / "UCF-101-midframes" / folder / f"v_{action}_g0{g}_c01.jpg", color=(k, g, 0))


def test_ucf101_official_lists_and_coops_split_file(tmp_path):
    base = tmp_path / "ucf101"
    _ucf_frames(base, UCF_ACTIONS)
    lists = base / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{k + 1} {a}\n" for k, a in enumerate(UCF_ACTIONS)))
    (lists / "trainlist01.txt").write_text("".join(f"{a}/v_{a}_g01_c01.avi {k + 1}\n" for k, a in enumerate(UCF_ACTIONS)))
    (lists / "testlist01.txt").write_text("".join(f"{a}/v_{a}_g02_c01.avi\n" for a in UCF_ACTIONS))
    train, test = load_sources("ucf101", root=tmp_path)
    assert len(train.class_names) == 101 and train.class_names[0] == "Apply Eye Makeup"
    assert train.class_names[-1] == "Yo Yo" and train.split_info["kind"] == "official"
    assert "Handstand Pushups" in train.class_names  # CoOp's renaming of HandstandPushups
    suite_train, suite_test = load_sources("cil-ucf", root=tmp_path)
    assert suite_train.class_names == [c.name for c in SUITE["cil-ucf"].classes] and len(suite_test) == 100
    split = {"train": [[f"{'_'.join(re.findall('[A-Z][^A-Z]*', a))}/v_{a}_g01_c01.jpg", k,
                        "_".join(re.findall("[A-Z][^A-Z]*", a))] for k, a in enumerate(UCF_ACTIONS)],
             "val": [], "test": [[f"{'_'.join(re.findall('[A-Z][^A-Z]*', a))}/v_{a}_g02_c01.jpg", k,
                                  "_".join(re.findall("[A-Z][^A-Z]*", a))] for k, a in enumerate(UCF_ACTIONS)]}
    (base / "split_zhou_UCF101.json").write_text(json.dumps(split))
    coop, _ = load_sources("ucf101", root=tmp_path)
    assert coop.split_info["name"] == "split_zhou_UCF101.json" and coop.class_names == train.class_names
    (base / "UCF-101-midframes" / "Yo_Yo" / "v_YoYo_g02_c01.jpg").unlink()
    with pytest.raises(DataRootError, match="1 test frame.s. the split lists are not in"):
        load_sources("ucf101", root=tmp_path)


def test_imagenet_r_split_files(tmp_path):
    wnids = [c.folder for c in SUITE["cil-imagenet-r"].classes]
    for k, wnid in enumerate(wnids):
        for name in ("art_0.jpg", "sketch_1.jpg", "toy_2.jpg"):
            write_image(tmp_path / "imagenet-r" / wnid / name, color=(k, 0, 0))
    with pytest.raises(DataRootError, match="split file imagenet_r_rapf.txt lists .* not under"):
        load_sources("cil-imagenet-r", root=tmp_path)  # the suite's default for the raw folder: RAPF's list
    own = tmp_path / "my_split.txt"
    own.write_text("train\n" + "".join(f"{w}/art_0.jpg\n{w}/sketch_1.jpg\n" for w in wnids)
                   + "test\n" + "".join(f"{w}/toy_2.jpg\n" for w in wnids) + "n0/notes.txt\n")
    for name in ("imagenet-r", "cil-imagenet-r"):
        train, test = load_sources(name, root=tmp_path, options={"split_file": str(own)})
        assert (len(train), len(test)) == (400, 200)
        assert train.split_info == {**train.split_info, "kind": "file", "name": "my_split.txt",
                                    "sha256": hashlib.sha256(own.read_bytes()).hexdigest()}
    assert load_sources("cil-imagenet-r", root=tmp_path, options={"split_file": str(own)})[0].class_names[1] == \
        "great_white_shark"
    seeded, _ = load_sources("imagenet-r", root=tmp_path)  # imagenet-r keeps its seeded split by default
    assert seeded.split_info["kind"] == "seeded"
    with pytest.raises(ConfigError, match="neither a split file shipped with alta"):
        load_sources("imagenet-r", root=tmp_path, options={"split_file": "nope"})
    with pytest.raises(ConfigError, match="alternatives"):
        load_sources("imagenet-r", root=tmp_path, options={"split_file": str(own), "split_seed": 2})
    gap = tmp_path / "gap_split.txt"  # one class left out of train: was loaded with 199 training classes, silently
    gap.write_text("train\n" + "".join(f"{w}/art_0.jpg\n" for w in wnids[1:])
                   + "test\n" + "".join(f"{w}/toy_2.jpg\n" for w in wnids))
    with pytest.raises(DataError, match=rf"lists no train image of 1 class\(es\).*{wnids[0]}.*never be learned"):
        load_sources("cil-imagenet-r", root=tmp_path, options={"split_file": str(gap)})
    own.write_bytes(b"train\n\xff\xfe\n")  # not UTF-8: was a bare UnicodeDecodeError
    with pytest.raises(DataError, match=r"cil-imagenet-r: cannot read .*my_split.txt .*UTF-8"):
        load_sources("cil-imagenet-r", root=tmp_path, options={"split_file": str(own)})


def test_the_suites_cub_from_the_official_layout(tmp_path, caplog):
    base = tmp_path / "CUB_200_2011"
    classes = SUITE["cil-cub"].classes
    lines = {"classes.txt": [], "images.txt": [], "image_class_labels.txt": [], "train_test_split.txt": []}
    for k, cls in enumerate(classes):
        lines["classes.txt"].append(f"{k + 1} {cls.folder}")
        for j in range(2):
            image_id = 2 * k + j + 1
            write_image(base / "images" / cls.folder / f"img_{j}.jpg")
            lines["images.txt"].append(f"{image_id} {cls.folder}/img_{j}.jpg")
            lines["image_class_labels.txt"].append(f"{image_id} {k + 1}")
            lines["train_test_split.txt"].append(f"{image_id} {1 - j}")
    for name, rows in lines.items():
        (base / name).write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="alta.data.datasets"):
        train, test = load_sources("cub", root=tmp_path)
    assert train.class_names == [c.name for c in classes] and (len(train), len(test)) == (200, 200)
    assert "not the suite's" in caplog.text and train.split_info["kind"] == "official"
    labels = base / "image_class_labels.txt"
    good = labels.read_text()
    for damaged, message in [("1 x\n", r"gives image 1 the label 'x', outside 1..200"),  # was a bare ValueError
                             ("x 1\n", r"line 401 is 'x 1'; expected one '<id> <value>' line per id")]:
        labels.write_text(good + damaged if damaged.startswith("x") else damaged + good.split("\n", 1)[1])
        for name in ("cub", "cub200"):
            with pytest.raises(DataError, match=message):
                load_sources(name, root=tmp_path)
    labels.write_bytes(b"\xff\xfe binary")  # was a bare UnicodeDecodeError
    with pytest.raises(DataError, match=r"cil-cub: cannot read .*image_class_labels.txt .*UTF-8"):
        load_sources("cub", root=tmp_path)
    labels.write_text(good)
    (base / "images" / classes[-1].folder / "img_1.jpg").unlink()  # listed in images.txt, not on disk
    with pytest.raises(DataRootError, match=r"img_1.jpg is listed in .*images.txt but is not there"):
        load_sources("cub", root=tmp_path)


# ---- the class order of seed 1993 -------------------------------------------------------------------

PROOF_LOG_ORDERS = {  # the first ten ids of the order PROOF's logs print ([data_manager.py] => [...])
    100: [68, 56, 78, 8, 23, 84, 90, 65, 74, 76],
    200: [168, 136, 51, 9, 183, 101, 171, 99, 42, 159],
    300: [169, 221, 146, 296, 92, 229, 49, 70, 126, 77],
}


@pytest.mark.parametrize("name", list(SUITE))
def test_icarl_1993_is_pycils_numpy_permutation_for_every_suite_dataset(name):
    C = SUITE[name].num_classes
    state = np.random.get_state()
    np.random.seed(1993)  # PyCIL's DataManager._setup_data, written out
    expected = np.random.permutation(C).tolist()
    np.random.set_state(state)
    before = np.random.get_state()[1].copy()
    order = CLASS_ORDERS.get("icarl-1993").make(C)
    assert order == expected and order[:10] == PROOF_LOG_ORDERS[C]
    assert np.array_equal(np.random.get_state()[1], before)  # the global NumPy generator is left alone


def test_the_suites_stream_maps_labels_as_pycil(archives):
    stream = ScenarioStream.from_name("cil-cifar100", root=archives, class_order="icarl-1993", split="B50-Inc10",
                                      resolution=32)
    order = CLASS_ORDERS.get("icarl-1993").make(100)
    assert stream.class_order == order and stream.to_original(list(range(100))) == order  # new j <- old order[j]
    assert stream.classes_per_experience == [50] + [10] * 5
    assert stream.class_names[:5] == ["road", "palm tree", "snake", "bicycle", "cloud"]
    sun = ScenarioStream.from_name("sun", root=archives, class_order="icarl-1993", split="B0-Inc30", resolution=32)
    assert sun.class_names[:3] == ["home office", "motel", "forest"] and len(sun) == 10


@pytest.mark.parametrize("official, suite, build, count", [
    ("stanford-cars", "cil-cars", build_stanford_cars, 196), ("aircraft", "cil-aircraft", build_aircraft, 100),
    ("food101", "cil-food", build_food101, 101), ("sun397", "cil-sun", build_sun397, 397)])
def test_the_full_official_datasets_and_the_suites_subsets_of_them(tmp_path, official, suite, build, count):
    build(tmp_path)
    full_train, full_test = load_sources(official, root=tmp_path)
    assert len(full_train.class_names) == count  # the full dataset, its own count
    train, test = load_sources(suite, root=tmp_path)
    spec = SUITE[suite]
    assert train.class_names == [c.name for c in spec.classes] and len(train.class_names) == spec.num_classes
    for source in (train, test):  # (SUN397's seeded 80/20 split of 3 images per category may leave a side empty)
        assert set(source.targets.tolist()) <= set(range(spec.num_classes))
        assert len(set(source.targets.tolist())) == spec.num_classes or official == "sun397"
        assert len(set(source.targets.tolist())) > 0.5 * spec.num_classes
    assert train.split_info["source"].startswith("the official layout") and len(train.split_info["sha256"]) == 64
    kept = {c for c, name in zip(full_train.class_ids, full_train.class_names)
            if any(p == (c if official != "stanford-cars" else str(full_train.class_ids.index(c) + 1))
                   for s in spec.classes for p in s.official.split(","))}
    assert len(train) == sum(1 for y in full_train.targets.tolist() if full_train.class_ids[y] in kept)
    if official == "stanford-cars":  # classes 1-100 of cars_meta.mat
        assert kept == set(full_train.class_ids[:100])
    if official == "sun397":
        assert len(kept) == 325  # the categories the suite's 300 names merge


def test_cil_cifar100_from_torchvisions_files_records_a_split_hash(tmp_path, monkeypatch):
    import types

    import torchvision.datasets as tvd

    (tmp_path / "cifar100" / "cifar-100-python").mkdir(parents=True)

    def fake_cifar100(root, *, train, download):
        n = 200 if train else 100
        return types.SimpleNamespace(data=np.full((n, 32, 32, 3), 3 if train else 4, dtype=np.uint8),
                                     targets=[k % 100 for k in range(n)], classes=list(CIFAR100_CLASSES))

    monkeypatch.setattr(tvd, "CIFAR100", fake_cifar100)
    train, test = load_sources("cil-cifar100", root=tmp_path)  # finds cifar100/ under the root
    assert train.class_names == [c.name for c in SUITE["cil-cifar100"].classes] and len(test) == 100
    info = train.split_info
    assert info["kind"] == "official" and len(info["sha256"]) == 64 and (info["num_train"], info["num_test"]) == (200, 100)
