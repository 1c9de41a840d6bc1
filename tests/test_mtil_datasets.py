"""The datasets of MTIL (ZSCL, ICCV 2023) and DomainNet: fixtures of their official layouts (real
file names and index files, tiny images, tests/dataset_layouts.py) load with ZSCL's class counts
and names, the same samples and labels as torchvision's readers (which ZSCL uses), ZSCL's seeded
80/20 splits, clear errors for missing files; ZSCL's templates; seeded few-shot sampling."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_layouts import BUILDERS, build_domainnet, build_stanford_cars, put_image, write_lines
from helpers import run_cli

from alta.classnames import check_distinguishable
from alta.data import (
    DATASETS,
    DOMAINNET_DOMAINS,
    SINGLE_TEMPLATE,
    ZSCL_DATASETS,
    DataRootError,
    ScenarioStream,
    dataset_templates,
    few_shot_indices,
    few_shot_source,
    list_datasets,
    list_template_datasets,
    load_domainnet_domain,
    load_sources,
)
from alta.data.datasets import MultiDomainSource, SubsetSource, random_split_indices, shipped_classes
from alta.errors import ConfigError, DataError

# ZSCL's MTIL datasets (its names) -> alta's name and class count (ZSCL's collections.py; 1,201 in all)
MTIL = {
    "Aircraft": ("aircraft", 100),
    "Caltech101": ("caltech101-zscl", 101),
    "CIFAR100": ("seq-cifar100", 100),
    "DTD": ("dtd", 47),
    "EuroSAT": ("eurosat", 10),
    "Flowers": ("flowers102", 102),
    "Food": ("food101", 101),
    "MNIST": ("mnist", 10),
    "OxfordPet": ("oxford-pet", 37),
    "StanfordCars": ("stanford-cars", 196),
    "SUN397": ("sun397", 397),
}
# a few names per dataset exactly as ZSCL feeds them to CLIP (label: name)
ZSCL_NAMES = {
    "aircraft": {0: "707-320", 73: "F/A-18", 99: "Yak-42"},
    "caltech101-zscl": {0: "off-center face", 1: "centered face", 19: "side of a car", 29: "head of a  crocodile",
                        83: "snoopy (cartoon beagle)", 100: "yin and yang symbol"},
    "seq-cifar100": {1: "aquarium fish", 99: "worm"},
    "dtd": {0: "banded", 30: "polka-dotted", 46: "zigzagged"},
    "eurosat": {0: "annual crop land", 2: "brushland or shrubland", 9: "lake or sea"},
    "flowers102": {0: "pink primrose", 15: "globe-flower", 59: "pink-yellow dahlia", 92: "ball moss"},
    "food101": {0: "apple pie", 16: "cheese plate", 17: "cheesecake", 100: "waffles"},
    "mnist": {0: "0 - zero", 9: "9 - nine"},
    "oxford-pet": {0: "Abyssinian", 2: "American Pit Bull Terrier", 9: "British Shorthair"},
    "stanford-cars": {0: "AM General Hummer SUV 2000", 195: "smart fortwo Convertible 2012"},
    "sun397": {0: "abbey", 8: "apartment building/outdoor", 396: "youth hostel"},
}


@pytest.fixture(scope="module")
def mtil_root(tmp_path_factory) -> Path:
    """One data root holding every layout, as ZSCL's ``--data-location`` does (CIFAR-100 as
    class folders: torchvision's pickles would need their md5 sums)."""
    root = tmp_path_factory.mktemp("mtil")
    for build in BUILDERS.values():
        build(root)
    cifar = tmp_path_factory.mktemp("cifar100")
    for name in shipped_cifar100():
        put_image(cifar / "train" / name / "0.jpg")
        put_image(cifar / "test" / name / "0.jpg")
    (root / "cifar100").symlink_to(cifar)
    return root


def shipped_cifar100() -> list[str]:
    from alta.data.datasets import CIFAR100_CLASSES

    return list(CIFAR100_CLASSES)


def mtil_sources(root: Path, name: str):
    return load_sources(name, root=root / "cifar100" if name == "seq-cifar100" else root)


# ---- registry -----------------------------------------------------------------------------------


