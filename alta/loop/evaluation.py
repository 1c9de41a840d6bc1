"""Class-IL and task-IL evaluation of a learner on the experiences of a stream.

Both settings come from the same logits (as in mammoth and the ALTA reference code):

- class-IL: the prediction is the argmax over the learner's head;
- task-IL: logits of classes outside the sample's own experience are set to ``-inf`` before the
  argmax (the experience of each sample is looked up from its label).

Accuracies are in percent; an experience without test samples scores NaN. With a :class:`~alta.loop.cache.FeatureCache`, the frozen image features
of each test set are computed once per run and every later evaluation only runs the small heads.

Each evaluation also gives the class-IL top-5 accuracy per experience and the class-IL
confusion matrix over all evaluated samples; per-class and old/new-class accuracies are pure
functions of that matrix (:mod:`alta.metrics`). They are counted on the device with ``topk`` and
``bincount``, in the same pass as the top-1 accuracies (which they leave unchanged).
torchmetrics' ``MulticlassAccuracy(top_k=5)`` and ``MulticlassConfusionMatrix`` count the same
numbers; they would add a dependency and a second pass over the logits for two lines of code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from .. import distributed as dist
from ..errors import ConfigError, StateError, TrainingError
from .cache import FeatureCache
from .protocol import check_learner

__all__ = ["evaluate", "EvaluationResult", "task_il_mask", "IL_SETTINGS", "parameter_counts", "TOP_K"]

IL_SETTINGS = ("class-il", "task-il")
TOP_K = 5  # the k of the top-k accuracy (fewer when the head has fewer classes)


@dataclass(frozen=True)
class EvaluationResult:
    """Per-experience accuracies (in %) of one evaluation.

    Attributes:
        experiences: Index of each evaluated experience.
        class_il: Class-IL accuracy per experience (NaN for an experience without test samples).
        task_il: Task-IL accuracy per experience (NaN likewise).
        num_samples: Test samples per experience.
        class_il_top5: Class-IL top-5 accuracy per experience: the label is among the 5 highest
            logits (among all of them when the head has fewer than 5 classes).
        confusion: Class-IL confusion matrix over every evaluated sample, ``confusion[i, j]`` =
            samples of class i predicted as j (int64), or ``None``. Not part of :meth:`as_dict`.

    Shape:
        confusion: (C, C).
    """

    experiences: tuple[int, ...]
    class_il: tuple[float, ...]
    task_il: tuple[float, ...]
    num_samples: tuple[int, ...] = field(default=())
    class_il_top5: tuple[float, ...] = field(default=())
    confusion: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def class_il_mean(self) -> float:
        """Plain mean of the class-IL accuracies (the reference's "mean_acc"; NaN if one is NaN)."""
        return sum(self.class_il) / len(self.class_il)

    @property
    def task_il_mean(self) -> float:
        """Plain mean of the task-IL accuracies (NaN if one is NaN)."""
        return sum(self.task_il) / len(self.task_il)

    def as_dict(self) -> dict:
        """JSON-ready form (without the confusion matrix)."""
        out = {
            "experiences": list(self.experiences),
            "class_il": list(self.class_il),
            "task_il": list(self.task_il),
            "class_il_mean": self.class_il_mean,
            "task_il_mean": self.task_il_mean,
            "num_samples": list(self.num_samples),
        }
        if self.class_il_top5:
            out["class_il_top5"] = list(self.class_il_top5)
            out["class_il_top5_mean"] = sum(self.class_il_top5) / len(self.class_il_top5)
        return out

    def first(self, num: int) -> "EvaluationResult":
        """The accuracies of the first ``num`` experiences (the confusion matrix is dropped: it
        counts the samples of every evaluated experience)."""
        return EvaluationResult(self.experiences[:num], self.class_il[:num], self.task_il[:num],
                                self.num_samples[:num], self.class_il_top5[:num])


def task_il_mask(logits: torch.Tensor, labels: torch.Tensor, class_to_experience: torch.Tensor) -> torch.Tensor:
    """Mask logits for task-IL: keep only the classes of each sample's own experience.

    Args:
        logits: Class-IL logits.
        labels: True labels (they give each sample's experience).
        class_to_experience: Experience id of every class.

    Returns:
        Logits with ``-inf`` outside each sample's experience.

    Shape:
        logits: (B, C); labels: (B,); class_to_experience: (C,); returns (B, C).
    """
    own = class_to_experience[labels]  # (B,)
    outside = class_to_experience.unsqueeze(0) != own.unsqueeze(1)  # (B, C)
    return logits.masked_fill(outside, float("-inf"))


@torch.no_grad()
def evaluate(
    learner,
    experiences: Sequence,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    cache: FeatureCache | None = None,
    progress: bool = False,
    distributed: bool = False,
) -> EvaluationResult:
    """Class-IL and task-IL accuracy of ``learner`` on the test split of each experience.

    Args:
        learner: A :class:`~alta.CrossModalLearner`.
        experiences: Experiences to evaluate (e.g. ``stream[: t + 1]``), or a single one.
        batch_size: Test images per forward pass.
        num_workers: DataLoader workers.
        cache: Reuse frozen image features across evaluations (exact: test transforms are
            deterministic). ``None`` encodes the images every time, as the reference does.
        progress: Show a tqdm progress bar.
        distributed: Inside a process group, every rank scores its contiguous, batch-aligned
            share of each test set and the correct counts are summed over the ranks (one
            all-reduce): the same accuracies as one process, on every rank. Every rank must call
            it. No effect without a process group.

    Returns:
        :class:`EvaluationResult` with per-experience accuracies in % (top-1 class-IL and
        task-IL, top-5 class-IL) and the class-IL confusion matrix. An experience without
        test samples scores NaN (not measured), never 0%: in an accuracy matrix, the metrics of
        :mod:`alta.metrics` then refuse a NaN on or below the diagonal.

    Raises:
        ConfigError: no experiences given.
        StateError: called before the learner began any experience (except ``zeroshot``,
            which has nothing to learn and may be evaluated at any time).
        TrainingError: the learner's logits of some test image hold NaN or +inf (a diverged
            learner, or non-finite image features): accuracies would count their argmax.
    """
    check_learner(learner)
    if hasattr(experiences, "test") and hasattr(experiences, "index"):
        experiences = [experiences]
    experiences = list(experiences)
    if not experiences:
        raise ConfigError("evaluate() needs at least one experience, got none (pass e.g. stream[: t + 1])")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    sizes = {int(torch.as_tensor(e.class_to_experience).numel()) for e in experiences}
    if sizes != {learner.num_classes}:
        raise ConfigError(
            f"the experiences come from a stream of {sorted(sizes)} classes but the learner scores "
            f"{learner.num_classes}; evaluate the learner on the stream it was built for"
        )
    if int(learner.experience_index) < 0 and learner.trains:
        raise StateError(
            "evaluate() called before any experience began: the learner has learned nothing yet. "
            "Call learner.begin_experience(experience) and train first (zero-shot CLIP can be evaluated "
            "at any time with method='zeroshot')."
        )
    parallel = distributed and dist.is_distributed()
    device = learner.device
    was_training = learner.training
    learner.eval()
    classify = learner.classifier()  # the text features once per evaluation
    mapping = torch.as_tensor(experiences[0].class_to_experience, dtype=torch.long, device=device)  # (C,)
    num_classes = int(mapping.numel())
    top_k = min(TOP_K, num_classes)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)  # (C * C,), row-major
    # per experience: correct class-IL, task-IL, class-IL top-k, total, samples with non-finite logits
    tallies = torch.zeros(len(experiences), 5, dtype=torch.long, device=device)
    for row, experience in enumerate(tqdm(experiences, desc="evaluating", disable=not progress, leave=False)):
        if cache is not None:
            stored = cache.features(learner.backbone, experience.test, batch_size=batch_size, num_workers=num_workers)
            features, targets = stored.features, stored.labels
            if parallel:
                mine = dist.batch_aligned_range(features.shape[0], batch_size)
                features, targets = features[mine.start : mine.stop], targets[mine.start : mine.stop]
            batches = zip(features.split(batch_size), targets.split(batch_size))
        else:
            data = experience.test
            if parallel:
                data = Subset(data, list(dist.batch_aligned_range(len(data), batch_size)))
            # its own generator: without one, a DataLoader draws its workers' seed from the global RNG
            batches = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                 pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
        for inputs, labels in batches:
            labels = torch.as_tensor(labels).to(device, non_blocking=True)
            logits = classify(inputs)  # (B, C); encodes images if needed
            predicted = logits.argmax(dim=1)  # (B,)
            tallies[row, 0] += (predicted == labels).sum()
            tallies[row, 1] += (task_il_mask(logits, labels, mapping).argmax(dim=1) == labels).sum()
            tallies[row, 2] += (logits.topk(top_k, dim=1).indices == labels.unsqueeze(1)).any(dim=1).sum()  # (B, k) -> ()
            tallies[row, 3] += labels.shape[0]
            # NaN or +inf: argmax would pick one class for all of them (-inf marks classes not scored)
            tallies[row, 4] += (torch.isnan(logits) | (logits == float("inf"))).any(dim=1).sum()
            confusion += torch.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    if parallel:
        tallies = dist.all_reduce_sum(tallies)
        confusion = dist.all_reduce_sum(confusion)
    learner.train(was_training)
    tallies = tallies.cpu()  # one sync per evaluation
    if bool(tallies[:, 4].any()):
        bad = {int(e.index): (int(n), int(total)) for e, n, total in zip(experiences, tallies[:, 4], tallies[:, 3]) if n}
        raise TrainingError(
            "evaluation met non-finite logits (NaN or +inf) for "
            + ", ".join(f"{n} of the {total} test images of experience {k + 1}" for k, (n, total) in bad.items())
            + "; their argmax would be scored as a prediction of one class, so no accuracy is reported. The learner's "
              "parameters or the backbone's image features are not finite: check the backbone's weights (a NaN in a "
              "checkpoint), half precision overflowing (precision='fp32'), or a method whose logits diverge")
    totals = tallies[:, 3].double()
    # no test samples: nothing was measured (NaN, never 0%)
    class_il, task_il, top5 = (
        torch.where(totals > 0, 100.0 * tallies[:, k].double() / totals, float("nan")).tolist() for k in range(3))
    return EvaluationResult(tuple(int(e.index) for e in experiences), tuple(class_il), tuple(task_il),
                            tuple(int(n) for n in tallies[:, 3]), tuple(top5),
                            confusion.view(num_classes, num_classes).cpu().numpy())


def parameter_counts(learner) -> dict[str, int]:
    """Trainable and total parameter counts of a learner (the frozen backbone included in total).

    Args:
        learner: A :class:`~alta.CrossModalLearner` (or any ``nn.Module`` with
            ``trainable_parameters()``).

    Returns:
        ``{"trainable": ..., "total": ...}``: scalars the optimiser updates, and all parameters
        of the module (prompt snapshots and other buffers excluded).
    """
    trainable = learner.trainable_parameters() if hasattr(learner, "trainable_parameters") else [
        p for p in learner.parameters() if p.requires_grad]
    return {"trainable": sum(p.numel() for p in trainable), "total": sum(p.numel() for p in learner.parameters())}
