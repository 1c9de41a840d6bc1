"""The subcommands of ``alta``: ``run`` (one run, a run group, a seed group), ``report``,
``config show`` and ``list``."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import re
import shlex
import signal
import sys
from pathlib import Path

from .. import distributed as dist
from ..backbones import SOURCES, default_download_root, list_backbones, list_families
from ..buffer import BUFFER_POLICIES
from ..data import DATASETS, SEQUENCES, list_sequences
from ..data.datasets.cil_suite import SUITE
from ..data.datasets import DataRootError
from ..errors import ConfigError, OutputError, ResourceError, TrainingError
from ..loop.loggers import LOGGERS
from ..losses import LOSS_TERMS
from ..methods import DEFAULT_METHOD, METHODS, get_method, list_methods
from ..registry import registries
from ..run import (
    AGGREGATE_NAME,
    load_saved_config,
    plan_groups,
    resolve_device,
    run_experiment,
    run_group_experiment,
    run_seeds,
)
from ..run.presets import preset_settings
from ..run.report import FORMATS, check_comparable, format_markdown, load_rows
from ..run.rundir import GROUP_FILE, claim_run_dir, claim_run_dir_on_main, read_group_file, write_group_file
from ..run.summary import format_table
from ..run.writers import check_loggers
from .config import (
    config_description,
    list_configs,
    load_config,
)
from .parser import FLAG_KEYS
from .resolve import apply_values, flag_overrides, import_plugins, reference_dirs, resolve_run_config, starting_config
from .signals import Terminated, interrupt_status

logger = logging.getLogger("alta.run")


def data_hint(error: DataRootError) -> str:
    """What the command line offers for data that is not where a dataset looks (appended to a
    :class:`~alta.data.datasets.DataRootError`): ``--data-root``, and ``--download`` where it works."""
    hint = "\nOn the command line: --data-root DIR gives the folder holding the data"
    if error.can_download:
        hint += "; --download lets torchvision download it into that folder"
    return hint + "."


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _imports(args: argparse.Namespace) -> str:
    """`` --import X`` for every ``--import`` of the command line: a resume command needs them too."""
    return "".join(f" --import {shlex.quote(spec)}" for spec in getattr(args, "imports", None) or ())


def _tiny_on_cpu(config) -> bool:

    tiny = config.model.visual in ("tiny-vit", "tiny-rn") or config.model.visual.startswith("open_clip:tiny-")
    return tiny and resolve_device(config.device).type == "cpu"


def run_variants(args: argparse.Namespace) -> list[argparse.Namespace]:
    """One namespace per run the command line asks for: several ``--method`` s or
    ``--buffer-size`` s give their product (a run group), else the command line itself."""
    methods = args.method.split(",") if args.method else [None]
    sizes = list(args.buffer_size) if args.buffer_size is not None else [None]
    for flag, values in (("--method", methods), ("--buffer-size", sizes)):
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:

            raise ConfigError(f"{flag} names {', '.join(twice)} twice; give each value once")
    if len(methods) == 1 and len(sizes) == 1:
        return [argparse.Namespace(**{**vars(args), "method": methods[0], "buffer_size": sizes[0]})]
    return [argparse.Namespace(**{**vars(args), "method": m, "buffer_size": b}) for m in methods for b in sizes]


def _set_threads(args: argparse.Namespace, config) -> None:
    import torch

    threads = args.threads
    if threads is None and _tiny_on_cpu(config) and not any(os.environ.get(v) for v in _THREAD_VARIABLES):
        # Tiny backbones gain nothing from intra-op threads, and several threads on a busy machine
        # slow them down many times over (measured: 10 ms vs 200 ms per training step).
        threads = 1
        logging.getLogger("alta.cli").info("using 1 CPU thread for the tiny backbone %r (--threads N to change)",
                                           config.model.visual)
    if threads is not None:
        torch.set_num_threads(threads)


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    import_plugins(args)  # before anything names a method or reads a saved run
    if args.loggers is not None:
        check_loggers(args.loggers)  # an unknown logger, or one whose package is missing, before any folder

    if args.seeds is not None and (args.resume or args.seed is not None):
        raise ConfigError("--seeds runs one experiment per seed: drop "
                          + ("--resume (run the same --seeds command again to continue the group)" if args.resume
                             else f"--seed {args.seed}"))
    dist.init_from_env()  # under torchrun: one run on N processes; without it, a no-op
    if args.seeds is not None and dist.is_distributed():
        raise ConfigError("--seeds runs its seeds one after another in one process; under torchrun start one run "
                          "per seed (--seed N), each on all the processes")

    variants = run_variants(args)
    if len(variants) > 1 or (args.resume and (Path(args.resume) / GROUP_FILE).is_file()):
        if dist.is_distributed():
            raise ConfigError("a run group (several --method or --buffer-size values) runs in one process; under "
                              "torchrun start one run per configuration, each on all the processes")
        if args.seeds is not None:
            raise ConfigError("--seeds takes one configuration; give one --method and one --buffer-size (or run "
                              "the group once per --seed N)")
        return _cmd_run_group(args, variants)
    args = variants[0]
    config, output_dir, resume = resolve_run_config(args)
    _set_threads(args, config)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    if args.seeds is not None:
        return _run_seed_group(args, config, output_dir, progress=progress)
    # Claim the folder before anything slow (a file or an unwritable place is refused at once; of two
    # runs started on one folder exactly one gets it); a run that fails before its first result gives
    # it back.
    run_dir = claim_run_dir_on_main(output_dir, config, resume=resume, next_free=not resume and not args.output_dir)
    output_dir = run_dir.path
    main = dist.is_main_process()
    if not main:
        logging.getLogger("alta").setLevel(logging.WARNING)  # rank 0 logs the run; the others warn only
    if dist.is_distributed():
        # torchrun stops the other ranks with SIGTERM when one fails: say so, and how to resume
        signal.signal(signal.SIGTERM, _stopped_by_launcher)
        logging.getLogger("alta.cli").info("rank %d of %d (%s), results in %s", dist.get_rank(),
                                           dist.get_world_size(), torch.distributed.get_backend(), output_dir)
    try:
        with run_dir:
            summary = run_experiment(config, output_dir=run_dir, resume=resume, progress=progress, plots=args.plots,
                                     stop_after=args.stop_after, loggers=args.loggers)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see main)
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        checkpoint = output_dir / "checkpoint.pt"
        if checkpoint.is_file():
            print(f"\nalta: {what}. The last complete checkpoint is {checkpoint}; continue with:\n"
                  f"  alta run --resume {output_dir}{_imports(args)}", file=sys.stderr)
        elif (output_dir / "config.yaml").is_file():
            print(f"\nalta: {what} before the first epoch ended: no checkpoint yet. "
                  f"`alta run --resume {output_dir}{_imports(args)}` restarts it from the first experience.",
                  file=sys.stderr)
        else:
            print(f"\nalta: {what} before the run started; nothing was written.", file=sys.stderr)
        return interrupt_status(exc)
    except (TrainingError, OutputError, ResourceError) as exc:  # the run started: say how to go on
        print(f"alta: error: {exc}", file=sys.stderr)
        checkpoint = output_dir / "checkpoint.pt"
        if checkpoint.is_file() and (output_dir / "config.yaml").is_file():
            resume_command = (f"torchrun --nproc_per_node {dist.get_world_size()} -m alta run --resume {output_dir}"
                              if dist.is_distributed() else f"alta run --resume {output_dir}") + _imports(args)
            advice = (" A resumed run keeps its configuration (config.yaml): when the fix is a setting (a lower "
                      "--lr, fp32), start a new run with it instead" if isinstance(exc, TrainingError) else "")
            print(f"alta: the last complete checkpoint {checkpoint} is intact; once the cause is fixed (the data, "
                  f"the disk, the code), continue with:\n  {resume_command}\n{advice.strip()}".rstrip(),
                  file=sys.stderr)
        return 1
    except (_StoppedByLauncher, RuntimeError) as exc:
        if not dist.is_distributed() or not (isinstance(exc, (_StoppedByLauncher, torch.distributed.DistError))
                                             or _PEER_LOST.search(str(exc))):
            raise
        reason = ("stopped by torchrun" if isinstance(exc, _StoppedByLauncher)
                  else f"a collective failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
        print(f"\nalta: rank {dist.get_rank()} of {dist.get_world_size()}: {reason}: another rank failed or "
              f"left; its error is above (torchrun names the rank). "
              f"{peer_failure_advice(output_dir, dist.get_world_size(), imports=_imports(args))}", file=sys.stderr)
        return 1
    if dist.is_distributed():
        torch.distributed.destroy_process_group()
    if not main:
        return 0  # rank 0 reports
    if not summary.get("complete"):
        print(f"stopped after {summary['experiences_done']} of {summary['num_experiences']} experiences; "
              f"checkpoint {output_dir / 'checkpoint.pt'}\n"
              f"continue with: alta run --resume {output_dir}{_imports(args)}")
        return 0
    print(format_table(summary))
    return 0


def peer_failure_advice(output_dir: Path, world_size: int, *, imports: str = "") -> str:
    """How to go on after another torchrun rank failed, from what the run folder holds now: resume
    from its checkpoint, restart it (``config.yaml`` but no checkpoint), or, for a run that never
    started (its folder was given back), the same command again. ``imports``: the ``--import``
    flags the resume needs."""
    checkpoint = output_dir / "checkpoint.pt"
    again = f"torchrun --nproc_per_node {world_size} -m alta run"
    if checkpoint.is_file():
        return (f"The last complete checkpoint is {checkpoint}; continue with:\n  {again} --resume {output_dir}"
                f"{imports}")
    if (output_dir / "config.yaml").is_file():
        return (f"No checkpoint was written yet; `{again} --resume {output_dir}{imports}` restarts it from the first "
                f"experience")
    return (f"The run had not started, so nothing was kept ({output_dir} was given back); once the cause is fixed, "
            f"run the same torchrun command again")


def _cmd_run_group(args: argparse.Namespace, variants: list[argparse.Namespace]) -> int:
    """``alta run`` with several methods or buffer sizes: the runs in run groups, each in its own
    folder under one group folder (with ``group.json``); ``--resume`` on that folder continues them."""
    from datetime import datetime


    if args.resume:
        root = Path(args.resume)
        flags = any(getattr(args, dest, None) is not None for dest in FLAG_KEYS) or args.overrides
        if flags or args.output_dir or args.config:
            raise ConfigError(f"--resume {root} continues a run group with its members' saved configurations; drop "
                              f"the other options (resume one member alone with --resume {root}/MEMBER)")
        folders = read_group_file(root)
        names = [f.name for f in folders]
        configs = [load_saved_config(f / "config.yaml") if (f / "config.yaml").is_file() else None for f in folders]
        missing = [str(f) for f, c in zip(folders, configs) if c is None]
        if missing:
            raise ConfigError(f"cannot resume the run group {root}: {', '.join(missing)} never started (no "
                              f"config.yaml); start the group again in another --output-dir")
        resumes = [True] * len(configs)
    else:
        configs, names = [], []
        several_sizes = args.buffer_size is not None and len(args.buffer_size) > 1
        for variant in variants:
            config, _, _ = resolve_run_config(argparse.Namespace(**{**vars(variant), "output_dir": None}))
            replays = METHODS.get(config.model.method).replay
            if several_sizes and not replays and config.model.method in (c.model.method for c in configs):
                continue  # a method without replay gives the same run at every buffer size: run it once
            name = config.model.method + (f"-buffer{config.buffer.size}" if several_sizes and replays else "")
            if several_sizes and not replays:
                logging.getLogger("alta").info("method %s does not replay: one run for all the --buffer-size values "
                                               "(the buffer size changes nothing for it)", config.model.method)
            if name in names:
                raise ConfigError(f"the run group asks for {name} twice; give each method and buffer size once")
            configs.append(config)
            names.append(name)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        root = Path(args.output_dir) if args.output_dir else Path("runs") / f"{configs[0].name}-group-{stamp}"
        if (root / GROUP_FILE).exists():
            raise ConfigError(f"{root} already holds a run group; continue it with `alta run --resume {root}` or "
                              f"choose another --output-dir")
        write_group_file(root, names)
        folders = [root / name for name in names]
        for config, folder in zip(configs, folders):  # every member's config.yaml now: the group resumes as a whole
            with claim_run_dir(folder, config) as run_dir:
                run_dir.mark_started()
        resumes = [True] * len(configs)  # a member without a checkpoint starts from its first experience
    _set_threads(args, configs[0])
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    summaries: list[dict | None] = [None] * len(configs)
    try:
        for number, indices in enumerate(plan_groups(configs), 1):
            chosen = [configs[i] for i in indices]
            logging.getLogger("alta").info("run group %s: part %d, %s", root, number,
                                           ", ".join(names[i] for i in indices))
            if len(indices) == 1:  # a run that trains nothing (zero-shot CLIP), or alone in its group
                i = indices[0]
                summaries[i] = run_experiment(configs[i], output_dir=folders[i], resume=resumes[i],
                                              progress=progress, plots=args.plots, stop_after=args.stop_after,
                                              loggers=args.loggers)
            else:
                for i, summary in zip(indices, run_group_experiment(
                        chosen, [folders[i] for i in indices], resume=[resumes[i] for i in indices],
                        progress=progress, plots=args.plots, stop_after=args.stop_after, loggers=args.loggers)):
                    summaries[i] = summary
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see main): say how to continue, as a single run does
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"\nalta: {what}. Each member of the run group keeps its last complete checkpoint; continue the "
              f"group with:\n  alta run --resume {root}", file=sys.stderr)
        return interrupt_status(exc)
    for name, folder, summary in zip(names, folders, summaries):
        print(f"== {name} ({folder})")
        print(format_table(summary) if summary.get("complete") else
              f"stopped after {summary['experiences_done']} of {summary['num_experiences']} experiences")
    if not all(s.get("complete") for s in summaries):
        print(f"continue with: alta run --resume {root}{_imports(args)}")
        return 0

    rows = load_rows([root])  # the members side by side, as `alta report` shows the group
    print(f"\n== the run group ({root}; again with `alta report {root}`)")
    print(format_markdown(rows, check_comparable(rows, allow_mixed=True)))
    return 0


def _run_seed_group(args: argparse.Namespace, config, output_dir: Path, *, progress: bool) -> int:
    """``alta run --seeds S...``: a run per seed in OUTPUT/seed-S, then the aggregate."""

    if not args.output_dir:  # one folder for the group; the runs go inside it
        output_dir = output_dir.with_name(output_dir.name + "-seeds")
    aggregate = run_seeds(config, args.seeds, output_dir=output_dir, progress=progress, plots=args.plots,
                          stop_after=args.stop_after, loggers=args.loggers)
    if not aggregate.get("complete", True):
        print(f"stopped in {aggregate['stopped_in']}; continue the group with the same command "
              f"(--output-dir {output_dir})")
        return 0
    rows = load_rows([output_dir])
    print(format_markdown(rows, check_comparable(rows)))
    print(f"\naggregate: {output_dir / AGGREGATE_NAME}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:

    rows = load_rows(args.folders)
    notes = check_comparable(rows, allow_mixed=args.allow_mixed)
    print(FORMATS[args.format](rows, notes))
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:

    import_plugins(args)
    overrides = flag_overrides(args)
    config = load_config(args.config) if args.config else starting_config(overrides)
    config = apply_values(config, reference_dirs(args, config, overrides), overrides)
    print(config.to_yaml(), end="")
    return 0


# how gloo and NCCL say that another rank is gone (gloo raises a plain RuntimeError)
_PEER_LOST = re.compile(r"Connection (closed|reset)|remote worker|peer|NCCL|[Tt]imed? ?out", re.IGNORECASE)


class _StoppedByLauncher(Exception):
    """SIGTERM from torchrun, which stops every rank when one fails."""


def _stopped_by_launcher(signum, frame) -> None:
    raise _StoppedByLauncher()


# --------------------------------------------------------------------------------------------
# alta list
# --------------------------------------------------------------------------------------------


def _origin(registry, name: str) -> str:
    """`` [plug-in: package p 1.0 ...]`` for a plug-in's entry in a listing, else nothing."""
    origin = registry.origin(name)
    return "" if origin is None else f" [plug-in: {origin.describe()}]"