def test_every_mtil_dataset_is_registered_and_listed(capsys):
    names = list_datasets()
    for zscl, (name, _) in MTIL.items():
        assert name in names and ZSCL_DATASETS[zscl] == name
    assert "domainnet" in names
    for alias, name in (("fgvc-aircraft", "aircraft"), ("oxford-pets", "oxford-pet"), ("caltech101-mtil", "caltech101-zscl"),
                        ("oxford-flowers", "flowers102"), ("food-101", "food101"), ("stanford_cars", "stanford-cars")):
        assert DATASETS.resolve(alias) == name
    code, out, _ = run_cli(capsys, "list", "datasets")
    assert code == 0
    for name in (*[n for n, _ in MTIL.values()], "domainnet"):
        assert f"  {name} " in out


# ---- the eleven layouts ------------------------------------------------------------------------


@pytest.mark.parametrize("zscl", list(MTIL))
def test_layout_loads_with_zscl_class_counts_and_names(mtil_root, zscl):
    name, count = MTIL[zscl]
    train, test = mtil_sources(mtil_root, name)
    assert len(train.class_names) == len(test.class_names) == count
    assert train.class_names == test.class_names
    for label, expected in ZSCL_NAMES[name].items():
        assert train.class_names[label] == expected
    assert len(train) > 0 and len(test) > 0
    assert int(train.targets.max()) < count and int(test.targets.min()) >= 0
    image, label = train[0]
    assert image.mode == "RGB" and label == int(train.targets[0])
    assert train.identity != test.identity and (str(mtil_root) in train.identity or "cifar100" in train.identity)


def test_mtil_has_1201_classes_that_clip_can_tell_apart(mtil_root):
    total = 0
    for name, _ in MTIL.values():
        names = mtil_sources(mtil_root, name)[0].class_names
        check_distinguishable(names, error=DataError)  # what the stream and the learner require
        total += len(names)
    assert total == 1201


def test_shipped_class_lists_name_their_source_and_match_their_ids():
    from importlib import resources

    folder = resources.files("alta.data") / "class_names"
    files = sorted(p.name for p in folder.iterdir() if p.name.endswith(".tsv"))
    assert files == sorted(f"{n}.tsv" for n in [*BUILDERS]), files
    for file in files:
        header = [line for line in (folder / file).read_text(encoding="utf-8").splitlines() if line.startswith("#")]
        assert any("Source:" in line for line in header), file
        classes = shipped_classes(file.removesuffix(".tsv"))
        assert len(set(classes.ids)) == len(classes.ids) == len(classes.names)
    # names derived from ids follow ZSCL's rule: '_' -> ' ' (SUN397 also drops '/<letter>/')
    sun = shipped_classes("sun397")
    assert list(sun.names) == [i[3:].replace("_", " ") for i in sun.ids]
    food = shipped_classes("food101")
    assert list(food.ids) == sorted(food.ids) and list(food.names) == [i.replace("_", " ") for i in food.ids]
    pets = shipped_classes("oxford-pet")
    assert list(pets.names) == [" ".join(p.title() for p in i.split("_")) for i in pets.ids]
    assert list(shipped_classes("domainnet").names)[308] == "The Eiffel Tower"


STREAM_CASES = [(name, {}) for name, _ in MTIL.values()] + [
    ("domainnet", {}), ("domainnet", {"domains": "real"}), ("sun397", {"partition": 1}),
    ("aircraft", {"train_split": "trainval"}), ("dtd", {"train_split": "trainval"}),
    ("flowers102", {"train_split": "trainval"}), ("eurosat", {"split_seed": 1}),
]


@pytest.mark.parametrize("name, options", STREAM_CASES, ids=[f"{n}-{o}" if o else n for n, o in STREAM_CASES])
def test_stream_takes_the_dataset_as_one_experience(mtil_root, name, options):
    """As a run builds it (alta.run.sections.DataConfig): the sources read first, then the stream."""
    root = mtil_root / "cifar100" if name == "seq-cifar100" else mtil_root
    sources = load_sources(name, root=root, options=options)
    stream = ScenarioStream.from_name(name, root=root, num_experiences=1, resolution=16, dataset_options=options,
                                      sources=sources)
    assert len(stream) == 1 and stream.class_names == sources[0].class_names
    images, label = stream[0].train[0]
    assert images.shape == (3, 16, 16) and 0 <= label < len(stream.class_names)


# ---- the same samples as torchvision's readers (ZSCL's) -----------------------------------------


