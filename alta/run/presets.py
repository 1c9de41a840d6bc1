"""Named presets: the protocol of a benchmark by name, so that a run says when it departs from it.

``cil-suite`` is the protocol of the CLIP class-incremental suite (PROOF, TPAMI 2025; ENGINE,
ICCV 2025; BOFA, AAAI 2026; MG-CLIP, ICCV 2025; gathered by C3Box) on its nine datasets
(:mod:`alta.data.datasets.cil_suite`), one preset per (dataset, split), named
``cil-suite/<dataset>/<split>`` (``cil-suite/cil-cars/B50-Inc10``). Each fixes what makes a number
comparable with the suite's tables, with its source:

- backbone and weights: OpenCLIP ViT-B/16 trained on LAION-400M (``laion400m_e32``);
- the prompt template: the dataset's first PROOF template (the one PROOF trains with);
- the class order: seed 1993 as PyCIL draws it (``icarl-1993``: ``np.random.seed(1993);
  np.random.permutation(C)``);
- the split: base and increment (``B0-Inc10`` / ``B50-Inc10``, ...);
- the epochs per task of PROOF's configs (``tuned_epoch``);
- the memory: 20 exemplars per class chosen by herding (``buffer.policy: herding``), kept for
  every class seen (a buffer of 20 x C);
- evaluation on the classes seen so far (``model.head: seen``), after each task;
- the images as PROOF prepares them (transform ``proof``: no augmentation, so training features
  are encoded once, exactly: ``train.train_cache: fixed``).

The method's own settings (ALTA's learning rate, batch size, loss weights) are not part of the
preset: they are the method's (:mod:`alta.run.protocols`). ``alta run --dataset cars --split
B50-Inc10`` starts from the preset; every value given on top of it is a *deviation*, recorded in
``summary.json`` (``preset_deviations``) and said at the start of the run and under its table.

References:
    D.-W. Zhou et al., "Learning without Forgetting for Vision-Language Models" (PROOF), TPAMI
    2025; github.com/zhoudw-zdw/PROOF@0bb20520 ``exps/*.json``, ``utils/data.py``,
    ``utils/data_manager.py``, ``utils/inc_net.py``, ``models/base.py``.
    S.-A. Rebuffi et al., "iCaRL", CVPR 2017 (herding, 20 exemplars per class as PyCIL keeps them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.datasets import DATASETS
from ..data.datasets.cil_suite import SUITE, SuiteDataset, is_suite_dataset
from ..data.splits import parse_split
from ..errors import ConfigError
from .protocols import CONFIG_KEYS

__all__ = ["SUITE_PRESET", "PresetSetting", "preset_name", "parse_preset", "preset_settings", "preset_values",
           "preset_nested", "preset_deviations", "describe_preset", "list_presets", "preset_owned"]

SUITE_PRESET = "cil-suite"
_PROOF = "github.com/zhoudw-zdw/PROOF@0bb20520"
#: PROOF's config file of each (dataset, split) (exps/*.json; carb100.json is the B50 one)
_CONFIG_FILES = {
    ("cifar100", 0): "cifar.json", ("cifar100", 1): "cifarb50.json", ("cub", 0): "cub.json",
    ("cub", 1): "cubb100.json", ("imagenet_r", 0): "img.json", ("imagenet_r", 1): "imgb100.json",
    ("objectnet", 0): "obj.json", ("objectnet", 1): "objb100.json", ("cars", 0): "car.json",
    ("cars", 1): "carb100.json", ("ucf", 0): "ucf.json", ("ucf", 1): "ucfb50.json", ("aircraft", 0): "air.json",
    ("aircraft", 1): "airb50.json", ("food", 0): "food.json", ("food", 1): "foodb50.json", ("sun", 0): "sun.json",
    ("sun", 1): "sunb150.json",
}
#: tuned_epoch of PROOF's configs: 5 for CIFAR-100 (both splits) and Food-101 B50, 10 elsewhere
_EPOCHS = {("cifar100", 0): 5, ("cifar100", 1): 5, ("food", 1): 5}
MEMORY_PER_CLASS = 20  # memory_per_class of every PROOF config
BACKBONE, WEIGHTS = "open_clip:ViT-B-16", "laion400m_e32"


@dataclass(frozen=True)
class PresetSetting:
    """One value of a preset: the value, why, and where it comes from."""

    value: Any
    reason: str
    source: str


def list_presets() -> list[str]:
    """The preset families (``["cil-suite"]``); a preset is ``<family>/<dataset>/<split>``."""
    return [SUITE_PRESET]


def preset_name(dataset: str, split: str | None = None) -> str:
    """The full name of the suite's preset for a dataset (name or alias) and split; ``None``
    picks the dataset's ``B0`` split, a split that is not one of the suite's picks the
    ``B0`` preset too (the run then deviates in ``data.split``).

    Raises:
        ConfigError: a dataset that is not one of the suite's.
    """
    spec = _suite(dataset)
    chosen = _canonical_split(split)
    return f"{SUITE_PRESET}/{spec.name}/{chosen if chosen in spec.splits else spec.splits[0]}"


def parse_preset(name: object, *, dataset: str | None = None, split: str | None = None) -> str:
    """The full name of a preset: ``cil-suite/<dataset>/<split>`` as given, or ``cil-suite``
    completed with ``dataset`` and ``split`` (a run's ``data.dataset`` and ``data.split``).

    Raises:
        ConfigError: an unknown family, a dataset that is not the suite's, or a split that is not
            one of that dataset's two.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"config key 'preset' must be a preset name such as '{SUITE_PRESET}/cil-cars/B50-Inc10' (or "
                          f"null), got {name!r}")
    family, _, rest = name.partition("/")
    if family != SUITE_PRESET:
        raise ConfigError(f"config key 'preset' is {name!r}: unknown preset family {family!r}; presets: "
                          f"{SUITE_PRESET}/<dataset>/<split> (the CLIP class-incremental suite, datasets "
                          f"{', '.join(SUITE)})")
    if not rest:
        if dataset is None or not is_suite_dataset(dataset):
            raise ConfigError(f"config key 'preset' is {name!r} but data.dataset is {dataset!r}, not one of the suite's "
                              f"datasets ({', '.join(SUITE)}); name the preset in full, e.g. "
                              f"{SUITE_PRESET}/cil-cars/B50-Inc10")
        return preset_name(dataset, split)
    data, _, given_split = rest.partition("/")
    spec = _suite(data)
    chosen = _canonical_split(given_split) if given_split else spec.splits[0]
    if chosen not in spec.splits:
        raise ConfigError(f"config key 'preset' is {name!r}: {spec.name}'s splits in the suite are "
                          f"{' and '.join(spec.splits)}, not {given_split!r}")
    return f"{SUITE_PRESET}/{spec.name}/{chosen}"


