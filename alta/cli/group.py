"""Several runs of ``alta run`` in one pass: a run group over the shared frozen encoders.

:func:`run_group_experiment` runs K :class:`~alta.cli.config.RunConfig` s that share the stream,
the seed, the batch size, the epochs, the cache mode, the evaluation and the backbone
(:func:`group_key`; they may differ in method, buffer size or policy, alpha/beta, schedule,
optimiser...) with :func:`alta.run_group`: one backbone, one stream, one feature cache, one image
encoder forward per step for all K. Each member writes its own results folder exactly as
:func:`~alta.cli.experiment.run_experiment` does (``config.yaml``, ``metrics.jsonl``,
``checkpoint.pt`` at every experience end, ``summary.json``), with the same numbers, and is
resumable on its own: resuming a group skips the members that are complete and continues the
others from their checkpoints (members stopped at different experiences continue as separate
groups). ``summary.json`` of a member also says which group it ran in and the group's wall time.

Zero-shot CLIP trains nothing and has no place in a group (:func:`group_key` is ``None``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..backbones import load_backbone
from ..buffer import MemoryBuffer
from ..cache import FeatureCache
from ..callbacks import Callback
from ..errors import ConfigError
from ..evaluation import evaluate
from ..group import GroupMember, run_group
from ..io import append_jsonl, write_json, write_text
from ..learner import CrossModalLearner
from ..optim import build_optimizer
from ..schedule import AlternatingSchedule
from ..training import LoopConfig, StreamResult, derive_seed
from .checkpoint import CHECKPOINT_NAME, read_checkpoint, restore_checkpoint, save_checkpoint
from .config import RunConfig, flatten
from .experiment import (
    _check_backbone_name,
    _check_resumed_config,
    build_stream,
    read_finished_summary,
    resolve_device,
)
from .report import build_summary
from .rundir import claim_run_dir

__all__ = ["SHARED_KEYS", "group_key", "plan_groups", "run_group_experiment"]

logger = logging.getLogger("alta.cli")

#: Config keys the members of a group share (a trailing dot: the whole section). Every other key
#: (method, head, alpha, beta, buffer, optimiser, schedule, ...) may differ between members.
SHARED_KEYS = ("seed", "device", "data.", "model.visual", "model.precision", "model.backbone_seed",
               "model.download_root", "model.download_weights", "train.epochs", "train.batch_size",
               "train.train_cache", "eval.every", "eval.batch_size")


def _shared_values(config: RunConfig) -> dict[str, Any]:
    values = flatten(config.to_dict())
    return {k: v for k, v in values.items() if any(k == s or (s.endswith(".") and k.startswith(s))
                                                   for s in SHARED_KEYS)}


def group_key(config: RunConfig) -> str | None:
    """The key of the group a run can join: equal keys share stream, seed, batch size, epochs,
    cache mode, evaluation and backbone (:data:`SHARED_KEYS`); ``None`` for a run that trains
    nothing (zero-shot CLIP)."""
    if config.model.method == "zeroshot":
        return None
    text = json.dumps(_shared_values(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_groups(configs: Sequence[RunConfig], *, max_size: int | None = None) -> list[list[int]]:
    """Indices of ``configs`` by group (first appearance order), each at most ``max_size`` long;
    a config without a group key is a group of its own.

    Raises:
        ConfigError: ``max_size`` not a positive integer.
    """
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1):
        raise ConfigError(f"max_size must be an integer >= 1 or None, got {max_size!r}")
    groups: dict[Any, list[list[int]]] = {}
    order: list[list[int]] = []
    for i, config in enumerate(configs):
        key = group_key(config)
        key = ("alone", i) if key is None else key
        chunks = groups.setdefault(key, [])
        if not chunks or (max_size is not None and len(chunks[-1]) >= max_size):
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(i)
    return order


class _Member:
    """One member's objects, files and state, built as :func:`run_experiment` builds them."""

    def __init__(self, config: RunConfig, run_dir, *, backbone, stream, experiences, device) -> None:
        self.config, self.run_dir, self.output_dir = config, run_dir, run_dir.path
        m, t, o = config.model, config.train, config.optim
        self.learner = CrossModalLearner(
            backbone, class_names=stream.class_names, method=m.method, head=m.head, alpha=m.alpha, beta=m.beta,
            replay_batch_size=m.replay_batch_size, ctx_init=m.ctx_init, template=m.template,
            adapter_reduction=m.adapter_reduction, seed=config.seed, truncate_text=m.truncate_text,
            snapshot_timing=m.snapshot_timing,
        )
        self.buffer = None
        if config.buffer.enabled and self.learner.method.replay:
            self.buffer = MemoryBuffer(config.buffer.size, policy=config.buffer.policy, device=device,
                                       seed=derive_seed(config.seed, 1))
        self.schedule = AlternatingSchedule(t.schedule, period=t.schedule_period, unit=t.schedule_unit,
                                            start=t.schedule_start)
        self.optimizer, self.scheduler = build_optimizer(
            self.learner, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, schedule=o.lr_schedule,
            epochs=t.epochs, warmup_epochs=o.warmup_epochs, warmup_lr=o.warmup_lr)
        self.num = len(experiences)
        self.config_hash = config.fingerprint()
        self.checkpoint_path = self.output_dir / CHECKPOINT_NAME
        self.metrics_path = self.output_dir / "metrics.jsonl"
        self.result = StreamResult.empty(self.num)
        self.start_experience, self.zeroshot, self.elapsed_before = 0, None, 0.0

    def restore(self) -> None:
        """Continue from the member's checkpoint, if any; metrics.jsonl rewritten to match it."""
        if self.run_dir.resume and self.checkpoint_path.is_file():
            state = read_checkpoint(self.checkpoint_path, config_hash=self.config_hash, num_experiences=self.num)
            self.result = restore_checkpoint(state, learner=self.learner, buffer=self.buffer, schedule=self.schedule,
                                             optimizer=self.optimizer, scheduler=self.scheduler)
            self.start_experience, self.zeroshot = state["next_experience"], state["zeroshot"]
            self.elapsed_before = state["elapsed_s"]
            logger.info("resuming %s after experience %d of %d", self.output_dir, self.start_experience, self.num)
        write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in self.result.evaluations))

    def callback(self, elapsed) -> Callback:
        member = self

        class _Writer(Callback):
            def on_evaluation(self, *, record: dict) -> None:
                append_jsonl(member.metrics_path, record)

            def on_experience_end(self, *, experience: int, result: StreamResult) -> None:
                save_checkpoint(member.checkpoint_path, config_hash=member.config_hash,
                                next_experience=experience + 1, num_experiences=member.num, learner=member.learner,
                                buffer=member.buffer, schedule=member.schedule, optimizer=member.optimizer,
                                scheduler=member.scheduler, result=result, zeroshot=member.zeroshot,
                                elapsed_s=member.elapsed_before + elapsed())

        return _Writer()