def torchvision_pairs(dataset) -> list[tuple[str, int]]:
    """(path, label) of every sample of a torchvision dataset, whatever its private attribute names."""
    for files, labels in (("_image_files", "_labels"), ("_images", "_labels")):
        if hasattr(dataset, files):
            return [(str(p), int(y)) for p, y in zip(getattr(dataset, files), getattr(dataset, labels))]
    if hasattr(dataset, "_samples"):  # StanfordCars
        return [(str(p), int(y)) for p, y in dataset._samples]
    return [(str(p), int(y)) for p, y in dataset.samples]  # ImageFolder (EuroSAT)


def alta_pairs(source) -> list[tuple[str, int]]:
    return [(str(p), int(y)) for p, y in zip(source.paths, source.targets)]


@pytest.mark.parametrize("name, make", [
    ("aircraft", lambda tvd, r: [tvd.FGVCAircraft(r, split=s) for s in ("train", "test")]),
    ("dtd", lambda tvd, r: [tvd.DTD(r, split=s) for s in ("train", "test")]),
    ("food101", lambda tvd, r: [tvd.Food101(r, split=s) for s in ("train", "test")]),
    ("oxford-pet", lambda tvd, r: [tvd.OxfordIIITPet(r, split=s) for s in ("trainval", "test")]),
    ("stanford-cars", lambda tvd, r: [tvd.StanfordCars(r, split=s) for s in ("train", "test")]),
    ("flowers102", lambda tvd, r: [tvd.Flowers102(r, split=s) for s in ("train", "test")]),
])
def test_official_splits_equal_torchvisions(mtil_root, monkeypatch, name, make):
    import torchvision.datasets as tvd

    # torchvision checks the md5 of the real Flowers-102 .mat files, which a fixture cannot have
    monkeypatch.setattr(tvd.Flowers102, "_check_integrity", lambda self: True)
    ours = load_sources(name, root=mtil_root)
    theirs = make(tvd, str(mtil_root))
    for mine, reference in zip(ours, theirs):
        assert sorted(alta_pairs(mine)) == sorted(torchvision_pairs(reference))
        if name != "flowers102":  # torchvision's names with '_' -> ' ' (ZSCL's process_labels); Flowers: ZSCL's own
            assert [c.replace("_", " ") for c in reference.classes] == mine.class_names


def test_mnist_equals_torchvision(mtil_root):
    import torchvision.datasets as tvd

    for source, train in zip(load_sources("mnist", root=mtil_root), (True, False)):
        reference = tvd.MNIST(str(mtil_root), train=train)
        assert torch.equal(source.targets, reference.targets.long())
        assert np.array_equal(source.images, reference.data.numpy())
        assert source.class_names == reference.classes


@pytest.mark.parametrize("name, make", [
    ("eurosat", lambda tvd, r: tvd.EuroSAT(r)),
    ("caltech101-zscl", lambda tvd, r: tvd.Caltech101(r)),
])
def test_zscl_random_splits_equal_zscls(mtil_root, name, make):
    """ZSCL: ``random_split(dataset, [int(0.8 n), n - int(0.8 n)], generator=Generator().manual_seed(42))``."""
    import torchvision.datasets as tvd

    reference = make(tvd, str(mtil_root))
    if name == "caltech101-zscl":  # torchvision's Caltech101 keeps indices, not paths
        base = Path(reference.root) / "101_ObjectCategories"
        pairs = [(str(base / reference.categories[y] / f"image_{i:04d}.jpg"), y)
                 for i, y in zip(reference.index, reference.y)]
    else:
        pairs = torchvision_pairs(reference)
    n = len(pairs)
    subsets = torch.utils.data.random_split(range(n), [int(0.8 * n), n - int(0.8 * n)],
                                            generator=torch.Generator().manual_seed(42))
    for source, subset in zip(load_sources(name, root=mtil_root), subsets):
        assert sorted(alta_pairs(source)) == sorted(pairs[i] for i in subset.indices)
    other = load_sources(name, root=mtil_root, options={"split_seed": 1})[0]
    assert sorted(alta_pairs(other)) != sorted(alta_pairs(load_sources(name, root=mtil_root)[0]))


