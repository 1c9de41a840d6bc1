"""Run groups of the run application: several configurations in one pass over the frozen encoders.

Runs that share the stream, the seed, the batch size, the epochs, the cache mode, the evaluation
and the backbone (:data:`SHARED_KEYS`) train together with :func:`alta.run_group`: one
image-encoder forward per step for all of them, each writing its own results folder with the
numbers it would have alone (ALTA: Li et al., IEEE TMM 2023).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from .. import distributed as dist
from ..errors import ConfigError
from ..io import write_text
from ..learner_config import LearnerConfig
from ..loop.callbacks import Callback, CallbackList, MainProcessOnly, ProgressBar
from ..loop.group import GroupMember, run_group
from ..loop.result import StreamResult
from ..methods import METHODS
from ..resources import translate_allocation_errors
from ..seeding import set_deterministic
from .checkpoint import CHECKPOINT_NAME, read_checkpoint, restore_checkpoint
from .config import RunConfig, flatten, resolve_device
from .driver import _check_resumed_config, read_finished_summary
from .experiment import Experiment, check_backbone_name
from .rundir import RunDir, claim_run_dir
from .sections import ModelConfig
from .writers import (
    Checkpointer,
    FolderGuard,
    LogLines,
    MetricsWriter,
    PlotWriter,
    StopAfter,
    StopRequested,
    SummaryWriter,
    build_loggers,
    check_loggers,
    finish_complete_run,
    loss_note,
    read_outputs,
    resolve_outputs,
    run_plugins,
    write_outputs,
)

__all__ = ["SHARED_KEYS", "group_key", "plan_groups", "run_group_experiment"]

logger = logging.getLogger("alta.run")

# --------------------------------------------------------------------------------------------
# Run groups: several runs in one pass over the frozen encoders
# --------------------------------------------------------------------------------------------

#: Config keys the members of a run group share (a trailing dot: the whole section): the stream,
#: the seed, the protocol (its class names build the shared stream), the kernels' determinism
#: (a setting of the process), the backbone (the ``model`` keys of :class:`~alta.run.sections.ModelConfig` that are not the
#: learner's, :class:`~alta.learner_config.LearnerConfig`), and the loop. Every other key (method, head,
#: alpha, beta, buffer, optimiser, schedule, ...) may differ between members.
SHARED_KEYS = ("seed", "device", "protocol", "deterministic", "data.",
               *(f"model.{f.name}" for f in dataclasses.fields(ModelConfig)
                 if f.name not in {g.name for g in dataclasses.fields(LearnerConfig)}),
               "train.epochs", "train.iterations", "train.batch_size", "train.train_cache", "eval.every",
               "eval.batch_size")


def group_key(config: RunConfig) -> str | None:
    """The key of the run group a run can join: runs with equal keys share the stream, the seed,
    the batch size, the epochs, the cache mode, the evaluation and the backbone
    (:data:`SHARED_KEYS`); ``None`` for a run that trains nothing (zero-shot CLIP)."""
    if not METHODS.get(config.model.method).branches:
        return None
    values = {k: v for k, v in flatten(config.to_dict()).items()
              if any(k == key or (key.endswith(".") and k.startswith(key)) for key in SHARED_KEYS)}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_groups(configs: Iterable[RunConfig], *, max_size: int | None = None) -> list[list[int]]:
    """Indices of ``configs`` by run group (in order of first appearance), at most ``max_size``
    per group; a config without a :func:`group_key` is a group of its own.

    Raises:
        ConfigError: ``max_size`` not a positive integer.
    """
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1):
        raise ConfigError(f"max_size must be an integer >= 1 or None, got {max_size!r}")
    chunks: dict[Any, list[list[int]]] = {}
    order: list[list[int]] = []
    for i, config in enumerate(configs):
        key = group_key(config)
        own = chunks.setdefault(("alone", i) if key is None else key, [])
        if not own or (max_size is not None and len(own[-1]) >= max_size):
            own.append([])
            order.append(own[-1])
        own[-1].append(i)
    return order


def run_group_experiment(
    configs: Iterable[RunConfig],
    output_dirs: Iterable[str | Path],
    *,
    resume: bool | Iterable[bool] = False,
    progress: bool = False,
    plots: bool | None = None,
    stop_after: int | None = None,
    loggers: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) several runs of one group in one pass (:func:`alta.run_group`), each
    writing its own results folder as :func:`run_experiment` does, with the same numbers.

    The members share one backbone, one stream and one feature cache: one image-encoder forward
    per training step for all of them (mode ``none``) or one encoding of every cached image. Each
    keeps its learner, optimizer, scheduler, buffer and schedule, and writes ``config.yaml``,
    ``metrics.jsonl``, ``checkpoint.pt`` (every epoch and experience) and ``summary.json`` (which
    also says the group it ran in). Each member is resumable on its own (``alta run --resume``
    on its folder) or with the group: complete members are skipped, the others continue from their
    checkpoints, members at different points as separate groups.

    Args:
        configs: The members' resolved configurations, of one :func:`group_key`.
        output_dirs: One results folder per member.
        resume: Continue the members in their folders: one flag for all, or one per member.
        progress: Progress bars (for the first member).
        plots: Write each member's PNG plots (with matplotlib); ``None``: yes for a new member,
            as it was started for a resumed one (see :func:`run_experiment`).
        stop_after: End the group after this many experiences, every member's checkpoint kept.
        loggers: The loggers of every member (:data:`alta.loop.loggers.LOGGERS`, each writing
            into the member's folder, as for :func:`run_experiment`); ``None``: none for a new
            member, those it was started with for a resumed one.

    Returns:
        The members' summaries, in order (``{"complete": False, ...}`` for a member stopped by
        ``stop_after``).

    Raises:
        ConfigError: no member, lengths that differ, configs of different groups or of a method
            that trains nothing, or what :func:`run_experiment` refuses (folders, configuration).
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
            f"these configs cannot run as one group: they must train something and agree on "
            f"{', '.join(SHARED_KEYS)} (a trailing dot: the whole section); plan groups with alta.run.groups.plan_groups"
        )
    if dist.is_distributed():
        raise ConfigError("run groups do not support data-parallel training (torchrun): run the group in one "
                          "process (without torchrun), or each configuration on its own with `torchrun ... alta run`")
    if stop_after is not None:
        StopAfter(stop_after, num_experiences=2**62)  # checked before anything is loaded
    loggers = None if loggers is None else check_loggers(loggers)
    check_backbone_name(configs[0].model.visual)
    device = resolve_device(configs[0].device)
    with contextlib.ExitStack() as stack:
        run_dirs = [stack.enter_context(claim_run_dir(path, config, resume=again))
                    for config, path, again in zip(configs, output_dirs, resumes)]
        stack.enter_context(translate_allocation_errors(f"the run group in {', '.join(map(str, output_dirs))}"))
        summaries: list[dict[str, Any] | None] = [None] * len(configs)
        outputs: list[tuple[tuple[str, ...], bool]] = []  # each member's loggers and plots
        recorded: list[bool] = []
        for i, (config, run_dir) in enumerate(zip(configs, run_dirs)):
            if run_dir.resume:
                _check_resumed_config(config, run_dir.path)
            recorded.append(run_dir.resume and read_outputs(run_dir.path) is not None)
            outputs.append(resolve_outputs(run_dir.path, resume=run_dir.resume, loggers=loggers, plots=plots))
            if run_dir.resume:
                summaries[i] = summary = read_finished_summary(run_dir.path)
                if summary is not None and not finish_complete_run(run_dir.path, summary, config=config,
                                                                    plots=outputs[i][1]):
                    logger.info("the run in %s is already complete; nothing to resume", run_dir.path)
        todo = [i for i, summary in enumerate(summaries) if summary is None]
        if todo:
            ran = _run_group([configs[i] for i in todo], [run_dirs[i] for i in todo], device=device, started=started,
                             progress=progress, outputs=[outputs[i] for i in todo],
                             recorded=[recorded[i] for i in todo], stop_after=stop_after,
                             everyone=[str(d.path) for d in run_dirs])
            for i, summary in zip(todo, ran):
                summaries[i] = summary
    return summaries


class _GroupMemberRun:
    """One member of :func:`run_group_experiment`: its :class:`Experiment`, folder and position."""

    def __init__(self, config: RunConfig, run_dir: RunDir, *, device: torch.device, shared: Experiment | None,
                 started: float, outputs: tuple[tuple[str, ...], bool], recorded: bool) -> None:
        self.config, self.run_dir, self.started = config, run_dir, started
        self.loggers, self.plots = outputs
        self.experiment = Experiment(config, device=device, shared=shared)
        self.num = len(self.experiment.experiences)
        run_dir.mark_started()
        write_text(run_dir.path / "config.yaml", config.to_yaml(), parents=False)
        if not recorded:
            write_outputs(run_dir.path, self.loggers, self.plots)
        self.checkpoint = run_dir.path / CHECKPOINT_NAME
        self.start_experience, self.start_epoch, self.zeroshot, self.elapsed_before = 0, 0, None, 0.0
        self.result = StreamResult.empty(self.num, len(self.experiment.eval_experiences))
        if run_dir.resume and self.checkpoint.is_file():
            state = read_checkpoint(self.checkpoint, config_hash=config.fingerprint(), num_experiences=self.num)
            self.result = restore_checkpoint(state, objects=self.experiment.objects())
            self.start_experience, self.start_epoch = state["next_experience"], state["next_epoch"]
            self.zeroshot, self.elapsed_before = state["zeroshot"], state["elapsed_s"]
            logger.info("resuming %s at experience %d of %d, epoch %d", run_dir.path, self.start_experience + 1,
                        self.num, self.start_epoch + 1)
        if self.zeroshot is None and config.eval.zeroshot_baseline:
            self.zeroshot = self.experiment.zeroshot_baseline()  # shares the cached test features

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.started)

    def writers(self, *, group: dict[str, Any]) -> list[Callback]:
        """The member's writers, as :func:`_run` builds them (the folder guard first, what writes on
        the main process only), its loggers included; its log lines name it."""
        path = self.run_dir.path
        main = dist.is_main_process()
        epochs = self.config.train.epochs
        plugins = run_plugins(self.config, self.loggers)  # a logger plug-in's record too, as a run alone
        return [
            MainProcessOnly([FolderGuard(self.run_dir),
                             MetricsWriter(path / "metrics.jsonl"),
                             Checkpointer(self.checkpoint, self.experiment, elapsed=self.elapsed,
                                          zeroshot=self.zeroshot),
                             LogLines(num_experiences=self.num, epochs=epochs, checkpoint=self.checkpoint,
                                      elapsed=self.elapsed, name=path.name, loss=loss_note(self.experiment.learner),
                                      unit="round" if self.config.loop.iterations else "epoch")]),
            SummaryWriter(path / "summary.json", self.experiment, elapsed=self.elapsed, zeroshot=self.zeroshot,
                          write=main, extra={"group": group, **({"plugins": plugins} if plugins else {})}),
            MainProcessOnly([*([PlotWriter(path)] if self.plots else []),
                             *build_loggers(self.loggers, path, self.config)]),
        ]


def _run_group(configs: list[RunConfig], run_dirs: list[RunDir], *, device: torch.device, started: float,
               progress: bool, outputs: list[tuple[tuple[str, ...], bool]], recorded: list[bool],
               stop_after: int | None, everyone: list[str]) -> list[dict[str, Any]]:
    """The body of :func:`run_group_experiment` for the members not complete yet."""

    if configs[0].deterministic:  # before the first CUDA kernel (a shared key: every member agrees)
        set_deterministic()  # it logs the settings it applied
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    members: list[_GroupMemberRun] = []
    for config, run_dir, member_outputs, was_recorded in zip(configs, run_dirs, outputs, recorded):
        members.append(_GroupMemberRun(config, run_dir, device=device, started=started, outputs=member_outputs,
                                       recorded=was_recorded, shared=members[0].experiment if members else None))
    group = {"size": len(everyone), "key": group_key(configs[0]), "output_dirs": everyone,
             "methods": [c.model.method for c in configs]}
    logger.info("run group of %d: %s", len(members), ", ".join(
        f"{m.run_dir.path.name} ({m.config.model.method}, buffer {m.experiment.buffer_size or 'off'})"
        for m in members))
    callbacks = {id(m): CallbackList(m.writers(group=group)) for m in members}
    first = configs[0]
    loop = first.loop
    stopped = False
    for start in sorted({(m.start_experience, m.start_epoch) for m in members}):  # one group per resume point
        part = [m for m in members if (m.start_experience, m.start_epoch) == start]
        if start[0] >= part[0].num:
            for m in part:  # trained to the end, summary not written yet
                callbacks[id(m)].on_run_end(result=m.result)
            continue
        if stop_after is not None and start[0] >= stop_after:
            continue
        extra = {id(part[-1]): [StopAfter(stop_after, num_experiences=part[-1].num)]} if stop_after else {}
        bars = [ProgressBar()] if progress else []
        try:
            run_group([GroupMember(m.experiment.learner, optimizer=m.experiment.optimizer,
                                   scheduler=m.experiment.scheduler, buffer=m.experiment.buffer,
                                   schedule=m.experiment.schedule, result=m.result, name=m.config.model.method,
                                   callbacks=[*callbacks[id(m)], *(bars if i == 0 else []), *extra.get(id(m), [])])
                       for i, m in enumerate(part)],
                      members[0].experiment.experiences, loop=loop, cache=members[0].experiment.cache,
                      start_experience=start[0], start_epoch=start[1],
                      eval_experiences=members[0].experiment.eval_experiences)
        except StopRequested:  # raised after the last member's checkpoint: every member has its own
            stopped = True
    if stopped:
        logger.info("stopped after %d experience(s) as asked; continue with resume", stop_after)
    out = []
    for m in members:
        writer = next(w for w in callbacks[id(m)] if isinstance(w, SummaryWriter))
        if writer.summary is not None:
            out.append(writer.summary)
        else:
            done = int(sum(1 for row in m.result.class_il if all(v == v for v in row)))  # rows filled (no NaN)
            out.append({"complete": False, "experiences_done": done, "num_experiences": m.num,
                        "output_dir": str(m.run_dir.path)})
    return out
