"""The default `alta run`, written with the library API.

What it shows: the offline demo of `alta run` (scikit-learn's handwritten digits split into
5 experiences of 2 classes, the `tiny-vit` CLIP with RANDOM weights, ALTA with a 200-item
reservoir buffer, SGD at 0.002 with the cosine schedule, batch 32, 20 epochs per experience,
evaluation every 10 epochs) built from alta's public pieces: `load_backbone`,
`ScenarioStream`, `CrossModalLearner`, `MemoryBuffer`, `build_optimizer`, `run_stream`,
`evaluate` and `alta.metrics`, with zero-shot CLIP as the baseline of forward transfer.

The accuracies come from a backbone with random weights: they show that the pipeline works,
not how well ALTA or CLIP does. Pass `--visual RN50` (pretrained weights, downloaded on first
use) for meaningful numbers; 8x8 digits upscaled to 224 px are still a toy problem.

It prints the same accuracies as `alta run --threads 1` (same seeds, same pieces).

Time on a CPU (one torch thread, the default of `--threads`, on a 2-core virtual machine shared with other jobs,
start-up included): about 50 s with the defaults; `--quick` (2 epochs, features cached) about
10 s, half of it importing torch.

Usage:
    python examples/quickstart.py
    python examples/quickstart.py --quick
    python examples/quickstart.py --epochs 5 --train-cache fixed
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import alta


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visual", default="tiny-vit", help="backbone (default tiny-vit, random weights)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per experience (default 20)")
    parser.add_argument("--train-cache", default="none", help="none (default), fixed or views:K")
    parser.add_argument("--buffer-size", type=int, default=200, help="replay buffer capacity (default 200)")
    parser.add_argument("--seed", type=int, default=42, help="run seed (default 42)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the tiny models run fastest on one thread)")
    parser.add_argument("--quick", action="store_true", help="2 epochs with cached features (a few seconds)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.train_cache = 2, "fixed"
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    backbone = alta.load_backbone(args.visual, device=None)  # CUDA when available
    stream = alta.ScenarioStream.from_name("digits", resolution=backbone.input_resolution)
    learner = alta.CrossModalLearner(backbone, class_names=stream.class_names, method="alta", seed=args.seed)
    # the buffer's seed is derived from the run seed exactly as `alta run` derives it
    buffer_seed = alta.seeding.derive_seed(args.seed, 1)
    buffer = alta.MemoryBuffer(args.buffer_size, device=backbone.device, seed=buffer_seed) if args.buffer_size else None
    optimizer, scheduler = alta.build_optimizer(learner, lr=0.002, schedule="cosine", epochs=args.epochs)
    cache = alta.FeatureCache()  # test features are encoded once and reused by every evaluation

    class Report(alta.Callback):  # called at each evaluation (every 10 epochs and at experience ends)
        def on_evaluation(self, *, record: dict) -> None:
            print(f"experience {record['experience'] + 1}, epoch {record['epoch']}: "
                  f"class-IL {record['class_il_mean']:.1f} %, task-IL {record['task_il_mean']:.1f} %")

    loop = alta.LoopConfig(epochs=args.epochs, seed=args.seed, train_cache=args.train_cache, eval_every=10)
    result = alta.run_stream(learner, stream, optimizer=optimizer, scheduler=scheduler, buffer=buffer, loop=loop,
                             cache=cache, callbacks=[Report()])

    zeroshot = alta.CrossModalLearner(backbone, class_names=stream.class_names, method="zeroshot")
    baseline = alta.evaluate(zeroshot, stream, cache=cache)
    summary = {
        "class-IL": alta.metrics.summarize(result.class_il, baseline=baseline.class_il),
        "task-IL": alta.metrics.summarize(result.task_il, baseline=baseline.task_il),
    }

    print(f"\n{backbone.name} ({'pretrained' if backbone.pretrained else 'RANDOM weights'}), "
          f"{learner.method.name}, {args.epochs} epochs, train_cache={args.train_cache}")
    print("class-IL accuracy matrix R[t, k] (%):")
    print(np.array2string(result.class_il, precision=1, suppress_small=True))
    print(f"{'setting':8s} {'Avg':>6s} {'Last':>6s} {'Forget':>7s} {'BWT':>7s} {'FWT':>7s}")
    for setting, m in summary.items():
        print(f"{setting:8s} {m['avg_accuracy']:6.1f} {m['last_accuracy']:6.1f} {m['forgetting']:7.1f} "
              f"{m['bwt']:7.1f} {m['fwt']:7.1f}")
    if not backbone.pretrained:
        print("NOTE: random-weight backbone: these numbers are NOT comparable with the paper's.")
    print(f"time: {time.perf_counter() - started:.1f} s")
    return summary


if __name__ == "__main__":
    main()
