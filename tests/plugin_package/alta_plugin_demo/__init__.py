"""alta-plugin-demo: a method, a loss term, a dataset and a logger for alta, as a user writes them.

- ``alta3``: a variant of ALTA (:class:`alta.methods.MethodSpec`) whose logits add zero-shot CLIP
  to ALTA's crossed pairing: ``s*cos(f1, w2) + s*cos(f2, w1) + s*cos(f1, w1)``.
- ``logit_norm``: a loss term with state: the mean squared logit of the batch divided by a running
  mean of it (a buffer, checkpointed with the learner), so a resumed run goes on exactly.
- ``demo-shapes``: a dataset of 32 x 32 synthetic images of four shapes (no files, no download).
- ``loss_jsonl``: a logger writing every epoch's loss terms to ``losses.jsonl`` in the run folder.
"""

import json
from pathlib import Path

import numpy as np
import torch

import alta
from alta.data.datasets.base import ArraySource, DatasetSpec
from alta.losses import LossTerm, TermValue
from alta.methods import MethodSpec

ALTA3 = MethodSpec("alta3", (("f1", "w2"), ("f2", "w1"), ("f1", "w1")), replay=True, snapshot=True,
                   description="ALTA's crossed pairing plus zero-shot CLIP")


class LogitNorm(LossTerm):
    """Mean squared logit over a running mean of it (a stateful regulariser)."""

    name = "logit_norm"

    def __init__(self, *, weight: float = 0.1, momentum: float = 0.9) -> None:
        super().__init__(weight=weight)
        self.momentum = momentum
        self.register_buffer("running", torch.ones(()))

    def forward(self, inputs):
        square = inputs.logits.pow(2).mean()
        value = square / self.running.clone()  # the buffer is updated in place below
        with torch.no_grad():
            self.running.mul_(self.momentum).add_((1 - self.momentum) * square.detach())
        return TermValue(value, inputs.logits.numel())


def _shapes(num_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    images, labels = [], []
    for label in range(4):
        for _ in range(num_per_class):
            cy, cx, r = rng.integers(10, 22), rng.integers(10, 22), rng.integers(5, 9)
            if label == 0:
                mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
            elif label == 1:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            elif label == 2:
                mask = (abs(yy - cy) < 2) | (abs(xx - cx) < 2)
            else:
                mask = (yy // 4) % 2 == 0
            image = np.zeros((32, 32, 3), dtype=np.uint8)
            image[mask] = rng.integers(128, 256, size=3)
            images.append(image)
            labels.append(label)
    return np.stack(images), np.array(labels)


def load_shapes(root, *, download=False):
    """Four shapes (square, circle, cross, stripes), 32 x 32, synthetic and seeded."""
    names = ["square", "circle", "cross", "stripes"]
    train = ArraySource(*_shapes(12, seed=0), names, identity="demo-shapes|synthetic|train")
    test = ArraySource(*_shapes(6, seed=1), names, identity="demo-shapes|synthetic|test")
    return train, test


SHAPES = DatasetSpec("demo-shapes", load_shapes, 2, "four synthetic shapes, 2 experiences of 2", takes_root=False)


class _LossLines(alta.Callback):
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_run_start(self, **_):
        self.path.write_text("")

    def on_epoch_end(self, *, experience, epoch, stats, result):
        terms = {k: v for k, v in stats.items() if k not in ("epoch", "steps", "samples", "lr", "train_accuracy")}
        with self.path.open("a") as file:
            file.write(json.dumps({"experience": experience, "epoch": epoch, **terms}) + "\n")


def loss_jsonl(output_dir, *, config):
    """losses.jsonl: every epoch's loss terms, one JSON line each."""
    return _LossLines(Path(output_dir) / "losses.jsonl")