def _suite(dataset: str) -> SuiteDataset:
    canonical = DATASETS.resolve(dataset)
    if canonical not in SUITE:
        raise ConfigError(f"the {SUITE_PRESET} preset is the protocol of the suite's datasets ({', '.join(SUITE)}); "
                          f"{dataset!r} is not one of them")
    return SUITE[canonical]


def _canonical_split(split: str | None) -> str | None:
    return None if split is None else str(parse_split(split))


def preset_settings(name: str) -> dict[str, PresetSetting]:
    """The settings of a preset (its full name), by config key.

    Raises:
        ConfigError: an unknown preset.
    """
    full = parse_preset(name)
    _, dataset, split = full.split("/")
    spec = SUITE[dataset]
    which = spec.splits.index(split)
    file = f"{_PROOF} exps/{_CONFIG_FILES[(spec.key, which)]}"
    C = spec.num_classes
    return {
        "data.split": PresetSetting(split, f"the suite's {'half-base' if which else 'B0'} split of {spec.title}",
                                    f"{file} init_cls / increment"),
        "data.class_order": PresetSetting("icarl-1993", "classes shuffled with seed 1993 as PyCIL draws it",
                                          f"{_PROOF} utils/data_manager.py _setup_data (np.random.seed(seed); "
                                          f"np.random.permutation(C)), seed [1993] in {file}"),
        "data.transform": PresetSetting("proof", "PROOF's images: resized to a square, centre crop, CLIP's mean/std, "
                                                 "no augmentation", f"{_PROOF} utils/data.py build_transform"),
        "model.visual": PresetSetting(BACKBONE, "OpenCLIP ViT-B/16", f"{_PROOF} utils/inc_net.py get_convnet ('clip')"),
        "model.pretrained": PresetSetting(WEIGHTS, "LAION-400M weights (OpenAI's move numbers by several points)",
                                          f"{_PROOF} utils/inc_net.py get_convnet ('clip')"),
        "model.template": PresetSetting(spec.templates[0], "the dataset's first template, the one PROOF trains with",
                                        f"{_PROOF} utils/templates.json ({spec.key})"),
        "model.head": PresetSetting("seen", "predictions among the classes seen so far, as the suite evaluates",
                                    f"{_PROOF} models/base.py (logits over the known classes)"),
        "buffer.replay": PresetSetting(True, "the suite keeps exemplars", f"{file} memory_per_class"),
        "buffer.policy": PresetSetting("herding", "exemplars chosen by iCaRL's herding on the frozen image features",
                                       f"{_PROOF} models/base.py _construct_exemplar_unified"),
        "buffer.per_class": PresetSetting(MEMORY_PER_CLASS, "20 exemplars per class, every class seen kept",
                                          f"{file} memory_per_class 20, fixed_memory"),
        "buffer.size": PresetSetting(MEMORY_PER_CLASS * C, f"room for 20 exemplars of each of the {C} classes",
                                     "20 x C"),
        "train.epochs": PresetSetting(_EPOCHS.get((spec.key, which), 10), "epochs per task", f"{file} tuned_epoch"),
        "train.train_cache": PresetSetting("fixed", "exact: the suite trains without augmentation, so each image's "
                                                    "frozen feature is encoded once", "transform proof"),
        "eval.every": PresetSetting(0, "evaluation after each task", f"{_PROOF} trainer.py (eval_task per task)"),
    }


