"""The parser of the ``alta`` command line: subcommands, flags and the config keys they set."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

from .._version import __version__

_EPILOG_RUN = """\
examples:
  alta run                                         offline demo (digits, tiny random CLIP, ALTA)
  alta run --config il_cifar10 --data-root DIR     the paper's Seq-CIFAR-10 protocol (RN50)
  alta run --config-file configs/sgd_cifar10.yaml --method cprompt --il_setting task-il \\
           --visual RN50 --buffer_size 500 --seed 1 --data-root DIR
  alta run --config il_cifar10 --data-root DIR --visual tiny-vit --epochs 1   (quick check)
  alta run --resume runs/il_cifar10-oritext_mlp2cprompt_oriimg-20250101-120000
  alta run --import examples/linear_probe.py --method linear_probe,alta
           your own method (a file or module that registers it) beside ALTA, as a run group
  alta run --config mtil --data-root DIR           MTIL Order I, a dataset per experience (--dataset mtil-order2,
                                                   --shots 5; --config xtail: X-TAIL; alta list sequences)
  alta run --config il_cifar10 --data-root DIR --method alta,mlp,cprompt --buffer-size 200,500
           a run group: the six runs in one pass over the frozen encoders, each in its own folder
           under runs/<config>-group-<time>/ (alta run --resume on that folder continues them all)

