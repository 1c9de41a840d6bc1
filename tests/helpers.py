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