def test_sun397_split_is_zscls_procedure_over_sorted_files(mtil_root):
    import torchvision.datasets as tvd

    reference = tvd.SUN397(str(mtil_root))  # rglob order: the file system's
    pairs = sorted(torchvision_pairs(reference))  # alta's order: sorted by path
    n = len(pairs)
    subsets = torch.utils.data.random_split(range(n), [int(0.8 * n), n - int(0.8 * n)],
                                            generator=torch.Generator().manual_seed(42))
    for source, subset in zip(load_sources("sun397", root=mtil_root), subsets):
        assert sorted(alta_pairs(source)) == sorted(pairs[i] for i in subset.indices)


def test_sun397_official_partition(mtil_root):
    train, test = load_sources("sun397", root=mtil_root, options={"partition": 1})
    assert len(train) == 397 and torch.equal(train.targets, torch.arange(397))
    assert len(test) == 2 * 397 and "partition=1" in train.identity
    with pytest.raises(ConfigError, match="partition=1 and split_seed=3"):
        load_sources("sun397", root=mtil_root, options={"partition": 1, "split_seed": 3})
    with pytest.raises(DataRootError, match="Training_02.txt"):
        load_sources("sun397", root=mtil_root, options={"partition": 2})


@pytest.mark.filterwarnings("ignore:Length of split at index")
@pytest.mark.parametrize("n", [0, 1, 7, 10, 8677, 27000])
def test_random_split_indices_equal_torch_random_split(n):
    train, test = random_split_indices(n, seed=42)
    reference = torch.utils.data.random_split(range(n), [int(0.8 * n), n - int(0.8 * n)],
                                              generator=torch.Generator().manual_seed(42))
    assert train == sorted(reference[0].indices) and test == sorted(reference[1].indices)
    assert len(train) == int(0.8 * n)


def test_train_split_options(mtil_root):
    assert len(load_sources("aircraft", root=mtil_root, options={"train_split": "trainval"})[0]) == 200
    assert len(load_sources("dtd", root=mtil_root, options={"train_split": "trainval"})[0]) == 94
    assert len(load_sources("flowers102", root=mtil_root, options={"train_split": "trainval"})[0]) == 204
    with pytest.raises(ConfigError, match="train_split is 'val'"):
        load_sources("aircraft", root=mtil_root, options={"train_split": "val"})
    with pytest.raises(ConfigError, match="partition is 11"):
        load_sources("dtd", root=mtil_root, options={"partition": 11})
    with pytest.raises(ConfigError, match="takes no option 'split_seed'"):
        load_sources("food101", root=mtil_root, options={"split_seed": 1})


# ---- missing and partial folders ---------------------------------------------------------------