Results go to --output-dir (default runs/<config>-<method>-<time>): config.yaml, metrics.jsonl,
summary.json, checkpoint.pt and plots. Flags override the values of --config; every other key
can be set with --set SECTION.KEY=VALUE (see a config.yaml for the keys).
"""

# command-line destination -> configuration key
FLAG_KEYS = {
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
    "shots": "data.shots",
    "epochs": "train.epochs",
    "iterations": "train.iterations",
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
    "loss_terms": "model.loss_terms",
}
FLAG_NAMES = {dest: "--" + dest.replace("_", "-") for dest in FLAG_KEYS} | {"loss_terms": "--loss-term"}
# the reference's per-dataset folders (arguments.py)
REFERENCE_DIRS = {"cifar10_dir": "seq-cifar10", "cifar100_dir": "seq-cifar100", "tinyimagenet_dir": "seq-tinyimagenet"}


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


def _loss_terms(text: str) -> dict[str, Any]:
    """``--loss-term logit_norm=0.1,lwf`` -> {"logit_norm": 0.1, "lwf": None} (names and weights
    checked by the config)."""
    out: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight) if sep else None
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAME or NAME=WEIGHT (comma-separated), got {part!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected loss term names such as logit_norm=0.1, got {text!r}")
    return out


_IMPORT_HELP = ("a module or a .py file whose code registers methods, loss terms, datasets, backbone sources, buffer "
                "policies or loggers (repeatable; installed packages register through entry points without it)")

#: What ``alta list`` lists.
LISTINGS = ("methods", "backbones", "datasets", "sequences", "configs", "loss-terms", "buffer-policies", "loggers",
            "backbone-sources", "plugins", "presets")


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
    where.add_argument("--no-plots", dest="plots", action="store_const", const=False, default=None,
                       help="do not write the PNG plots (a resumed run keeps what it was started with)")
    where.add_argument("-q", "--quiet", action="store_true", help="log warnings only (the result table is still printed)")
    where.add_argument("--logger", dest="loggers", type=_logger_names, default=None, metavar="NAMES",
                       help="also log to csv (evaluations.csv), tensorboard (tensorboard/) and/or wandb (offline "
                            "with WANDB_MODE=offline), comma-separated, e.g. --logger csv,tensorboard; in a run "
                            "group, every member logs into its folder; a resumed run keeps the loggers it was "
                            "started with")
    where.add_argument("--seeds", type=int, nargs="+", metavar="S",
                       help="run once per seed, each in OUTPUT/seed-S (resumable: the same command continues), "
                            "then write OUTPUT/aggregate.json (mean ± sample std) and its plot")

    report = commands.add_parser(
        "report", help="tabulate finished runs or seed groups side by side",
        description="Print a table of runs (summary.json) or seed groups (aggregate.json, mean ± std): Avg, Last, "
                    "forgetting and BWT for class-IL and task-IL. Runs of different protocols, class orders or "
                    "backbone weights are refused unless --allow-mixed.")
    report.add_argument("folders", nargs="+", metavar="DIR",
                        help="run folders, `alta run --seeds` folders, or run-group folders (several --method or "
                             "--buffer-size values: one row per member)")
    report.add_argument("--format", choices=("markdown", "latex", "csv"), default="markdown", help="default markdown")
    report.add_argument("--allow-mixed", action="store_true",
                        help="tabulate runs that are not comparable anyway (the table notes the differences)")

    config = commands.add_parser("config", help="show the resolved configuration without running",
                                 description="Configuration tools.")
    config_commands = config.add_subparsers(dest="config_command", metavar="{show}", parser_class=_Parser,
                                            required=True)
    show = config_commands.add_parser(
        "show", help="print the resolved configuration (YAML) of --config with the given options",
        description="Print the configuration `alta run` would use with the same options, as its config.yaml "
                    "holds it, without running anything.")
    _add_config_arguments(show)

    listing = commands.add_parser("list", help="list methods, backbones, datasets, configs, loss terms, ...",
                                  description="List the names alta knows, plug-ins included (with where they come "
                                              "from).")
    listing.add_argument("what", nargs="?", choices=LISTINGS,
                         help="what to list (default: everything); plugins: every registered plug-in and its origin")
    listing.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE_OR_FILE",
                         help=_IMPORT_HELP)
    return parser


def _add_config_arguments(run: argparse.ArgumentParser) -> None:
    """The options that build a configuration (``alta run`` and ``alta config show``)."""
    what = run.add_argument_group("experiment (the reference's vocabulary)")
    what.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE_OR_FILE",
                      help=_IMPORT_HELP)
    what.add_argument("--config", "--config-file", dest="config", metavar="NAME|FILE",
                      help="shipped config (`alta list configs`; default: default, the offline demo) or a YAML file; "
                           "configs/NAME.yaml resolves to the shipped NAME when no such file exists")
    what.add_argument("--method", metavar="METHOD[,METHOD...]",
                      help="mlp, resmlp, sprompt, cprompt, cprompt_oriprompt, cprompt_mlp, cprompt_resmlp, "
                           "oriclip2cprompt_mlp, oritext_mlp2cprompt_oriimg (= alta, the default), zeroshot, or a "
                           "plug-in's (alta list methods); several (comma-separated) run as one run group")
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
    data.add_argument("--dataset", metavar="NAME",
                      help="stream name (`alta list datasets`), or a multi-domain sequence (`alta list sequences`: "
                           "mtil-order1, mtil-order2, xtail, ...); overrides the config's. Without --config, a dataset "
                           "of the CLIP class-incremental suite (cars, food, sun, ucf, cub, cil-aircraft, cil-cifar100, "
                           "cil-imagenet-r, cil-objectnet) starts from the suite's preset for --split (`alta list "
                           "presets`): flags given on top of it are recorded as deviations")
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
    data.add_argument("--shots", type=int, metavar="N",
                      help="multi-domain sequences: keep N training images per class (5: MTIL few-shot, 16: X-TAIL), "
                           "drawn from data.shot_seed (default: the run's --seed)")
    data.add_argument("--num-workers", dest="num_workers", type=int, metavar="N",
                      help="DataLoader worker processes (default 0)")
    for dest, dataset in REFERENCE_DIRS.items():
        data.add_argument(f"--{dest}", dest=dest, metavar="DIR",
                          help=f"the reference code's folder flag: --data-root for {dataset}")

    training = run.add_argument_group("training")
    training.add_argument("--epochs", type=int, metavar="N", help="epochs per experience (paper configs 30, joint 100; offline demo 20)")
    training.add_argument("--iterations", type=int, metavar="N",
                          help="training budget in optimizer steps per experience, the data cycled in shuffled "
                               "passes (ZSCL/MoE-Adapters: 1000 at batch 64); --epochs then cuts it into rounds "
                               "(checkpoints, learning-rate steps and --eval-every count rounds)")
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
    training.add_argument("--loss-term", dest="loss_terms", type=_loss_terms, metavar="NAME[=WEIGHT][,...]",
                          help="add registered loss terms to the method's loss (alta list loss-terms), e.g. "
                               "--loss-term logit_norm=0.1; sets model.loss_terms")
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
