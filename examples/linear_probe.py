"""A method that is not ALTA, in one file: a linear probe on frozen CLIP image features.

What it shows: how your own method reaches every tool of alta. The file defines a learner of the
`alta.Learner` protocol (alta/loop/protocol.py) -- a linear classifier over the frozen image
features, its weights initialised from CLIP's zero-shot classifier (the text features of "a photo
of a {class}"), trained on each experience in turn (sequential fine-tuning, no replay) -- and
registers it as the method `linear_probe`. Its loss goes through the same seam as ALTA's
(`alta.losses.step_loss` over `LossTerm`s), so extra loss terms (`--loss-term`) apply to it too.
Once registered, the loop, the feature cache, evaluation, checkpoints and resume, run groups,
`--seeds`, torchrun and `alta report` treat it as they treat ALTA:

    alta run --import examples/linear_probe.py --method linear_probe,alta    # a run group beside ALTA
    alta report runs/default-group-*                                         # the table

Run as a script, it does exactly that on the offline demo (digits, tiny random-weight CLIP) and
prints the report. The backbone has RANDOM weights: the numbers show that the pipeline runs, not
how the methods compare.

Time on a CPU (one torch thread, a 2-core virtual machine under a load of about 7 from other
jobs, start-up included; measured 2026-12-06): 18 s with the defaults (5 experiences, 5 epochs,
the two methods in one run group; 8 s of it training and evaluating), `--quick` (2 epochs, 20
images per class) 16 s.

Usage:
    python examples/linear_probe.py [--epochs 5] [--output-dir runs/probe-vs-alta]
    alta run --import examples/linear_probe.py --method linear_probe --set model.method_options.init=random
    torchrun --nproc_per_node 2 -m alta run --import examples/linear_probe.py --method linear_probe
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from alta.losses import CrossEntropy, LossInputs, extra_loss_terms, step_loss
from alta.methods import METHODS, LearnerMethod
from alta.prompt import tokenize_class_prompts


class LinearProbe(nn.Module):
    """Linear probe on frozen CLIP image features, initialised from zero-shot CLIP.

    logits = s * normalize(f1) @ W^T + b, with W (C, D) and b (C,) trained and s = exp(CLIP
    logit_scale); W starts at the normalised text features of "a photo of a {class}" (zero-shot
    CLIP, as LP-FT and WiSE-FT start) or, with ``init="random"``, at seeded random values.

    Args:
        backbone: The frozen backbone (:class:`alta.backbones.Backbone`); not a submodule, so
            it is neither trained nor saved.
        class_names: The stream's class names, in label order (C).
        seed: Seed of the random initialisation.
        init: ``"text"`` (zero-shot CLIP) or ``"random"``.
        loss_terms: Extra loss terms (``model.loss_terms``), added to the cross-entropy.

    Shape:
        ``loss(inputs, labels)``: inputs (B, 3, R, R) or features (B, D), labels (B,);
        ``classifier()(inputs)``: -> logits (B, C).
    """

    name = "linear_probe"
    trains = True
    replays = False
    replay_batch_size = 0

    def __init__(self, backbone, *, class_names: Sequence[str], seed: int = 0, init: str = "text",
                 loss_terms: Sequence = ()) -> None:
        super().__init__()
        if init not in ("text", "random"):
            raise ValueError(f"init must be 'text' or 'random', got {init!r}")
        object.__setattr__(self, "backbone", backbone)  # frozen and shared by a run group: not a submodule
        num_classes, dim = len(class_names), backbone.embed_dim
        self.num_classes = num_classes
        self.head = nn.Linear(dim, num_classes, device=backbone.device)
        with torch.no_grad():
            if init == "text":
                tokens = tokenize_class_prompts(backbone, list(class_names), template="a photo of a {}.")
                self.head.weight.copy_(F.normalize(backbone.encode_tokens(tokens).float(), dim=-1))
            else:
                generator = torch.Generator().manual_seed(seed)
                self.head.weight.copy_(torch.randn(num_classes, dim, generator=generator) / dim ** 0.5)
            self.head.bias.zero_()
        self.register_buffer("experience_index", torch.tensor(-1, device=backbone.device))
        self.register_buffer("class_to_experience", torch.full((num_classes,), -1, device=backbone.device))
        self._ce = CrossEntropy()
        self._extra = extra_loss_terms(loss_terms, method=(self._ce,))
        self.extra_terms = nn.ModuleDict({t.name: t for t in self._extra if isinstance(t, nn.Module)})

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def loss_terms(self) -> tuple:
        """The terms of the loss (the run's log says what they are and what size is normal)."""
        return (self._ce, *self._extra)

    # ------------------------------------------------------------------ experiences
    def begin_experience(self, experience) -> None:
        self.class_to_experience.copy_(torch.as_tensor(experience.class_to_experience))
        self.experience_index.fill_(int(experience.index))

    def end_experience(self, experience) -> None:
        pass  # nothing to freeze: the probe keeps learning

    # ------------------------------------------------------------------ parameters
    def active_branches(self, schedule=None) -> frozenset[str]:
        return frozenset({"head"})  # one branch: an alternating schedule has nothing to alternate

    def branch_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {"head": list(self.head.parameters())}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def check_buffer(self, buffer) -> None:
        pass  # no replay: the run gives it no buffer

    def train(self, mode: bool = True) -> "LinearProbe":
        super().train(mode)
        self.backbone.train(False)  # the frozen encoders stay in eval mode
        return self

    # ------------------------------------------------------------------ logits and loss
    def _features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Frozen image features f1 (B, D) of images (B, 3, R, R), or the features as given."""
        if inputs.ndim == 4:
            return self.backbone.encode_images(inputs.to(self.device))
        return inputs.to(self.device, dtype=torch.float32)

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbone.logit_scale * self.head(F.normalize(features, dim=-1))  # (B, C)

    def loss(self, inputs, labels, *, memory=None, branches=None):
        """Cross-entropy of the batch, plus the extra loss terms: an :class:`alta.losses.StepLoss`."""
        features = self._features(inputs)  # (B, D)
        labels = labels.to(self.device)
        terms_inputs = LossInputs(learner=self, inputs=inputs, features=features, labels=labels,
                                  logits=self._logits(features), branches=frozenset({"head"}))
        return step_loss((self._ce, *self._extra), terms_inputs, experience_ids=self.class_to_experience[labels])

    def classifier(self):
        return lambda inputs: self._logits(self._features(inputs))


# The registration: `alta run --import examples/linear_probe.py` imports this file, and the run
# builds LinearProbe(backbone, class_names=..., seed=..., **model.method_options).
METHODS.add("linear_probe", LearnerMethod("linear_probe", LinearProbe,
                                          description="linear probe on frozen image features, zero-shot init",
                                          replay=False, branches=frozenset({"head"})))


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the probe beside ALTA as one run group (``alta run``), then ``alta report`` it.

    Returns:
        The summaries of the two runs, by method.
    """
    import json
    import time

    from alta.cli import main as alta_main

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/probe-vs-alta"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: best for the tiny backbone)")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 20 training images per class")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    size = ["--set", "data.max_train_per_class=20", "--set", "data.max_test_per_class=20"] if args.quick else []
    epochs = 2 if args.quick else args.epochs
    # the method is registered (this file was run or imported): --method names it as it names ALTA
    code = alta_main(["run", "--method", "linear_probe,alta", "--epochs", str(epochs), "--eval-every", "0",
                      "--train-cache", "fixed", "--output-dir", str(args.output_dir), "--threads", str(args.threads),
                      "--no-plots", "--no-progress", "-q", *size])
    if code != 0:
        raise SystemExit(code)
    print(f"\n$ alta report {args.output_dir}")
    alta_main(["report", str(args.output_dir)])
    print(f"time: {time.perf_counter() - started:.0f} s")
    return {name: json.loads((args.output_dir / name / "summary.json").read_text())
            for name in ("linear_probe", "oritext_mlp2cprompt_oriimg")}


if __name__ == "__main__":
    main(sys.argv[1:])