def test_stanford_cars_test_labels_trap(tmp_path):
    base = build_stanford_cars(tmp_path)
    (base / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(DataRootError) as info:
        load_sources("stanford-cars", root=tmp_path)
    message = str(info.value)
    assert f"missing {base / 'cars_test_annos_withlabels.mat'}" in message
    assert "cars_test_annos.mat'} has no labels" not in message and "has no labels" in message
    assert "put it at " + str(base / "cars_test_annos_withlabels.mat") in message
    assert "pytorch/vision/issues/7545" in message
    # the devkit's unlabelled test annotations are refused by what they lack
    shutil.copy(base / "devkit" / "cars_test_annos.mat", base / "cars_test_annos_withlabels.mat")
    with pytest.raises(DataError, match="'fname' and 'class'"):
        load_sources("stanford-cars", root=tmp_path)


def test_stanford_cars_reads_the_test_labels_in_devkit_and_kaggles_nested_folders(tmp_path):
    base = build_stanford_cars(tmp_path)
    (base / "cars_test_annos_withlabels.mat").rename(base / "devkit" / "cars_test_annos_withlabels.mat")
    for split in ("cars_train", "cars_test"):  # Kaggle: stanford_cars/cars_train/cars_train/*.jpg
        (base / split).rename(base / f"{split}-tmp")
        (base / split).mkdir()
        (base / f"{split}-tmp").rename(base / split / split)
    train, test = load_sources("stanford-cars", root=base)  # root may be stanford_cars/ itself
    assert len(test) == 196 and Path(test.paths[0]).parent == base / "cars_test" / "cars_test"
    assert train[0][0].mode == "RGB"


PARTIAL = [  # (dataset, file removed relative to the data root)
    ("aircraft", "fgvc-aircraft-2013b/data/images_variant_test.txt"),
    ("dtd", "dtd/dtd/labels/test1.txt"),
    ("flowers102", "flowers-102/setid.mat"),
    ("food101", "food-101/meta/test.txt"),
    ("oxford-pet", "oxford-iiit-pet/annotations/trainval.txt"),
    ("stanford-cars", "stanford_cars/devkit/cars_meta.mat"),
    ("sun397", "SUN397/ClassName.txt"),
    ("mnist", "MNIST/raw/t10k-labels-idx1-ubyte"),
    ("domainnet", "domainnet/sketch_test.txt"),
    ("sun397", "SUN397/y/youth_hostel"),
    ("eurosat", "eurosat/2750/SeaLake"),
    ("caltech101-zscl", "caltech101/101_ObjectCategories/yin_yang"),
]


SMALL = {"sun397": {"per_class": 2}, "domainnet": {"full_domains": ()}}  # fewer files: faster fixtures


@pytest.mark.parametrize("name, removed", PARTIAL, ids=[f"{n}-{Path(r).name}" for n, r in PARTIAL])
def test_a_partial_folder_names_what_is_missing(tmp_path, name, removed):
    BUILDERS[name](tmp_path, **SMALL.get(name, {}))
    target = tmp_path / removed
    if name == "food101":
        (target.with_suffix(".json")).unlink()  # else the .json copy is read
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DataRootError) as info:
        load_sources(name, root=tmp_path)
    message = str(info.value)
    assert (str(target) in message or Path(removed).name in message), message
    assert "Expected one of these layouts" in message or "Layouts:" in message


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_missing_root_shows_the_layout(tmp_path, name):
    for root in (None, tmp_path / "nowhere", tmp_path):
        with pytest.raises(DataRootError, match="Expected one of these layouts"):
            load_sources(name, root=root)


@pytest.mark.parametrize("name, folder", [("aircraft", "fgvc-aircraft-2013b/data/images"),
                                          ("food101", "food-101/images"), ("stanford-cars", "stanford_cars/cars_test"),
                                          ("domainnet", "domainnet/clipart/aircraft_carrier")])
def test_listed_images_that_are_missing_are_named(tmp_path, name, folder):
    BUILDERS[name](tmp_path, **SMALL.get(name, {}))
    shutil.rmtree(tmp_path / folder)
    (tmp_path / folder).mkdir()
    with pytest.raises(DataRootError, match=r"is listed in .* but is not there"):
        load_sources(name, root=tmp_path)


def test_another_version_of_a_dataset_is_refused(tmp_path):
    base = BUILDERS["aircraft"](tmp_path)
    variants = (base / "variants.txt").read_text().splitlines()
    write_lines(base / "variants.txt", [variants[1], variants[0], *variants[2:]])
    with pytest.raises(DataRootError, match="another order: position 0 is '727-200', expected '707-320'"):
        load_sources("aircraft", root=tmp_path)
    write_lines(base / "variants.txt", variants[:-1] + ["Concorde"])
    with pytest.raises(DataRootError, match=r"missing 1: \['Yak-42'\]; unexpected 1: \['Concorde'\]"):
        load_sources("aircraft", root=tmp_path)
    write_lines(base / "variants.txt", [*variants, variants[0]])  # not "missing 0, unexpected 0"
    with pytest.raises(DataRootError, match=r"1 listed more than once: \['707-320'\]"):
        load_sources("aircraft", root=tmp_path)


DAMAGED = [("aircraft", "fgvc-aircraft-2013b/data/variants.txt"), ("dtd", "dtd/dtd/labels/test1.txt"),
           ("food101", "food-101/meta/train.txt"), ("oxford-pet", "oxford-iiit-pet/annotations/test.txt"),
           ("sun397", "SUN397/ClassName.txt"), ("domainnet", "domainnet/clipart_train.txt"),
           ("flowers102", "flowers-102/setid.mat"), ("flowers102", "flowers-102/imagelabels.mat"),
           ("stanford-cars", "stanford_cars/devkit/cars_meta.mat"),
           ("stanford-cars", "stanford_cars/cars_test_annos_withlabels.mat")]


