"""Throughput of data-parallel ALTA against the number of processes (``alta.distributed``).

    python benchmarks/distributed.py                       # 1 and 2 processes, gloo on the CPU
    python benchmarks/distributed.py --procs 1 2 4 --device cuda --backbone random-ViT-B/16

For every process count N the script launches ``torchrun --standalone --nproc_per_node N`` on
itself (so the measured path is the real one: ``init_from_env``, gloo on the CPU, NCCL on GPUs)
and measures, on rank 0:

1. **feature extraction**: images/s of ``encode_dataset(..., distributed=True)`` (each rank
   encodes its batch-aligned share, the features are all-gathered), random images;
2. **the training step** on cached image features (``train_cache="fixed"``: the text encoder is
   the per-step cost) at C = 100 / 200 / 1,000 learning classes (head ``all``, first
   experience: every class learning), global batch 32, a full buffer of 200: ms per step of
   ``alta.train_step`` (N = 1) and of ``alta.loop.parallel.DataParallelStep`` with the text encoding
   replicated on every rank or sharded by class (N > 1).

Results: ``benchmarks/results/distributed-DEVICE.json`` and ``.md``, with a cost projection for
GPUs (labelled as such: computed from a cost model, not measured) unless the run itself was on a
GPU. Timings are medians over the timed steps; on a shared CPU they move by 10-30 % run to run,
so compare the ratios, measured in the same run, rather than absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from _timing import class_names, machine  # noqa: E402


@dataclass(frozen=True)
class _Experience:
    """One experience holding every class (all of them learning)."""

    index: int
    classes: list
    class_to_experience: torch.Tensor


# ============================================================================ worker (one rank)
def _worker(args) -> None:
    import alta
    from alta import distributed as dist
    from alta.loop.cache import encode_dataset

    torch.set_num_threads(args.threads)
    dist.init_from_env(backend=args.backend)
    device = dist.local_device() if args.device == "cuda" else torch.device("cpu")
    rank, world = dist.get_rank(), dist.get_world_size()
    backbone = alta.load_backbone(args.backbone, device=device, seed=0)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    out: dict = {"world_size": world, "backbone": args.backbone, "device": str(device),
                 "backend": torch.distributed.get_backend() if dist.is_distributed() else "none",
                 "threads_per_process": args.threads}

    # 1. feature extraction
    g = torch.Generator().manual_seed(0)
    r = backbone.input_resolution
    images = torch.randn(args.images, 3, r, r, generator=g)
    dataset = torch.utils.data.TensorDataset(images, torch.zeros(args.images, dtype=torch.long))
    encode_dataset(backbone, torch.utils.data.Subset(dataset, range(64)), batch_size=64, distributed=True)  # warm-up
    times = []
    for _ in range(args.repeats):
        dist.barrier()
        sync()
        start = time.perf_counter()
        encoded = encode_dataset(backbone, dataset, batch_size=args.encode_batch, distributed=True)
        sync()
        times.append(time.perf_counter() - start)
    assert encoded.features.shape[0] == args.images
    best = sorted(times)[len(times) // 2]
    out["extraction"] = {"images": args.images, "batch_size": args.encode_batch, "median_s": best,
                         "images_per_s": args.images / best}

    # 2. training steps on cached features
    steps = []
    for num_classes in args.classes:
        learner = alta.CrossModalLearner(backbone, class_names=class_names(num_classes), seed=0)
        learner.begin_experience(_Experience(0, list(range(num_classes)), torch.zeros(num_classes, dtype=torch.long)))
        optimizer, _ = alta.build_optimizer(learner, schedule="constant")
        modes = ["single"] if world == 1 else ["replicated", "sharded"]
        for mode in modes:
            buffer = alta.MemoryBuffer(200, seed=0, device=device)
            gen = torch.Generator().manual_seed(1)
            part = dist.shard_range(args.batch_size)
            sizes = dist.split_sizes(args.batch_size)

            def step():
                x = torch.randn(args.batch_size, backbone.embed_dim, generator=gen).to(device)
                y = torch.randint(0, num_classes, (args.batch_size,), generator=gen).to(device)
                if mode == "single":
                    return alta.train_step(learner, x, y, optimizer=optimizer, buffer=buffer)
                return alta.train_step(learner, x[part.start : part.stop], y[part.start : part.stop],
                                       optimizer=optimizer, buffer=buffer,
                                       parallel=alta.DataParallelStep(shard_sizes=sizes, shard_text=mode == "sharded"))

            for _ in range(max(args.warmup, -(-200 // args.batch_size))):  # fills the buffer: replay in every timed step
                step()
            dist.barrier()
            sync()
            per_step = []
            for _ in range(args.steps):
                start = time.perf_counter()
                step()
                sync()
                per_step.append(time.perf_counter() - start)
            per_step.sort()
            steps.append({"classes": num_classes, "mode": mode, "median_ms": 1e3 * per_step[len(per_step) // 2],
                          "min_ms": 1e3 * per_step[0], "steps": args.steps})
    out["steps"] = steps
    if dist.is_main_process():
        Path(args.json).write_text(json.dumps(out, indent=2))
    if dist.is_distributed():
        torch.distributed.destroy_process_group()


# ============================================================================ equivalence check (one rank)
CHECK_STEP_SIZES = [13, 13, 1, 13, 5]  # uneven shards and an empty one on 2 ranks


def _check_worker(args) -> None:
    """2 processes against 1, on this machine's device: the logits after steps from a common
    state, the buffer, and the cached features (the test suite's check, on CUDA/NCCL)."""
    import alta
    from alta import distributed as dist
    from alta.loop.cache import encode_dataset

    torch.set_num_threads(args.threads)
    dist.init_from_env(backend=args.backend)
    device = dist.local_device() if args.device == "cuda" else torch.device("cpu")
    backbone = alta.load_backbone(args.backbone, device=device, seed=0)
    names = class_names(args.classes[0])
    experience = _Experience(0, list(range(len(names))), torch.zeros(len(names), dtype=torch.long))
    g = torch.Generator().manual_seed(11)
    features = torch.randn(sum(CHECK_STEP_SIZES), backbone.embed_dim, generator=g)
    labels = torch.randint(0, len(names), (sum(CHECK_STEP_SIZES),), generator=g)
    probe = torch.randn(16, backbone.embed_dim, generator=g).to(device)

    def run(parallel: bool):
        learner = alta.CrossModalLearner(backbone, class_names=names, seed=0)
        learner.begin_experience(experience)
        optimizer, _ = alta.build_optimizer(learner, lr=0.02, schedule="constant")
        buffer = alta.MemoryBuffer(20, seed=3, device=device)
        start = 0
        for size in CHECK_STEP_SIZES:
            x, y = features[start : start + size].to(device), labels[start : start + size].to(device)
            start += size
            if parallel:
                part = dist.shard_range(size)
                alta.train_step(learner, x[part.start : part.stop], y[part.start : part.stop], optimizer=optimizer,
                                buffer=buffer, parallel=alta.DataParallelStep(shard_sizes=dist.split_sizes(size),
                                                                              shard_text=True))
            else:
                alta.train_step(learner, x, y, optimizer=optimizer, buffer=buffer)
        with torch.no_grad():
            return learner.logits_from_features(probe).cpu(), {k: v.cpu() for k, v in buffer.data().items()}

    logits, buffer = run(parallel=True)
    r = backbone.input_resolution
    images = torch.utils.data.TensorDataset(torch.randn(300, 3, r, r, generator=g), torch.zeros(300, dtype=torch.long))
    sharded = encode_dataset(backbone, images, batch_size=64, distributed=True).features
    gathered_logits = dist.all_gather(logits.unsqueeze(0).to(device), sizes=[1] * dist.get_world_size()).cpu()
    if dist.is_main_process():
        ref_logits, ref_buffer = run(parallel=False)  # this process alone, the plain step
        whole = encode_dataset(backbone, images, batch_size=64).features
        rel = float((logits - ref_logits).abs().max() / ref_logits.abs().max().clamp_min(1))
        same_items = all(torch.equal(buffer[k], ref_buffer[k]) for k in ("labels", "experience_ids", "image_features"))
        report = {
            "world_size": dist.get_world_size(), "backend": torch.distributed.get_backend(), "device": str(device),
            "backbone": args.backbone, "classes": len(names), "max_relative_logit_difference": rel,
            "ranks_agree": bool((gathered_logits == gathered_logits[:1]).all()),
            "buffer_items_identical": same_items, "features_bit_identical": bool(torch.equal(sharded, whole)),
        }
        report["ok"] = bool(rel < 1e-4 and report["ranks_agree"] and same_items and report["features_bit_identical"])
        Path(args.json).write_text(json.dumps(report, indent=2))
    if dist.is_distributed():
        torch.distributed.destroy_process_group()


# ============================================================================ launcher
def _launch(n: int, args, path: Path) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               str(Path(__file__).resolve()), "--worker", "--json", str(path), "--device", args.device,
               "--backbone", args.backbone, "--images", str(args.images), "--encode-batch", str(args.encode_batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads),
               "--classes", *map(str, args.classes)]
    command += ["--check"] if args.check else []
    command += ["--backend", args.backend] if args.backend else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS=str(args.threads))
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    record = json.loads(path.read_text())
    record["launch_wall_s"] = time.perf_counter() - start
    return record


