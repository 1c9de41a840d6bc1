"""Throughput of a run group (:func:`alta.run_group`) against its members run one by one.

A group of the nine method variants of the reference code (same seed, buffer 200 for the methods
that replay) is trained over one experience, once with :func:`alta.run_group` and once as nine
:func:`alta.run_stream` calls, in one process, after a warm-up, interleaving the two (group
first in odd rounds, one-by-one first in even rounds) so that load from other processes hits
both alike. Each call is timed whole: feature encoding (the training set in mode ``fixed``, the
test set in both modes), every training step, the end-of-experience evaluation. In mode ``none``
the group runs the image encoder once per step for the nine members; in mode ``fixed`` it
encodes the training and test images once for the nine.

Data: the first experience (2 classes) of scikit-learn's digits stream at the backbone's
resolution, ``--steps`` x 32 training images and ``--test-images`` test images per run.
Random-weight backbones (``tiny-vit``, ``random-ViT-B/32``) have the real architectures, hence
the real costs; the accuracies mean nothing here and are not reported.

The script also times the two halves of a group step: the image-encoder forward (done once) and
the nine members' steps on the features (learned-prompt encoding, heads, replay, backward,
optimiser, buffer), to show how much a batched text encoding could still save.

    python benchmarks/group.py --smoke
    python benchmarks/group.py --threads 1 --json benchmarks/results/group-cpu.json

Ratios are reported, never asserted: that a group gives each member's own run bit for bit is a
test (``tests/test_group.py``); speed is measured here.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402

import alta  # noqa: E402
from alta.data import ExperienceDataset  # noqa: E402
from alta.loop.group import GroupMember, run_group  # noqa: E402
from alta.io import write_json, write_text  # noqa: E402
from alta.methods import MethodSpec  # noqa: E402

# ALTA's trainable variants (a plug-in's methods, which alta.list_methods() lists too, are not measured here)
METHODS = [m for m in alta.list_methods() if isinstance(alta.get_method(m), MethodSpec) and m != "zeroshot"]
BUFFER_SIZE = 200
BATCH_SIZE = 32


def _first(dataset: ExperienceDataset, count: int) -> ExperienceDataset:
    """The first ``count`` samples of ``dataset``, cycling through it when it is shorter."""
    indices = dataset.indices[torch.arange(count) % len(dataset.indices)]
    return ExperienceDataset(dataset.source, indices, label_map=dataset.label_map, transform=dataset.transform)


def experience_for(backbone, *, steps: int, test_images: int):
    stream = alta.ScenarioStream.from_name("digits", resolution=backbone.input_resolution)
    first = stream[0]
    return stream, dataclasses.replace(first, train=_first(first.train, steps * BATCH_SIZE),
                                       test=_first(first.test, test_images))


def members_for(backbone, stream) -> list[GroupMember]:
    members = []
    for method in METHODS:
        learner = alta.CrossModalLearner(backbone, class_names=stream.class_names, method=method, seed=0)
        optimizer, scheduler = alta.build_optimizer(learner, epochs=1, schedule="constant")  # lr: no effect on speed
        buffer = alta.MemoryBuffer(BUFFER_SIZE, seed=1) if learner.method.replay else None
        members.append(GroupMember(learner, optimizer=optimizer, scheduler=scheduler, buffer=buffer, name=method))
    return members


def measure(backbone_name: str, mode: str, *, steps: int, test_images: int, rounds: int) -> dict:
    """Median seconds of the nine-method group and of the nine runs one by one."""
    backbone = alta.load_backbone(backbone_name, device="cpu", seed=0)
    stream, experience = experience_for(backbone, steps=steps, test_images=test_images)
    loop = alta.LoopConfig(epochs=1, batch_size=BATCH_SIZE, seed=0, train_cache=mode, eval_every=0)

    def grouped() -> None:
        run_group(members_for(backbone, stream), [experience], loop=loop)

    def one_by_one() -> list[float]:
        times = []
        for m in members_for(backbone, stream):
            start = time.perf_counter()
            alta.run_stream(m.learner, [experience], optimizer=m.optimizer, scheduler=m.scheduler, buffer=m.buffer,
                            loop=loop)
            times.append(time.perf_counter() - start)
        return times

    m = members_for(backbone, stream)[-1]  # warm-up (allocator, threads, first-call costs): one run of ALTA
    alta.run_stream(m.learner, [experience], optimizer=m.optimizer, scheduler=m.scheduler, buffer=m.buffer, loop=loop)
    group_times, single_times, per_method = [], [], []
    for r in range(rounds):
        order = ("group", "single") if r % 2 == 0 else ("single", "group")
        for which in order:
            if which == "group":
                start = time.perf_counter()
                grouped()
                group_times.append(time.perf_counter() - start)
            else:
                times = one_by_one()
                single_times.append(sum(times))
                per_method.append(times)

    # the halves of one group step (mode none): the image forward, then the nine members' steps
    split = None
    if mode == "none":
        images = torch.stack([experience.train[i][0] for i in range(BATCH_SIZE)])
        labels = torch.as_tensor([experience.train[i][1] for i in range(BATCH_SIZE)])
        members = members_for(backbone, stream)
        for m in members:
            m.learner.begin_experience(experience)
        forward, heads, text = [], [], []
        for _ in range(max(2, rounds)):
            start = time.perf_counter()
            features = backbone.encode_images(images)
            forward.append(time.perf_counter() - start)
            start = time.perf_counter()
            for m in members:
                alta.train_step(m.learner, features, labels, optimizer=m.optimizer, buffer=m.buffer)
            heads.append(time.perf_counter() - start)
            start = time.perf_counter()  # what a batched text encoding could merge: the learned prompts' forward
            for m in members:
                if m.learner.prompt_learner is not None:
                    m.learner.text_features(grad=True)
            text.append(time.perf_counter() - start)
        split = {"image_forward_s": statistics.median(forward), "nine_member_steps_s": statistics.median(heads),
                 "prompt_encodings_forward_s": statistics.median(text)}

    group_s, single_s = statistics.median(group_times), statistics.median(single_times)
    images = len(METHODS) * len(experience.train)
    return {
        "backbone": backbone_name, "mode": mode, "methods": METHODS, "buffer_size": BUFFER_SIZE,
        "train_images_per_run": len(experience.train), "test_images_per_run": len(experience.test),
        "steps_per_run": steps, "rounds": rounds, "resolution": backbone.input_resolution,
        "group_s": group_s, "one_by_one_s": single_s, "speedup": single_s / group_s,
        "group_images_per_s": images / group_s, "one_by_one_images_per_s": images / single_s,
        "group_times_s": group_times, "one_by_one_times_s": single_times,
        "one_by_one_per_method_median_s": {m: statistics.median(t[i] for t in per_method)
                                           for i, m in enumerate(METHODS)},
        "group_step_split": split,
    }


def markdown(results: list[dict], info: dict) -> str:
    lines = [
        "# Run groups: nine methods in one pass against nine runs one by one",
        "",
        f"Measured {info['date']} with `{info['command']}` on {info['cpu']} ({info['cpu_cores']} cores, torch threads "
        f"{info['torch_threads']}, load average at start {info['load_average_at_start']}), torch {info['torch']}, "
        f"git {info.get('git_commit')}. One experience of the digits stream, every call timed whole (encoding, "
        "steps, evaluation), median over rounds, group and one-by-one interleaved. Random-weight backbones.",
        "",
        "| backbone | mode | images per run (train / test) | group (s) | one by one (s) | speed-up | group images/s "
        "| one-by-one images/s | group step: image forward / nine member steps (of which prompt encodings, "
        "forward) (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        split = r["group_step_split"]
        halves = (f"{split['image_forward_s']:.3f} / {split['nine_member_steps_s']:.3f}"
                  + (f" ({split['prompt_encodings_forward_s']:.3f})" if "prompt_encodings_forward_s" in split else "")
                  if split else "—")
        lines.append(
            f"| {r['backbone']} | {r['mode']} | {r['train_images_per_run']} / {r['test_images_per_run']} | "
            f"{r['group_s']:.2f} | {r['one_by_one_s']:.2f} | {r['speedup']:.2f}x | {r['group_images_per_s']:.0f} | "
            f"{r['one_by_one_images_per_s']:.0f} | {halves} |")
    lines += ["", "Images/s counts each member's training images (nine runs' worth per call). The last column times "
              "one group step of 32 images in mode none: the image encoder (run once for the group), the nine "
              "members' train_step on its features, and, within those, the forward of the seven prompt methods' "
              "learned-prompt encodings (the part a batched text encoding would merge into one call).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="tiny-vit,random-ViT-B/32", help="comma-separated backbone names")
    parser.add_argument("--modes", default="none,fixed", help="comma-separated cache modes")
    parser.add_argument("--steps", type=int, default=3, help="training steps (batches of 32) per run")
    parser.add_argument("--test-images", type=int, default=32, help="test images per run")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of each (median)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="write the results here (and a .md beside it)")
    parser.add_argument("--smoke", action="store_true", help="tiny-vit, 1 step, 1 round: a plumbing check")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.backbones, args.steps, args.rounds, args.test_images = "tiny-vit", 1, 1, 8
    info = _timing.machine()  # date and load average at the start
    results = []
    for name in args.backbones.split(","):
        for mode in args.modes.split(","):
            r = measure(name, mode, steps=args.steps, test_images=args.test_images, rounds=args.rounds)
            results.append(r)
            print(f"{name:<16} {mode:<6} group {r['group_s']:.2f} s, one by one {r['one_by_one_s']:.2f} s: "
                  f"{r['speedup']:.2f}x", flush=True)
    if args.json is not None:
        write_json(args.json, {"format": "alta.benchmark-group", "machine": info, "results": results})
        write_text(args.json.with_suffix(".md"), markdown(results, info))
        print(f"written {args.json} and {args.json.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
