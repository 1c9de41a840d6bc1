"""The continual-learning loop of the "Your own loop" tutorial (docs/custom-loop.md), as a script.

What it shows: alta's four core objects wired together by hand: a `ScenarioStream`
(handwritten digits, 5 experiences of 2 classes), a `MemoryBuffer` (reservoir, 200 items), a
`CrossModalLearner` (ALTA on the `tiny-vit` CLIP with RANDOM weights) and an
`AlternatingSchedule`, trained with `alta.train_step` inside your own epoch loop, then
evaluated into class-IL and task-IL accuracy matrices and summarised with `alta.metrics`
(forward transfer against zero-shot CLIP). Training uses cached image features
(`train_cache="fixed"`: every training image is encoded once, without augmentation) so that it
runs in seconds; `--train-cache none` is the paper's protocol.

The numbers come from random weights: they show the loop works, not how well ALTA does.

Time on a CPU (one torch thread, the default of `--threads`, on a 2-core virtual machine shared with other jobs,
start-up included): about 12 s with the defaults (5 epochs); `--quick` (2 epochs) about 10 s.
Most of it is importing torch.

Usage:
    python examples/custom_loop.py
    python examples/custom_loop.py --schedule alternate --period 1 --unit epoch
    python examples/custom_loop.py --method oriclip2cprompt_mlp --policy class_balanced
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import alta


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="alta", choices=[*alta.list_methods(), "alta"],
                        help="method variant (default alta)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per experience (default 5)")
    parser.add_argument("--buffer-size", type=int, default=200, help="buffer capacity (default 200)")
    parser.add_argument("--policy", default="reservoir", choices=alta.list_buffer_policies(),
                        help="buffer storage policy (default reservoir)")
    parser.add_argument("--schedule", default="crossed", choices=alta.AlternatingSchedule.MODES,
                        help="crossed: both branches every step (default); alternate: in turns")
    parser.add_argument("--period", type=int, default=1, help="length of an alternating turn")
    parser.add_argument("--unit", default="step", choices=alta.AlternatingSchedule.UNITS,
                        help="what --period counts")
    parser.add_argument("--train-cache", default="fixed", help="fixed (default), none or views:K")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the tiny models run fastest on one thread)")
    parser.add_argument("--quick", action="store_true", help="2 epochs per experience")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 2
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    backbone = alta.load_backbone("tiny-vit")  # frozen CLIP with RANDOM weights, 32 px images
    stream = alta.ScenarioStream.from_name("digits", resolution=backbone.input_resolution)
    learner = alta.CrossModalLearner(backbone, class_names=stream.class_names, method=args.method, seed=args.seed)
    buffer = alta.MemoryBuffer(args.buffer_size, policy=args.policy, seed=args.seed)
    schedule = alta.AlternatingSchedule(args.schedule, period=args.period, unit=args.unit)
    optimizer, scheduler = alta.build_optimizer(learner, lr=0.002, schedule="cosine", epochs=args.epochs)
    cache = alta.FeatureCache()  # frozen image features, computed once per dataset
    loop = alta.LoopConfig(batch_size=32, seed=args.seed, train_cache=args.train_cache)  # checked once

    T = stream.num_experiences
    R = np.full((T, T), np.nan)  # class-IL accuracy matrix: R[t, k] after experience t, on experience k
    R_task = np.full((T, T), np.nan)  # the same in task-IL
    learner.train()
    for experience in stream:
        learner.begin_experience(experience)
        for epoch in range(args.epochs):
            for images, labels in alta.epoch_batches(experience, backbone=backbone, epoch=epoch, loop=loop,
                                                     cache=cache):
                stats = alta.train_step(learner, images, labels, optimizer=optimizer, buffer=buffer,
                                        schedule=schedule)
            scheduler.step()  # learning rate of the next epoch
            schedule.end_epoch()  # counts epochs (for alternation by epoch)
        learner.end_experience(experience)  # prompt snapshot of this experience's classes
        result = alta.evaluate(learner, stream, cache=cache)  # all experiences, future ones included
        t = experience.index
        R[t], R_task[t] = result.class_il, result.task_il
        print(f"experience {t + 1}/{T}: loss {float(stats['loss']):.3f}, "
              f"class-IL on seen {R[t, : t + 1].mean():.1f} %, buffer {len(buffer)}/{buffer.capacity}")

    zeroshot = alta.CrossModalLearner(backbone, class_names=stream.class_names, method="zeroshot")
    baseline = alta.evaluate(zeroshot, stream, cache=cache)
    summary = {
        "class-IL": alta.metrics.summarize(R, baseline=baseline.class_il),
        "task-IL": alta.metrics.summarize(R_task, baseline=baseline.task_il),
    }
    print(f"\n{learner.method.name} = {learner.method.formula}, {schedule!r}, buffer {args.policy}")
    print(np.array2string(R, precision=1, suppress_small=True))
    for setting, m in summary.items():
        print(f"{setting:8s} Avg {m['avg_accuracy']:5.1f}  Last {m['last_accuracy']:5.1f}  "
              f"forgetting {m['forgetting']:5.1f}  BWT {m['bwt']:6.1f}  FWT {m['fwt']:6.1f}")
    print("NOTE: random-weight backbone (tiny-vit): the numbers say nothing about ALTA or CLIP.")
    print(f"time: {time.perf_counter() - started:.1f} s")
    return summary


if __name__ == "__main__":
    try:
        main()
    except alta.AltaError as error:  # a bad option (e.g. --train-cache bogus): its message, not a traceback
        raise SystemExit(f"custom_loop.py: error: {error}") from None
