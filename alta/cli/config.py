"""Configuration files of ``alta run``: shipped configs, YAML files, the reference's format, overrides.

A run of ALTA (Li et al., IEEE TMM 2023; reference code github.com/vijaylee/ALTA) is described by
one :class:`alta.run.config.RunConfig`, whose sections are defined next to what they configure
(see :mod:`alta.config`). This module reads one from a shipped config (``alta list configs``) or
a YAML file, in alta's format or in the reference code's own (sections
``dataset``/``model``/``OPTIM``/``TRAINER``/``train``/``eval``, translated by
:func:`translate_reference_config`), and applies command-line overrides without mutating it
(:func:`apply_overrides` returns a new config built with :func:`dataclasses.replace`).

The defaults are the reference protocol (docs/method.md, Training protocol): RN50, the ALTA method, buffer 200,
30 epochs per experience, batch 32, SGD lr 0.002 / momentum 0.9 / weight decay 5e-4 with a cosine
schedule after one warm-up epoch at 1e-5, evaluation every 10 epochs.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..config import case_hint, coerce, field_hints, unknown_key_error
from ..errors import ConfigError
from ..run.config import OPERATIONAL_KEYS, RunConfig, flatten, safe_run_name
from ..run.presets import parse_preset, preset_nested, preset_values
from ..run.sections import DataConfig

__all__ = ["RunConfig", "load_config", "apply_overrides", "parse_override", "load_run_config", "list_configs",
           "config_description", "translate_reference_config", "is_reference_format", "flatten", "OPERATIONAL_KEYS",
           "preset_config"]

DEFAULT_CONFIG = "default"


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------


def apply_overrides(config: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """A new config with dotted keys replaced (``{"train.epochs": 1, "seed": 3}``).

    ``config`` is not modified; sections are rebuilt with :func:`dataclasses.replace`, so every
    value is validated again. A key of a mapping-valued field is set with one more dot
    (``data.options.split_seed``). A key that fixes the split (``data.split``,
    ``data.num_experiences``, ``data.classes_per_experience``, ``data.initial_classes``) replaces
    the config's whole split: the split keys not given in ``overrides`` are cleared; the same
    holds for the class order (``data.class_order``, ``data.class_order_seed``).

    Raises:
        ConfigError: unknown key (lists the valid ones) or invalid value.
    """

    hints = field_hints(RunConfig)
    sections: dict[str, dict[str, Any]] = {}  # section -> its new values, applied together at the end
    top: dict[str, Any] = {}
    for group in (DataConfig.SPLIT_KEYS, DataConfig.ORDER_KEYS):
        keys = {f"data.{k}" for k in group}
        if keys & set(overrides):
            sections.setdefault("data", {}).update({k[len("data."):]: None for k in keys - set(overrides)})
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in hints:
            raise unknown_key_error(section if not name else key, "", [f.name for f in fields(RunConfig)], RunConfig)
        hint = hints[section]
        if is_dataclass(hint):
            if not name:
                raise ConfigError(f"override {key!r} names a whole section; give a key inside it, e.g. '{section}.{fields(hint)[0].name}'")
            sub_hints = field_hints(hint)
            name, _, item = name.partition(".")
            if name not in sub_hints or (item and typing.get_origin(sub_hints[name]) is not dict):
                raise unknown_key_error(name + (f".{item}" if item else ""), f"{section}.",
                                        [f.name for f in fields(hint)], RunConfig)
            pending = sections.setdefault(section, {})
            if item:  # data.options.split_seed=1
                value = {**pending.get(name, getattr(getattr(config, section), name)), item: value}
            pending[name] = coerce(value, sub_hints[name], key)
        else:
            if name:
                raise unknown_key_error(key, "", [f.name for f in fields(RunConfig)], RunConfig)
            top[section] = coerce(value, hint, key)
    # each section is validated once with all its new values, so that keys checked together (a
    # buffer policy and its per_class) may be given in any order
    rebuilt = {section: dataclasses.replace(getattr(config, section), **values) for section, values in sections.items()}
    return dataclasses.replace(config, **rebuilt, **top) if rebuilt or top else config


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` (the value is read as YAML: ``3``, ``0.1``, ``true``, ``null``, ``[1, 2]``).

    Raises:
        ConfigError: no ``=`` or unparsable value.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE (e.g. --set train.epochs=3), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: cannot read the value as YAML ({exc})") from None
    return key.strip(), value


# --------------------------------------------------------------------------------------------
# Files: shipped configs, YAML, the reference's format
# --------------------------------------------------------------------------------------------


def _shipped_dir():
    return resources.files("alta") / "configs"


def list_configs() -> list[str]:
    """Names of the shipped configurations (``default``, ``il_cifar10``, ...)."""
    names = [p.name[: -len(".yaml")] for p in _shipped_dir().iterdir() if p.name.endswith(".yaml")]
    kinds = {"il": 0, "sgd": 1, "joint": 2}
    datasets = {"cifar10": 0, "cifar100": 1, "tiny": 2}

    def key(name: str) -> tuple:
        kind, _, dataset = name.partition("_")
        return (name != DEFAULT_CONFIG, datasets.get(dataset, 9), kinds.get(kind, 9), name)

    return sorted(names, key=key)


def config_description(name: str) -> str:
    """First comment line of a shipped config (for ``alta list configs``)."""
    text = (_shipped_dir() / f"{name}.yaml").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def _resolve_source(name_or_path: str | os.PathLike) -> tuple[str, str]:
    """(text, source description) of a config name or file."""
    raw = os.fspath(name_or_path)
    path = Path(raw).expanduser()
    if path.is_dir():
        raise ConfigError(f"config {raw!r} is a folder; expected a YAML file or the name of a shipped config "
                          f"(see `alta list configs`)")
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
        try:
            return data.decode("utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {str(path)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start} "
                f"cannot be decoded); expected a YAML file saved as UTF-8: re-save it as UTF-8, or check that "
                f"it is the right file"
            ) from None
    stem = path.name
    for suffix in (".yaml", ".yml"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    shipped = list_configs()
    if stem in shipped:
        return (_shipped_dir() / f"{stem}.yaml").read_text(encoding="utf-8"), f"shipped config {stem!r}"
    close = difflib.get_close_matches(stem, shipped, n=1, cutoff=0.5)
    match = close[0] if close else case_hint(stem, shipped)
    hint = f"; did you mean {match!r}?" if match else "."
    raise ConfigError(
        f"unknown config {raw!r}: not an existing file and not a shipped config{hint} "
        f"Shipped configs: {', '.join(shipped)} (see `alta list configs`); or give the path of a YAML file"
    )


def load_config(name_or_path: str | os.PathLike = DEFAULT_CONFIG) -> RunConfig:
    """Read a shipped configuration by name or a YAML file.

    A name like ``configs/il_cifar10.yaml`` that is not an existing file resolves to the shipped
    config ``il_cifar10``, so the reference README's command lines work unchanged. Files in the
    reference code's own format are translated (:func:`translate_reference_config`).

    Args:
        name_or_path: A name of :func:`list_configs` or the path of a YAML file.

    Returns:
        The :class:`RunConfig`; ``name`` defaults to the file's stem.

    Raises:
        ConfigError: unknown name (lists the shipped ones), unreadable YAML, unknown keys
            (named, with the valid keys), invalid values.
    """
    return _read_config(name_or_path)


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read the ``config.yaml`` of a run folder (to resume it, or compare with it).

    Like :func:`load_config`, except that a run name this alta no longer accepts (one written by
    an older version, e.g. with spaces) is made valid instead of refused: the name does not change
    results (it is left out of :meth:`RunConfig.fingerprint`), and the run stays resumable.
    """
    return _read_config(path, fix_name=True)


