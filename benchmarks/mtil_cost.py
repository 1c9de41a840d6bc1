"""The cost of the multi-domain protocols: the T x T evaluation with and without feature reuse, and a
projection of the full MTIL table from measured per-step costs.

    python benchmarks/mtil_cost.py evaluation --data-root ../shared/data          # the stand-in, tiny-vit
    python benchmarks/mtil_cost.py evaluation --backbone random-ViT-B/32 --max-test-per-class 20
    python benchmarks/mtil_cost.py steps --backbone random-ViT-B/16 --assume-gpu 2000,15
    python benchmarks/mtil_cost.py all --data-root ../shared/data --json benchmarks/results/mtil-cost-cpu.json

**evaluation.** MTIL and X-TAIL evaluate every dataset after every experience: T evaluations of T
test sets. alta encodes each test set once per run (the encoders are frozen;
:class:`~alta.loop.cache.FeatureCache`) and computes the learned prompts of finished classes once,
when their experience ends (prompt snapshots), so an evaluation after the first runs only the
heads and the prompts of the classes still learning. This part times the T end-of-experience
evaluations of a multi-domain stream both ways, on the same learner states: with the run's cache
(one pass over each test set in all), and without it (every test image encoded at every
evaluation, and every class's prompt re-encoded, as a loop without reuse would: T passes). Nothing
is trained: the cost of an evaluation does not depend on the weights.

**steps.** The full MTIL table cannot run on a CPU. Its cost is counted from the protocol (11
datasets of known sizes, 1,000 iterations at batch 64, the test sets, the classes whose prompts
are still learning at each step) and multiplied by costs measured here with the real architecture
(random weights: the same cost): the frozen image encoder per image, the learned-prompt text
encoder (forward and backward) per learning class, and the rest of a step. Two projections:

- on the machine that measured (exactly what was timed, scaled by the counts);
- on one GPU, only when ``--assume-gpu IMAGES_PER_S,STEP_MS`` is given: the convention of
  ``benchmarks/run.py --estimate --assume-gpu`` (an ASSUMED RN50 image-encoder throughput, scaled
  to the backbone by image-encoder FLOPs, plus a fixed step overhead), with the text encoder
  charged at the cost per learning class measured here *relative to* the image encoder per image
  (both are transformers at the same precision). No GPU measurement exists for this issue: the
  figure is a planning projection and says so.

Ratios and counts are reported, never asserted. Results: ``--json`` (and a ``.md`` beside it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _estimate import image_encoder_flops  # noqa: E402
from _timing import class_names, machine, summary, sync, timed  # noqa: E402

from alta import CrossModalLearner, MemoryBuffer, build_optimizer, evaluate, load_backbone, train_step  # noqa: E402
from alta.data import MultiDomainStream  # noqa: E402
from alta.io import write_json, write_text  # noqa: E402
from alta.loop.cache import FeatureCache  # noqa: E402
from alta.run.sections import DataConfig  # noqa: E402

# The MTIL datasets as ZSCL splits them (docs/datasets.md): classes, train and test images.
# Official split sizes (Aircraft train/test, DTD partition 1, Flowers train/test, Pets, Cars, Food,
# CIFAR-100, MNIST); Caltech101, EuroSAT and SUN397 are ZSCL's 80/20 random_split of 8,677 (not
# checked against the archive), 27,000 and 108,754 images.
MTIL_DATASETS = {
    "aircraft": (100, 3334, 3333), "caltech101": (101, 6941, 1736), "cifar100": (100, 50000, 10000),
    "dtd": (47, 1880, 1880), "eurosat": (10, 21600, 5400), "flowers102": (102, 1020, 6149),
    "food101": (101, 75750, 25250), "mnist": (10, 60000, 10000), "oxford-pet": (37, 3680, 3669),
    "stanford-cars": (196, 8144, 8041), "sun397": (397, 87003, 21751),
}
ORDER1 = list(MTIL_DATASETS)
ORDER2 = [ORDER1[k] for k in (9, 6, 7, 8, 5, 10, 0, 1, 3, 4, 2)]
XTAIL = [d for d in ORDER1 if d != "cifar100"]


# ----------------------------------------------------------------------------------------------
# The T x T evaluation, with and without reuse
# ----------------------------------------------------------------------------------------------


def measure_evaluation(args) -> dict:
    device = torch.device(args.device)
    backbone = load_backbone(args.backbone, device=device, seed=0)
    data = DataConfig(dataset=args.sequence, root=args.data_root, transform="clip",
                      max_test_per_class=args.max_test_per_class)
    stream, experiences = data.build(resolution=backbone.input_resolution, seed=0)
    T = len(experiences)
    num_test = sum(len(e.test) for e in experiences)
    learner = CrossModalLearner(backbone, class_names=stream.class_names, class_domains=stream.class_to_experience,
                                seed=0)
    cache = FeatureCache()
    times = {"reuse": [], "none": []}
    for t, experience in enumerate(experiences):
        learner.begin_experience(experience)
        learner.end_experience(experience)  # its prompts are snapshotted: computed once, here
        times["reuse"].append(timed(lambda: evaluate(learner, experiences, batch_size=args.batch_size,
                                                     cache=cache), device))

        def without_reuse():
            learner.encode_prompts(torch.arange(learner.num_classes, device=device))  # every prompt again
            evaluate(learner, experiences, batch_size=args.batch_size, cache=None)  # every image again

        times["none"].append(timed(without_reuse, device))
    reuse, none = sum(times["reuse"]), sum(times["none"])
    return {
        "sequence": args.sequence, "backbone": backbone.name, "datasets": stream.domain_names,
        "classes_per_experience": stream.classes_per_experience, "test_images": num_test,
        "max_test_per_class": args.max_test_per_class, "evaluations": T,
        "images_encoded": {"reuse": num_test, "none": T * num_test},
        "seconds": {"reuse": reuse, "none": none}, "per_evaluation_s": times,
        "ratio_none_over_reuse": none / reuse if reuse > 0 else None,
    }


# ----------------------------------------------------------------------------------------------
# Per-step costs and the projection of the full MTIL table
# ----------------------------------------------------------------------------------------------


def measure_steps(args) -> dict:
    """t_img (per image, frozen forward), t_text(L) = a + b * L (learned prompts of L classes,
    forward and backward) and the rest of a step (cached features: heads, loss, replay, optimizer)."""
    device = torch.device(args.device)
    backbone = load_backbone(args.backbone, device=device, seed=0)
    R = backbone.input_resolution
    images = torch.randn(args.image_batch, 3, R, R, device=device)
    with torch.no_grad():
        backbone.encode_images(images)  # warm-up
        image_times = [timed(lambda: backbone.encode_images(images), device) for _ in range(args.repeats)]
    t_img = summary(image_times)["median_s"] / args.image_batch
    text_points = {}
    step_points = {}
    for L in args.learning_classes:
        learner = CrossModalLearner(backbone, class_names=class_names(L), seed=0)
        learner.begin_experience(_Experience(0, list(range(L)), torch.zeros(L, dtype=torch.long)))
        optimizer, _ = build_optimizer(learner, schedule="constant")
        buffer = MemoryBuffer(200, seed=1)
        features = torch.randn(args.batch_size, backbone.embed_dim, device=device)
        labels = torch.randint(L, (args.batch_size,), device=device)

        def text_only():
            learner.text_features(grad=True).w2.sum().backward()

        def step():
            train_step(learner, features, labels, optimizer=optimizer, buffer=buffer)

        step()  # warm-up, fills the buffer: the timed steps replay
        text_only()
        text_points[L] = summary([timed(text_only, device) for _ in range(args.repeats)])["median_s"]
        step_points[L] = summary([timed(step, device) for _ in range(args.repeats)])["median_s"]
        optimizer.zero_grad(set_to_none=True)
    rest = sum(step_points[L] - text_points[L] for L in text_points) / len(text_points)
    return {"backbone": backbone.name, "device": str(device), "image_batch": args.image_batch,
            "batch_size": args.batch_size, "repeats": args.repeats, "t_img_s": t_img,
            "text_s": {str(L): v for L, v in text_points.items()}, "step_cached_s": {str(L): v for L, v in
                                                                                    step_points.items()},
            "text_fit": fit_text(text_points), "rest_s": max(rest, 0.0)}


def fit_text(points: dict) -> dict:
    """``t_text(L) = a + b * L`` through the measured points (least squares), with ``a, b >= 0``:
    a negative intercept (timing noise on a loaded machine) gives the line through the origin."""
    t = {int(L): float(v) for L, v in points.items()}
    Ls = sorted(t)
    if len(Ls) >= 2:
        mean_l, mean_t = sum(Ls) / len(Ls), sum(t.values()) / len(Ls)
        b = sum((L - mean_l) * (t[L] - mean_t) for L in Ls) / sum((L - mean_l) ** 2 for L in Ls)
        a = mean_t - b * mean_l
        if a < 0:
            a, b = 0.0, sum(L * t[L] for L in Ls) / sum(L * L for L in Ls)
    else:
        a, b = 0.0, t[Ls[0]] / Ls[0]
    return {"a_s": a, "b_s_per_class": max(b, 0.0)}


class _Experience:
    def __init__(self, index, classes, class_to_experience):
        self.index, self.classes, self.class_to_experience = index, classes, class_to_experience


def mtil_counts(order: list[str], *, iterations: int = 1000, batch: int = 64, unseen: str = "learned",
                shots: int | None = None, trains: bool = True) -> dict:
    """The work of one run over a sequence at full size (ALTA: head "all", prompts snapshotted at
    each dataset's end, so the learning prompts at experience t are those of datasets t..T-1, or
    with unseen_classes zeroshot those of dataset t alone)."""
    sizes = [MTIL_DATASETS[d] for d in order]
    classes = [c for c, _, _ in sizes]
    learning = [sum(classes[t:]) if unseen == "learned" else classes[t] for t in range(len(order))]
    iterations = iterations if trains else 0  # zero-shot CLIP trains nothing
    return {
        "datasets": len(order), "classes": sum(classes), "steps": len(order) * iterations,
        "images_in_steps": len(order) * iterations * batch,
        "test_images": sum(test for _, _, test in sizes),
        "train_images": sum(min(train, (shots or train) * c) for c, train, _ in sizes),
        "learning_prompt_steps": iterations * sum(learning),  # sum over steps of the classes still learning
        "evaluations": len(order) + 1,  # after each dataset, and zero-shot CLIP
    }


def project(counts: dict, costs: dict, *, trains: bool) -> float:
    """Seconds: steps (images through the frozen encoder, learning prompts, the rest) + test sets
    encoded once + text features of every class per evaluation (forward only: 1/3 of a step's)."""
    t_img, a, b, rest = costs["t_img_s"], costs["text_fit"]["a_s"], costs["text_fit"]["b_s_per_class"], costs["rest_s"]
    evaluation = counts["test_images"] * t_img + counts["evaluations"] * (a + b * counts["classes"]) / 3
    if not trains:
        return evaluation
    return (counts["images_in_steps"] * t_img + counts["steps"] * (a + rest) + counts["learning_prompt_steps"] * b
            + evaluation)


def assumed_gpu_costs(measured: dict, backbone: str, images_per_s: float, step_ms: float) -> dict:
    """The GPU costs of ``--assume-gpu``: RN50 at ``images_per_s`` scaled by image-encoder FLOPs to
    ``backbone``; the text encoder per learning class at the measured ratio to the image encoder
    per image; ``step_ms`` for the rest of a step."""
    name = backbone.removeprefix("random-")
    t_img = image_encoder_flops(name) / image_encoder_flops("RN50") / images_per_s
    ratio = measured["text_fit"]["b_s_per_class"] / measured["t_img_s"]
    return {"t_img_s": t_img, "text_fit": {"a_s": 0.0, "b_s_per_class": ratio * t_img}, "rest_s": step_ms / 1000,
            "ratio_text_class_to_image": ratio}


def projections(steps: dict, args) -> dict:
    rows = {"zeroshot": dict(trains=False, unseen="learned"), "alta": dict(trains=True, unseen="learned"),
            "alta-unseen-zeroshot": dict(trains=True, unseen="zeroshot")}
    columns = {"mtil-order1": (ORDER1, 1000, None), "mtil-order2": (ORDER2, 1000, None), "xtail": (XTAIL, 500, 16)}
    gpu = None
    if args.assume_gpu:
        images_per_s, step_ms = (float(x) for x in args.assume_gpu.split(","))
        gpu = assumed_gpu_costs(steps, steps["backbone"], images_per_s, step_ms)
    out = {"counts": {}, "here_s": {}, "gpu_s": {} if gpu else None, "gpu_costs": gpu,
           "assume_gpu": args.assume_gpu}
    for column, (order, iterations, shots) in columns.items():
        for row, spec in rows.items():
            counts = mtil_counts(order, iterations=iterations, unseen=spec["unseen"], shots=shots,
                                 trains=spec["trains"])
            key = f"{row}/{column}"
            out["counts"][key] = counts
            out["here_s"][key] = project(counts, steps, trains=spec["trains"])
            if gpu:
                out["gpu_s"][key] = project(counts, gpu, trains=spec["trains"])
    for name, table in (("here_total_s", out["here_s"]), ("gpu_total_s", out["gpu_s"])):
        out[name] = sum(table.values()) if table else None
    return out


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def _h(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds:,.1f} s"


def render(result: dict) -> str:
    m = result["machine"]
    lines = ["# The cost of the multi-domain protocols (MTIL / X-TAIL)", "",
             f"Measured {m['date']} on {m['cpu']} ({m['cpu_cores']} cores, torch threads {m['torch_threads']}, "
             f"load average at start {', '.join(f'{x:.1f}' for x in m['load_average_at_start'] or [])}; "
             f"device {result.get('device', 'cpu')}), torch {m['torch']}, git {m.get('git_commit')}, by "
             f"`{m['command']}`"
             + (f" (projection recomputed from those measurements by `{result['reprojected_by']}`)"
                if result.get("reprojected_by") else "")
             + ". Random-weight backbones: the real architectures, hence the real costs.", ""]
    for ev in result.get("evaluation", []):
        lines += [f"## The T x T evaluation with and without feature reuse ({ev['backbone']}, sequence "
                  f"`{ev['sequence']}`)", "",
                  f"{ev['evaluations']} evaluations (after each of the {ev['evaluations']} datasets: "
                  f"{', '.join(ev['datasets'])}; classes {ev['classes_per_experience']}) of all "
                  f"{ev['test_images']:,} test images"
                  + (f" (at most {ev['max_test_per_class']} per class)" if ev["max_test_per_class"] else "") + ".", "",
                  "| | images encoded | wall time | per evaluation |", "|---|---:|---:|---|",
                  f"| alta: test features once per run, finished prompts snapshotted | {ev['images_encoded']['reuse']:,} "
                  f"| {_h(ev['seconds']['reuse'])} | {', '.join(f'{x:.2f}' for x in ev['per_evaluation_s']['reuse'])} s |",
                  f"| no reuse: every image and every prompt encoded at every evaluation | "
                  f"{ev['images_encoded']['none']:,} | {_h(ev['seconds']['none'])} | "
                  f"{', '.join(f'{x:.2f}' for x in ev['per_evaluation_s']['none'])} s |", "",
                  f"Ratio (no reuse / reuse): **{ev['ratio_none_over_reuse']:.1f}x** for T = {ev['evaluations']}. "
                  f"With reuse the first evaluation pays the one pass over every test set; the later ones run "
                  f"the heads and the prompts still learning only.", ""]
    steps = result.get("steps")
    if steps:
        fit = steps["text_fit"]
        lines += [f"## Per-step costs ({steps['backbone']}, {steps['device']}, median of {steps['repeats']})", "",
                  f"- frozen image encoder: {steps['t_img_s'] * 1000:.1f} ms per image (batch {steps['image_batch']})",
                  f"- learned prompts, forward + backward: {fit['a_s'] * 1000:.1f} ms + {fit['b_s_per_class'] * 1000:.2f} "
                  f"ms per learning class (measured at {', '.join(steps['text_s'])} classes: "
                  f"{', '.join(f'{float(v):.2f} s' for v in steps['text_s'].values())})",
                  f"- the rest of a step on cached features (adapter, heads, loss, replay of 32, optimizer): "
                  f"{steps['rest_s'] * 1000:.1f} ms", ""]
        proj = result["projection"]
        gpu = proj["gpu_costs"]
        lines += ["## Projection of the full tables (one seed)", "",
                  "Counted from the protocol (the 11 MTIL datasets at their ZSCL sizes; 1,000 iterations per "
                  "dataset at batch 64, X-TAIL 500 at 16-shot; every training image through the frozen image "
                  "encoder at each step, train_cache none; the test sets encoded once; the learned prompts of "
                  "every class still learning at each step: head `all` and unseen_classes `learned` keep a "
                  "dataset's prompts learning until its end, unseen_classes `zeroshot` only the current "
                  "dataset's), times the per-step costs above. **A projection, not a measurement.** Data "
                  "loading and augmentation are not included.", "",
                  "| run | steps | images in steps | learning-prompt encodings | test images | here | one GPU "
                  "(assumed) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for key, counts in proj["counts"].items():
            lines.append(f"| {key} | {counts['steps']:,} | {counts['images_in_steps']:,} | "
                         f"{counts['learning_prompt_steps']:,} | {counts['test_images']:,} | {_h(proj['here_s'][key])} | "
                         f"{_h(proj['gpu_s'][key]) if proj['gpu_s'] else '—'} |")
        lines += ["", f"Total: {_h(proj['here_total_s'])} on the measuring machine"
                  + (f"; {_h(proj['gpu_total_s'])} on one GPU under the assumption below." if gpu else
                     "; no GPU projection (give --assume-gpu IMAGES_PER_S,STEP_MS).")]
        if gpu:
            lines += ["", f"GPU costs ASSUMED, not measured (no GPU was available to this measurement): RN50 image "
                          f"encoder at {proj['assume_gpu'].split(',')[0]} images/s scaled by image-encoder FLOPs to "
                          f"{steps['backbone']} ({gpu['t_img_s'] * 1000:.2f} ms per image), the learned prompts at "
                          f"{gpu['ratio_text_class_to_image']:.2f}x the image encoder's per-image cost per learning "
                          f"class (the ratio measured here), {proj['assume_gpu'].split(',')[1]} ms per step besides "
                          f"(the convention of `benchmarks/run.py --estimate --assume-gpu`)."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/mtil_cost.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("evaluation", "steps", "all"))
    parser.add_argument("--sequence", default="standin", help="multi-domain sequence of the evaluation part")
    parser.add_argument("--data-root", default=None, help="folder of the sequence's datasets")
    parser.add_argument("--eval-backbones", default="tiny-vit", help="backbones of the evaluation part, comma-separated")
    parser.add_argument("--max-test-per-class", type=int, default=None, help="test images per class (default: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch (steps) / test batch (evaluation)")
    parser.add_argument("--backbone", default="random-ViT-B/16", help="backbone of the per-step costs")
    parser.add_argument("--image-batch", type=int, default=8, help="images per timed image-encoder forward")
    parser.add_argument("--learning-classes", type=int, nargs="+", default=[50, 400],
                        help="learning classes at which the prompts are timed (a line is fitted)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--assume-gpu", metavar="IMAGES_PER_S,STEP_MS", help="project on one GPU from ASSUMED costs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, help="write the results here (and a .md beside it)")
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="measure nothing: recompute the projection (e.g. with another --assume-gpu) from the "
                             "measurements of an earlier --json and render them")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.from_json:
        result = json.loads(args.from_json.read_text(encoding="utf-8"))
        if result.get("steps"):
            result["steps"]["text_fit"] = fit_text(result["steps"]["text_s"])
            result["projection"] = projections(result["steps"], args)
        result["reprojected_by"] = " ".join([Path(sys.executable).name] + sys.argv)
        return _finish(result, args)
    result: dict = {"machine": machine(), "device": args.device}
    started = time.perf_counter()
    if args.what in ("evaluation", "all"):
        result["evaluation"] = []
        for name in args.eval_backbones.split(","):
            args.backbone_eval = name
            result["evaluation"].append(measure_evaluation(argparse.Namespace(**{**vars(args), "backbone": name})))
    if args.what in ("steps", "all"):
        result["steps"] = measure_steps(args)
        result["projection"] = projections(result["steps"], args)
    result["wall_time_s"] = time.perf_counter() - started
    return _finish(result, args)


def _finish(result: dict, args) -> int:
    text = render(result)
    print(text)
    if args.json:
        write_json(args.json, result)
        write_text(args.json.with_suffix(".md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
