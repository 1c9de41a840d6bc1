"""From parsed arguments to a resolved :class:`~alta.run.config.RunConfig`: shipped config or file,
the protocol, then the flags and ``--set`` overrides (each validated once, by its section)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..data import DATASETS
from ..data.datasets.cil_suite import is_suite_dataset
from ..errors import ConfigError
from ..methods import METHODS
from ..plugins import import_plugin
from ..run import (
    config_differences,
    default_output_dir,
)
from ..run.presets import preset_name
from ..run.protocols import apply_protocol
from .config import (
    DEFAULT_CONFIG,
    apply_overrides,
    load_config,
    load_run_config,
    parse_override,
    preset_config,
)
from .parser import FLAG_KEYS, FLAG_NAMES, REFERENCE_DIRS


class _Overrides(dict):
    """Configuration keys set on the command line; ``from_set``: those whose value came from ``--set``
    (so that a message names the spelling the user typed)."""

    from_set: set[str]


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Configuration keys set on the command line (flags first, then --set in order)."""

    out = _Overrides((key, getattr(args, dest)) for dest, key in FLAG_KEYS.items()
                     if getattr(args, dest, None) is not None)
    out.from_set = set()

    def as_typed(value: Any) -> str:  # --buffer-size 20,40 is the tuple (20, 40)
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    several = [f"{FLAG_NAMES[d]} {as_typed(getattr(args, d))}" for d in ("method", "buffer_size")
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


def import_plugins(args: argparse.Namespace) -> None:
    """Import what ``--import`` names (each once per process: :func:`alta.plugins.import_plugin`,
    which logs what each registered).

    Raises:
        PluginError: a file or module that does not exist or fails to import (its error named).
    """
    for spec in getattr(args, "imports", None) or ():
        import_plugin(spec)


def resolve_run_config(args: argparse.Namespace):
    """The configuration a ``run`` command line asks for: (config, output folder, resume?).

    Raises:
        ConfigError: unknown config, invalid values, flags that contradict a resumed run.
        PluginError: an ``--import`` that fails; a resumed run whose plug-ins are missing or changed.
    """

    import_plugins(args)
    overrides = flag_overrides(args)
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
        candidate = apply_values(base, reference_dirs(args, base, overrides), overrides)
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
    config = load_config(args.config) if args.config else starting_config(overrides)
    config = apply_values(config, reference_dirs(args, config, overrides), overrides)
    _refuse_ignored(config, overrides)
    # the default name is claimed atomically when the run starts (the next free -2, -3, ... if taken)
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(config, unique=False)
    return config, output_dir, False


def starting_config(overrides: dict[str, Any]):
    """The configuration a command line without ``--config`` starts from: the suite's preset for
    a dataset of the CLIP class-incremental suite (``--dataset cars --split B50-Inc10``: its
    backbone, weights, template, class order, epochs and memory; :mod:`alta.run.presets`), unless
    ``--set preset=null``; otherwise the offline demo (:data:`DEFAULT_CONFIG`)."""
    dataset = overrides.get("data.dataset")
    if is_suite_dataset(dataset) and overrides.get("preset", "") is not None:
        split = overrides.get("data.split")
        return preset_config(preset_name(dataset, split if isinstance(split, str) else None))
    return load_config(DEFAULT_CONFIG)


def apply_values(config, values: dict[str, Any], overrides: dict[str, Any]):
    """:func:`~alta.cli.config.apply_overrides`; an error about a value given on the command line
    says which flag gave it (the value is checked once, by the section that owns it)."""


    if "protocol" in values:  # the protocol's knobs first, so that the other flags win
        values = dict(values)
        config = apply_protocol(config, values.pop("protocol"))
    if (config.preset is not None and "model.visual" in values and "model.pretrained" not in values
            and config.model.pretrained is not None and values["model.visual"] != config.model.visual):
        # the preset's weights belong to its backbone: another backbone starts without them (a deviation)
        values = {**values, "model.pretrained": None}
    try:
        return apply_overrides(config, values)
    except ConfigError as exc:
        # the key the message is about is the first one it quotes ("unknown key 'a'; did you mean 'b'?")
        named = sorted((str(exc).index(f"'{k}'"), k) for k in values if f"'{k}'" in str(exc) and k in overrides)
        key = named[0][1] if named else None
        if key is None or key not in FLAG_KEYS.values():
            raise
        raise ConfigError(f"{exc} (given as {flag_for_key(key, overrides)})") from None


def reference_dirs(args: argparse.Namespace, config, overrides: dict[str, Any]) -> dict[str, Any]:
    """Map the reference's --cifar10_dir / --cifar100_dir / --tinyimagenet_dir to data.root.

    Raises:
        ConfigError: the folder of another dataset than the run's (it would be ignored), or a
            folder that contradicts --data-root.
    """

    out = dict(overrides)
    if not any(getattr(args, dest, None) is not None for dest in REFERENCE_DIRS):
        return out
    dataset = DATASETS.resolve(overrides.get("data.dataset", config.data.dataset))
    for dest, name in REFERENCE_DIRS.items():
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
    for dest, mapped in FLAG_KEYS.items():
        if mapped == key and key in overrides and key not in getattr(overrides, "from_set", ()):
            return f"{FLAG_NAMES[dest]} {overrides[key]}"
    if key in overrides:
        return f"--set {key}={overrides[key]}"
    return f"--config (key {key})"