@pytest.mark.parametrize("name, damaged", DAMAGED, ids=[f"{n}-{Path(d).name}" for n, d in DAMAGED])
def test_a_damaged_index_file_is_a_data_error_naming_it(tmp_path, name, damaged):
    BUILDERS[name](tmp_path, **SMALL.get(name, {}))
    # binary garbage (not UTF-8), or a MATLAB file cut short (scipy's MatReadError)
    (tmp_path / damaged).write_bytes(b"MAT" if damaged.endswith(".mat") else b"\xff\xfe\x00 not an index file \x80")
    if name == "food101":
        (tmp_path / damaged).with_suffix(".json").unlink()  # else the .json copy is read
    with pytest.raises(DataError, match=f"{name}: cannot read .*{Path(damaged).name}.*Fix: restore"):
        load_sources(name, root=tmp_path)


def test_malformed_index_lines_are_named(tmp_path):
    base = BUILDERS["oxford-pet"](tmp_path)
    with open(base / "annotations" / "test.txt", "a") as handle:
        handle.write("Bengal_999 38 1 1\n")
    with pytest.raises(DataError, match=r"test.txt line 38 is 'Bengal_999 38 1 1'.*class id in 1..37"):
        load_sources("oxford-pet", root=tmp_path)


# ---- DomainNet ---------------------------------------------------------------------------------


def test_domainnet_one_domain_and_the_union(mtil_root, caplog):
    train, test = load_domainnet_domain(mtil_root, "real")
    assert len(train.class_names) == 345 and train.class_names[308] == "The Eiffel Tower"
    assert torch.equal(train.targets, torch.arange(345)) and len(test) == 345
    assert all(Path(p).parts[-3] == "real" for p in train.paths)
    assert train.identity.endswith("|real|train")
    with caplog.at_level(logging.WARNING, logger="alta.data.datasets"):
        union, _ = load_sources("domainnet", root=mtil_root)
    assert isinstance(union, MultiDomainSource) and union.domains == list(DOMAINNET_DOMAINS)
    assert len(union) == 2 * 345 + 4 * 3 and torch.bincount(union.sample_domains).tolist() == [345, 3, 3, 3, 345, 3]
    assert "infograph_train.txt lists no image of 342 class(es)" in caplog.text
    two, _ = load_sources("domainnet", root=mtil_root, options={"domains": ["sketch", "clipart"]})
    assert two.domains == ["sketch", "clipart"] and two.sample_domains[:3].tolist() == [0, 0, 0]
    with pytest.raises(ConfigError, match="option domains is 'photo'"):
        load_domainnet_domain(mtil_root, "photo")


def test_domainnet_split_files_in_splits_folder_and_bad_labels(tmp_path):
    base = build_domainnet(tmp_path, full_domains=())
    (base / "splits").mkdir()
    for file in base.glob("*_*.txt"):
        file.rename(base / "splits" / file.name)
    train, _ = load_domainnet_domain(tmp_path, "clipart")  # Dassl's layout
    assert len(train) == 3
    lines = (base / "splits" / "clipart_train.txt").read_text().splitlines()
    write_lines(base / "splits" / "clipart_train.txt", [lines[0].rsplit(" ", 1)[0] + " 5", *lines[1:]])
    with pytest.raises(DataError, match="line 1 is .* whose class folder is that label's"):
        load_domainnet_domain(tmp_path, "clipart")


# ---- templates ---------------------------------------------------------------------------------


ZSCL_TEMPLATE_COUNTS = {"Aircraft": 2, "Caltech101": 34, "CIFAR10": 18, "CIFAR100": 18, "DTD": 8, "EuroSAT": 3,
                        "Flowers": 1, "Food": 1, "MNIST": 1, "OxfordPet": 1, "StanfordCars": 9, "SUN397": 2}


def test_zscl_template_ensembles():
    for zscl, count in ZSCL_TEMPLATE_COUNTS.items():
        templates = dataset_templates(ZSCL_DATASETS[zscl])
        assert len(templates) == count and dataset_templates(zscl) == templates
        assert all(t.count("{}") == 1 and t.format("x") for t in templates)
        assert dataset_templates(ZSCL_DATASETS[zscl], ensemble=False) == templates[:1]
    assert dataset_templates("mnist") == ['a photo of the number: "{}".']
    assert dataset_templates("stanford-cars")[0] == "a photo of a {}, a type of car."
    assert dataset_templates("fgvc-aircraft") == dataset_templates("aircraft")  # aliases
    assert dataset_templates("caltech101") == dataset_templates("caltech101-zscl")
    assert set(list_template_datasets()) == {*ZSCL_DATASETS.values(), "caltech101"}