def _projection() -> dict:
    """A cost model of one step on GPUs (not measured; every constant is stated).

    Per step with cached image features: text encoder forward + backward over the C learning
    prompts (shared prefix: ~6 of the ~10 positions per class after [SOS] + ctx), divided by N
    when sharded by class, plus the collectives: the all-gather of the (C, D) text features and
    its backward (all-to-all / reduce-scatter of the same size), the gradient all-reduce
    (ctx + adapter, ~134k fp32 for RN50, ~66k for ViT-B/16, D = 512) and the all-gather of the
    buffer fields (B x (D + C + 2) fp32).
    """
    text_params = 37.8e6  # ViT-B/16 (and B/32) text transformer: 12 layers, width 512
    positions = 6  # per class, after the shared prefix
    flops_per_class = 6 * text_params * positions  # forward + backward, 2 + 4 flops per parameter per position
    achieved = 200e12  # fp16 dense, ~20 % of an H100/H200's peak for these short sequences (an assumption)
    latency, bandwidth = 15e-6, 150e9  # per NCCL collective on NVLink, and the effective bus bandwidth (assumptions)
    d, batch = 512, 32
    rows = []
    for classes in (100, 200, 1000):
        for n in (1, 2, 4, 8):
            text_ms = 1e3 * flops_per_class * classes / achieved
            if n == 1:
                comm_ms = 0.0
            else:
                gather_bytes = 4 * classes * d
                comm_ms = 1e3 * (3 * latency + 2 * gather_bytes / bandwidth + 4 * 66e3 / bandwidth
                                 + 4 * batch * (d + classes + 2) / bandwidth) + 1e3 * 2 * latency
            rows.append({"classes": classes, "procs": n, "text_replicated_ms": round(text_ms, 3),
                         "text_sharded_ms": round(text_ms / n, 3), "communication_ms": round(comm_ms, 3),
                         "projected_speedup_of_the_text_part": round(text_ms / (text_ms / n + comm_ms), 2)})
    return {"label": "PROJECTION from a cost model, not a measurement", "backbone": "ViT-B/16 text encoder",
            "assumptions": {"text_params": text_params, "positions_per_class": positions,
                            "achieved_flops": achieved, "collective_latency_s": latency,
                            "bus_bandwidth_bytes_per_s": bandwidth},
            "rows": rows}


