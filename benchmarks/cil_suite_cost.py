"""What the full cil-suite table costs: per-step costs measured here, a projection for the table.

    python benchmarks/cil_suite_cost.py --json benchmarks/results/full/cil-suite-projection.json
    python benchmarks/cil_suite_cost.py --smoke            # tiny-vit, seconds (the tests run it)

Measured (on this machine, with the suite's backbone architecture, OpenCLIP ViT-B/16, random
weights: the same computation as with its LAION-400M weights):

- ``t_img``: the frozen image encoder per 224 px image (batch 32), and its FLOPs;
- ``t_step``: ALTA's training step as the suite's preset runs it (cached frozen features, ``head
  seen``, a replayed batch of 32 herding exemplars once there are any, batch 32), at the first
  and the last step of a B0 split of C = 100, 200 and 300 classes, and its FLOPs (forward and
  backward, counted by ``torch.utils.flop_counter``). The step gets cheaper as prompts are
  snapshotted, so a run's step cost is interpolated linearly between the two.

Counted from the presets (``alta.run.presets``) and the datasets' sizes (the suite's archives
where their sizes are published, the official datasets' otherwise; each says which): training
steps, training and test images encoded once, evaluations. Projected:

    T_run = sum over steps of t_step(t) + (N_train + N_test) * t_img + evaluations * t_eval

on this CPU (measured costs), and on a GPU **as a projection from FLOPs**: the counted FLOPs
divided by an ASSUMED sustained throughput plus an ASSUMED fixed cost per step (``--gpu-tflops``,
``--gpu-step-ms``). Data loading is not included. Nothing here is asserted; the numbers say how
they were obtained.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import class_names, machine, timed  # noqa: E402

import alta  # noqa: E402
from alta import CrossModalLearner, MemoryBuffer, build_optimizer, load_backbone  # noqa: E402
from alta.data.datasets.cil_suite import SUITE  # noqa: E402
from alta.run.presets import preset_settings  # noqa: E402

#: Training and test images of each dataset as the suite runs it, and where the numbers come from.
SIZES = {
    "cil-cifar100": (50_000, 10_000, "CIFAR-100 (torchvision)"),
    "cil-cub": (9_430, 2_358, "the suite's archive (third-party table of the APER-line archives)"),
    "cil-imagenet-r": (24_000, 6_000, "the suite's archive (and RAPF's split file)"),
    "cil-objectnet": (26_509, 6_628, "the suite's archive (third-party table of the APER-line archives)"),
    "cil-cars": (4_150, 4_100, "ASSUMED: the official split's images per class x 100 classes (archive size unknown)"),
    "cil-ucf": (9_440, 3_750, "ASSUMED: CoOp's UCF-101 split (train + val / test) x 100/101 (archive size unknown)"),
    "cil-aircraft": (6_667, 3_333, "ASSUMED: FGVC-Aircraft trainval / test (archive size unknown)"),
    "cil-food": (75_000, 25_000, "ASSUMED: Food-101's 750 / 250 per class x 100 (archive size unknown)"),
    "cil-sun": (16_250, 16_250, "ASSUMED: SUN397 partition (50 / 50 per category) x 325 categories (archive size unknown)"),
}


class _Experience:
    def __init__(self, index: int, classes: list[int], mapping: torch.Tensor) -> None:
        self.index, self.classes, self.class_to_experience = index, classes, mapping


def measure(backbone_name: str, classes: tuple[int, ...], *, steps: int, device: str, seed: int = 0,
            log=print) -> dict:
    """``t_img`` and the step costs (seconds and FLOPs) at each C, first and last step of B0-Inc(C/10)."""
    dev = torch.device(device)
    backbone = load_backbone(backbone_name, device=dev, seed=seed)
    r = backbone.input_resolution
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(32, 3, r, r, generator=g)
    with torch.no_grad():
        backbone.encode_images(images[:2])
        t = [timed(lambda: backbone.encode_images(images), dev) for _ in range(max(1, steps))]
        with FlopCounterMode(display=False) as counter:
            features = backbone.encode_images(images)
    out = {"backbone": backbone.describe()["name"], "t_img": min(t) / 32, "flops_img": counter.get_total_flops() / 32,
           "steps": {}}
    log(f"image encoder: {out['t_img'] * 1000:.1f} ms/image, {out['flops_img'] / 1e9:.1f} GFLOP/image")
    for C in classes:
        T = 10
        inc = C // T
        mapping = torch.arange(C) // inc
        experiences = [_Experience(k, list(range(k * inc, (k + 1) * inc)), mapping) for k in range(T)]
        for which, t_index in (("first", 0), ("last", T - 1)):
            learner = CrossModalLearner(backbone, class_names=class_names(C), head="seen", seed=seed)
            buffer = MemoryBuffer(20 * C, policy="herding", per_class=20, device=dev, seed=seed)
            for k in range(t_index):
                learner.begin_experience(experiences[k])
                learner.end_experience(experiences[k])
            if t_index:  # the exemplars of the classes seen before: what the step replays
                seen = torch.arange(t_index * inc).repeat_interleave(20)
                with torch.no_grad():
                    learner.begin_experience(experiences[t_index])
                    items = learner.loss(features[torch.arange(seen.numel()) % 32], seen).memory_items()
                buffer.add(**{k: v for k, v in items.items()})
            else:
                learner.begin_experience(experiences[0])
            optimizer, _ = build_optimizer(learner)
            labels = torch.tensor(experiences[t_index].classes)[torch.randint(inc, (32,), generator=g)]

            def step():
                alta.train_step(learner, features, labels, optimizer=optimizer, buffer=buffer)

            step()  # warm-up
            times = [timed(step, dev) for _ in range(steps)]
            with FlopCounterMode(display=False) as counter:
                step()
            with torch.no_grad():
                t_eval = timed(lambda: learner.classifier(), dev)
            key = f"C={C} {which}"
            out["steps"][key] = {"t_step": sorted(times)[len(times) // 2], "flops_step": counter.get_total_flops(),
                                 "t_eval_text": t_eval}
            log(f"{key}: {out['steps'][key]['t_step']:.3f} s/step, {counter.get_total_flops() / 1e9:.1f} GFLOP/step")
    return out


def counts(dataset: str, split: str, *, method: str = "alta") -> dict:
    """The work of one full-scale run of the suite's preset (training steps per step of the split)."""
    settings = {k: s.value for k, s in preset_settings(f"cil-suite/{dataset}/{split}").items()}
    spec = SUITE[dataset]
    n_train, n_test, source = SIZES[dataset]
    base, inc = (int(x) for x in split[1:].split("-Inc"))
    sizes = ([base] if base else []) + [inc] * ((spec.num_classes - base) // inc)
    epochs = settings["train.epochs"]
    steps = [epochs * math.ceil(n_train * c / spec.num_classes / 32) for c in sizes] if method != "zeroshot" else []
    return {"num_classes": spec.num_classes, "experiences": len(sizes), "epochs": epochs, "steps_per_experience": steps,
            "steps": sum(steps), "encoded_images": n_test + (n_train if method != "zeroshot" else 0),
            "evaluations": len(sizes) + 1, "sizes_from": source}


def _step_cost(measured: dict, C: int, t: int, T: int, field: str) -> float:
    """Step cost of step t of T at C classes: the nearest measured C, interpolated first -> last."""
    near = min({int(k.split()[0][2:]) for k in measured["steps"]}, key=lambda c: (abs(c - C), -c))
    first, last = measured["steps"][f"C={near} first"][field], measured["steps"][f"C={near} last"][field]
    return first + (last - first) * (t / (T - 1) if T > 1 else 0.0)


def project(measured: dict, *, gpu_tflops: float, gpu_step_ms: float, seeds: int) -> dict:
    rows, cpu_total, gpu_total = [], 0.0, 0.0
    for name, spec in SUITE.items():
        for split in spec.splits:
            for method in ("zeroshot", "alta"):
                c = counts(name, split, method=method)
                T = c["experiences"]
                step_s = sum(n * _step_cost(measured, c["num_classes"], t, T, "t_step")
                             for t, n in enumerate(c["steps_per_experience"]))
                step_flops = sum(n * _step_cost(measured, c["num_classes"], t, T, "flops_step")
                                 for t, n in enumerate(c["steps_per_experience"]))
                t_eval = _step_cost(measured, c["num_classes"], 0, T, "t_eval_text")
                cpu = step_s + c["encoded_images"] * measured["t_img"] + c["evaluations"] * t_eval
                flops = step_flops + c["encoded_images"] * measured["flops_img"]
                gpu = flops / (gpu_tflops * 1e12) + c["steps"] * gpu_step_ms / 1000
                runs = 1 if method == "zeroshot" else seeds
                rows.append({"dataset": name, "split": split, "method": method, "runs": runs, **c,
                             "cpu_s": cpu, "flops": flops, "gpu_s": gpu})
                cpu_total += runs * cpu
                gpu_total += runs * gpu
    return {"rows": rows, "cpu_total_s": cpu_total, "gpu_total_s": gpu_total}


def _h(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds:,.0f} s"


def render(measured: dict, result: dict, *, args: argparse.Namespace, info: dict) -> str:
    lines = ["# The cil-suite table at scale `full`: measured per-step costs and a projection", "",
             f"Made by `{info['command']}` on {info['date']} ({info['cpu']}, {info['cpu_cores']} cores, torch threads "
             f"{info['torch_threads']}, load average at start {', '.join(f'{x:.1f}' for x in info['load_average_at_start'] or [])}). "
             "**A PROJECTION**: nothing at scale `full` has run (no pretrained weights here).", "",
             f"Backbone measured: {measured['backbone']} (the suite's architecture, random weights). Image encoder: "
             f"{measured['t_img'] * 1000:.1f} ms and {measured['flops_img'] / 1e9:.1f} GFLOP per image on this CPU.", "",
             "| ALTA step (batch 32, cached features, head seen, herding replay) | s/step (this CPU) | GFLOP/step |",
             "|---|---:|---:|"]
    for key, step in measured["steps"].items():
        lines.append(f"| {key} | {step['t_step']:.3f} | {step['flops_step'] / 1e9:.1f} |")
    lines += ["", f"GPU projection = FLOPs / {args.gpu_tflops:g} TFLOP/s + {args.gpu_step_ms:g} ms per training step: "
                  "both ASSUMED (a sustained fp16 throughput and a fixed per-step cost for an H100-class GPU), not "
                  "measured.", "",
              "| dataset | split | row | steps | images encoded | projected, this CPU | projected, GPU (assumed speed) | sizes from |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['dataset']} | {r['split']} | {r['method']} | {r['steps']:,} | {r['encoded_images']:,} | "
                     f"{_h(r['cpu_s'])} | {_h(r['gpu_s'])} | {r['sizes_from']} |")
    lines += ["", f"Whole table ({args.seeds} seed(s) for ALTA, one zero-shot run per cell): **{_h(result['cpu_total_s'])} on "
                  f"this CPU, {_h(result['gpu_total_s'])} on one GPU at the assumed speed** (projections; data loading "
                  f"excluded)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="open_clip:ViT-B-16")
    parser.add_argument("--classes", default="100,200,300")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seeds", type=int, default=1, help="seeds of the ALTA row (default 1: the suite reports one)")
    parser.add_argument("--gpu-tflops", type=float, default=100.0, help="ASSUMED sustained GPU TFLOP/s (default 100)")
    parser.add_argument("--gpu-step-ms", type=float, default=10.0, help="ASSUMED fixed GPU cost per step (default 10)")
    parser.add_argument("--smoke", action="store_true", help="tiny-vit, C = 10, 20, 30, one step")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.backbone, args.classes, args.steps = "tiny-vit", "10,20,30", 1
    info = machine()
    started = time.perf_counter()
    measured = measure(args.backbone, tuple(int(c) for c in args.classes.split(",")), steps=args.steps,
                       device=args.device)
    result = project(measured, gpu_tflops=args.gpu_tflops, gpu_step_ms=args.gpu_step_ms, seeds=args.seeds)
    info["measure_s"] = time.perf_counter() - started
    text = render(measured, result, args=args, info=info)
    print(text)
    if args.json:
        from alta.io import write_json, write_text

        write_json(args.json, {"machine": info, "measured": measured, "projection": result,
                               "assumed": {"gpu_tflops": args.gpu_tflops, "gpu_step_ms": args.gpu_step_ms}})
        write_text(args.json.with_suffix(".md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
