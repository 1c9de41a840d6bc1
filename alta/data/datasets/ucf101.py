"""UCF-101 as image classification: the middle frame of every video, in CoOp's layout, with CoOp's
split file or the official train/test list.

Layout (CoOp's ``DATASETS.md``): ``ucf101/UCF-101-midframes/<Class_Name>/<video>.jpg`` (the middle
frame of each video, class folders renamed from UCF's CamelCase: ``ApplyEyeMakeup`` ->
``Apply_Eye_Makeup``), and either ``ucf101/split_zhou_UCF101.json`` (CoOp's split: ``{"train":
[[path, label, class], ...], "val": [...], "test": [...]}``; alta trains on train + val) or UCF's
own ``ucf101/ucfTrainTestlist/`` (``classInd.txt``, ``trainlist0K.txt``, ``testlist0K.txt``; split
K = 1 by default), read as CoOp reads it: label = ``classInd.txt`` index - 1, frame = the video's
file name with ``.jpg``. 101 classes in ``classInd.txt`` order; names are the folder names with
spaces.

References:
    K. Soomro et al., "UCF101: A Dataset of 101 Human Actions Classes From Videos in The Wild",
    CRCV-TR-12-01, 2012.
    K. Zhou et al., "Learning to Prompt for Vision-Language Models" (CoOp), IJCV 2022
    (github.com/KaiyangZhou/CoOp ``datasets/ucf101.py``, ``DATASETS.md``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from ...classnames import readable
from ...errors import ConfigError, DataError
from ...io import file_sha256
from .base import DataRootError, ImageFileSource, register
from .folders import layout_error, need_root, read_index_text

logger = logging.getLogger("alta.data.datasets")

FRAMES = "UCF-101-midframes"
SPLIT_JSON = "split_zhou_UCF101.json"
LISTS = "ucfTrainTestlist"
_UCF_LAYOUT = (
    f"  root/ucf101/ (or root itself) with {FRAMES}/<Class_Name>/<video>.jpg (the middle frame of every video, "
    f"as CoOp's UCF-101-midframes.zip unpacks) and either {SPLIT_JSON} (CoOp's split) or "
    f"{LISTS}/classInd.txt + trainlist01.txt + testlist01.txt (UCF-101's own split 1)"
)


def renamed(action: str) -> str:
    """CoOp's class folder of a UCF action: its CamelCase words joined by underscores
    (``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup``; ``re.findall("[A-Z][^A-Z]*", action)``)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action)) or action


def ucf_base(root: Path) -> Path | None:
    """The folder holding ``UCF-101-midframes/`` under ``root`` (``None`` if absent)."""
    for base in (root / "ucf101", root):
        if (base / FRAMES).is_dir():
            return base
    return None


def _from_json(dataset: str, base: Path) -> tuple[dict[str, list], list[str], dict]:
    path = base / SPLIT_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        sides = {"train": [*data["train"], *data.get("val", [])], "test": list(data["test"])}
        entries = [(str(p), int(y), str(c)) for side in sides.values() for p, y, c in side]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{dataset}: cannot read {path} as CoOp's split ({type(err).__name__}: {err}); expected "
                        f'{{"train": [[path, label, class], ...], "val": [...], "test": [...]}}') from err
    names: dict[int, str] = {}
    for _, label, classname in entries:
        if names.setdefault(label, classname) != classname:
            raise DataError(f"{dataset}: {path} gives label {label} the classes {names[label]!r} and {classname!r}; "
                            f"expected one class per label")
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{dataset}: {path} uses labels {sorted(names)[:5]}...; expected 0..K-1")
    out = {side: [(str(base / FRAMES / p), int(y)) for p, y, _ in rows] for side, rows in sides.items()}
    info = {"kind": "file", "name": SPLIT_JSON, "sha256": file_sha256(path),
            "source": "CoOp (github.com/KaiyangZhou/CoOp, DATASETS.md): train + val for training, test for test"}
    return out, [names[k] for k in range(len(names))], info