def preset_values(name: str) -> dict[str, Any]:
    """``{config key: value}`` of a preset, with ``data.dataset`` and ``preset`` (what a run
    built from it holds before other values are given).

    Raises:
        ConfigError: an unknown preset name (:func:`parse_preset` lists the known ones).
    """
    full = parse_preset(name)
    values = {"data.dataset": full.split("/")[1], **{k: s.value for k, s in preset_settings(full).items()}}
    return {**values, "preset": full}


def preset_nested(name: str) -> dict[str, Any]:
    """:func:`preset_values` as nested sections (``{"data": {...}, "model": {...}}``), for YAML.

    Raises:
        ConfigError: an unknown preset name.
    """
    out: dict[str, Any] = {}
    for key, value in preset_values(name).items():
        section, _, attr = key.partition(".")
        if attr:
            out.setdefault(section, {})[attr] = value
        else:
            out[section] = value
    return out


def _value(config, key: str) -> Any:
    section, _, attr = key.partition(".")
    value = getattr(getattr(config, section), attr)
    return list(value) if isinstance(value, tuple) else value


def preset_deviations(config) -> dict[str, dict[str, Any]]:
    """The settings of ``config.preset`` that ``config`` does not follow:
    ``{key: {"preset": value, "config": value}}`` (also ``data.dataset`` when the run reads
    another dataset, e.g. a benchmark's stand-in); empty without a preset.

    Raises:
        ConfigError: ``config.preset`` is not a known preset.
    """
    if getattr(config, "preset", None) is None:
        return {}
    full = parse_preset(config.preset)
    out = {}
    dataset = full.split("/")[1]
    if config.data.dataset != dataset:
        out["data.dataset"] = {"preset": dataset, "config": config.data.dataset}
    for key, setting in preset_settings(full).items():
        value = _value(config, key)
        if value != setting.value:
            out[key] = {"preset": setting.value, "config": value}
    return out


def preset_owned(config) -> set[str]:
    """The names under which :func:`alta.run.protocols.protocol_deviations` reports what the run's
    preset sets (its config keys, the protocol knobs they are, ``weights`` and ``split``): a run of a
    preset follows the benchmark's protocol there, and its departures from it are
    :func:`preset_deviations`. Empty without a preset."""
    if getattr(config, "preset", None) is None:
        return set()
    keys = set(preset_settings(parse_preset(config.preset)))
    return keys | {knob for knob, key in CONFIG_KEYS.items() if key in keys} | {"weights", "split"}


def describe_preset(config) -> dict[str, Any] | None:
    """What a run's summary says about its preset: name, dataset, split, and every setting with
    its source (``None`` without a preset).

    Raises:
        ConfigError: ``config.preset`` is not a known preset.
    """
    if getattr(config, "preset", None) is None:
        return None
    full = parse_preset(config.preset)
    family, dataset, split = full.split("/")
    return {"name": full, "family": family, "dataset": dataset, "split": split,
            "settings": {k: {"value": s.value, "reason": s.reason, "source": s.source}
                         for k, s in preset_settings(full).items()}}
