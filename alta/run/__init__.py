"""The run application: from a resolved configuration to results on disk.

The top layer under the command line (:mod:`alta.cli`); it imports the loop (:mod:`alta.loop`)
and the pieces, and nothing below it imports it:

- :class:`RunConfig` and its sections (:mod:`alta.run.config`, :mod:`alta.run.sections`);
- :class:`Experiment` (:mod:`alta.run.experiment`): the objects of a run, built from its config;
- :func:`run_experiment` (:mod:`alta.run.driver`), :func:`run_seeds` (:mod:`alta.run.seeds`)
  and :func:`run_group_experiment` (:mod:`alta.run.groups`);
- what a run writes: the writers (:mod:`alta.run.writers`), run folders
  (:mod:`alta.run.rundir`), checkpoints (:mod:`alta.run.checkpoint`), summaries and plots
  (:mod:`alta.run.summary`), reports (:mod:`alta.run.report`), and the loggers a run is asked
  for (``--logger``; the logger callbacks themselves are :mod:`alta.loop.loggers`);
- the named protocols of the paper and the reference code (:mod:`alta.run.protocols`).

ALTA: Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023 (reference code github.com/vijaylee/ALTA).
"""

from . import protocols
from .config import (
    LOOP_KEYS,
    OPERATIONAL_KEYS,
    RunConfig,
    config_differences,
    default_output_dir,
    flatten,
    load_saved_config,
    resolve_device,
    safe_run_name,
)
from .driver import read_finished_summary, run_experiment
from .experiment import Experiment
from .groups import SHARED_KEYS, group_key, plan_groups, run_group_experiment
from .sections import DataConfig, EvalConfig, ModelConfig, TrainConfig
from .seeds import AGGREGATE_NAME, run_seeds, seed_run_dir
from .writers import Checkpointer, FolderGuard, LogLines, MetricsWriter, PlotWriter, StopAfter, SummaryWriter

__all__ = [
    "RunConfig",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "EvalConfig",
    "LOOP_KEYS",
    "OPERATIONAL_KEYS",
    "SHARED_KEYS",
    "AGGREGATE_NAME",
    "Experiment",
    "run_experiment",
    "run_seeds",
    "run_group_experiment",
    "read_finished_summary",
    "group_key",
    "plan_groups",
    "seed_run_dir",
    "config_differences",
    "default_output_dir",
    "flatten",
    "load_saved_config",
    "resolve_device",
    "safe_run_name",
    "MetricsWriter",
    "Checkpointer",
    "LogLines",
    "SummaryWriter",
    "PlotWriter",
    "FolderGuard",
    "StopAfter",
    "protocols",
]
