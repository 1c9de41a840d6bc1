"""Seed groups: one run per seed, each resumable, then their mean and spread.

The paper reports one seed per run (42); the field reports the mean and standard deviation over
seeds. :func:`run_seeds` runs one :func:`~alta.run.driver.run_experiment` per seed in
``<output_dir>/seed-<s>/`` and aggregates them (:func:`alta.run.summary.aggregate_summaries`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterable

from ..errors import ConfigError
from ..io import write_json
from .config import RunConfig
from .driver import run_experiment
from .summary import aggregate_summaries, save_aggregate_plot
from .writers import read_outputs

__all__ = ["run_seeds", "seed_run_dir", "AGGREGATE_NAME"]

logger = logging.getLogger("alta.run")

AGGREGATE_NAME = "aggregate.json"


def seed_run_dir(output_dir: str | Path, seed: int) -> Path:
    """The folder of one seed's run inside a seed group's folder."""
    return Path(output_dir) / f"seed-{seed}"


def run_seeds(config: RunConfig, seeds: Iterable[int], *, output_dir: str | Path, plots: bool | None = None,
              **kwargs: Any) -> dict[str, Any]:
    """Run one experiment once per seed, each in its own resumable folder, then aggregate them.

    ``output_dir/seed-<s>/`` holds the run of seed ``s`` (the configuration with ``seed = s``); a
    folder that already holds that run is resumed (a finished one is only read), so the same
    call continues an interrupted group. ``output_dir/aggregate.json`` then holds the mean ±
    sample standard deviation of Avg, Last, forgetting, BWT, FWT and the per-experience
    accuracies (:func:`alta.run.summary.aggregate_summaries`), and ``aggregate_accuracy_curve.png``
    the accuracy after each experience with its spread.

    Args:
        config: The resolved configuration (its ``seed`` is replaced by each of ``seeds``).
        seeds: Distinct seeds, at least one.
        output_dir: The group's folder.
        plots: Write the plots (per run and the aggregate); ``None``: as the group's runs were
            started (a new group: yes), as :func:`run_experiment` restores them.
        **kwargs: Passed on to :func:`run_experiment` (``callbacks``, ``progress``, ``loggers``).

    Returns:
        The aggregate (``aggregate.json``); with ``stop_after`` given, the runs stop early and
        the group returns ``{"complete": False, ...}`` without aggregating.

    Raises:
        ConfigError: no seed, a repeated seed, or an invalid seed (as for ``RunConfig.seed``).
    """

    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {seeds}")
    configs = [dataclasses.replace(config, seed=seed) for seed in seeds]  # each seed checked here
    output_dir = Path(output_dir)
    summaries, folders = [], []
    for seed_config in configs:
        folder = seed_run_dir(output_dir, seed_config.seed)
        resume = (folder / "config.yaml").is_file()
        logger.info("seed %d: %s %s", seed_config.seed, "resuming" if resume else "running", folder)
        summary = run_experiment(seed_config, output_dir=folder, resume=resume, plots=plots, **kwargs)
        if not summary.get("complete"):
            return {"complete": False, "output_dir": str(output_dir), "stopped_in": str(folder)}
        summaries.append(summary)
        folders.append(str(folder))
    aggregate = aggregate_summaries(summaries, run_dirs=folders)
    write_json(output_dir / AGGREGATE_NAME, aggregate)
    recorded = read_outputs(folders[0])
    if plots if plots is not None else (recorded is None or recorded[1]):  # as the runs were started
        save_aggregate_plot(aggregate, output_dir / "aggregate_accuracy_curve.png")
    return aggregate