def test_datasets_without_templates_need_a_default():
    with pytest.raises(ConfigError, match="'digits' has no template list.*default=\\[SINGLE_TEMPLATE\\]"):
        dataset_templates("digits")
    assert dataset_templates("digits", default=[SINGLE_TEMPLATE]) == ["a photo of a {}."]
    assert dataset_templates("domainnet", default=["a {}.", "the {}."], ensemble=False) == ["a {}."]
    with pytest.raises(ConfigError, match="unknown dataset 'aircrafts'; did you mean 'aircraft'"):
        dataset_templates("aircrafts")


# ---- few-shot ----------------------------------------------------------------------------------


def test_few_shot_same_seed_same_samples_exact_counts():
    targets = torch.arange(500) % 10
    a = few_shot_indices(targets, 5, seed=0)
    assert torch.equal(a, few_shot_indices(targets.tolist(), 5, seed=0))
    assert not torch.equal(a, few_shot_indices(targets, 5, seed=1))
    assert torch.bincount(targets[a], minlength=10).tolist() == [5] * 10
    assert torch.equal(a, torch.sort(a).values) and a.unique().numel() == 50
    sixteen = few_shot_indices(targets, 16, seed=0)
    assert torch.bincount(targets[sixteen]).tolist() == [16] * 10


def test_few_shot_classes_are_drawn_independently():
    targets = torch.arange(300) % 3
    fewer = targets.clone()
    fewer[fewer == 1] = 5  # class 1's samples relabelled: class 0 and 2 keep theirs
    a, b = few_shot_indices(targets, 4, seed=7), few_shot_indices(fewer, 4, seed=7)
    for label in (0, 2):
        assert torch.equal(a[targets[a] == label], b[fewer[b] == label])


def test_few_shot_short_classes(caplog):
    targets = torch.tensor([0] * 10 + [1] * 3 + [3] * 8)
    with caplog.at_level(logging.WARNING, logger="alta.data.fewshot"):
        kept = few_shot_indices(targets, 5, seed=0)
    assert torch.bincount(targets[kept]).tolist() == [5, 3, 0, 5] and "1 (3)" in caplog.text
    repeated = few_shot_indices(targets, 5, seed=0, short="repeat")
    assert torch.bincount(targets[repeated]).tolist() == [5, 5, 0, 5]
    with pytest.raises(DataError, match=r"fewer than shots=5 samples: label \(count\) 1 \(3\)"):
        few_shot_indices(targets, 5, seed=0, short="error")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alta.data.fewshot"):  # the labels are named with their dataset
        few_shot_indices(targets, 5, seed=0, name="domain 4 ('tinyimagenet')")
    assert "few-shot domain 4 ('tinyimagenet'): 1 class(es)" in caplog.text
    with pytest.raises(DataError, match=r"^eurosat: 1 class\(es\) have fewer"):
        few_shot_indices(targets, 5, seed=0, short="error", name="eurosat")
    for bad in ({"shots": 0}, {"seed": -1}, {"short": "drop"}):
        with pytest.raises(ConfigError):
            few_shot_indices(targets, **{"shots": 5, "seed": 0, **bad})


def test_few_shot_source_of_a_dataset(mtil_root):
    train, _ = load_sources("eurosat", root=mtil_root)
    five = few_shot_source(train, 5, seed=3)
    assert isinstance(five, SubsetSource) and len(five) == 50
    assert five.class_names == train.class_names and five.identity.endswith("|shots=5|seed=3|short=all|train")
    same = few_shot_source(load_sources("eurosat", root=mtil_root)[0], 5, seed=3)
    assert [train.paths[i] for i in five.indices] == [train.paths[i] for i in same.indices]
    assert five.indices.tolist() != few_shot_source(train, 5, seed=4).indices.tolist()
    image, label = five[0]
    assert label == int(train.targets[five.indices[0]]) and image.mode == "RGB"
    stream = ScenarioStream(five, load_sources("eurosat", root=mtil_root)[1], five.class_names, num_experiences=1,
                            transform=None, test_transform=None)
    assert len(stream[0].train) == 50
