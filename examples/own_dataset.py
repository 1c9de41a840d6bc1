"""Continual learning on your own images: a folder tree `root/train/<class>/*`, `root/test/<class>/*`.

What it shows: `ScenarioStream.from_name("image-folder", root=...)` on a tree of image files,
class names taken from the folder names (the words CLIP reads), an explicit class order, and a
run of ALTA on it with `alta.run_stream`. Without `--root` it first writes such a tree into a
temporary folder: scikit-learn's handwritten digits as PNG files, one folder per digit named
"zero", "one", ..., "nine" (folders are read in sorted order, so the script passes
`class_order` to put the classes back in numeric order). With `--root` it reads your folder
instead (one sub-folder per class in `train/` and in `test/` or `val/`).

The default backbone `tiny-vit` has RANDOM weights: the accuracies show the pipeline works and
mean nothing. Use `--visual RN50` (pretrained, downloaded on first use) on real images.

Time on a CPU (one torch thread, the default of `--threads`, on a 2-core virtual machine shared with other jobs,
start-up included): about 13 s with the defaults (all 1,797 digits, 5 epochs); `--quick`
(30 images per class, 2 epochs) about 10 s. Most of it is importing torch and writing the PNG
files.

Usage:
    python examples/own_dataset.py
    python examples/own_dataset.py --root /data/my_images --num-experiences 4 --visual RN50
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import alta

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def write_digit_folders(root: Path, *, per_class: int | None = None) -> Path:
    """Write scikit-learn's digits as `root/{train,test}/<name>/<k>.png` (every 5th image of a
    class goes to test/) and return `root`."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts = [0] * 10
    for image, label in zip(digits.images, digits.target):
        if per_class is not None and counts[label] >= per_class:
            continue
        split = "test" if counts[label] % 5 == 4 else "train"
        folder = root / split / DIGIT_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{counts[label]:04d}.png")
        counts[label] += 1
    return root


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None,
                        help="folder with train/<class>/ and test/<class>/ (default: digits written to a temp dir)")
    parser.add_argument("--num-experiences", type=int, default=5, help="T (must divide the number of classes)")
    parser.add_argument("--visual", default="tiny-vit", help="backbone (default tiny-vit, random weights)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per experience (default 5)")
    parser.add_argument("--train-cache", default="fixed", help="fixed (default), none or views:K")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the tiny models run fastest on one thread)")
    parser.add_argument("--quick", action="store_true", help="30 digits per class, 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 2
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as scratch:
        root = args.root
        class_order = None
        if root is None:
            root = write_digit_folders(Path(scratch) / "digits", per_class=30 if args.quick else None)
            sorted_names = sorted(DIGIT_NAMES)  # what image-folder reads: eight, five, four, ...
            class_order = [sorted_names.index(name) for name in DIGIT_NAMES]  # back to 0, 1, ..., 9
            print(f"wrote {sum(1 for _ in root.rglob('*.png'))} PNG files under {root}")

        backbone = alta.load_backbone(args.visual, device=None)
        stream = alta.ScenarioStream.from_name("image-folder", root=root, num_experiences=args.num_experiences,
                                               class_order=class_order, resolution=backbone.input_resolution)
        print(stream)
        for experience in stream:
            print(f"  {experience}: {experience.class_names}")

        learner = alta.CrossModalLearner(backbone, class_names=stream.class_names, method="alta")
        optimizer, scheduler = alta.build_optimizer(learner, epochs=args.epochs)
        buffer = alta.MemoryBuffer(200, device=backbone.device, seed=0)
        loop = alta.LoopConfig(epochs=args.epochs, train_cache=args.train_cache, eval_every=0)
        result = alta.run_stream(learner, stream, optimizer=optimizer, scheduler=scheduler, buffer=buffer, loop=loop)

    summary = alta.metrics.summarize(result.class_il)
    print("class-IL accuracy matrix R[t, k] (%):")
    print(np.array2string(result.class_il, precision=1, suppress_small=True))
    print(f"class-IL Avg {summary['avg_accuracy']:.1f}, Last {summary['last_accuracy']:.1f}, "
          f"forgetting {summary['forgetting']:.1f}")
    if not backbone.pretrained:
        print(f"NOTE: {backbone.name} has RANDOM weights: these numbers are not comparable with anything.")
    print(f"time: {time.perf_counter() - started:.1f} s")
    return summary


if __name__ == "__main__":
    main()
