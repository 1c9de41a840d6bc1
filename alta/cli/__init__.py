"""The ``alta`` command line: run the experiments of ALTA and its reference configurations.

ALTA: Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023; reference code github.com/vijaylee/ALTA. The reference is run as
``python main.py --config-file configs/il_cifar10.yaml --method cprompt --il_setting task-il
--visual RN50 --buffer_size 500 --seed 1``; the same words work here::

    alta run                                   # offline demo: digits, tiny random CLIP, ALTA
    alta run --config il_cifar10 --data-root data/cifar10 --visual RN50
    alta run --config-file configs/il_cifar10.yaml --method cprompt --il_setting task-il \\
             --visual RN50 --buffer_size 500 --seed 1 --data-root data/cifar10
    alta run --resume runs/il_cifar10-...      # continue an interrupted run
    alta run --method alta,mlp,cprompt --buffer-size 200,500   # a run group: six runs in one pass
    alta run --seeds 0 1 2 --output-dir runs/g  # a run per seed + aggregate.json (mean ± std)
    alta report runs/g runs/h                  # Markdown (--format latex|csv) table side by side
    alta config show --config il_cifar10 --visual ViT-B/16   # the resolved config, no run
    alta list methods|backbones|datasets|configs

This module only turns argv into a :class:`~alta.run.config.RunConfig` and prints; the work is
done by :func:`alta.run.driver.run_experiment`, which scripts can call directly.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from .. import distributed as dist
from .._version import __version__
from ..backbones import default_download_root, list_backbones
from ..data import DATASETS, DataRootError
from ..errors import AltaError, ConfigError, OutputError, ResourceError, TrainingError
from ..methods import DEFAULT_METHOD, METHODS, get_method, list_methods
from ..run import (
    AGGREGATE_NAME,
    config_differences,
    default_output_dir,
    load_saved_config,
    plan_groups,
    resolve_device,
    run_experiment,
    run_group_experiment,
    run_seeds,
)
from ..run.protocols import apply_protocol
from ..run.report import FORMATS, check_comparable, format_markdown, load_rows
from ..run.rundir import GROUP_FILE, claim_run_dir_on_main, read_group_file, write_group_file
from ..run.summary import format_table
from .config import (
    DEFAULT_CONFIG,
    apply_overrides,
    config_description,
    list_configs,
    load_config,
    load_run_config,
    parse_override,
)

__all__ = ["main", "build_parser", "resolve_run_config", "run_variants"]

_EPILOG_RUN = """\
examples:
  alta run                                         offline demo (digits, tiny random CLIP, ALTA)
  alta run --config il_cifar10 --data-root DIR     the paper's Seq-CIFAR-10 protocol (RN50)
  alta run --config-file configs/sgd_cifar10.yaml --method cprompt --il_setting task-il \\
           --visual RN50 --buffer_size 500 --seed 1 --data-root DIR
  alta run --config il_cifar10 --data-root DIR --visual tiny-vit --epochs 1   (quick check)
  alta run --resume runs/il_cifar10-oritext_mlp2cprompt_oriimg-20250101-120000
  alta run --config il_cifar10 --data-root DIR --method alta,mlp,cprompt --buffer-size 200,500
           a run group: the six runs in one pass over the frozen encoders, each in its own folder
           under runs/<config>-group-<time>/ (alta run --resume on that folder continues them all)

