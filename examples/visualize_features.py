"""t-SNE of image features before and after continual learning, as in the ALTA paper's
visualisation analyses.

What it shows: the image representations ALTA scores, on the test images of every experience
of a stream (handwritten digits, 5 experiences of 2 classes), embedded in 2-D with
scikit-learn's t-SNE and coloured by class:

1. f1, the frozen CLIP image feature (task-invariant: training never changes it);
2. f2 = adapter(f1), the task-aware image feature, with the adapter as initialised;
3. f2 after learning all five experiences with ALTA (replay on).

Each panel's title gives two numbers computed on the features themselves (not on the 2-D
embedding): the accuracy of classifying each image by its nearest frozen text feature,
argmax_c cos(feature, w1_c) (for f1 that is zero-shot CLIP; for f2 it is ALTA's
language-guided vision learner, the s*cos(f2, w1) term alone), and the silhouette score of the
classes (cosine distance, -1 to 1: how compact and separated the class clusters are). The
figure is saved as a PNG (`--output`).

The default backbone `tiny-vit` has RANDOM weights, so f1 carries little class information
and the text features w1 are arbitrary directions; what the figure shows is what training does
to the adapter's output: it moves each image towards its class's text feature (the text-anchor
accuracy rises) without necessarily making compact clusters (the silhouette may fall). With
pretrained weights (`--visual RN50`) the same script shows the real thing.

Needs scikit-learn (an alta dependency) and matplotlib (`pip install -e ".[plot]"`).

Time on a CPU (one torch thread, the default of `--threads`, on a 2-core virtual machine shared with other jobs,
start-up included): about 25 s with the defaults (all 355 test images, 5 epochs); `--quick`
(150 test images, 2 epochs) about 11 s. Most of it is t-SNE and importing torch.

Usage:
    python examples/visualize_features.py --output tsne.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import alta


@torch.no_grad()
def image_features(learner: alta.CrossModalLearner, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised f1 and f2 = adapter(f1) of precomputed frozen features.

    Shape:
        features: (N, D); returns two (N, D) tensors on the CPU.
    """
    f1 = features.to(learner.device)
    f2 = learner.adapter(f1)
    return F.normalize(f1, dim=-1).cpu(), F.normalize(f2, dim=-1).cpu()


@torch.no_grad()
def text_anchor_accuracy(learner: alta.CrossModalLearner, x: torch.Tensor, labels: np.ndarray) -> float:
    """Accuracy (%) of argmax_c cos(x, w1_c): each image classified by its nearest frozen text feature."""
    w1 = learner.text_features(grad=False).w1.cpu()  # (C, D), normalised
    predictions = (x @ w1.T).argmax(dim=1).numpy()  # (N,)
    return 100.0 * float(np.mean(predictions == labels))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visual", default="tiny-vit", help="backbone (default tiny-vit, random weights)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per experience (default 5)")
    parser.add_argument("--max-points", type=int, default=None, help="test images to embed (default: all)")
    parser.add_argument("--output", type=Path, default=Path("tsne_features.png"), help="figure file (PNG)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the tiny models run fastest on one thread)")
    parser.add_argument("--quick", action="store_true", help="150 test images, 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.max_points = 2, 150
    if args.threads:
        torch.set_num_threads(args.threads)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    started = time.perf_counter()
    backbone = alta.load_backbone(args.visual, device=None)
    stream = alta.ScenarioStream.from_name("digits", resolution=backbone.input_resolution)
    learner = alta.CrossModalLearner(backbone, class_names=stream.class_names, method="alta", seed=args.seed)
    cache = alta.FeatureCache()

    # the frozen features f1 of every test image, encoded once (the test transform is deterministic)
    stored = [cache.features(backbone, experience.test) for experience in stream]
    features = torch.cat([s.features for s in stored])  # (N, D)
    labels = torch.cat([s.labels for s in stored]).numpy()  # (N,)
    if args.max_points is not None and args.max_points < len(labels):
        keep = np.random.default_rng(args.seed).choice(len(labels), args.max_points, replace=False)
        keep.sort()
        features, labels = features[keep], labels[keep]

    f1, f2_before = image_features(learner, features)
    optimizer, scheduler = alta.build_optimizer(learner, epochs=args.epochs)
    buffer = alta.MemoryBuffer(200, device=backbone.device, seed=args.seed)
    loop = alta.LoopConfig(epochs=args.epochs, seed=args.seed, train_cache="fixed", eval_every=0)
    result = alta.run_stream(learner, stream, optimizer=optimizer, scheduler=scheduler, buffer=buffer, loop=loop,
                             cache=cache)
    _, f2_after = image_features(learner, features)
    print(f"class-IL accuracy after the last experience: {alta.metrics.last_accuracy(result.class_il):.1f} % "
          f"(Avg {alta.metrics.average_accuracy(result.class_il):.1f} %)")

    panels = [
        ("f1: frozen CLIP image feature", f1),
        ("f2 = adapter(f1), before learning", f2_before),
        (f"f2 after {stream.num_experiences} experiences (ALTA)", f2_after),
    ]
    scores = {}
    figure, axes = plt.subplots(1, 3, figsize=(15, 5.2))
    colours = plt.get_cmap("tab10")
    for ax, (title, x) in zip(axes, panels):
        accuracy = text_anchor_accuracy(learner, x, labels)
        silhouette = float(silhouette_score(x.numpy(), labels, metric="cosine"))
        scores[title] = {"text_anchor_accuracy": accuracy, "silhouette": silhouette}
        embedded = TSNE(n_components=2, perplexity=min(30.0, (len(labels) - 1) / 3), init="pca",
                        random_state=args.seed).fit_transform(x.numpy())
        for c, name in enumerate(stream.class_names):
            mask = labels == c
            ax.scatter(embedded[mask, 0], embedded[mask, 1], s=10, color=colours(c), label=name)
        ax.set_title(f"{title}\nnearest-w1 accuracy {accuracy:.1f} %, silhouette {silhouette:.2f}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        print(f"{title:40s} nearest-w1 accuracy {accuracy:5.1f} %   silhouette (cosine) {silhouette:6.3f}")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=2)
    kind = "pretrained" if backbone.pretrained else "RANDOM weights"
    figure.suptitle(f"t-SNE of test image features, digits (5 experiences x 2 classes), {backbone.name} ({kind})")
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=100)
    plt.close(figure)
    print(f"figure: {args.output}")
    print(f"time: {time.perf_counter() - started:.1f} s")
    return scores


if __name__ == "__main__":
    main()