def run_group_experiment(
    configs: Sequence[RunConfig],
    output_dirs: Sequence[str | Path],
    *,
    resume: bool | Sequence[bool] = False,
    stop_after: int | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) K configurations of one group and write each member's results folder.

    Args:
        configs: The members' resolved configurations; they must have one :func:`group_key`.
        output_dirs: One results folder per member (claimed as :func:`run_experiment` claims it).
        resume: Continue the members in their folders (complete ones are skipped); one flag for
            all, or one per member (a group of new and interrupted runs).
        stop_after: End the group after this many experiences, every member's checkpoint kept
            (continue later with ``resume=True``, as a group or each member with ``alta run --resume``).

    Returns:
        The members' summaries (the contents of their ``summary.json``), in order; when stopped
        by ``stop_after``, ``{"complete": False, "experiences_done": n, ...}`` for the members
        it stopped.

    Raises:
        ConfigError: no member, unequal lengths, members of different groups, or what
            :func:`run_experiment` refuses (folders, configuration).
        DataError, BackboneError, CheckpointError: as :func:`run_experiment`.
    """
    started = time.perf_counter()
    configs, output_dirs = list(configs), [Path(p) for p in output_dirs]
    resumes = [bool(resume)] * len(configs) if isinstance(resume, bool) else [bool(r) for r in resume]
    if not configs or len(configs) != len(output_dirs) or len(resumes) != len(configs):
        raise ConfigError(f"run_group_experiment needs one output folder (and resume flag) per config, got "
                          f"{len(configs)} config(s), {len(output_dirs)} folder(s), {len(resumes)} flag(s)")
    keys = {group_key(c) for c in configs}
    if len(keys) != 1 or None in keys:
        raise ConfigError(
            f"these configs cannot run as one group: they must train something and agree on {', '.join(SHARED_KEYS)} "
            f"(a trailing dot: the whole section); plan groups with alta.cli.group.plan_groups"
        )
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ConfigError(f"stop_after must be an integer >= 1 (experiences to run before stopping), got "
                          f"{stop_after!r}")
    _check_backbone_name(configs[0].model.visual)
    device = resolve_device(configs[0].device)
    with contextlib.ExitStack() as stack:
        run_dirs = [stack.enter_context(claim_run_dir(path, config, resume=again))
                    for config, path, again in zip(configs, output_dirs, resumes)]
        summaries: list[dict | None] = [None] * len(configs)
        for i, (config, path, again) in enumerate(zip(configs, output_dirs, resumes)):
            if again:
                _check_resumed_config(config, path)
                summaries[i] = read_finished_summary(path)
        todo = [i for i, s in enumerate(summaries) if s is None]
        if todo:
            for i, summary in zip(todo, _run_members([configs[i] for i in todo], [run_dirs[i] for i in todo],
                                                     device=device, started=started, stop_after=stop_after)):
                summaries[i] = summary
    return summaries


class _StopRequested(Exception):
    """Raised after the last member's checkpoint of experience ``stop_after``."""