def _markdown(result: dict) -> str:
    runs = result["runs"]
    lines = [f"# Data-parallel throughput ({result['device']}, backbone `{result['backbone']}`)", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
             f"Machine: {result['machine'].get('cpu', '?')}, {result['machine'].get('cpu_cores', '?')} cores, "
             f"load average at start {result['machine'].get('load_average_at_start', '?')}  ",
             f"Threads per process: {runs[0]['threads_per_process']}; timings are medians (the CPU is shared: "
             f"compare ratios from the same run).", "",
             "## Feature extraction (frozen image encoder, images sharded by batch, all-gathered)", "",
             "| processes | images | images/s | speed-up |", "|---|---|---|---|"]
    base = runs[0]["extraction"]["images_per_s"]
    for run in runs:
        e = run["extraction"]
        lines.append(f"| {run['world_size']} | {e['images']} | {e['images_per_s']:.1f} | "
                     f"{e['images_per_s'] / base:.2f}x |")
    lines += ["", "## Training step on cached features (global batch 32, buffer 200, every class learning)", "",
              "| classes | processes | text encoding | ms / step | speed-up vs 1 process |", "|---|---|---|---|---|"]
    single = {s["classes"]: s["median_ms"] for s in runs[0]["steps"]}
    for run in runs:
        for s in run["steps"]:
            lines.append(f"| {s['classes']} | {run['world_size']} | {s['mode']} | {s['median_ms']:.1f} | "
                         f"{single[s['classes']] / s['median_ms']:.2f}x |")
    proj = result.get("projection")
    if proj:
        lines += ["", f"## {proj['label']}: {proj['backbone']} on GPUs", "",
                  "Assumptions: " + ", ".join(f"{k} = {v:g}" for k, v in proj["assumptions"].items()), "",
                  "| classes | GPUs | text, replicated (ms) | text, sharded (ms) | collectives (ms) | "
                  "speed-up of the text part |", "|---|---|---|---|---|---|"]
        for row in proj["rows"]:
            lines.append(f"| {row['classes']} | {row['procs']} | {row['text_replicated_ms']} | "
                         f"{row['text_sharded_ms']} | {row['communication_ms']} | "
                         f"{row['projected_speedup_of_the_text_part']}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--backbone", default="tiny-vit")
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 200, 1000])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--encode-batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--backend", choices=["nccl", "gloo"], default=None,
                        help="process-group backend (default: NCCL with CUDA, else gloo)")
    parser.add_argument("--check", action="store_true",
                        help="only check 2 processes against 1 (logits, buffer, features) and print the report")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        (_check_worker if args.check else _worker)(args)
        return 0
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            report = _launch(args.procs[-1], args, Path(tmp) / "check.json")
        print(json.dumps(report, indent=2))
        return 0 if report["ok"] else 1
    from alta.io import write_json, write_text

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.procs:
            runs.append(_launch(n, args, Path(tmp) / f"procs{n}.json"))
            print(json.dumps(runs[-1]), flush=True)
    result = {"command": "python benchmarks/distributed.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": args.device,
              "backbone": args.backbone, "machine": machine(), "runs": runs}
    if args.device != "cuda":
        result["projection"] = _projection()
    stem = f"distributed-{args.device}"
    write_json(args.out / f"{stem}.json", result)
    write_text(args.out / f"{stem}.md", _markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
