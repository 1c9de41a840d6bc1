"""Several method variants of ALTA on one stream: a table, and a plot when matplotlib is present.

What it shows: the ablation of the ALTA paper in miniature. Each method of `alta.list_methods()`
(by default zero-shot CLIP, the adapter alone `mlp`, the prompt with snapshots alone `cprompt`,
the parallel pairing `oriclip2cprompt_mlp` and ALTA's crossed pairing) is trained on the same
stream (handwritten digits, 5 experiences of 2 classes) with the same seed, buffer size and
schedule, from the same frozen backbone; one feature cache is shared by all runs. The script
prints class-IL and task-IL Avg, Last and forgetting per method and saves a plot of the class-IL
accuracy on the seen experiences after each experience (`--output`, needs matplotlib).

The default backbone `tiny-vit` has RANDOM weights, so the ranking it prints says nothing about
the methods: it only shows how to run the comparison. With pretrained weights
(`--visual RN50`) the same script compares the methods for real (slowly on a CPU).

Time on a CPU (one torch thread, the default of `--threads`, on a 2-core virtual machine shared with other jobs,
start-up included): about 22 s with the defaults (5 methods, 5 epochs, cached features);
`--quick` (3 methods, 2 epochs) about 10 s.

Usage:
    python examples/compare_methods.py
    python examples/compare_methods.py --methods mlp,resmlp,cprompt_mlp,alta --epochs 10 --output cmp.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import alta

DEFAULT_METHODS = "zeroshot,mlp,cprompt,oriclip2cprompt_mlp,oritext_mlp2cprompt_oriimg"


def run_method(method: str, *, backbone, stream, epochs: int, buffer_size: int, train_cache: str,
               cache: alta.FeatureCache, seed: int) -> alta.StreamResult:
    """Class-IL and task-IL accuracy matrices of one method on the stream."""
    learner = alta.CrossModalLearner(backbone, class_names=stream.class_names, method=method, seed=seed)
    if not learner.method.branches:  # zero-shot CLIP: nothing to train, the same accuracy after every experience
        evaluation = alta.evaluate(learner, stream, cache=cache)
        T = stream.num_experiences
        return alta.StreamResult(class_il=np.tile(evaluation.class_il, (T, 1)),
                                 task_il=np.tile(evaluation.task_il, (T, 1)))
    optimizer, scheduler = alta.build_optimizer(learner, epochs=epochs)
    buffer = alta.MemoryBuffer(buffer_size, device=backbone.device, seed=seed) if learner.method.replay else None
    loop = alta.LoopConfig(epochs=epochs, seed=seed, train_cache=train_cache, eval_every=0)
    return alta.run_stream(learner, stream, optimizer=optimizer, scheduler=scheduler, buffer=buffer, loop=loop,
                           cache=cache)


def save_plot(results: dict[str, alta.StreamResult], path: Path, *, title: str) -> bool:
    """Class-IL accuracy on the seen experiences after each experience, one line per method."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[plot]'): no plot")
        return False
    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    for method, result in results.items():
        after_each = alta.metrics.accuracy_after_each(result.class_il)
        x = np.arange(1, len(after_each) + 1)
        ax.plot(x, after_each, marker="o", linestyle="--" if method == "zeroshot" else "-", label=method)
    ax.set_xticks(x)
    ax.set_ylim(0, 100)
    ax.set_xlabel("experiences learned")
    ax.set_ylabel("class-IL accuracy on seen experiences (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})")
    parser.add_argument("--visual", default="tiny-vit", help="backbone (default tiny-vit, random weights)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per experience (default 5)")
    parser.add_argument("--buffer-size", type=int, default=200, help="buffer capacity for replaying methods")
    parser.add_argument("--train-cache", default="fixed", help="fixed (default), none (the paper's) or views:K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("compare_methods.png"), help="plot file (PNG)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the tiny models run fastest on one thread)")
    parser.add_argument("--quick", action="store_true", help="3 methods, 2 epochs")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.quick:
        args.epochs, methods = 2, ["zeroshot", "mlp", "oritext_mlp2cprompt_oriimg"]
    for method in methods:
        alta.get_method(method)  # fails early, listing the valid names, on a typo
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    backbone = alta.load_backbone(args.visual, device=None)
    stream = alta.ScenarioStream.from_name("digits", resolution=backbone.input_resolution)
    cache = alta.FeatureCache()
    results = {}
    for method in methods:
        results[method] = run_method(method, backbone=backbone, stream=stream, epochs=args.epochs,
                                     buffer_size=args.buffer_size, train_cache=args.train_cache, cache=cache,
                                     seed=args.seed)

    print(f"\n{backbone.name} ({'pretrained' if backbone.pretrained else 'RANDOM weights'}), digits 5 x 2, "
          f"{args.epochs} epochs, buffer {args.buffer_size}, train_cache={args.train_cache}, seed {args.seed}")
    header = f"{'method':28s} {'logits':32s} {'replay':>6s} | {'class-IL Avg':>12s} {'Last':>6s} {'Forget':>7s}" \
             f" | {'task-IL Avg':>11s} {'Last':>6s}"
    print(header)
    print("-" * len(header))
    table = {}
    for method, result in results.items():
        spec = alta.get_method(method)
        c, t = alta.metrics.summarize(result.class_il), alta.metrics.summarize(result.task_il)
        table[method] = {"class_il": c, "task_il": t}
        forget = "-" if not spec.branches else f"{c['forgetting']:7.1f}"
        print(f"{method:28s} {spec.formula:32s} {'yes' if spec.replay else 'no':>6s} | {c['avg_accuracy']:12.1f} "
              f"{c['last_accuracy']:6.1f} {forget:>7s} | {t['avg_accuracy']:11.1f} {t['last_accuracy']:6.1f}")
    if not backbone.pretrained:
        print("NOTE: random-weight backbone: the ranking says nothing about the methods.")
    title = (f"digits 5x2, {backbone.name}" + ("" if backbone.pretrained else " (RANDOM weights)")
             + f", {args.epochs} epochs, train_cache={args.train_cache}")
    if save_plot(results, args.output, title=title):
        print(f"plot: {args.output}")
    print(f"time: {time.perf_counter() - started:.1f} s")
    return table


if __name__ == "__main__":
    main()
