"""Small helpers shared by tests: synthetic experiences without any dataset code."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset


@dataclass(frozen=True)
class FakeExperience:
    """Quacks like alta.data.Experience for the learner and evaluate()."""

    index: int
    classes: list
    class_to_experience: torch.Tensor
    test: TensorDataset
    train: TensorDataset | None = None


def synthetic_experiences(num_experiences=2, classes_per_experience=2, per_class=6, resolution=32, seed=0):
    """Random images with labels; experience t holds classes [t*k, (t+1)*k)."""
    g = torch.Generator().manual_seed(seed)
    num_classes = num_experiences * classes_per_experience
    mapping = torch.arange(num_classes) // classes_per_experience
    out = []
    for t in range(num_experiences):
        classes = list(range(t * classes_per_experience, (t + 1) * classes_per_experience))
        labels = torch.tensor(classes).repeat_interleave(per_class)
        images = torch.randn(labels.shape[0], 3, resolution, resolution, generator=g)
        out.append(FakeExperience(t, classes, mapping, TensorDataset(images, labels), TensorDataset(images, labels)))
    return out


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``alta`` in-process: (exit status, stdout, stderr); no traceback may be printed."""
    from alta.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return code, out, err


def write_image(path, color=(10, 20, 30), size=(4, 3)) -> None:
    """A tiny RGB image at ``path`` (format from the extension), folders created."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def make_suite_archive(root, spec, *, train: int = 1, test: int = 1, test_dir: str = "test"):
    """The pre-split archive of a suite dataset (``alta.data.datasets.cil_suite``) under ``root``:
    ``root/<folder>/{train,test}/<class folder>/`` with ``train`` / ``test`` tiny images per class,
    folders spelled as the suite's data file lists them; SUN's merged categories as sub-folders
    (ImageFolder reads them recursively). Returns the archive folder."""
    base = root / spec.folders[0]
    for side, count in (("train", train), (test_dir, test)):
        for k, cls in enumerate(spec.classes):
            subs = [c.rsplit("/", 1)[-1] for c in cls.official.split(",")] if spec.key == "sun" else [""]
            for j in range(count):
                sub = subs[j % len(subs)] if len(cls.official.split(",")) > 1 else ""
                write_image(base / side / cls.folder / sub / f"{side}_{j}.jpg", color=(k % 256, j, k // 256))
    return base