class _StopAfter(Callback):
    """Stops the group after ``experiences`` experiences. Given to the group's last member: the
    members end an experience in order, so every member's checkpoint is written by then."""

    def __init__(self, experiences: int, num_experiences: int) -> None:
        self.experiences, self.num_experiences = experiences, num_experiences

    def on_experience_end(self, *, experience: int, result: StreamResult) -> None:
        if self.experiences <= experience + 1 < self.num_experiences:
            raise _StopRequested(experience + 1)


def _run_members(configs: list[RunConfig], run_dirs: list, *, device: torch.device, started: float,
                 stop_after: int | None) -> list[dict]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first = configs[0]
    m = first.model
    backbone = load_backbone(m.visual, device=device, precision=m.precision, download_root=m.download_root,
                             download=m.download_weights, seed=m.backbone_seed)
    stream, experiences = build_stream(first, resolution=backbone.input_resolution)
    members = [_Member(c, d, backbone=backbone, stream=stream, experiences=experiences, device=device)
               for c, d in zip(configs, run_dirs)]
    cache = FeatureCache()
    logger.info("group of %d run(s) on %s: %s", len(members), backbone.name,
                ", ".join(f"{c.model.method} (buffer {c.buffer.size if c.buffer.enabled else 'off'})" for c in configs))
    for member in members:
        member.run_dir.mark_started()
        write_text(member.output_dir / "config.yaml", member.config.to_yaml())
        member.restore()
        if member.zeroshot is None and member.config.eval.zeroshot_baseline:  # shares the cached test features
            zs = CrossModalLearner(backbone, class_names=stream.class_names, method="zeroshot", head="all",
                                   template=member.config.model.template,
                                   truncate_text=member.config.model.truncate_text)
            result = evaluate(zs, experiences, batch_size=member.config.eval.batch_size,
                              num_workers=member.config.data.num_workers, cache=cache)
            member.zeroshot = {"class_il": list(result.class_il), "task_il": list(result.task_il)}

    def elapsed() -> float:
        return time.perf_counter() - started

    t = first.train
    loop = LoopConfig(epochs=t.epochs, batch_size=t.batch_size, seed=first.seed, train_cache=t.train_cache,
                      eval_every=first.eval.every, eval_batch_size=first.eval.batch_size,
                      num_workers=first.data.num_workers)
    for start in sorted({mb.start_experience for mb in members}):  # members resumed at one point train together
        part = [mb for mb in members if mb.start_experience == start and start < mb.num]
        if not part or (stop_after is not None and start >= stop_after):
            continue
        stop = [_StopAfter(stop_after, len(experiences))] if stop_after is not None else []
        group = [GroupMember(mb.learner, optimizer=mb.optimizer, scheduler=mb.scheduler, buffer=mb.buffer,
                             schedule=mb.schedule, callbacks=[mb.callback(elapsed)] + (stop if mb is part[-1] else []),
                             result=mb.result, name=mb.config.model.method) for mb in part]
        try:
            run_group(group, experiences, loop=loop, cache=cache, start_experience=start)
        except _StopRequested:
            pass
    group_wall = elapsed()
    description = backbone.describe()
    stream_info = {
        "dataset": stream.name, "num_experiences": len(experiences),
        "classes_per_experience": stream.classes_per_experience, "class_names": stream.class_names,
        "num_train": sum(len(e.train) for e in experiences), "num_test": sum(len(e.test) for e in experiences),
    }
    summaries = []
    for member in members:
        done = int(np.isfinite(member.result.class_il).all(axis=1).sum())  # rows filled at experience ends
        if done < member.num:
            summaries.append({"complete": False, "experiences_done": done, "num_experiences": member.num,
                              "output_dir": str(member.output_dir)})
            continue
        summary = build_summary(
            config=member.config, result=member.result, zeroshot=member.zeroshot, backbone=description,
            method=member.learner.method, stream_info=stream_info,
            num_trainable_parameters=member.learner.num_trainable_parameters(),
            wall_time_s=member.elapsed_before + group_wall, device=device, output_dir=member.output_dir,
            buffer_size=member.buffer.capacity if member.buffer is not None else 0,
        )
        summary["group"] = {"size": len(members), "key": group_key(member.config), "wall_time_s": group_wall,
                            "methods": [mb.config.model.method for mb in members],
                            "output_dirs": [str(mb.output_dir) for mb in members]}
        write_json(member.output_dir / "summary.json", summary)
        summaries.append(summary)
    return summaries