def cmd_list(args: argparse.Namespace) -> int:

    import_plugins(args)
    what = [args.what] if args.what else ["methods", "backbones", "datasets", "sequences", "configs", "loss-terms",
                                          "buffer-policies", "loggers", "backbone-sources", "presets"]
    blocks = []
    if "methods" in what:
        lines = ["methods (--method):"]
        for name in list_methods():
            spec = get_method(name)
            flags = []
            if name == DEFAULT_METHOD:
                flags.append("ALTA, default, alias 'alta'")
            flags.append("replay" if spec.replay else "no replay")
            lines.append(f"  {name:28s} {spec.formula:36s} {spec.description} ({', '.join(flags)})"
                         f"{_origin(METHODS, name)}")
        blocks.append("\n".join(lines))
    if "backbones" in what:
        root = default_download_root()
        lines = [f"backbones (--visual; pretrained weights are read from {root}):"]
        for name in list_backbones(pretrained=True):
            lines.append(f"  {name:18s} pretrained OpenAI CLIP")
        for name in list_backbones(pretrained=False):
            lines.append(f"  {name:18s} RANDOM weights (offline; numbers not comparable with the paper's)")
        lines.append("  or the path of a local CLIP checkpoint file")
        blocks.append("\n".join(lines))
        blocks.append(_families_block())
    if "datasets" in what:
        lines = ["datasets (data.dataset / --dataset):"]
        for name in DATASETS.names():
            lines.append(f"  {name:18s} {DATASETS.get(name).description}{_origin(DATASETS, name)}")
        blocks.append("\n".join(lines))
    if "sequences" in what:
        lines = ["multi-domain sequences (--dataset; a dataset per experience, MTIL / X-TAIL):"]
        for name in list_sequences():
            spec = SEQUENCES.get(name)
            lines.append(f"  {name:18s} {spec.description} [{spec.il_setting}; datasets: "
                         f"{', '.join(e.label for e in spec.entries)}]")
        blocks.append("\n".join(lines))
    if "configs" in what:
        lines = ["configs (--config):"]
        for name in list_configs():
            lines.append(f"  {name:15s} {config_description(name)}")
        blocks.append("\n".join(lines))
    for key, registry, title in (("loss-terms", LOSS_TERMS, "loss terms (model.loss_terms / --loss-term NAME=WEIGHT)"),
                                 ("buffer-policies", BUFFER_POLICIES, "buffer policies (buffer.policy)"),
                                 ("loggers", LOGGERS, "loggers (--logger)"),
                                 ("backbone-sources", SOURCES, "backbone sources (--visual SOURCE:MODEL)")):
        if key in what:
            lines = [f"{title}:"]
            for name in registry.names():
                lines.append(f"  {name:18s} {_summary_line(registry.get(name))}{_origin(registry, name)}")
            blocks.append("\n".join(lines))
    if "plugins" in what:
        lines = ["plug-ins (entry points of installed packages, --import, code):"]
        for registry in registries():
            for name in registry.names():
                if registry.origin(name) is not None:
                    lines.append(f"  {registry.kind + ' ' + repr(name):32s} {registry.origin(name).describe()}")
        if len(lines) == 1:
            lines.append("  none: every name comes with alta (docs/own-method.md tells how to add one)")
        blocks.append("\n".join(lines))
    if "presets" in what:
        lines = ["presets (the CLIP class-incremental suite; `alta run --dataset DATASET --split SPLIT` starts from "
                 "one):"]
        for spec in SUITE.values():
            for split in spec.splits:
                settings = preset_settings(f"cil-suite/{spec.name}/{split}")
                lines.append(f"  cil-suite/{spec.name}/{split:<11s} {spec.title}: {settings['train.epochs'].value} "
                             f"epochs, {settings['buffer.per_class'].value} exemplars/class (herding), "
                             f"{settings['model.visual'].value} {settings['model.pretrained'].value}, "
                             f"template {settings['model.template'].value!r}")
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))
    return 0


