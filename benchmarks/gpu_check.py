"""One unattended check of alta's CUDA paths, sized for a few minutes on one GPU.

    python benchmarks/gpu_check.py            # results in $OUT if set, else benchmarks/results/

Without CUDA it writes ``{"cuda": false, ...}`` and exits 0. With CUDA it runs, each part
guarded so that one failure does not hide the others:

1. precision: the frozen encoders load in fp16 by default, trainable parameters stay fp32, a
   training step gives finite fp32 losses and fp32 gradients; fp16 and fp32 learned-prompt
   features agree to fp16 accuracy;
2. synchronisation: ``torch.cuda.set_sync_debug_mode("warn")`` during training steps (cache
   ``fixed``: features on the GPU; cache ``none``: pinned images; buffer on the GPU) and the
   warnings counted per step, with where they come from;
3. equivalence: ``tests/test_reference_equivalence.py``'s check of every method, run on CUDA in
   fp32 with a tolerance of 1e-4 (instead of 1e-5 on the CPU); plus the fp16 difference between
   alta and the reference loop, reported (not asserted);
4. distributed: ``benchmarks/distributed.py --check`` under torchrun (2 NCCL ranks with 2+ GPUs;
   2 gloo ranks sharing the GPU and a 1-rank NCCL start with one GPU): 2 processes give the
   1-process logits, buffer and cached features; then its step and feature-extraction
   throughput with random-weight ViT-B/16 at 100 / 200 / 1,000 classes;
5. speed: ``benchmarks/speed.py`` with random-weight RN50 and ViT-B/16 (real size) at 100
   classes, caches ``none`` and ``fixed``: images/s, speed-ups, projected whole-protocol time.

Everything lands in ``gpu-check.json`` (+ ``speed-cuda-*.json/.md/.log``) in the output folder; the
exit status is 0 unless a check failed. ``--cpu-dry-run`` runs the same code on the CPU with the
tiny backbones (no sync counting), to check the script itself where there is no GPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from _timing import class_names, machine  # noqa: E402

BUDGET_S = 7 * 60  # stop starting new parts after this

# device and backbones of a real run, and of a dry run on the CPU
SETUPS = {
    "cuda": {"device": "cuda", "vit": "random-ViT-B/16", "rn": "random-RN50", "steps": 20, "warmup": 3},
    "cpu-dry-run": {"device": "cpu", "vit": "tiny-vit", "rn": "tiny-rn", "steps": 2, "warmup": 1},
}


def _out_dir() -> Path:
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _images(backbone, batch: int, seed: int = 0) -> torch.Tensor:
    r = backbone.input_resolution
    images = torch.randn(batch, 3, r, r, generator=torch.Generator().manual_seed(seed))
    return images.pin_memory() if backbone.device.type == "cuda" else images


def check_precision(report: dict, setup: dict) -> None:
    from alta import CrossModalLearner, MemoryBuffer, build_optimizer, load_backbone, train_step

    device = setup["device"]
    backbone = load_backbone(setup["vit"], device=device, seed=0)
    names = class_names(100)
    learner = CrossModalLearner(backbone, class_names=names, method="alta")
    experience = _experience(100)
    learner.begin_experience(experience)
    optimizer, _ = build_optimizer(learner)
    buffer = MemoryBuffer(200, device=device, seed=0)
    images = _images(backbone, 32)
    labels = torch.arange(32) % 10
    out = [train_step(learner, images, labels, optimizer=optimizer, buffer=buffer) for _ in range(2)][-1]
    grads = {name: (p.grad.dtype, bool(torch.isfinite(p.grad).all())) for name, p in learner.named_parameters()
             if p.requires_grad and p.grad is not None}
    fp32 = load_backbone(setup["vit"], device=device, precision="fp32", seed=0)
    with torch.no_grad():
        w2_16 = learner.prompt_learner.encode(backbone)
        w2_32 = learner.prompt_learner.encode(fp32)
    rel = float((w2_16 - w2_32).abs().max() / w2_32.abs().max())
    expected = "fp16" if device == "cuda" else "fp32"
    report["precision"] = {
        "encoder_precision": backbone.precision,
        "encoder_dtype": str(backbone.dtype),
        "trainable_dtypes": sorted({str(p.dtype) for p in learner.trainable_parameters()}),
        "loss_dtype": str(out["loss"].dtype),
        "loss_finite": bool(torch.isfinite(out["loss"])),
        "grad_dtypes_finite": {k: [str(v[0]), v[1]] for k, v in grads.items()},
        "w2_fp16_vs_fp32_max_rel_diff": rel,
        "ok": backbone.precision == expected
        and all(p.dtype == torch.float32 for p in learner.trainable_parameters())
        and bool(torch.isfinite(out["loss"])) and all(v[0] == torch.float32 and v[1] for v in grads.values())
        and rel < 2e-2,
    }


def _experience(num_classes: int, index: int = 0):
    from speed import Experience

    mapping = torch.arange(num_classes) // (num_classes // 10)
    return Experience(index, (mapping == index).nonzero().squeeze(1).tolist(), mapping)


def check_syncs(report: dict, setup: dict, steps: int = 10) -> None:
    from alta import CrossModalLearner, MemoryBuffer, build_optimizer, load_backbone, train_step

    device = setup["device"]
    cuda = device == "cuda"
    backbone = load_backbone(setup["rn"], device=device, seed=0)
    names = class_names(100)
    experience = _experience(100)
    images = _images(backbone, 32)
    labels = torch.arange(32) % 10
    labels = labels.pin_memory() if cuda else labels
    features = backbone.encode_images(images)  # (32, D) on the GPU, as a cache on the device gives them
    result = {}
    for mode, inputs in (("fixed", features), ("none", images)):
        learner = CrossModalLearner(backbone, class_names=names, method="alta")
        learner.begin_experience(experience)
        optimizer, _ = build_optimizer(learner)
        buffer = MemoryBuffer(200, device=device, seed=0)
        for _ in range(2):  # warm-up: the first step reads the learning classes' EOT positions once
            train_step(learner, inputs, labels, optimizer=optimizer, buffer=buffer)
        if cuda:
            torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(steps):
                    train_step(learner, inputs, labels, optimizer=optimizer, buffer=buffer)
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode("default")
        if cuda:
            torch.cuda.synchronize()
        syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
        where = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
        result[mode] = {"steps": steps, "sync_warnings": len(syncs), "per_step": len(syncs) / steps,
                        "where": dict(where.most_common(10)),
                        "messages": sorted({str(w.message)[:160] for w in syncs})[:5]}
    result["ok"] = all(r["sync_warnings"] == 0 for r in result.values() if isinstance(r, dict))
    report["syncs"] = result


def check_equivalence(report: dict, setup: dict) -> None:
    from alta import list_methods, load_backbone

    spec = importlib.util.spec_from_file_location("test_reference_equivalence",
                                                  REPO / "tests" / "test_reference_equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.TOL = 1e-4  # fp32 on CUDA: other kernels, other rounding
    backbone = load_backbone("tiny-vit", device=setup["device"], precision="fp32", seed=0)
    results = {}
    for method in list_methods():
        try:
            module.test_library_matches_the_reference_loop(backbone, method)
            results[method] = "ok"
        except Exception as exc:  # noqa: BLE001 - report every method
            results[method] = f"FAILED: {type(exc).__name__}: {str(exc)[:400]}"

    # fp16 (the default on CUDA): the difference between the two loops' logits, for information
    fp16 = load_backbone(setup["vit"], device=setup["device"], seed=0)  # the default precision
    names = class_names(100)
    from alta import CrossModalLearner

    lib = CrossModalLearner(fp16, class_names=names, method="alta")
    ref = module.reference_loop.ReferenceLoop(fp16, class_names=names, method="alta")
    images = _images(fp16, 16, seed=1)
    with torch.no_grad():
        a, b = lib(images), ref(images)
    report["equivalence"] = {
        "fp32_tolerance": module.TOL,
        "methods": results,
        "default_precision_alta_vs_reference_logits_max_rel_diff": float((a - b).abs().max() / b.abs().max()),
        "ok": all(v == "ok" for v in results.values()),
    }


def check_distributed(report: dict, setup: dict, out: Path) -> None:
    """torchrun + NCCL: 2 processes against 1 (logits, buffer, cached features), then the step and
    feature-extraction throughput of ``benchmarks/distributed.py`` on this device.

    With 2+ GPUs the 2 ranks use NCCL, one GPU each. With one GPU (NCCL refuses two ranks on the
    same GPU) the equivalence runs 2 gloo ranks sharing it, NCCL is initialised by a 1-rank
    torchrun, and the throughput is measured for 1 process only (the baseline of the projection).
    """
    script = str(HERE / "distributed.py")
    cuda = setup["device"] == "cuda"
    gpus = torch.cuda.device_count() if cuda else 0
    backend = "nccl" if gpus >= 2 else "gloo"
    result: dict = {"gpus": gpus}
    base = [sys.executable, script, "--device", setup["device"], "--threads", "1"]
    runs = {
        "equivalence": base + ["--check", "--procs", "2", "--backend", backend, "--backbone", "tiny-vit",
                               "--classes", "100"],
        "nccl_one_rank": (base + ["--check", "--procs", "1", "--backend", "nccl", "--backbone", "tiny-vit",
                                  "--classes", "100"]) if cuda else None,
        "throughput": base + ["--procs", *(["1", "2"] if gpus >= 2 or not cuda else ["1"]),
                              "--backbone", setup["vit"], "--classes", "100", "200", "1000",
                              "--steps", str(setup["steps"]), "--warmup", str(setup["warmup"]), "--out", str(out)]
                      + (["--backend", "nccl"] if gpus >= 2 else []),
    }
    for name, command in runs.items():
        if command is None:
            continue
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        (out / f"distributed-{name}.log").write_text(done.stdout[-20000:] + "\n" + done.stderr[-20000:])
        result[name] = {"exit": done.returncode, "tail": done.stdout[-1500:]}
    result["ok"] = all(v["exit"] == 0 for k, v in result.items() if isinstance(v, dict))
    report["distributed"] = result


def run_speed(report: dict, setup: dict, out: Path, deadline: float) -> None:
    runs = {}
    for name, tag in ((setup["rn"], "rn"), (setup["vit"], "vit")):
        left = deadline - time.monotonic()
        if left < 60:
            runs[name] = "skipped: out of time"
            continue
        path = out / f"speed-{setup['device']}-{tag}.json"
        command = [sys.executable, str(HERE / "speed.py"), "--backbone", name, "--num-classes", "100",
                   "--device", setup["device"], "--cache", "none,fixed", "--steps", str(setup["steps"]),
                   "--warmup", str(setup["warmup"]),
                   "--eval-repeats", "5", "--json", str(path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=min(left, 240), check=False)
            (out / f"speed-{setup['device']}-{tag}.log").write_text(done.stdout[-20000:] + "\n" + done.stderr[-20000:])
            if done.returncode != 0 or not path.is_file():
                runs[name] = f"FAILED (exit {done.returncode}): {done.stderr[-1500:]}"
                continue
            data = json.loads(path.read_text())["results"][0]
            runs[name] = {
                "images_per_s": data["images_per_s"],
                "step_speedup": data["step_speedup"],
                "projection_worst_case_h": {"reference": data["projection_worst_case"]["reference_s"] / 3600,
                                            **{f"alta[{k}]": v / 3600 for k, v in
                                               data["projection_worst_case"]["alta_s"].items()}},
                "projection_speedup": data["projection_worst_case"]["speedup"],
                "peak_memory_mib": data["peak_memory_mib"],
            }
        except subprocess.TimeoutExpired:
            runs[name] = "FAILED: timed out"
    report["speed"] = runs
    report["speed_ok"] = all(isinstance(v, dict) for v in runs.values())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    dry_run = "--cpu-dry-run" in argv
    setup = SETUPS["cpu-dry-run" if dry_run else "cuda"]
    out = _out_dir()
    start = time.monotonic()
    report: dict = {"machine": machine(), "cuda": torch.cuda.is_available(), "setup": setup}
    if not dry_run and not torch.cuda.is_available():
        report["note"] = "CUDA is not available on this machine; nothing was checked"
        (out / "gpu-check.json").write_text(json.dumps(report, indent=2))
        print(f"no CUDA here; wrote {out / 'gpu-check.json'}")
        return 0
    deadline = start + BUDGET_S
    failed = False
    checks = (("precision", check_precision), ("syncs", check_syncs), ("equivalence", check_equivalence),
              ("distributed", lambda report, setup: check_distributed(report, setup, out)))
    for name, check in checks:
        t0 = time.monotonic()
        try:
            check(report, setup)
            ok = report[name].get("ok", False)
        except Exception:  # noqa: BLE001 - keep going, report the failure
            report[name] = {"ok": False, "error": traceback.format_exc()[-3000:]}
            ok = False
        report[name]["seconds"] = round(time.monotonic() - t0, 1)
        failed |= not ok
        print(f"{name}: {'ok' if ok else 'FAILED'} ({report[name]['seconds']} s)", flush=True)
        (out / "gpu-check.json").write_text(json.dumps(report, indent=2, default=str))
    run_speed(report, setup, out, deadline)
    failed |= not report["speed_ok"]
    report["total_seconds"] = round(time.monotonic() - start, 1)
    (out / "gpu-check.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: report[k] for k in ("precision", "syncs", "equivalence", "distributed", "speed")}, indent=1,
                     default=str)[:6000])
    print(f"wrote {out / 'gpu-check.json'} in {report['total_seconds']} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
