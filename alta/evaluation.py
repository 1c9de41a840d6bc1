"""Class-IL and task-IL evaluation of a learner on the experiences of a stream.

Both settings come from the same logits (as in mammoth and the ALTA reference code):

- class-IL: the prediction is the argmax over the learner's head;
- task-IL: logits of classes outside the sample's own experience are set to ``-inf`` before the
  argmax (the experience of each sample is looked up from its label).

Accuracies are in percent; an experience without test samples scores NaN. With a :class:`~alta.cache.FeatureCache`, the frozen image features
of each test set are computed once per run and every later evaluation only runs the small heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import torch
from torch.utils.data import DataLoader

from .cache import FeatureCache
from .config import ConfigSection, check_choice, in_section
from .errors import ConfigError, StateError

__all__ = ["evaluate", "EvaluationResult", "EvalConfig", "task_il_mask", "IL_SETTINGS"]

IL_SETTINGS = ("class-il", "task-il")


@dataclass(frozen=True)
class EvalConfig(ConfigSection):
    """Evaluation in a run (YAML section ``eval``, the reference's ``eval``).

    Attributes:
        every: Evaluate the experiences seen so far every this many epochs (10; 0: only at the
            end of each experience). Both settings are computed at every evaluation.
        batch_size: Test batch size (does not change results).
        il_setting: The headline setting, ``class-il`` or ``task-il`` (the reference's
            ``--il_setting``).
        zeroshot_baseline: Evaluate zero-shot CLIP on every experience (the baseline of
            forward transfer; cheap, it shares the cached test features).
    """

    _SECTION: ClassVar[str] = "eval"

    every: int = 10
    batch_size: int = 256
    il_setting: str = "class-il"
    zeroshot_baseline: bool = True

    def __post_init__(self) -> None:
        from .training import LoopConfig  # the loop owns the evaluation period and batch size

        with in_section("eval", eval_every="every", eval_batch_size="batch_size"):
            LoopConfig(eval_every=self.every, eval_batch_size=self.batch_size)
        check_choice(self.il_setting, "eval.il_setting", IL_SETTINGS)


@dataclass(frozen=True)
class EvaluationResult:
    """Per-experience accuracies (in %) of one evaluation.

    Attributes:
        experiences: Index of each evaluated experience.
        class_il: Class-IL accuracy per experience (NaN for an experience without test samples).
        task_il: Task-IL accuracy per experience (NaN likewise).
        num_samples: Test samples per experience.
    """

    experiences: tuple[int, ...]
    class_il: tuple[float, ...]
    task_il: tuple[float, ...]
    num_samples: tuple[int, ...] = field(default=())

    @property
    def class_il_mean(self) -> float:
        """Plain mean of the class-IL accuracies (the reference's "mean_acc"; NaN if one is NaN)."""
        return sum(self.class_il) / len(self.class_il)

    @property
    def task_il_mean(self) -> float:
        """Plain mean of the task-IL accuracies (NaN if one is NaN)."""
        return sum(self.task_il) / len(self.task_il)

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "experiences": list(self.experiences),
            "class_il": list(self.class_il),
            "task_il": list(self.task_il),
            "class_il_mean": self.class_il_mean,
            "task_il_mean": self.task_il_mean,
            "num_samples": list(self.num_samples),
        }


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

    Returns:
        :class:`EvaluationResult` with per-experience accuracies in %. An experience without
        test samples scores NaN (not measured), never 0%: in an accuracy matrix, the metrics of
        :mod:`alta.metrics` then refuse a NaN on or below the diagonal.

    Raises:
        ConfigError: no experiences given.
        StateError: called before the learner began any experience (except ``zeroshot``,
            which has nothing to learn and may be evaluated at any time).
    """
    from tqdm.auto import tqdm

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
    if int(learner.experience_index) < 0 and learner.method.branches:
        raise StateError(
            "evaluate() called before any experience began: the learner has learned nothing yet. "
            "Call learner.begin_experience(experience) and train first (zero-shot CLIP can be evaluated "
            "at any time with method='zeroshot')."
        )
    device = learner.device
    was_training = learner.training
    learner.eval()
    text = learner.text_features(grad=False)  # once per evaluation
    mapping = torch.as_tensor(experiences[0].class_to_experience, dtype=torch.long, device=device)  # (C,)
    indices, class_il, task_il, counts = [], [], [], []
    for experience in tqdm(experiences, desc="evaluating", disable=not progress, leave=False):
        correct_c = torch.zeros((), dtype=torch.long, device=device)
        correct_t = torch.zeros((), dtype=torch.long, device=device)
        total = 0
        if cache is not None:
            stored = cache.features(learner.backbone, experience.test, batch_size=batch_size, num_workers=num_workers)
            batches = zip(stored.features.split(batch_size), stored.labels.split(batch_size))
        else:
            # its own generator: without one, a DataLoader draws its workers' seed from the global RNG
            batches = DataLoader(experience.test, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                 pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
        for inputs, labels in batches:
            labels = torch.as_tensor(labels).to(device, non_blocking=True)
            logits = learner.logits_from_features(inputs, text)  # (B, C); encodes images if needed
            correct_c += (logits.argmax(dim=1) == labels).sum()
            correct_t += (task_il_mask(logits, labels, mapping).argmax(dim=1) == labels).sum()
            total += labels.shape[0]
        indices.append(int(experience.index))
        counts.append(total)
        # one sync per experience; no test samples: nothing was measured (NaN, never 0%)
        class_il.append(100.0 * float(correct_c) / total if total else float("nan"))
        task_il.append(100.0 * float(correct_t) / total if total else float("nan"))
    learner.train(was_training)
    return EvaluationResult(tuple(indices), tuple(class_il), tuple(task_il), tuple(counts))
