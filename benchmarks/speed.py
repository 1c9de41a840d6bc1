"""Training-step and evaluation speed of alta against the reference code's loop.

Times alta's :func:`alta.train_step` and the straightforward
re-implementation of the reference code's step (``benchmarks/reference_loop.py``, the oracle of
``tests/test_reference_equivalence.py``) in one process, on the same data, after warm-up,
interleaving the two loops step by step so that load from other processes hits both alike.

What is measured (the library's WORST case): the first experience of a 10-experience stream,
``head="all"``, so every class's learned prompt is still learning and nothing is snapshotted;
the replay buffer is non-empty after the warm-up step, so every timed step replays. The
inputs are synthetic: Gaussian images at the backbone's resolution (per-step cost does not
depend on pixel values; data loading and augmentation are NOT included, for either loop) and
CIFAR-100 class names (real prompt lengths). Random-weight backbones (``random-RN50``,
``random-ViT-B/32``, ...) have the real architectures, hence the real costs.

Per cache mode, alta's step gets: images (``none``: the frozen image encoder runs in the step) or
precomputed frozen image features (``fixed`` / ``views:K``: encoding happens once per image and
view, outside the step; the projection below adds it). The reference always gets images.

Besides the steps, the script measures the costs the whole-protocol projection needs: the image
encoder per image, one reference evaluation batch (image encoder + all text features at 77
positions, per batch as the reference does), alta's text features for an evaluation (once per
evaluation) and alta's cached-feature heads per test image.

Projection (Seq-CIFAR-100 protocol: E = 10 experiences x 30 epochs of 5,000 training images,
batch 32, evaluation every 10 epochs on the test sets of all experiences seen so far, 1,000
images each, reference test batch 32)::

    steps       = E * epochs * ceil(5000 / 32)                       = 47,100
    evaluations = 3 per experience (epochs 10, 20, 30)               = 30
    eval images = 3 * 1000 * (1 + 2 + ... + E)                       = 165,000
    eval batches (reference, batch 32) = 3 * ceil(1000 / 32) * 55   = 5,280

    T_ref = steps * t_step_ref + eval_images * t_img + eval_batches * t_text_ref_eval
    T_alta(none)     = steps * t_step_alta(none)  + E*1000 * t_img
                       + evaluations * t_text_alta_eval + eval_images * t_head
    T_alta(fixed)    = steps * t_step_alta(fixed) + (E*5000 + E*1000) * t_img
                       + evaluations * t_text_alta_eval + eval_images * t_head
    T_alta(views:K)  = as fixed with E*5000*K training encodings

where t_img is the image encoder's time per image (measured at the batch size), t_text_ref_eval
the reference's text encoding per evaluation batch (its evaluation batch minus the image
part), t_text_alta_eval alta's text features once per evaluation, t_head alta's heads per cached
test image. The worst-case projection charges every step at the first-experience cost; the
stream-average one interpolates alta's step cost linearly between the first and the last
experience (measured too: 90 % of the classes snapshotted), which is what a run sees. The
reference's step costs the same in every experience (it encodes all classes every time).

Examples::

    python benchmarks/speed.py --smoke
    python benchmarks/speed.py --backbone random-ViT-B/32 --num-classes 100 --cache none,fixed --steps 2
    python benchmarks/speed.py --suite --threads 1 --json benchmarks/results/speed-cpu.json

Ratios are reported, never asserted: the equivalence of the two loops is a test
(``tests/test_reference_equivalence.py``); speed is measured here.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import PeakMemory, class_names, machine, summary, sync, timed  # noqa: E402
from reference_loop import ReferenceLoop  # noqa: E402

import alta  # noqa: E402
from alta import CrossModalLearner, MemoryBuffer, build_optimizer, load_backbone  # noqa: E402
from alta.loop.config import parse_cache_mode  # noqa: E402
from alta.loop.evaluation import task_il_mask  # noqa: E402

# Seq-CIFAR-100 protocol of the reference configs (configs/il_cifar100.yaml)
PROTOCOL = {
    "experiences": 10,
    "epochs": 30,
    "train_images_per_experience": 5000,
    "test_images_per_experience": 1000,
    "batch_size": 32,
    "eval_every": 10,
    "reference_eval_batch_size": 32,
}
# Targets of the speed issue (ViT-B/32 size, 100 classes, CPU, worst case)
TARGETS = {"step_none": 10.0, "step_fixed": 25.0, "protocol_fixed": 40.0, "eval_second_on": 10.0}
SUITE = [("tiny-vit", 10), ("tiny-vit", 100), ("random-ViT-B/32", 100), ("random-RN50", 100)]


@dataclass
class Experience:
    """The parts of :class:`alta.data.Experience` the learners read."""

    index: int
    classes: list[int]
    class_to_experience: torch.Tensor


def protocol_counts(p: dict = PROTOCOL) -> dict:
    """Step, evaluation and image counts of the protocol (see the module docstring)."""
    e = p["experiences"]
    steps_per_epoch = math.ceil(p["train_images_per_experience"] / p["batch_size"])
    evals_per_experience = p["epochs"] // p["eval_every"]
    seen_sum = e * (e + 1) // 2  # test sets evaluated, summed over experiences
    return {
        "steps": e * p["epochs"] * steps_per_epoch,
        "evaluations": e * evals_per_experience,
        "eval_images": evals_per_experience * p["test_images_per_experience"] * seen_sum,
        "reference_eval_batches": evals_per_experience * seen_sum
        * math.ceil(p["test_images_per_experience"] / p["reference_eval_batch_size"]),
        "train_images": e * p["train_images_per_experience"],
        "test_images": e * p["test_images_per_experience"],
    }


def project(costs: dict, step_lib: dict, *, views: dict) -> dict:
    """Whole-protocol wall time (seconds) of both loops from measured per-unit costs."""
    n = protocol_counts()
    reference = (n["steps"] * costs["t_step_ref"] + n["eval_images"] * costs["t_img"]
                 + n["reference_eval_batches"] * costs["t_text_ref_eval"])
    out = {"counts": n, "reference_s": reference, "alta_s": {}, "speedup": {}}
    evaluation_lib = n["evaluations"] * costs["t_text_lib_eval"] + n["eval_images"] * costs["t_head"]
    for mode, per_step in step_lib.items():
        encodings = n["test_images"] + (0 if mode == "none" else n["train_images"] * views[mode])
        out["alta_s"][mode] = n["steps"] * per_step + encodings * costs["t_img"] + evaluation_lib
        out["speedup"][mode] = reference / out["alta_s"][mode]
    return out


def _median(times: list[float]) -> float:
    return statistics.median(times)


def measure(
    backbone_name: str,
    num_classes: int,
    *,
    caches: list[str],
    batch_size: int = 32,
    steps: int = 2,
    warmup: int = 1,
    device: str = "cpu",
    method: str = "alta",
    eval_repeats: int = 1,
    last_experience: bool = True,
    seed: int = 0,
    log=print,
) -> dict:
    """Time both loops on one backbone and number of classes; returns a JSON-ready dict."""
    dev = torch.device(device)
    backbone = load_backbone(backbone_name, device=dev, seed=seed)
    names = class_names(num_classes)
    num_experiences = min(PROTOCOL["experiences"], num_classes)
    per_experience = num_classes // num_experiences
    mapping = torch.clamp(torch.arange(num_classes) // per_experience, max=num_experiences - 1)
    experiences = [Experience(t, (mapping == t).nonzero().squeeze(1).tolist(), mapping) for t in range(num_experiences)]
    first, last = experiences[0], experiences[-1]

    g = torch.Generator().manual_seed(seed)
    r = backbone.input_resolution
    images = torch.randn(batch_size, 3, r, r, generator=g)  # synthetic, at the backbone's resolution
    if dev.type == "cuda":
        images = images.pin_memory()  # as a DataLoader with pin_memory=True delivers them
    labels_first = torch.tensor(first.classes)[torch.randint(len(first.classes), (batch_size,), generator=g)]
    labels_last = torch.tensor(last.classes)[torch.randint(len(last.classes), (batch_size,), generator=g)]
    with torch.no_grad():
        features = backbone.encode_images(images)  # (B, D): what a feature cache delivers
    views = {mode: parse_cache_mode(mode)[1] for mode in caches}

    def library(experience_index: int) -> tuple[CrossModalLearner, torch.optim.Optimizer, MemoryBuffer]:
        learner = CrossModalLearner(backbone, class_names=names, method=method, seed=seed)
        for t in range(experience_index):  # earlier experiences end: their prompts are snapshotted
            learner.begin_experience(experiences[t])
            learner.end_experience(experiences[t])
        learner.begin_experience(experiences[experience_index])
        optimizer, _ = build_optimizer(learner)
        return learner, optimizer, MemoryBuffer(200, device=dev, seed=seed)

    runners = {}  # name -> (callable step, peak memory tracker)
    for mode in caches:
        learner, optimizer, buffer = library(0)
        inputs = images if mode == "none" else features

        def step(learner=learner, optimizer=optimizer, buffer=buffer, inputs=inputs):
            alta.train_step(learner, inputs, labels_first, optimizer=optimizer, buffer=buffer)

        runners[f"alta[{mode}]"] = step
    if last_experience and num_experiences > 1:
        for mode in caches:
            learner, optimizer, buffer = library(num_experiences - 1)
            inputs = images if mode == "none" else features

            def step_last(learner=learner, optimizer=optimizer, buffer=buffer, inputs=inputs):
                alta.train_step(learner, inputs, labels_last, optimizer=optimizer, buffer=buffer)

            runners[f"alta[{mode}] last experience"] = step_last
    reference = ReferenceLoop(backbone, class_names=names, method=method, seed=seed)
    reference.begin_experience(first)
    ref_optimizer = torch.optim.SGD(reference.trainable_parameters(), lr=0.002, momentum=0.9, weight_decay=5e-4)
    ref_buffer = MemoryBuffer(200, device=dev, seed=seed)

    def step_ref():
        reference.training_step(images, labels_first, optimizer=ref_optimizer, buffer=ref_buffer)

    runners["reference"] = step_ref

    log(f"[{backbone_name}, C={num_classes}, B={batch_size}, {device}] warm-up ({warmup} step(s) each)")
    for _ in range(max(warmup, 1)):  # >= 1: the buffer must be non-empty so every timed step replays
        for run in runners.values():
            run()
    times = {name: [] for name in runners}
    for i in range(steps):
        for name, run in runners.items():
            times[name].append(timed(run, dev))
        log(f"  step {i + 1}/{steps}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in runners))
    peaks = {name: PeakMemory(dev) for name in runners}
    for name, run in runners.items():  # one more, untimed step each: peak memory
        with peaks[name]:
            run()

    # ---------------------------------------------------------------- component costs
    with torch.no_grad():
        t_img_batch = _median([timed(lambda: backbone.encode_images(images), dev) for _ in range(max(eval_repeats, 2))])
        reference.eval()
        t_ref_eval_batch = _median([timed(lambda: reference(images), dev) for _ in range(eval_repeats)])
        evaluator = CrossModalLearner(backbone, class_names=names, method=method, seed=seed)
        evaluator.begin_experience(first)
        evaluator.eval()
        t_text_lib_eval = _median([timed(lambda: evaluator.text_features(grad=False), dev) for _ in range(3)])
        text = evaluator.text_features(grad=False)
        n_test = PROTOCOL["test_images_per_experience"]
        test_features = torch.randn(n_test, backbone.embed_dim, generator=g).to(dev)
        test_labels = torch.tensor(first.classes)[torch.randint(len(first.classes), (n_test,), generator=g)].to(dev)
        mapping_dev = mapping.to(dev)

        def heads():  # alta's evaluate() inner loop on cached features, batch 256
            correct = torch.zeros((), dtype=torch.long, device=dev)
            for f, y in zip(test_features.split(256), test_labels.split(256)):
                logits = evaluator.logits_from_features(f, text)
                correct += (logits.argmax(dim=1) == y).sum()
                correct += (task_il_mask(logits, y, mapping_dev).argmax(dim=1) == y).sum()
            return int(correct)

        t_head = _median([timed(heads, dev) for _ in range(3)]) / n_test

    step_s = {name: summary(t) for name, t in times.items()}
    t_step_ref = step_s["reference"]["median_s"]
    costs = {
        "t_step_ref": t_step_ref,
        "t_img": t_img_batch / batch_size,
        "t_text_ref_eval": max(t_ref_eval_batch - t_img_batch, 0.0),
        "t_text_lib_eval": t_text_lib_eval,
        "t_head": t_head,
        "reference_eval_batch_s": t_ref_eval_batch,
        "image_encoder_batch_s": t_img_batch,
    }
    worst = {mode: step_s[f"alta[{mode}]"]["median_s"] for mode in caches}
    average = {}  # alta's step cost falls linearly with the classes still learning: mean of first and last
    for mode in caches:
        last_key = f"alta[{mode}] last experience"
        if last_key in step_s:
            average[mode] = (worst[mode] + step_s[last_key]["median_s"]) / 2
    # evaluation of all seen experiences: reference vs alta from the second evaluation on
    per_batch = PROTOCOL["reference_eval_batch_size"]
    evaluation = {}
    for seen in (1, num_experiences):
        images_seen = seen * n_test
        batches = seen * math.ceil(n_test / per_batch)
        ref_s = images_seen * costs["t_img"] + batches * costs["t_text_ref_eval"]
        lib_first_s = images_seen * costs["t_img"] + t_text_lib_eval + images_seen * t_head
        lib_later_s = t_text_lib_eval + images_seen * t_head
        evaluation[f"{seen}_seen"] = {
            "reference_s": ref_s, "alta_first_s": lib_first_s, "alta_second_on_s": lib_later_s,
            "speedup_first": ref_s / lib_first_s, "speedup_second_on": ref_s / lib_later_s,
        }
    result = {
        "backbone": backbone.describe(),
        "num_classes": num_classes,
        "batch_size": batch_size,
        "method": method,
        "device": str(dev),
        "text_positions": {"alta": evaluator.prompt_learner.num_positions if evaluator.prompt_learner else None,
                           "reference": backbone.context_length},
        "steps": step_s,
        "images_per_s": {name: batch_size / s["median_s"] for name, s in step_s.items()},
        "step_speedup": {mode: t_step_ref / worst[mode] for mode in caches},
        "peak_memory_mib": {name: round(p.peak_bytes / 2**20, 1) for name, p in peaks.items()},
        "costs": costs,
        "evaluation": evaluation,
        "projection_worst_case": project(costs, worst, views=views),
        "projection_stream_average": project(costs, average, views=views) if average else None,
    }
    return result


def targets(result: dict) -> dict:
    """The issue's targets against one result (meant for ViT-B/32 size, 100 classes, CPU)."""
    out = {}
    speedup = result["step_speedup"]
    if "none" in speedup:
        out["step_none>=10x"] = {"value": speedup["none"], "met": speedup["none"] >= TARGETS["step_none"]}
    if "fixed" in speedup:
        out["step_fixed>=25x"] = {"value": speedup["fixed"], "met": speedup["fixed"] >= TARGETS["step_fixed"]}
        for kind in ("projection_worst_case", "projection_stream_average"):
            if result.get(kind):
                value = result[kind]["speedup"]["fixed"]
                out[f"{kind}_fixed>=40x"] = {"value": value, "met": value >= TARGETS["protocol_fixed"]}
    for key, ev in result["evaluation"].items():
        out[f"eval_{key}_second_on>=10x"] = {"value": ev["speedup_second_on"],
                                             "met": ev["speedup_second_on"] >= TARGETS["eval_second_on"]}
    return out