def _from_lists(dataset: str, base: Path, split: int) -> tuple[dict[str, list], list[str], dict]:
    folder = base / LISTS
    files = {"classes": folder / "classInd.txt", "train": folder / f"trainlist0{split}.txt",
             "test": folder / f"testlist0{split}.txt"}
    absent = [str(p) for p in files.values() if not p.is_file()]
    if absent:
        raise layout_error(dataset, base, f"found {FRAMES}/ but neither {SPLIT_JSON} nor {', '.join(absent)}",
                           _UCF_LAYOUT, can_download=False)
    label_of: dict[str, int] = {}
    for number, line in enumerate(read_index_text(dataset, files["classes"]).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{dataset}: {files['classes']} line {number} is {line!r}; expected '<index> <Action>'")
        label_of[parts[1]] = int(parts[0]) - 1
    if sorted(label_of.values()) != list(range(len(label_of))):
        raise DataError(f"{dataset}: {files['classes']} must number its classes 1..K")
    out: dict[str, list] = {}
    for side in ("train", "test"):
        rows = []
        for number, line in enumerate(read_index_text(dataset, files[side]).splitlines(), start=1):
            if not line.strip():
                continue
            video = line.split()[0]
            action, _, name = video.partition("/")
            if action not in label_of or not name:
                raise DataError(f"{dataset}: {files[side]} line {number} is {line.strip()!r}; expected "
                                f"'<Action>/<video>.avi' of an action in classInd.txt")
            rows.append((str(base / FRAMES / renamed(action) / name.replace(".avi", ".jpg")), label_of[action]))
        out[side] = rows
    actions = sorted(label_of, key=label_of.get)
    digest = file_sha256(files["train"]) + file_sha256(files["test"])
    info = {"kind": "official", "name": f"{LISTS}/trainlist0{split}.txt + testlist0{split}.txt",
            "sha256": hashlib.sha256(digest.encode()).hexdigest(),
            "hashed": "SHA-256 of the two files' SHA-256 (hex, train then test)"}
    return out, [renamed(a) for a in actions], info


def read_ucf101(dataset: str, root: Path, *, official_split: int = 1) -> tuple[Path, list[str], dict[str, list], dict]:
    """``(base, class folders in label order, {"train"|"test": [(frame path, label)]}, split info)``.

    Raises:
        DataRootError: no ``UCF-101-midframes/`` under ``root``, or frames the split lists that are missing.
        DataError: a split file that cannot be read.
    """
    base = ucf_base(root)
    if base is None:
        raise layout_error(dataset, root, f"no {FRAMES}/ folder", _UCF_LAYOUT, can_download=False)
    if (base / SPLIT_JSON).is_file():
        sides, classes, info = _from_json(dataset, base)
    else:
        sides, classes, info = _from_lists(dataset, base, official_split)
    for side, rows in sides.items():
        missing = [p for p, _ in rows if not Path(p).is_file()]
        if missing:
            raise DataRootError(f"{dataset}: {len(missing)} {side} frame(s) the split lists are not in "
                                f"{str(base / FRAMES)!r}, e.g. {missing[:3]}; expected the middle frame of every video "
                                f"there (CoOp's UCF-101-midframes.zip)")
    return base, classes, sides, info


def ucf_sources(dataset: str, base: Path, folders: list[str], names: list[str], sides: dict[str, list],
                info: dict) -> tuple[ImageFileSource, ImageFileSource]:
    """(train, test) sources of the frames :func:`read_ucf101` listed, ``sides[side]`` as
    ``(path, label)`` rows, with the split record ``info``.

    Raises:
        DataRootError: a side that lists no frame.
    """
    out = []
    for side in ("train", "test"):
        rows = sides[side]
        if not rows:
            raise DataRootError(f"{dataset}: the split lists no {side} frames; expected both sides")
        source = ImageFileSource([p for p, _ in rows], [y for _, y in rows], names,
                                 identity=f"{dataset}|{base}|{info['sha256'][:16]}|{side}", class_ids=folders)
        source.split_info = info
        out.append(source)
    return out[0], out[1]


@register("ucf101", None, "UCF-101 middle frames (CoOp's layout), 101 classes, CoOp's split or the official one",
          options=("official_split",))
def _load_ucf101(root: Path | None, *, download: bool, official_split: int = 1):
    """UCF-101 (Soomro et al., 2012) as CoOp's image benchmark: the middle frame of each video."""
    if official_split not in (1, 2, 3) or isinstance(official_split, bool):
        raise ConfigError(f"ucf101: official_split must be 1, 2 or 3 (UCF-101's three train/test lists, used when "
                          f"{SPLIT_JSON} is absent), got {official_split!r}")
    root = need_root("ucf101", root, _UCF_LAYOUT, can_download=False)
    base, folders, sides, info = read_ucf101("ucf101", root, official_split=official_split)
    return ucf_sources("ucf101", base, folders, [readable(f) for f in folders], sides, info)
