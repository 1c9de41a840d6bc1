"""Projected wall time of the benchmark tables at full scale, from the speed benchmark's costs.

``python benchmarks/run.py all --scale full --estimate`` counts, for every run a table needs, the
work of the protocol (training steps, image encodings, evaluations, test images scored) and
multiplies it by per-step and per-image costs measured by ``benchmarks/speed.py`` (its JSON,
``benchmarks/results/speed-*.json``; another engineer's script, read here, never run):

    T_run = steps * t_step + encoded_images * t_img + evaluations * t_text_eval + scored_images * t_head

- ``steps = T * epochs * ceil(N_train / T / batch)``; ``t_step`` is alta's training step of the
  run's cache mode (``none``: the image encoder runs in the step; ``fixed``/``views:K``: cached
  features), the mean of its first- and last-experience measurements (the step gets cheaper as
  prompt snapshots accumulate);
- ``encoded_images``: the test set once (its features are cached), plus, for cached training
  features, the training set once per view;
- ``evaluations``: every ``eval.every`` epochs on the experiences seen so far, after each
  experience on all of them, and once for zero-shot CLIP; ``scored_images`` are their test images.

Data loading and augmentation are not in ``speed.py``'s costs, so they are not in the projection
either (on a GPU they can dominate: use DataLoader workers). Backbones that ``speed.py`` did not
measure are scaled from the measured one of the same family (ResNet from RN50, ViT from
ViT-B/32) by the forward FLOPs of their image encoders, counted here on the meta device (no
weights, no compute): ``t_img`` in proportion, and ``t_step(none)`` by 32 times the difference in
``t_img``. Where the measured number of classes differs from the run's, the measured step cost
is used as is (on real backbones the image encoder dominates the step). Every projection says
which measurement it comes from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import _tables as tables

from alta.io import write_json, write_text

# Full-size datasets: classes, training and test images per class, default experiences.
FULL_DATASETS = {
    "seq-cifar10": {"classes": 10, "train_per_class": 5000, "test_per_class": 1000, "experiences": 5},
    "seq-cifar100": {"classes": 100, "train_per_class": 500, "test_per_class": 100, "experiences": 10},
    "seq-tinyimagenet": {"classes": 200, "train_per_class": 500, "test_per_class": 50, "experiences": 10},
}
FAMILY_REFERENCE = {"resnet": "RN50", "vit": "ViT-B/32"}


def protocol_counts(config) -> dict[str, Any]:
    """The work of one run at full dataset size (the config's own limits applied)."""
    sizes = FULL_DATASETS[config.data.dataset]
    # training experiences (a joint run trains once on every class; its evaluations cover every class)
    T = 1 if config.data.joint else config.data.num_experiences or sizes["experiences"]
    train_per_class = min(sizes["train_per_class"], config.data.max_train_per_class or math.inf)
    test_per_class = min(sizes["test_per_class"], config.data.max_test_per_class or math.inf)
    num_train, num_test = sizes["classes"] * train_per_class, sizes["classes"] * test_per_class
    epochs, every, batch = config.train.epochs, config.eval.every, config.train.batch_size
    trains = config.model.method != "zeroshot"
    periodic = (epochs - 1) // every if (every and trains) else 0  # evaluations per experience before its end
    test_per_experience = num_test / T
    scored = periodic * test_per_experience * T * (T + 1) / 2 + T * num_test + num_test  # + zero-shot baseline
    cache = config.train.train_cache
    views = 0 if cache == "none" else (1 if cache == "fixed" else int(cache.split(":")[1]))
    return {
        "experiences": T,
        "num_train": int(num_train),
        "num_test": int(num_test),
        "steps": int(T * epochs * math.ceil(num_train / T / batch)) if trains else 0,
        "encoded_images": int(num_test + (views * num_train if trains else 0)),
        "evaluations": int(T * periodic + T + 1),
        "scored_images": int(scored),
        "cache": "none" if cache == "none" else "fixed",
    }


def image_encoder_flops(name: str) -> float:
    """Forward FLOPs of one image through a CLIP image encoder (counted on the meta device)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from alta.backbones import BACKBONES, import_clip

    arch = BACKBONES.get(name if name.startswith(("random-", "tiny-")) else f"random-{name}")
    model = import_clip().model
    with torch.device("meta"):
        if isinstance(arch.vision_layers, (tuple, list)):
            visual = model.ModifiedResNet(layers=arch.vision_layers, output_dim=arch.embed_dim,
                                          heads=arch.vision_width * 32 // 64, input_resolution=arch.image_resolution,
                                          width=arch.vision_width)
        else:
            visual = model.VisionTransformer(input_resolution=arch.image_resolution, patch_size=arch.vision_patch_size,
                                             width=arch.vision_width, layers=arch.vision_layers,
                                             heads=max(arch.vision_width // 64, 1), output_dim=arch.embed_dim)
        visual.eval()
        image = torch.zeros(1, 3, arch.image_resolution, arch.image_resolution)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            visual(image)
    return float(counter.get_total_flops())


def _family(name: str) -> str:
    return "vit" if "ViT" in name else "resnet"


def _plain_name(name: str) -> str:
    return name[len("random-"):] if name.startswith("random-") else name


class SpeedCosts:
    """Per-step and per-image costs of ``speed.py``'s JSON, looked up by backbone and classes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = f"`{path.name}`"
        self.data = json.loads(path.read_text(encoding="utf-8"))
        self.machine = self.data.get("machine", {})
        self.device = "cuda" if self.machine.get("gpu") and any(
            r.get("device") == "cuda" for r in self.data.get("results", [])) else "cpu"
        self.entries = {}
        for result in self.data.get("results", []):
            name = _plain_name(result["backbone"]["name"])
            self.entries.setdefault(name, {})[int(result["num_classes"])] = result
        self._flops: dict[str, float] = {}

    def flops(self, name: str) -> float:
        if name not in self._flops:
            self._flops[name] = image_encoder_flops(name)
        return self._flops[name]

    def costs(self, backbone: str, num_classes: int, cache: str) -> dict[str, Any] | None:
        """``t_step``, ``t_img``, ``t_text_eval``, ``t_head`` (seconds) and where they come from."""
        name = _plain_name(backbone)
        measured = name
        if name not in self.entries:
            measured = FAMILY_REFERENCE[_family(name)]
            if measured not in self.entries:
                return None
        by_classes = self.entries[measured]
        classes = min(by_classes, key=lambda c: (abs(c - num_classes), -c))
        result = by_classes[classes]
        steps = result["steps"]
        first, last = steps.get(f"alta[{cache}]"), steps.get(f"alta[{cache}] last experience")
        if first is None:
            return None
        t_step = (first["median_s"] + (last or first)["median_s"]) / 2
        costs = result["costs"]
        t_img = costs["t_img"]
        source = f"{result['backbone']['name']}, C={classes}"
        if measured != name:
            ratio = self.flops(name) / self.flops(measured)
            if cache == "none":
                t_step += 32 * t_img * (ratio - 1)
            t_img *= ratio
            source += f", scaled by image-encoder FLOPs x{ratio:.2f}"
        return {"t_step": t_step, "t_img": t_img, "t_text_eval": costs["t_text_lib_eval"], "t_head": costs["t_head"],
                "source": source}


class AssumedGpuCosts(SpeedCosts):
    """Costs from two ASSUMED numbers, for planning before any GPU measurement exists: the image
    encoder's throughput for RN50 (images/s; other backbones scaled by image-encoder FLOPs) and
    the rest of a training step (text encoder of the learning prompts, heads, backward, optimizer,
    launches; ms), also charged per evaluation for its text features."""

    def __init__(self, images_per_s: float, step_ms: float) -> None:
        self.path = None
        self.label = f"RN50 image encoder at {images_per_s:g} images/s and {step_ms:g} ms per step besides"
        self.images_per_s, self.step_s = images_per_s, step_ms / 1000
        self.machine = {"cpu": "ASSUMED GPU costs (not a measurement)"}
        self.device = "assumed-gpu"
        self._flops = {}

    def costs(self, backbone: str, num_classes: int, cache: str) -> dict[str, Any] | None:
        t_img = self.flops(_plain_name(backbone)) / self.flops("RN50") / self.images_per_s
        t_step = self.step_s + (32 * t_img if cache == "none" else 0.0)
        return {"t_step": t_step, "t_img": t_img, "t_text_eval": self.step_s, "t_head": 0.0,
                "source": f"assumed ({_plain_name(backbone)}: RN50 throughput scaled by image-encoder FLOPs)"}


def project(counts: Mapping[str, Any], costs: Mapping[str, Any]) -> float:
    return (counts["steps"] * costs["t_step"] + counts["encoded_images"] * costs["t_img"]
            + counts["evaluations"] * costs["t_text_eval"] + counts["scored_images"] * costs["t_head"])


def default_speed_json() -> Path | None:
    """The newest ``benchmarks/results/speed-*.json``, a CUDA one preferred."""
    found = sorted((tables.HERE / "results").glob("speed-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    cuda = [p for p in found if "gpu" in p.name or "cuda" in p.name]
    return (cuda or found or [None])[0]


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds:,.0f} s"


def shared_seconds(counts: Mapping[str, Any], costs: Mapping[str, Any], *, epochs: int) -> float:
    """The part of a run's projected time that a run group pays once for all its members: the
    frozen image encoder, on the training images of every step (mode ``none``: ``epochs x
    N_train`` images) or once per cached image, and on the test images."""
    in_steps = epochs * counts["num_train"] if counts["cache"] == "none" and counts["steps"] else 0
    return (in_steps + counts["encoded_images"]) * costs["t_img"]


def estimate(names: Sequence[str], cells_by_table: Mapping[str, list], speed: SpeedCosts) -> dict[str, Any]:
    """Per table: every run with its counts and projected seconds, the table's total, and the
    total when its runs are trained in run groups (:func:`alta.run.groups.plan_groups`): each
    group pays :func:`shared_seconds` once instead of once per member."""
    from alta.run import plan_groups

    out = {}
    for name in names:
        runs, total, missing = [], 0.0, set()
        unique = tables.unique_runs(cells_by_table[name])
        for cell in unique:
            config = cell.config
            counts = protocol_counts(config)
            num_classes = FULL_DATASETS[config.data.dataset]["classes"]
            costs = speed.costs(config.model.visual, num_classes, counts["cache"])
            seconds = project(counts, costs) if costs else None
            if seconds is None:
                missing.add(config.model.visual)
            else:
                total += seconds
            runs.append({"cell": cell.name, "backbone": config.model.visual, "dataset": config.data.dataset,
                         "counts": counts, "costs": costs, "seconds": seconds,
                         "shared_s": shared_seconds(counts, costs, epochs=config.train.epochs) if costs else None})
        groups = plan_groups([c.config for c in unique])
        saved = sum((len(g) - 1) * runs[g[0]]["shared_s"] for g in groups if runs[g[0]]["shared_s"] is not None)
        out[name] = {"runs": runs, "total_s": total, "num_runs": len(runs), "unprojected_backbones": sorted(missing),
                     "grouped_total_s": total - saved, "num_groups": len(groups),
                     "group_sizes": [len(g) for g in groups]}
    return out


def render(result: Mapping[str, Any], speed: SpeedCosts, *, command: str) -> str:
    machine = speed.machine
    if speed.device == "assumed-gpu":
        source = (f"from {speed.label}: ASSUMED GPU costs, not measurements (no GPU measurement exists yet); "
                  f"a planning figure only")
    else:
        kind = ("measured on a GPU" if speed.device == "cuda" else
                "measured on a CPU: a CPU projection, NOT a GPU estimate")
        source = (f"from {speed.label} ({kind}; {machine.get('cpu')}, {machine.get('cpu_cores')} cores, torch "
                  f"threads {machine.get('torch_threads')}, {machine.get('date')})")
    lines = [
        "# Projected wall time of the tables at scale `full`",
        "",
        f"Produced by `{command}` {source}.",
        "",
        "    T_run = steps * t_step + encoded_images * t_img + evaluations * t_text_eval + scored_images * t_head",
        "",
        "Data loading and augmentation are not included. Every seed is a run.",
        "",
        "| table | runs | training steps | images encoded outside steps | projected time | projected, run groups "
        "(groups) | not projected |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, table in result.items():
        steps = sum(r["counts"]["steps"] for r in table["runs"])
        encoded = sum(r["counts"]["encoded_images"] for r in table["runs"])
        label = "cost (= main + ablation + backbones, shared runs once)" if name == "cost" else name
        lines.append(f"| {label} | {table['num_runs']} | {steps:,} | {encoded:,} | {_hours(table['total_s'])} | "
                     f"{_hours(table['grouped_total_s'])} ({table['num_groups']}) | "
                     f"{', '.join(table['unprojected_backbones']) or '—'} |")
    lines += ["", "Run groups (`benchmarks/run.py` groups the runs that share stream, seed, batch size, epochs, cache "
              "mode and backbone, the default): a group pays the frozen image encoder once for all its members, on "
              "the images of every training step (cache mode `none`) or on the images it caches, and on the test "
              "images; the rest of each run (text encoder, heads, backward, evaluation heads) is paid per member."]
    lines += ["", "Per run (first seed; the other seeds cost the same):", "",
              "| run | steps | t_step (s) | t_img (s) | projected | costs from |", "|---|---:|---:|---:|---:|---|"]
    seen = set()
    for table in result.values():
        for run in table["runs"]:
            label = run["cell"].rsplit("/seed", 1)[0]
            if label in seen or not run["cell"].endswith(f"seed {table['runs'][0]['cell'].rsplit(' ', 1)[1]}"):
                continue
            seen.add(label)
            c = run["costs"]
            lines.append(f"| {label} | {run['counts']['steps']:,} | {c['t_step']:.3f} | {c['t_img']:.4f} | "
                         f"{_hours(run['seconds'])} | {c['source']} |" if c else
                         f"| {label} | {run['counts']['steps']:,} | — | — | — | not measured |")
    return "\n".join(lines) + "\n"


def main(names: Sequence[str], scale, cells_by_table: Mapping[str, list], *, speed_json: Path | None, out_dir: Path,
         command: str, assume_gpu: str | None = None) -> int:
    if assume_gpu:
        try:
            images_per_s, step_ms = (float(v) for v in assume_gpu.split(","))
        except ValueError:
            print(f"--assume-gpu expects IMAGES_PER_S,STEP_MS (e.g. 2000,15), got {assume_gpu!r}")
            return 2
        speed: SpeedCosts = AssumedGpuCosts(images_per_s, step_ms)
        stem = "estimate-assumed-gpu"
    else:
        path = speed_json or default_speed_json()
        if path is None or not path.is_file():
            print("no speed measurements: run `python benchmarks/speed.py --suite --json "
                  "benchmarks/results/speed-cpu.json` (or benchmarks/gpu_check.py on a GPU) first, or pass --speed-json")
            return 1
        speed = SpeedCosts(path)
        stem = f"estimate-{speed.device}"
    if "cil-suite" in names:  # its datasets, splits and step costs are projected by cil_suite_cost.py
        print("cil-suite: projected by `python benchmarks/cil_suite_cost.py` (measures ALTA's step at the suite's "
              "size; see benchmarks/results/full/cil-suite-projection.md), not here")
        names = [n for n in names if n != "cil-suite"]
        if not names:
            return 0
    result = estimate(names, cells_by_table, speed)
    text = render(result, speed, command=command)
    write_json(out_dir / f"{stem}.json", {"command": command, "scale": scale.name, "costs_from": speed.label.strip("`"),
                                          "costs_device": speed.device, "tables": result})
    write_text(out_dir / f"{stem}.md", text)
    print(text)
    return 0