def _hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds:,.0f} s" if seconds >= 10 else f"{seconds:.2f} s"


def markdown(results: list[dict], info: dict) -> str:
    """A short markdown report of a list of results."""
    lines = [
        f"# Speed: alta vs the reference loop ({info['date']})",
        "",
        f"Machine: {info['cpu']}, {info['cpu_cores']} cores, torch threads {info['torch_threads']}"
        + (f", GPU {info['gpu']}" if info.get("gpu") else "")
        + f"; load average at start {info.get('load_average_at_start')}.",
        f"Versions: torch {info['torch']}, alta {info.get('alta')}, clip-anytorch {info.get('clip_anytorch')}, "
        f"python {info['python']}. Command: `{info['command']}`.",
        "",
        "Worst case for alta: first experience, head \"all\", every class learning, replay on. Synthetic "
        "images; random-weight real-size backbones. Times are medians of interleaved steps.",
        "",
        "| backbone | C | loop | s/step | images/s | speed-up | peak MiB |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for name, s in r["steps"].items():
            mode = name.split("[")[1].split("]")[0] if name.startswith("alta[") and "last" not in name else None
            speed = f"{r['step_speedup'][mode]:.1f}x" if mode else ""
            lines.append(f"| {r['backbone']['name']} | {r['num_classes']} | {name} | {s['median_s']:.3f} | "
                         f"{r['images_per_s'][name]:.1f} | {speed} | {r['peak_memory_mib'][name]:.1f} |")
    lines += ["", "Evaluation of all seen experiences (from the second evaluation on alta reads cached features):", "",
              "| backbone | C | seen | reference | alta (first) | alta (second on) | speed-up (second on) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for key, ev in r["evaluation"].items():
            lines.append(f"| {r['backbone']['name']} | {r['num_classes']} | {key.split('_')[0]} | "
                         f"{_hours(ev['reference_s'])} | {_hours(ev['alta_first_s'])} | "
                         f"{_hours(ev['alta_second_on_s'])} | {ev['speedup_second_on']:.0f}x |")
    lines += ["", "Whole-protocol projection (Seq-CIFAR-100: 10 x 30 epochs x 5,000 images, batch 32, "
              "evaluation every 10 epochs on all seen test sets; formula in benchmarks/README.md):", "",
              "| backbone | C | reference | alta worst case | alta stream average | speed-up worst / average |",
              "|---|---:|---:|---|---|---|"]
    for r in results:
        worst, avg = r["projection_worst_case"], r["projection_stream_average"]
        for mode in worst["alta_s"]:
            a = avg["alta_s"][mode] if avg else float("nan")
            sa = f"{avg['speedup'][mode]:.1f}x" if avg else "-"
            lines.append(f"| {r['backbone']['name']} | {r['num_classes']} | {_hours(worst['reference_s'])} | "
                         f"{mode}: {_hours(worst['alta_s'][mode])} | {mode}: {_hours(a)} | "
                         f"{worst['speedup'][mode]:.1f}x / {sa} |")
    lines += ["", "Targets (ViT-B/32 size, 100 classes):", ""]
    for r in results:
        if r["backbone"]["name"].endswith("ViT-B/32") and r["num_classes"] == 100:
            for name, t in targets(r).items():
                lines.append(f"- {name}: {t['value']:.1f}x — {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="random-ViT-B/32", help="backbone name (random-* = real size, random weights)")
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per loop first (>= 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", default="none,fixed", help="alta's training cache mode(s): none, fixed, views:K; comma-separated")
    parser.add_argument("--method", default="alta")
    parser.add_argument("--eval-repeats", type=int, default=1, help="timed reference evaluation batches")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--suite", action="store_true",
                        help="tiny-vit with 10 and 100 classes, random-ViT-B/32 and random-RN50 with 100")
    parser.add_argument("--smoke", action="store_true", help="a couple of steps on tiny-vit (for the tests)")
    parser.add_argument("--json", type=Path, default=None, help="write the results (and a .md beside it) here")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    caches = [c.strip() for c in args.cache.split(",") if c.strip()]
    for mode in caches:
        parse_cache_mode(mode)  # raises on a bad spelling
    if args.smoke:
        configs, args.steps, args.warmup = [("tiny-vit", 10)], 2, 1
    elif args.suite:
        configs = SUITE
    else:
        configs = [(args.backbone, args.num_classes)]
    info = machine()
    results = []
    for name, num_classes in configs:
        result = measure(name, num_classes, caches=caches, batch_size=args.batch_size, steps=args.steps,
                         warmup=args.warmup, device=args.device, method=args.method, eval_repeats=args.eval_repeats)
        results.append(result)
        for mode, value in result["step_speedup"].items():
            print(f"  -> alta[{mode}] {value:.1f}x faster per step; projection worst case "
                  f"{result['projection_worst_case']['speedup'][mode]:.1f}x", flush=True)
    info["load_average_at_end"] = __import__("os").getloadavg()
    report = markdown(results, info)
    print()
    print(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"machine": info, "protocol": PROTOCOL, "protocol_counts": protocol_counts(),
                   "formula": {
                       "T_ref": "steps*t_step_ref + eval_images*t_img + reference_eval_batches*t_text_ref_eval",
                       "T_alta(none)": "steps*t_step_alta + test_images*t_img + evaluations*t_text_lib_eval + eval_images*t_head",
                       "T_alta(fixed|views:K)": "steps*t_step_alta + (train_images*K + test_images)*t_img "
                                                "+ evaluations*t_text_lib_eval + eval_images*t_head",
                   },
                   "synthetic_data": "Gaussian images at the backbone's resolution; data loading not timed",
                   "results": results,
                   "targets": {f"{r['backbone']['name']}/C={r['num_classes']}": targets(r) for r in results}}
        args.json.write_text(json.dumps(payload, indent=2))
        args.json.with_suffix(".md").write_text(report)
        print(f"wrote {args.json} and {args.json.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