Results go to --output-dir (default runs/<config>-<method>-<time>): config.yaml, metrics.jsonl,
summary.json, checkpoint.pt and plots. Flags override the values of --config; every other key
can be set with --set SECTION.KEY=VALUE (see a config.yaml for the keys).
"""

# command-line destination -> configuration key
_FLAG_KEYS = {
    "method": "model.method",
    "protocol": "protocol",
    "il_setting": "eval.il_setting",
    "visual": "model.visual",
    "pretrained": "model.pretrained",
    "buffer_size": "buffer.size",
    "seed": "seed",
    "dataset": "data.dataset",
    "data_root": "data.root",
    "download": "data.download",
    "num_experiences": "data.num_experiences",
    "split": "data.split",
    "initial_classes": "data.initial_classes",
    "class_order": "data.class_order",
    "class_names": "data.class_names",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "optim.lr",
    "lr_schedule": "optim.lr_schedule",
    "head": "model.head",
    "schedule": "train.schedule",
    "schedule_period": "train.schedule_period",
    "schedule_unit": "train.schedule_unit",
    "eval_every": "eval.every",
    "train_cache": "train.train_cache",
    "device": "device",
    "num_workers": "data.num_workers",
    "deterministic": "deterministic",
}
_FLAG_NAMES = {dest: "--" + dest.replace("_", "-") for dest in _FLAG_KEYS}
# the reference's per-dataset folders (arguments.py)
_REFERENCE_DIRS = {"cifar10_dir": "seq-cifar10", "cifar100_dir": "seq-cifar100", "tinyimagenet_dir": "seq-tinyimagenet"}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors read ``alta: error: ...`` (exit status 2) and that takes options
    only as spelled (no prefix matching: ``--epoch`` is refused, not read as ``--epochs``, so that a
    script keeps its meaning when an option is added)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):  # noqa: D102 - argparse API
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # reported by the subcommand that was given, with its usage and its options
            self._chosen_parser(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _chosen_parser(self, parsed: argparse.Namespace) -> "_Parser":
        """The innermost subcommand parser that ``parsed`` went through (``alta config show``)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                sub = action.choices.get(getattr(parsed, action.dest, None))
                if isinstance(sub, _Parser):
                    return sub._chosen_parser(parsed)
        return self

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(2, f"alta: error: {message}{self._suggestions(message)}\n")

    def _option_strings(self) -> set[str]:
        """Every option of this parser and of its subcommands."""
        names = set(self._option_string_actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    names |= sub._option_strings() if isinstance(sub, _Parser) else set(sub._option_string_actions)
        return names

    def _suggestions(self, message: str) -> str:
        """``(did you mean --epochs?)`` for each unknown option close to a known one."""
        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return ""
        options = self._option_strings()  # the reference's --buffer_size spellings: suggest --buffer-size
        known = sorted(o for o in options if not ("_" in o and o.replace("_", "-") in options))
        hints = []
        misplaced = []
        for token in message[len(prefix):].split():
            option = token.split("=", 1)[0]
            if option in options:  # an option of a subcommand, given before it (`alta --epochs 2 run`)
                misplaced.append(option)
            elif option.startswith("--"):
                close = difflib.get_close_matches(option.replace("_", "-"), known, n=1, cutoff=0.75)
                if close:
                    hints.append(f"{close[0]} for {option}")
        text = f"; did you mean {', '.join(hints)}?" if hints else ""
        if misplaced:
            text += f"; {', '.join(misplaced)} go{'es' if len(misplaced) == 1 else ''} after the subcommand (alta run ...)"
        return text


class _Version(argparse.Action):
    """``alta --version``: the versions on one line, not wrapped to the terminal (argparse's own
    version action wraps them)."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: D102 - argparse API
        print(_version_text())
        parser.exit(0)


def _positive_int(text: str) -> int:
    """``--threads`` and ``--stop-after`` (not config keys; config values are checked by their section)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    """``--buffer-size 200`` or ``--buffer-size 200,500,5120`` (several: a run group)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or integers separated by commas, got {text!r}") from None


def _logger_names(text: str) -> tuple[str, ...]:
    """``--logger csv,tensorboard`` -> ("csv", "tensorboard") (names checked by the run)."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected logger names such as csv,tensorboard,wandb, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The ``alta`` argument parser (subcommands ``run`` and ``list``)."""
    parser = _Parser(
        prog="alta",
        description="ALTA: cross-modal alternating learning with task-aware representations for continual "
                    "learning with CLIP (Li et al., IEEE TMM 2023).",
        epilog="`alta run` with no arguments runs an offline demo; `alta run --help` lists its options.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the versions of alta and of its libraries")
    commands = parser.add_subparsers(dest="command", metavar="{run,list,report,config}", parser_class=_Parser)

    run = commands.add_parser(
        "run", help="run (or resume) a continual-learning experiment",
        description="Run a continual-learning experiment: train through the stream, evaluate class-IL and task-IL "
                    "accuracy every --eval-every epochs and after every experience, and write the results.",
        epilog=_EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_arguments(run)

    where = run.add_argument_group("execution and output")
    where.add_argument("--device", metavar="DEV", help="auto (default: CUDA when available), cpu, cuda, cuda:N")
    where.add_argument("--threads", type=_positive_int, metavar="N",
                       help="CPU threads for torch (default: 1 for the tiny backbones on CPU, else torch's "
                            "choice; OMP_NUM_THREADS is respected)")
    where.add_argument("--output-dir", dest="output_dir", metavar="DIR",
                       help="results folder (default runs/<config>-<method>-<time>)")
    where.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR from its last checkpoint")
    where.add_argument("--stop-after", dest="stop_after", type=_positive_int, metavar="N",
                       help="stop after N experiences (checkpoint kept; continue with --resume)")
    where.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bars for epochs and evaluations (default: when stderr is a terminal)")
    where.add_argument("--no-plots", dest="plots", action="store_false", help="do not write the PNG plots")
    where.add_argument("-q", "--quiet", action="store_true", help="log warnings only (the result table is still printed)")
    where.add_argument("--logger", dest="loggers", type=_logger_names, default=(), metavar="NAMES",
                       help="also log to csv (evaluations.csv), tensorboard (tensorboard/) and/or wandb (offline "
                            "with WANDB_MODE=offline), comma-separated, e.g. --logger csv,tensorboard")
    where.add_argument("--seeds", type=int, nargs="+", metavar="S",
                       help="run once per seed, each in OUTPUT/seed-S (resumable: the same command continues), "
                            "then write OUTPUT/aggregate.json (mean ± sample std) and its plot")
    run.set_defaults(handler=_cmd_run)

    report = commands.add_parser(
        "report", help="tabulate finished runs or seed groups side by side",
        description="Print a table of runs (summary.json) or seed groups (aggregate.json, mean ± std): Avg, Last, "
                    "forgetting and BWT for class-IL and task-IL. Runs of different protocols, class orders or "
                    "backbone weights are refused unless --allow-mixed.")
    report.add_argument("folders", nargs="+", metavar="DIR", help="run folders or `alta run --seeds` folders")
    report.add_argument("--format", choices=("markdown", "latex", "csv"), default="markdown", help="default markdown")
    report.add_argument("--allow-mixed", action="store_true",
                        help="tabulate runs that are not comparable anyway (the table notes the differences)")
    report.set_defaults(handler=_cmd_report)

    config = commands.add_parser("config", help="show the resolved configuration without running",
                                 description="Configuration tools.")
    config_commands = config.add_subparsers(dest="config_command", metavar="{show}", parser_class=_Parser,
                                            required=True)
    show = config_commands.add_parser(
        "show", help="print the resolved configuration (YAML) of --config with the given options",
        description="Print the configuration `alta run` would use with the same options, as its config.yaml "
                    "holds it, without running anything.")
    _add_config_arguments(show)
    show.set_defaults(handler=_cmd_config_show)

    listing = commands.add_parser("list", help="list methods, backbones, datasets or configs",
                                  description="List the names alta knows.")
    listing.add_argument("what", nargs="?", choices=("methods", "backbones", "datasets", "configs"),
                         help="what to list (default: everything)")
    listing.set_defaults(handler=_cmd_list)
    return parser


def _add_config_arguments(run: argparse.ArgumentParser) -> None:
    """The options that build a configuration (``alta run`` and ``alta config show``)."""
    what = run.add_argument_group("experiment (the reference's vocabulary)")
    what.add_argument("--config", "--config-file", dest="config", metavar="NAME|FILE",
                      help="shipped config (`alta list configs`; default: default, the offline demo) or a YAML file; "
                           "configs/NAME.yaml resolves to the shipped NAME when no such file exists")
    what.add_argument("--method", metavar="METHOD[,METHOD...]",
                      help="mlp, resmlp, sprompt, cprompt, cprompt_oriprompt, cprompt_mlp, cprompt_resmlp, "
                           "oriclip2cprompt_mlp, oritext_mlp2cprompt_oriimg (= alta, the default), zeroshot; several "
                           "(comma-separated) run as one run group")
    what.add_argument("--protocol", choices=("paper", "reference"),
                      help="paper (default: the method as described) or reference (the authors' released loop, "
                           "each quirk: see docs/reproducing.md); flags given with it still win")
    what.add_argument("--il-setting", "--il_setting", dest="il_setting", choices=("class-il", "task-il"),
                      help="headline setting (both are always computed; default class-il)")
    what.add_argument("--visual", metavar="BACKBONE",
                      help="RN50 (the paper configs' default), RN101, RN50x4, RN50x16, ViT-B/32, ViT-B/16, "
                           "random-weight tiny-vit (the offline demo's) / tiny-rn, a local CLIP checkpoint file, "
                           "open_clip:MODEL (e.g. open_clip:ViT-B-16) or hf:ID|FOLDER")
    what.add_argument("--pretrained", metavar="TAG|FILE",
                      help="weights of an open_clip: backbone, e.g. laion400m_e32, or a weights file "
                           "(default: random weights)")
    what.add_argument("--buffer-size", "--buffer_size", dest="buffer_size", type=_int_list, metavar="N[,N...]",
                      help="memory buffer capacity (default 200; 0 = no replay); several (comma-separated) run as "
                           "one run group")
    what.add_argument("--seed", type=int, metavar="N", help="run seed (default 42)")

    data = run.add_argument_group("data")
    data.add_argument("--dataset", metavar="NAME", help="stream name (`alta list datasets`); overrides the config's")
    data.add_argument("--data-root", dest="data_root", metavar="DIR", help="folder holding the dataset")
    data.add_argument("--download", action="store_true", default=None,
                      help="let torchvision download CIFAR-10/100 or Fashion-MNIST into --data-root")
    data.add_argument("--num-experiences", dest="num_experiences", type=int, metavar="T",
                      help="number of experiences (default: the config's / the benchmark's split)")
    data.add_argument("--split", metavar="B<base>-Inc<inc>",
                      help="the split as the CLIP continual-learning papers write it: B0-Inc10 (every experience 10 "
                           "classes), B50-Inc10 (50, then 10 per experience), B11-Inc10 (101 classes: 11 + 10 x 9)")
    data.add_argument("--initial-classes", dest="initial_classes", type=int, metavar="N",
                      help="classes of the first experience (the others split the rest evenly)")
    data.add_argument("--class-order", dest="class_order", metavar="NAME|FILE",
                      help="class order: icarl-1993 (iCaRL/PyCIL, NumPy seed 1993), dytox-cifar100, or a file of "
                           "class ids; --set data.class_order=[...] for a list, data.class_order_seed=N for a seeded "
                           "permutation (default: the dataset's order)")
    data.add_argument("--class-names", dest="class_names", metavar="FILE",
                      help="readable class names for CLIP's prompts: a file with one name per line in label order, "
                           "or 'folder<TAB>name' lines (Tiny-ImageNet's words.txt, for WordNet-id folders)")
    data.add_argument("--num-workers", dest="num_workers", type=int, metavar="N",
                      help="DataLoader worker processes (default 0)")
    for dest in _REFERENCE_DIRS:
        data.add_argument(f"--{dest}", dest=dest, metavar="DIR", help=argparse.SUPPRESS)

    training = run.add_argument_group("training")
    training.add_argument("--epochs", type=int, metavar="N", help="epochs per experience (paper configs 30, joint 100; offline demo 20)")
    training.add_argument("--batch-size", dest="batch_size", type=int, metavar="N", help="batch size (32)")
    training.add_argument("--lr", type=float, metavar="LR", help="base learning rate (0.002)")
    training.add_argument("--lr-schedule", dest="lr_schedule", choices=("cosine", "constant"),
                          help="cosine with one warm-up epoch (the configs) or constant (with --lr 1e-5: what "
                               "the reference code ran)")
    training.add_argument("--head", choices=("all", "seen"),
                          help="logits over all classes from the start (the paper) or only over classes seen so far")
    training.add_argument("--schedule", choices=("crossed", "alternate"),
                          help="update both branches every step (crossed, the reference) or alternate text and "
                               "image branch")
    training.add_argument("--schedule-period", dest="schedule_period", type=int, metavar="N",
                          help="length of one alternating turn")
    training.add_argument("--schedule-unit", dest="schedule_unit", choices=("step", "epoch"),
                          help="what --schedule-period counts")
    training.add_argument("--train-cache", dest="train_cache", metavar="none|fixed|views:K",
                          help="training features: none (faithful, default), fixed (encoded once, no augmentation), "
                               "views:K (K augmented views encoded once)")
    training.add_argument("--eval-every", dest="eval_every", type=int, metavar="N",
                          help="evaluate every N epochs (default 10; 0 = only after each experience)")
    training.add_argument("--deterministic", action="store_true", default=None,
                          help="deterministic kernels: the reference's cuDNN flags plus "
                               "torch.use_deterministic_algorithms (recorded in summary.json)")
    training.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="set any config key, e.g. --set data.max_train_per_class=100 (repeatable)")


def _version_text() -> str:
    from importlib import metadata

    parts = []
    for package in ("torch", "torchvision", "clip-anytorch"):
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} missing")
    return f"alta {__version__} ({', '.join(parts)}, python {sys.version.split()[0]})"


