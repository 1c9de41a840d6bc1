"""What a training step costs on each backbone family, as ratios to ViT-B/16 (random weights).

For budgeting a run on another backbone (issue 24): each family's reference model at its real
size, built by open_clip's factory with seeded random weights (the cost does not depend on the
weights), on the same synthetic inputs, measured the same way:

- ``step``: one ``alta.train_step`` of ALTA on cached image features (cache ``fixed``), C classes
  (CIFAR-100's names), batch 32, a replayed memory, the first experience of a 10-experience
  stream with ``head="all"``: every class's learned prompt is encoded, forward and backward, so
  the text tower is the whole cost (alta's worst case, as in ``speed.py``);
- ``image``: the frozen image encoder per image (batch 4): a one-time cost per image with a
  feature cache, a per-step one (x batch size) without (cache ``none``);
- ``text eval``: the text features once per evaluation (no gradients).

Families whose text tower attends bidirectionally (SigLIP, SigLIP 2, MobileCLIP 2-S0) encode every
prompt at all L positions, without the shared prefix and truncation the causal towers use: their
``step`` shows what that costs. Steps of all families are interleaved, so load from other
processes hits them alike; times are medians; ratios are to ViT-B/16 (``open_clip:ViT-B-16``).

SigLIP's tokenizers need the Hugging Face cache. When it lacks them, a stand-in with the same
special-token layout is written to a temporary cache (the step cost of a bidirectional tower does
not depend on the vocabulary: it always runs all 64 positions); the results say which was used.

    python benchmarks/families.py --threads 1 --json benchmarks/results/families-cpu.json
    python benchmarks/families.py --smoke          # open_clip:tiny-<model>, 10 classes: seconds

Ratios are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import string
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import class_names, machine, summary, timed  # noqa: E402

import alta  # noqa: E402
from alta import BackboneError, CrossModalLearner, MemoryBuffer, build_optimizer, load_backbone  # noqa: E402

# family -> open_clip model (the family's reference size); the first is the baseline of the ratios
FAMILIES = {
    "ViT-B/16": "ViT-B-16",
    "MetaCLIP / DFN ViT-B/16": "ViT-B-16-quickgelu",
    "SigLIP": "ViT-B-16-SigLIP",
    "SigLIP 2": "ViT-B-16-SigLIP2",
    "EVA-02": "EVA02-B-16",
    "PE-Core": "PE-Core-B-16",
    "MobileCLIP 2-S0": "MobileCLIP2-S0",
    "ViT-L/14": "ViT-L-14",
    "ViT-L/14@336": "ViT-L-14-336-quickgelu",
}
BASELINE = "ViT-B/16"


def stand_in_tokenizers(root: Path) -> Path:
    """A Hugging Face cache holding stand-ins for SigLIP's tokenizers with their special-token
    layout (SigLIP, T5's: no BOS, ``</s>`` ends and pads; SigLIP 2, Gemma's: no BOS, ``<eos>`` = 1
    ends, ``<pad>`` = 0 pads): characters, and the words of ctx_init as single tokens."""
    import transformers

    chars = list(string.ascii_lowercase + string.digits + "\u2581")
    words = ["\u2581a", "\u2581photo", "\u2581of"]
    for repo in ("timm/ViT-B-16-SigLIP", "timm/ViT-B-16-SigLIP2"):
        folder = root / f"models--{repo.replace('/', '--')}"
        snapshot = folder / "snapshots" / ("0" * 40)
        if repo.endswith("2"):
            vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, **{c: 4 + i for i, c in enumerate(chars)}}
            merges = []
            for word in words:
                for end in range(2, len(word) + 1):
                    merges.append((word[:end - 1], word[end - 1]))
                    vocab.setdefault(word[:end], len(vocab))
            transformers.GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=False, add_eos_token=True,
                                        padding_side="right").save_pretrained(snapshot)
        else:
            vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -1.0) for w in words]
            vocab += [(c, -5.0) for c in chars]
            transformers.T5Tokenizer(vocab=vocab, extra_ids=0, pad_token="</s>", eos_token="</s>",
                                     unk_token="<unk>").save_pretrained(snapshot)
        (snapshot / "config.json").write_text(json.dumps({"architecture": "vit_base_patch16_siglip_224"}))
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text("0" * 40)
    return root


def load(model: str, *, stand_in: Path, seed: int) -> tuple[object, str]:
    """The random-weight backbone and which tokenizer it uses (``"real"`` or ``"stand-in"``)."""
    try:
        return load_backbone(f"open_clip:{model}", download=False, seed=seed), "real"
    except BackboneError as exc:
        if "tokenizer" not in str(exc):
            raise
    return load_backbone(f"open_clip:{model}", download=False, seed=seed, download_root=stand_in), "stand-in"


def prepare(name: str, model: str, *, num_classes: int, batch_size: int, stand_in: Path, seed: int) -> dict:
    """A backbone, its learner, optimiser and buffer, inputs, and the step/image/text callables."""
    backbone, tokenizer = load(model, stand_in=stand_in, seed=seed)
    g = torch.Generator().manual_seed(seed)
    r = backbone.input_resolution
    images = torch.randn(4, 3, r, r, generator=g)
    features = torch.randn(batch_size, backbone.embed_dim, generator=g)  # what a feature cache delivers
    names = class_names(num_classes)
    per_experience = max(num_classes // 10, 1)
    mapping = torch.clamp(torch.arange(num_classes) // per_experience, max=9)
    first = argparse.Namespace(index=0, classes=(mapping == 0).nonzero().squeeze(1).tolist(),
                               class_to_experience=mapping)
    labels = torch.tensor(first.classes)[torch.randint(len(first.classes), (batch_size,), generator=g)]
    learner = CrossModalLearner(backbone, class_names=names, method="alta", seed=seed)
    learner.begin_experience(first)
    optimizer, _ = build_optimizer(learner)
    buffer = MemoryBuffer(200, seed=seed)
    evaluator = CrossModalLearner(backbone, class_names=names, method="alta", seed=seed)
    return {
        "name": name, "model": model, "backbone": backbone, "tokenizer": tokenizer,
        "step": lambda: alta.train_step(learner, features, labels, optimizer=optimizer, buffer=buffer),
        "image": lambda: backbone.encode_images(images),
        "text eval": lambda: evaluator.text_features(grad=False),
    }


PARTS = ("step", "image", "text eval")


def _row(run: dict, times: dict, base_times: dict) -> dict:
    backbone = run["backbone"]
    stats = {part: summary(values) for part, values in times.items()}
    stats["image"] = {k: v / 4 if k.endswith("_s") else v for k, v in stats["image"].items()}  # per image
    base = {part: summary(values)["median_s"] for part, values in base_times.items()}
    base["image"] /= 4
    return {
        "family": run["name"], "model": f"open_clip:{run['model']}", "tokenizer": run["tokenizer"],
        "resolution": backbone.input_resolution, "embed_dim": backbone.embed_dim,
        "text_width": backbone.token_width, "context_length": backbone.context_length,
        "causal_text": backbone.causal_text, "logit_bias": backbone.logit_bias,
        "params_m": round(sum(p.numel() for p in backbone.model.parameters()) / 1e6, 1),
        "step": stats["step"], "image_per_img": stats["image"], "text_eval": stats["text eval"],
        "baseline_in_pair": base,
        "ratio": {"step": stats["step"]["median_s"] / base["step"], "image": stats["image"]["median_s"] / base["image"],
                  "text_eval": stats["text eval"]["median_s"] / base["text eval"]},
    }


def measure(families: dict[str, str], *, num_classes: int, batch_size: int, repeats: int, seed: int,
            log=print) -> list[dict]:
    """Time every family against the baseline (the first): the baseline stays built, each other
    family is built in turn, and their rounds alternate (baseline, family, baseline, ...), so each
    ratio compares times taken side by side; one model besides the baseline is in memory at a time."""
    stand_in = stand_in_tokenizers(Path(tempfile.mkdtemp(prefix="alta-tokenizers-")))
    kwargs = {"num_classes": num_classes, "batch_size": batch_size, "stand_in": stand_in, "seed": seed}
    (base_name, base_model), *others = families.items()
    log(f"building {base_name} (open_clip:{base_model}, random weights)")
    base = prepare(base_name, base_model, **kwargs)
    base["step"]()  # warm-up; fills the buffer, so every timed step replays
    all_base = {part: [] for part in PARTS}
    rows = []
    for name, model in [(base_name, None), *others]:
        run = base
        if model is not None:
            log(f"building {name} (open_clip:{model}, random weights)")
            run = prepare(name, model, **kwargs)
            run["step"]()
        times = {part: [] for part in PARTS}
        base_times = {part: [] for part in PARTS}
        for i in range(repeats):
            for part in PARTS:
                base_times[part].append(timed(base[part], torch.device("cpu")))
                if run is not base:
                    times[part].append(timed(run[part], torch.device("cpu")))
            for part in PARTS:
                all_base[part].append(base_times[part][-1])
            log(f"  round {i + 1}/{repeats} {name}: " + ", ".join(
                f"{p} {(times[p] or base_times[p])[-1]:.3f}s (baseline {base_times[p][-1]:.3f}s)" for p in PARTS))
        rows.append(_row(run, times if run is not base else base_times, base_times))
        del run
    rows[0] = _row(base, all_base, all_base)  # the baseline over all its rounds
    return rows


def markdown(rows: list[dict], *, num_classes: int, batch_size: int) -> str:
    lines = [f"| family | model | px | text tower | params (M) | step, C={num_classes}, B={batch_size} (s) | "
             f"x ViT-B/16 | image (s/img) | x ViT-B/16 | text eval (s) | x ViT-B/16 |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        tower = ("causal" if r["causal_text"] else "bidirectional") + f", L={r['context_length']}"
        lines.append(f"| {r['family']} | `{r['model']}` | {r['resolution']} | {tower} | {r['params_m']} | "
                     f"{r['step']['median_s']:.3f} | **{r['ratio']['step']:.2f}** | {r['image_per_img']['median_s']:.3f} | "
                     f"**{r['ratio']['image']:.2f}** | {r['text_eval']['median_s']:.3f} | {r['ratio']['text_eval']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="+", default=None, help="families to measure (the baseline is always first)")
    parser.add_argument("--smoke", action="store_true", help="open_clip:tiny-<model>, 10 classes, one round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights: nothing to download
    families = {k: v for k, v in FAMILIES.items() if args.only is None or k == BASELINE or k in args.only}
    if args.smoke:
        families = {k: f"tiny-{v}" for k, v in families.items()}
        args.classes, args.repeats = 10, 1
    at_start = machine()  # the date and load average when the measurement began
    rows = measure(families, num_classes=args.classes, batch_size=args.batch_size, repeats=args.repeats,
                   seed=args.seed)
    table = markdown(rows, num_classes=args.classes, batch_size=args.batch_size)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": at_start, "finished": machine()["date"], "num_classes": args.classes,
                                         "batch_size": args.batch_size, "repeats": args.repeats, "smoke": args.smoke,
                                         "results": rows, "markdown": table}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