def _summary_line(entry) -> str:
    """One line about a registry entry: a backbone source's prefix, else the first sentence of its
    docstring (a class, a function or an object's class)."""
    if hasattr(entry, "prefix") and hasattr(entry, "extra"):  # a BackboneSource
        return f"--visual {entry.prefix}MODEL (pip install \"alta[{entry.extra}]\")" if entry.extra else \
            f"--visual {entry.prefix}MODEL"
    paragraph = (inspect.getdoc(entry) or "").strip().split("\n\n")[0].replace("\n", " ")
    return paragraph.split(". ")[0].rstrip(".").replace("``", "")


def _families_block() -> str:
    """The backbone families of ``alta list backbones``: per family its source and note, per model
    its resolution, text tower, how learned prompts are encoded, the tags whose activation fits it,
    and where its weights and tokenizer go offline."""
    rows = list_families()
    header = ("backbone families (--visual MODEL --pretrained TAG; tags: weights whose architecture and activation "
              "fit the name; prompting: how learned prompts are encoded, equal to the library's encode_text either way):")
    lines = [header]
    family = None
    for row in rows:
        if row["family"] != family:
            family = row["family"]
            lines.append(f"  {family} [{row['source']}]: {row['note']}")
        facts = [f"{row['resolution']} px" if row.get("resolution") else None,
                 f"text: {row['text_tower']}" if row.get("text_tower") else None,
                 f"prompting: {row['prompting']}" if row.get("prompting") else None,
                 f"tags: {', '.join(row['tags'])}" if row["tags"] else None]
        lines.append(f"    {row['model']:34s} " + " | ".join(f for f in facts if f))
        if row["source"] == "open_clip" and row.get("weights"):
            lines.append(f"    {'':34s} weights: {row['weights']} | tokenizer: {row['tokenizer']}")
    if not any(row.get("text_tower") for row in rows if row["source"] == "open_clip"):
        lines.append('  (install open_clip, pip install "alta[open_clip]", to see what its configs say)')
    lines.append("  a small random-weight variant of an open_clip model, offline: open_clip:tiny-<model> "
                 "(e.g. open_clip:tiny-EVA02-B-16, open_clip:tiny-ViT-L-14; a SigLIP variant such as "
                 "open_clip:tiny-ViT-B-16-SigLIP still reads its tokenizer from the Hugging Face cache)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


#: The function of each subcommand (``args.command``).
HANDLERS = {"run": cmd_run, "report": cmd_report, "config": cmd_config_show, "list": cmd_list}