# --------------------------------------------------------------------------------------------
# alta run
# --------------------------------------------------------------------------------------------


class _Overrides(dict):
    """Configuration keys set on the command line; ``from_set``: those whose value came from ``--set``
    (so that a message names the spelling the user typed)."""

    from_set: set[str]


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Configuration keys set on the command line (flags first, then --set in order)."""

    out = _Overrides((key, getattr(args, dest)) for dest, key in _FLAG_KEYS.items()
                     if getattr(args, dest, None) is not None)
    out.from_set = set()

    def as_typed(value: Any) -> str:  # --buffer-size 20,40 is the tuple (20, 40)
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    several = [f"{_FLAG_NAMES[d]} {as_typed(getattr(args, d))}" for d in ("method", "buffer_size")
               if isinstance(getattr(args, d, None), tuple) and len(getattr(args, d)) > 1
               or isinstance(getattr(args, d, None), str) and "," in getattr(args, d)]
    if several:

        raise ConfigError(f"{', '.join(several)} names several runs (a run group, which only `alta run` starts); "
                          f"give one value here")
    if isinstance(out.get("buffer.size"), tuple):
        out["buffer.size"] = out["buffer.size"][0]
    for text in args.overrides:
        key, value = parse_override(text)
        out[key] = value
        out.from_set.add(key)
    return out


def resolve_run_config(args: argparse.Namespace):
    """The configuration a ``run`` command line asks for: (config, output folder, resume?).

    Raises:
        ConfigError: unknown config, invalid values, flags that contradict a resumed run.
    """

    overrides = _overrides(args)
    if args.resume:
        run_dir = Path(args.resume)
        if args.output_dir and Path(args.output_dir).resolve() != run_dir.resolve():
            raise ConfigError(f"--resume {run_dir} continues the run in that folder; drop --output-dir "
                              f"{args.output_dir} (or use it without --resume for a new run)")
        saved_path = run_dir / "config.yaml"
        if not run_dir.exists():
            raise ConfigError(f"--resume {run_dir}: no such folder; expected the folder of an earlier `alta run` (the "
                              f"one holding its config.yaml), e.g. one listed by `ls runs/`")
        if not run_dir.is_dir():
            raise ConfigError(f"--resume {run_dir} is a file; expected the folder of an earlier `alta run` (the one "
                              f"holding its config.yaml)")
        if not saved_path.is_file():
            raise ConfigError(f"--resume {run_dir}: no config.yaml there, so it is not the folder of an `alta run` "
                              f"(or the run never got past its start); start a new run instead")
        saved = load_run_config(saved_path)
        base = load_config(args.config) if args.config else saved
        candidate = _apply(base, _reference_dirs(args, base, overrides), overrides)
        _refuse_ignored(candidate, overrides)
        diff = config_differences(saved, candidate)
        if diff:
            details = "; ".join(
                f"{flag_for_key(key, overrides)} gives {new!r} but the run was started with {old!r}"
                for key, (old, new) in list(diff.items())[:6]
            )
            raise ConfigError(
                f"cannot resume {run_dir}: {details}. A resumed run keeps its configuration (config.yaml); drop the "
                f"contradicting options, or start a new run with another --output-dir"
            )
        return dataclasses.replace(candidate, name=saved.name), run_dir, True
    config = load_config(args.config or DEFAULT_CONFIG)
    config = _apply(config, _reference_dirs(args, config, overrides), overrides)
    _refuse_ignored(config, overrides)
    # the default name is claimed atomically when the run starts (the next free -2, -3, ... if taken)
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(config, unique=False)
    return config, output_dir, False


def _apply(config, values: dict[str, Any], overrides: dict[str, Any]):
    """:func:`~alta.cli.config.apply_overrides`; an error about a value given on the command line
    says which flag gave it (the value is checked once, by the section that owns it)."""


    if "protocol" in values:  # the protocol's knobs first, so that the other flags win
        values = dict(values)
        config = apply_protocol(config, values.pop("protocol"))
    try:
        return apply_overrides(config, values)
    except ConfigError as exc:
        key = next((k for k in values if f"'{k}'" in str(exc) and k in overrides), None)
        if key is None or key not in _FLAG_KEYS.values():
            raise
        raise ConfigError(f"{exc} (given as {flag_for_key(key, overrides)})") from None


def _reference_dirs(args: argparse.Namespace, config, overrides: dict[str, Any]) -> dict[str, Any]:
    """Map the reference's --cifar10_dir / --cifar100_dir / --tinyimagenet_dir to data.root.

    Raises:
        ConfigError: the folder of another dataset than the run's (it would be ignored), or a
            folder that contradicts --data-root.
    """

    dataset = DATASETS.resolve(overrides.get("data.dataset", config.data.dataset))
    out = dict(overrides)
    for dest, name in _REFERENCE_DIRS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if name != dataset:
            raise ConfigError(f"--{dest} {value} is the folder of {name} but this run's dataset is {dataset}, so it "
                              f"would be ignored; give the data folder with --data-root DIR")
        if "data.root" in out and out["data.root"] != value:
            raise ConfigError(f"--{dest} {value} and --data-root {out['data.root']} both give the data folder; give "
                              f"one of them")
        out["data.root"] = value
    return out


# buffer keys that only matter when the run replays (buffer.size 0 says "no replay" and agrees)
_BUFFER_KEYS = ("buffer.size", "buffer.policy")


def _refuse_ignored(config, overrides: dict[str, Any]) -> None:
    """Refuse values given on the command line that this run would ignore (they would be recorded
    in config.yaml as if used). Values inside a config file stay as the file gives them.

    A buffer size for a method that does not replay is only warned about: the reference README's
    command line (``--method cprompt ... --buffer_size 500``) passes one to every method.

    Raises:
        ConfigError: ``--buffer-size`` / ``buffer.policy`` for a config without replay
            (``buffer.replay: false``, the ``sgd_*`` and ``joint_*`` bounds).
    """

    given = [k for k in _BUFFER_KEYS if k in overrides and not (k == "buffer.size" and overrides[k] == 0)]
    if not given:
        return
    flags = " and ".join(flag_for_key(k, overrides) for k in given)
    if not config.buffer.replay:
        raise ConfigError(
            f"{flags} would be ignored: config {config.name!r} has no replay (buffer.replay: false, as the sgd_* "
            f"lower bound and the joint_* upper bound); drop it, or use a config with replay (e.g. --config "
            f"il_cifar10) or --set buffer.replay=true")
    spec = METHODS.get(config.model.method)
    if not spec.replay:
        logging.getLogger("alta.cli").warning("%s is ignored: method %s does not replay (as in the reference code)",
                                              flags, spec.name)


def flag_for_key(key: str, overrides: dict[str, Any]) -> str:
    """How a configuration key was set on the command line, for messages."""
    for dest, mapped in _FLAG_KEYS.items():
        if mapped == key and key in overrides and key not in getattr(overrides, "from_set", ()):
            return f"{_FLAG_NAMES[dest]} {overrides[key]}"
    if key in overrides:
        return f"--set {key}={overrides[key]}"
    return f"--config (key {key})"


_DATA_HINT = (
    "\nOn the command line: --data-root DIR gives the folder holding the data; --download lets torchvision "
    "download CIFAR-10/100 or Fashion-MNIST into it."
)


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _tiny_on_cpu(config) -> bool:

    return config.model.visual in ("tiny-vit", "tiny-rn") and resolve_device(config.device).type == "cpu"


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


def _cmd_run(args: argparse.Namespace) -> int:
    import torch


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
        if args.loggers:
            raise ConfigError("--logger is not supported for a run group; each member still writes metrics.jsonl "
                              "and summary.json (run a member alone to log it)")
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
        what = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted"
        checkpoint = output_dir / "checkpoint.pt"
        if checkpoint.is_file():
            print(f"\nalta: {what}. The last complete checkpoint is {checkpoint}; continue with:\n"
                  f"  alta run --resume {output_dir}", file=sys.stderr)
        elif (output_dir / "config.yaml").is_file():
            print(f"\nalta: {what} before the first epoch ended: no checkpoint yet. "
                  f"`alta run --resume {output_dir}` restarts it from the first experience.", file=sys.stderr)
        else:
            print(f"\nalta: {what} before the run started; nothing was written.", file=sys.stderr)
        return _interrupt_status(exc)
    except (TrainingError, OutputError, ResourceError) as exc:  # the run started: say how to go on
        print(f"alta: error: {exc}", file=sys.stderr)
        checkpoint = output_dir / "checkpoint.pt"
        if checkpoint.is_file() and (output_dir / "config.yaml").is_file():
            resume_command = (f"torchrun --nproc_per_node {dist.get_world_size()} -m alta run --resume {output_dir}"
                              if dist.is_distributed() else f"alta run --resume {output_dir}")
            print(f"alta: the last complete checkpoint {checkpoint} is intact; once the cause is fixed, continue "
                  f"with:\n  {resume_command}", file=sys.stderr)
        return 1
    except (_StoppedByLauncher, RuntimeError) as exc:
        if not dist.is_distributed() or not (isinstance(exc, (_StoppedByLauncher, torch.distributed.DistError))
                                             or _PEER_LOST.search(str(exc))):
            raise
        reason = ("stopped by torchrun" if isinstance(exc, _StoppedByLauncher)
                  else f"a collective failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
        checkpoint = output_dir / "checkpoint.pt"
        where = (f"The last complete checkpoint is {checkpoint}" if checkpoint.is_file()
                 else "No checkpoint was written yet")
        print(f"\nalta: rank {dist.get_rank()} of {dist.get_world_size()}: {reason}: another rank failed or "
              f"left; its error is above (torchrun names the rank). {where}; continue with:\n"
              f"  torchrun --nproc_per_node {dist.get_world_size()} -m alta run --resume {output_dir}",
              file=sys.stderr)
        return 1
    if dist.is_distributed():
        torch.distributed.destroy_process_group()
    if not main:
        return 0  # rank 0 reports
    if not summary.get("complete"):
        print(f"stopped after {summary['experiences_done']} of {summary['num_experiences']} experiences; "
              f"checkpoint {output_dir / 'checkpoint.pt'}\ncontinue with: alta run --resume {output_dir}")
        return 0
    print(format_table(summary))
    return 0


def _cmd_run_group(args: argparse.Namespace, variants: list[argparse.Namespace]) -> int:
    """``alta run`` with several methods or buffer sizes: the runs in run groups, each in its own
    folder under one group folder (with ``group.json``); ``--resume`` on that folder continues them."""
    from datetime import datetime


    if args.resume:
        root = Path(args.resume)
        flags = any(getattr(args, dest, None) is not None for dest in _FLAG_KEYS) or args.overrides
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
                logging.getLogger("alta").info("method %s does not replay: one run for every --buffer-size",
                                               config.model.method)
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
        resumes = [False] * len(configs)
    _set_threads(args, configs[0])
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    summaries: list[dict | None] = [None] * len(configs)
    for indices in plan_groups(configs):
        chosen = [configs[i] for i in indices]
        if len(indices) == 1:  # a run that trains nothing (zero-shot CLIP), or alone in its group
            i = indices[0]
            summaries[i] = run_experiment(configs[i], output_dir=folders[i], resume=resumes[i], progress=progress,
                                          plots=args.plots, stop_after=args.stop_after)
        else:
            for i, summary in zip(indices, run_group_experiment(
                    chosen, [folders[i] for i in indices], resume=[resumes[i] for i in indices], progress=progress,
                    plots=args.plots, stop_after=args.stop_after)):
                summaries[i] = summary
    for name, folder, summary in zip(names, folders, summaries):
        print(f"== {name} ({folder})")
        print(format_table(summary) if summary.get("complete") else
              f"stopped after {summary['experiences_done']} of {summary['num_experiences']} experiences")
    if not all(s.get("complete") for s in summaries):
        print(f"continue with: alta run --resume {root}")
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


def _cmd_report(args: argparse.Namespace) -> int:

    rows = load_rows(args.folders)
    notes = check_comparable(rows, allow_mixed=args.allow_mixed)
    print(FORMATS[args.format](rows, notes))
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:

    overrides = _overrides(args)
    config = load_config(args.config or DEFAULT_CONFIG)
    config = _apply(config, _reference_dirs(args, config, overrides), overrides)
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


def _cmd_list(args: argparse.Namespace) -> int:

    what = [args.what] if args.what else ["methods", "backbones", "datasets", "configs"]
    blocks = []
    if "methods" in what:
        lines = ["methods (--method):"]
        for name in list_methods():
            spec = get_method(name)
            flags = []
            if name == DEFAULT_METHOD:
                flags.append("ALTA, default, alias 'alta'")
            flags.append("replay" if spec.replay else "no replay")
            lines.append(f"  {name:28s} {spec.formula:36s} {spec.description} ({', '.join(flags)})")
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
    if "datasets" in what:
        lines = ["datasets (data.dataset / --dataset):"]
        for name in DATASETS.names():
            lines.append(f"  {name:18s} {DATASETS.get(name).description}")
        blocks.append("\n".join(lines))
    if "configs" in what:
        lines = ["configs (--config):"]
        for name in list_configs():
            lines.append(f"  {name:15s} {config_description(name)}")
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))
    return 0


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


class _Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm and other schedulers send): handled like Ctrl-C, exit status 143."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def _interrupt_status(exc: BaseException) -> int:
    """128 + the signal: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    return 128 + (signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While the command runs, SIGTERM raises :class:`_Terminated` (a ``KeyboardInterrupt``)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except (ValueError, OSError):  # not the main thread (main() called from a thread): leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Handler(logging.StreamHandler):
    """Logs to the current ``sys.stderr`` (looked up at every record, so captured streams work)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _rank_tag() -> str:
    """`` (rank r of N)`` in a data-parallel run, else nothing: which process an error is from."""

    return f" (rank {dist.get_rank()} of {dist.get_world_size()})" if dist.is_distributed() else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alta`` console script.

    Args:
        argv: Arguments without the program name (``None``: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for usage and configuration errors, 1 for other errors
        alta detects (missing data, weights unavailable offline, damaged checkpoints, a diverged
        run, a full disk), 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM, handled
        like Ctrl-C: what is complete is checkpointed and the resume command printed).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    if args.command is None:
        parser.print_help()
        return 0


    log = logging.getLogger("alta")
    handler = _Handler()
    handler.setFormatter(logging.Formatter("[alta] %(message)s"))
    previous_level, previous_propagate = log.level, log.propagate
    log.addHandler(handler)
    # alta's lines go to its own handler only: a library that configures the root logger (open_clip
    # logs through logging.warning) must not print each of them a second time
    log.propagate = False
    log.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with _sigterm_as_interrupt(), logging_redirect_tqdm(loggers=[log]):
            return args.handler(args)
    except KeyboardInterrupt as exc:
        print(f"\nalta: {'terminated (SIGTERM)' if isinstance(exc, _Terminated) else 'interrupted'}", file=sys.stderr)
        return _interrupt_status(exc)
    except ConfigError as exc:
        print(f"alta: error{_rank_tag()}: {exc}", file=sys.stderr)
        return 2
    except AltaError as exc:

        print(f"alta: error{_rank_tag()}: {exc}{_DATA_HINT if isinstance(exc, DataRootError) else ''}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"alta: error{_rank_tag()}: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"alta: error{_rank_tag()}: out of memory; use a smaller --batch-size, eval.batch_size or buffer.size (--set KEY=N), "
              "a smaller backbone, or fewer --num-workers", file=sys.stderr)
        return 1
    finally:
        log.removeHandler(handler)
        log.setLevel(previous_level)
        log.propagate = previous_propagate