def _read_config(name_or_path: str | os.PathLike, *, fix_name: bool = False) -> RunConfig:
    text, source = _resolve_source(name_or_path)
    data = _load_yaml(text, source)
    if data is None:
        raise ConfigError(
            f"{source} is empty (it holds no settings, only comments or nothing); expected a mapping of sections "
            f"such as 'train: {{epochs: 3}}' (see a run's config.yaml for every key). To run the defaults, leave "
            f"out --config"
        )
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source} must hold a mapping of sections (data, model, ...), got {type(data).__name__}")
    stem = Path(os.fspath(name_or_path)).name
    for suffix in (".yaml", ".yml"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = safe_run_name(stem)
    if not fix_name and "plugins" in data:  # a run's record of its plug-ins binds that run only, not a new one
        data = {key: value for key, value in data.items() if key != "plugins"}
    if "base" in data:
        data = _with_base(data, source, chain=(str(source),))
    if data.get("preset") is not None and not is_reference_format(data):
        try:
            data = _with_preset(data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if is_reference_format(data):
        data = translate_reference_config(data, name=stem)
    elif "name" not in data:
        data = {"name": stem, **data}
    elif fix_name and isinstance(data["name"], str) and data["name"]:
        data = {**data, "name": safe_run_name(data["name"])}
    try:
        return RunConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def preset_config(name: str) -> RunConfig:
    """The configuration a preset describes (:mod:`alta.run.presets`): alta's defaults with the
    preset's values (``cil-suite/cil-cars/B50-Inc10``), named after it. What ``alta run --dataset
    cars --split B50-Inc10`` starts from.

    Raises:
        ConfigError: an unknown preset.
    """
    full = parse_preset(name)
    return apply_overrides(RunConfig(name=safe_run_name(full.replace("/", "_"))), preset_values(full))


def _with_preset(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config file naming a preset (``preset: cil-suite``, completed from its ``data`` section,
    or ``preset: cil-suite/<dataset>/<split>``): the preset's values with the file's on top."""
    section = data.get("data") if isinstance(data.get("data"), Mapping) else {}
    full = parse_preset(data["preset"], dataset=section.get("dataset"), split=section.get("split"))
    return _merge(preset_nested(full), {**data, "preset": full})


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, section by section (a value in ``over`` wins)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def _with_base(data: Mapping[str, Any], source, *, chain: tuple[str, ...]) -> dict[str, Any]:
    """Resolve ``base: NAME`` (a shipped config or a YAML file, itself possibly with a base): the
    file's keys on top of the base's. The base's ``name`` is not inherited."""
    data = dict(data)
    base = data.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{source}: 'base' must name a shipped config (`alta list configs`) or a YAML file, "
                          f"got {base!r}; e.g. base: default")
    beside = Path(str(source)).parent / base  # a file named relative to the config that names it
    text, base_source = _resolve_source(beside if Path(str(source)).is_file() and beside.is_file() else base)
    if str(base_source) in chain:
        raise ConfigError(f"{source}: 'base: {base}' makes a cycle ({' -> '.join(chain)} -> {base_source}); "
                          f"a base cannot start from itself")
    parent = _load_yaml(text, base_source)
    if not isinstance(parent, Mapping):
        raise ConfigError(f"{source}: its base {base_source} does not hold a mapping of sections")
    if "base" in parent:
        parent = _with_base(parent, base_source, chain=(*chain, str(base_source)))
    parent = {k: v for k, v in parent.items() if k != "name"}
    return _merge(parent, data)


class _DuplicateKey(Exception):
    def __init__(self, path: str, first: int, again: int, section: bool) -> None:
        super().__init__(path, first, again)
        self.path, self.first, self.again, self.section = path, first, again, section


def _check_duplicate_keys(node: yaml.Node, path: str, seen_nodes: set[int]) -> None:
    """Raise :class:`_DuplicateKey` for a key given twice in one mapping (YAML keeps the last one
    silently). Merge keys (``<<``) are left to YAML."""
    if id(node) in seen_nodes:  # an alias: checked where it was defined
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if ident in lines:
                    raise _DuplicateKey(path + key_node.value, lines[ident], line,
                                        isinstance(value_node, yaml.MappingNode))
                lines[ident] = line
                _check_duplicate_keys(value_node, f"{path}{key_node.value}.", seen_nodes)
            else:
                _check_duplicate_keys(value_node, path, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{path[:-1]}[{i}].", seen_nodes)


def _load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice in one mapping.

    Raises:
        ConfigError: invalid YAML, a NUL byte, or a duplicated key (named, with both lines).
    """
    if "\0" in text:  # e.g. a zero-filled file left by a crash; YAML refuses NUL anywhere
        raise ConfigError(
            f"{source} holds a NUL byte (first at character {text.index(chr(0))}), so it is not a YAML text file: it "
            "was probably damaged (a crash can leave a zero-filled file). Fix: restore or rewrite it"
        )
    try:
        loader = yaml.SafeLoader(text)  # refuses other control characters already
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicate_keys(node, "", set())
        return loader.construct_document(node)
    except _DuplicateKey as dup:
        fix = (f"merge the two into one '{dup.path.rpartition('.')[2]}:' section holding all its keys" if dup.section
               else "keep only the one you mean")
        raise ConfigError(
            f"{source}: key {dup.path!r} is given twice (lines {dup.first} and {dup.again}); YAML would silently keep "
            f"only the last one, so alta refuses the file: {fix}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def is_reference_format(data: Mapping[str, Any]) -> bool:
    """Whether a parsed YAML is in the reference code's format (``dataset``/``OPTIM`` sections)."""
    return "OPTIM" in data or "TRAINER" in data or "dataset" in data


# reference dataset name -> alta dataset name
_REFERENCE_DATASETS = {"seq-cifar10": "seq-cifar10", "seq-cifar100": "seq-cifar100", "seq-tinyimagenet": "seq-tinyimagenet"}
# keys of the reference's OPTIM section that do not apply to its SGD set-up
_REFERENCE_IGNORED_OPTIM = {
    "SGD_DAMPNING", "SGD_NESTEROV", "RMSPROP_ALPHA", "ADAM_BETA1", "ADAM_BETA2", "STAGED_LR", "NEW_LAYERS",
    "BASE_LR_MULT", "WARMUP_RECOUNT", "LR_SCHEDULER", "STEPSIZE", "GAMMA", "WARMUP_MIN_LR",
}


def translate_reference_config(data: Mapping[str, Any], *, name: str = "reference") -> dict[str, Any]:
    """Translate a config of the reference code (``configs/*.yaml`` of vijaylee/ALTA) to alta's
    format.

    ``dataset.{name, n_tasks, n_classes_per_task, num_workers}``, ``model.use_replay``,
    ``OPTIM.{LR, MOMENTUM, WEIGHT_DECAY, MAX_EPOCH, WARMUP_EPOCH, WARMUP_CONS_LR}``,
    ``TRAINER.COOP.{N_CTX, CTX_INIT}``, ``train.{batch_size, alpha, beta}`` and
    ``eval.{test_epochs, batch_size}`` are mapped; ``dataset.image_size`` is ignored (the image
    size comes from the backbone, 224 for RN50 as in the reference).

    Raises:
        ConfigError: an unknown section or key, or a setting alta does not implement (an
            optimiser other than SGD, a class token not at the end, N_CTX that does not match
            CTX_INIT).
    """

    def section(key: str, allowed: set[str]) -> Mapping[str, Any]:
        value = data.get(key) or {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"reference config section {key!r} must be a mapping, got {value!r}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown key {key + '.' + str(unknown[0])!r} in a reference-format config; valid keys of "
                f"{key!r}: {', '.join(sorted(allowed))}"
            )
        return value

    known_sections = {"dataset", "model", "OPTIM", "TRAINER", "train", "eval"}
    unknown = sorted(set(data) - known_sections)
    if unknown:
        raise ConfigError(
            f"unknown section {unknown[0]!r} in a reference-format config; valid sections: "
            f"{', '.join(sorted(known_sections))}"
        )
    ds = section("dataset", {"name", "image_size", "num_workers", "n_classes_per_task", "n_tasks"})
    model = section("model", {"pretrained", "use_replay"})
    optim = section("OPTIM", {"NAME", "LR", "WEIGHT_DECAY", "MOMENTUM", "MAX_EPOCH", "WARMUP_EPOCH", "WARMUP_TYPE",
                              "WARMUP_CONS_LR", *_REFERENCE_IGNORED_OPTIM})
    trainer = section("TRAINER", {"COOP"})
    train = section("train", {"batch_size", "alpha", "beta", "num_classes"})
    evaluation = section("eval", {"test_epochs", "batch_size"})

    out: dict[str, Any] = {"name": name, "data": {}, "model": {}, "buffer": {}, "optim": {}, "train": {}, "eval": {}}
    if "name" in ds:
        out["data"]["dataset"] = _REFERENCE_DATASETS.get(ds["name"], ds["name"])
    if "n_tasks" in ds:
        out["data"]["num_experiences"] = ds["n_tasks"]
    if "n_classes_per_task" in ds:
        out["data"]["classes_per_experience"] = ds["n_classes_per_task"]
    if "num_workers" in ds:
        out["data"]["num_workers"] = ds["num_workers"]
    if "use_replay" in model:
        out["buffer"]["replay"] = model["use_replay"]
    if str(optim.get("NAME", "sgd")).lower() != "sgd":
        raise ConfigError(f"reference config OPTIM.NAME is {optim['NAME']!r}; alta implements the reference's 'sgd' only")
    if str(optim.get("WARMUP_TYPE", "constant")).lower() != "constant":
        raise ConfigError(f"reference config OPTIM.WARMUP_TYPE is {optim['WARMUP_TYPE']!r}; alta implements 'constant' only")
    for ref, key in (("LR", "lr"), ("MOMENTUM", "momentum"), ("WEIGHT_DECAY", "weight_decay"),
                     ("WARMUP_EPOCH", "warmup_epochs"), ("WARMUP_CONS_LR", "warmup_lr")):
        if ref in optim:
            out["optim"][key] = optim[ref]
    if "MAX_EPOCH" in optim:
        out["train"]["epochs"] = optim["MAX_EPOCH"]
    coop = trainer.get("COOP") or {}
    if not isinstance(coop, Mapping) or set(coop) - {"N_CTX", "CTX_INIT", "CLASS_TOKEN_POSITION", "CSC"}:
        raise ConfigError(f"reference config TRAINER.COOP must hold N_CTX, CTX_INIT, CLASS_TOKEN_POSITION; got {coop!r}")
    if str(coop.get("CLASS_TOKEN_POSITION", "end")) != "end":
        raise ConfigError("reference config TRAINER.COOP.CLASS_TOKEN_POSITION must be 'end' (the only one alta implements)")
    if coop.get("CSC", False):
        raise ConfigError("reference config TRAINER.COOP.CSC (class-specific context) is not implemented by alta")
    if "CTX_INIT" in coop:
        out["model"]["ctx_init"] = coop["CTX_INIT"]
        if "N_CTX" in coop and len(str(coop["CTX_INIT"]).split()) != coop["N_CTX"]:
            raise ConfigError(
                f"reference config TRAINER.COOP.N_CTX={coop['N_CTX']} but CTX_INIT {coop['CTX_INIT']!r} has "
                f"{len(str(coop['CTX_INIT']).split())} words; alta takes the number of context vectors from CTX_INIT"
            )
    for ref, key in (("batch_size", "batch_size"),):
        if ref in train:
            out["train"][key] = train[ref]
    for key in ("alpha", "beta"):
        if key in train:
            out["model"][key] = train[key]
    if "test_epochs" in evaluation:
        out["eval"]["every"] = evaluation["test_epochs"]
    if "batch_size" in evaluation:
        out["eval"]["batch_size"] = evaluation["batch_size"]
    return {k: v for k, v in out.items() if v != {}}
