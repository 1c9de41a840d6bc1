"""Shared-prefix text encoding: forward + backward time with and without it.

Under CLIP's causal mask the prompt positions [SOS] + ctx_1..ctx_M are the same for every class,
so :meth:`alta.ClipBackbone.encode_prompt_embeddings` can compute them once per step instead of
once per class (``PromptLearner.encode(..., share_prefix=True)``). This script times one
forward + backward of the learned-prompt features w2 of C classes through the text encoder,
both ways, interleaved (so that load from other processes hits both alike), and checks that the
two agree.

    python benchmarks/shared_prefix.py --backbones tiny-vit random-ViT-B/32 --classes 10 100 200

Random-weight backbones have the real architecture (ViT-B/32: text width 512, 12 layers); the
timing does not depend on the weights. Class names are CIFAR-100's (L' = 10 positions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import class_names, machine, summary, timed  # noqa: E402

from alta.backbones import load_backbone  # noqa: E402
from alta.prompt import PromptLearner  # noqa: E402


def measure(backbone_name: str, num_classes: int, *, repeats: int, device: str, seed: int = 0) -> dict:
    """Time forward + backward of w2 for ``num_classes`` classes, plain vs shared prefix."""
    backbone = load_backbone(backbone_name, device=device, seed=seed)
    learner = PromptLearner(backbone, class_names(num_classes))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # move ctx away from the token embeddings it starts from
        learner.ctx.add_(0.05 * torch.randn(learner.ctx.shape, generator=generator).to(learner.ctx.device))
    weights = torch.randn(num_classes, backbone.embed_dim, generator=generator).to(backbone.device)

    def step(share: bool) -> tuple[torch.Tensor, torch.Tensor]:
        learner.ctx.grad = None
        features = learner.encode(backbone, share_prefix=share)  # (C, D)
        (features * weights).sum().backward()
        return features.detach(), learner.ctx.grad.detach().clone()

    plain, shared = step(False), step(True)  # warm-up, and the exactness check
    feature_scale = float(plain[0].abs().max())
    grad_scale = float(plain[1].abs().max())
    times = {"plain": [], "shared": []}
    for _ in range(repeats):
        for mode in ("plain", "shared"):
            times[mode].append(timed(lambda: step(mode == "shared"), backbone.device))
    plain_s = summary(times["plain"])
    shared_s = summary(times["shared"])
    return {
        "backbone": backbone_name,
        "text_width": backbone.token_width,
        "text_layers": len(backbone.model.transformer.resblocks),
        "num_classes": num_classes,
        "positions": learner.num_positions,
        "prefix_positions": 1 + learner.n_ctx,
        "plain": plain_s,
        "shared_prefix": shared_s,
        "speedup_median": plain_s["median_s"] / shared_s["median_s"],
        "speedup_min": plain_s["min_s"] / shared_s["min_s"],
        "max_rel_feature_diff": float((plain[0] - shared[0]).abs().max()) / feature_scale,
        "max_rel_grad_diff": float((plain[1] - shared[1]).abs().max()) / grad_scale,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["tiny-vit", "random-ViT-B/32"])
    parser.add_argument("--classes", nargs="+", type=int, default=[10, 100, 200])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    rows = []
    print(f"{'backbone':18} {'C':>4} {'L_':>3} {'plain s':>9} {'shared s':>9} {'speed-up':>8} {'rel. diff (feat/grad)':>22}")
    for name in args.backbones:
        for num_classes in args.classes:
            row = measure(name, num_classes, repeats=args.repeats, device=args.device)
            rows.append(row)
            print(f"{name:18} {num_classes:4d} {row['positions']:3d} {row['plain']['median_s']:9.3f} "
                  f"{row['shared_prefix']['median_s']:9.3f} {row['speedup_median']:7.2f}x "
                  f"{row['max_rel_feature_diff']:10.1e} / {row['max_rel_grad_diff']:.1e}", flush=True)
    result = {"machine": machine(), "measure": "forward + backward of w2 (C classes), median of interleaved repeats",
              "rows": rows}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
