"""Data-parallel ALTA (alta.distributed): 2 processes with gloo give the 1-process run.

The 2-process part forks two workers once per module (gloo on the loopback interface, the
torchrun environment variables set by hand, so ``init_from_env`` is what initialises them); the
single-process reference is computed here, in the test process, from the same seeds.
"""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import alta
from alta import distributed as dist
from alta.errors import ConfigError
from alta.loop import DataParallelStep, epoch_batches
from alta.loop import parallel as loop_parallel
from alta.losses import LossTerm, TermValue
from alta.plugins import import_plugin

WORLD = 2
LINEAR_PROBE = Path(__file__).resolve().parents[1] / "examples" / "linear_probe.py"
STEP_SIZES = [13, 13, 1, 13, 5, 13, 13]  # uneven shards (7/6), an empty shard (1 -> 1/0)


# ============================================================================ in one process
def test_split_and_shard_are_disjoint_and_cover_everything():
    assert dist.split_sizes(10, 4) == [3, 3, 2, 2] and dist.split_sizes(1, 2) == [1, 0]
    for n in (0, 1, 7, 32):
        for world in (1, 2, 3, 5):
            parts = [list(dist.shard_range(n, rank=r, world_size=world)) for r in range(world)]
            assert sum(parts, []) == list(range(n))
            aligned = [list(dist.batch_aligned_range(n, 4, rank=r, world_size=world)) for r in range(world)]
            assert sum(aligned, []) == list(range(n))
            assert all(p[0] % 4 == 0 for p in aligned if p)  # every run starts a batch
    assert dist.shard(list("abcde"), rank=1, world_size=2) == list("de")
    assert torch.equal(dist.shard(torch.arange(5), rank=0, world_size=2), torch.arange(3))
    with pytest.raises(ConfigError, match="rank must lie"):
        dist.shard_range(4, rank=2, world_size=2)


def test_without_torchrun_everything_is_the_single_process_identity(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert dist.init_from_env() is False and not dist.is_distributed()
    assert (dist.get_rank(), dist.get_world_size(), dist.is_main_process()) == (0, 1, True)
    x = torch.arange(3.0)
    assert torch.equal(dist.all_gather(x), x) and torch.equal(dist.all_reduce_sum(x), x)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="partial torchrun environment"):
        dist.init_from_env()


@pytest.mark.parametrize("mode", ["none", "fixed"])
def test_epoch_batch_shards_concatenate_to_the_single_process_batches(tiny_clip, mode):
    stream = alta.ScenarioStream.from_name("digits", resolution=32)
    experience = stream[1]
    kwargs = dict(backbone=tiny_clip, epoch=1, loop=alta.LoopConfig(batch_size=50, seed=4, train_cache=mode),
                  cache=alta.FeatureCache())
    steps = 3 if mode == "none" else None  # loading images is the slow part: the first steps show the order
    whole = list(itertools.islice(epoch_batches(experience, **kwargs), steps))
    shards = [list(itertools.islice(epoch_batches(experience, rank=r, world_size=3, **kwargs), steps))
              for r in range(3)]
    assert all(len(s) == len(whole) for s in shards)
    for step, (inputs, labels) in enumerate(whole):
        assert torch.equal(torch.cat([s[step][0] for s in shards]), inputs)  # images: per-sample seeded augmentation
        assert torch.equal(torch.cat([s[step][1] for s in shards]), labels)


def test_shard_terms_weighed_by_their_counts_add_up_to_the_global_loss(tiny_clip):
    """What DataParallelStep does with a StepLoss: each shard's term, weighed by its share of the
    term's items (``counts``), sums over the shards to the global batch's loss, and so do the
    gradients; the loss itself knows nothing of ranks."""
    from helpers import synthetic_experiences

    experience = synthetic_experiences(num_experiences=2)[0]
    for head in ("all", "seen"):
        learner = alta.CrossModalLearner(tiny_clip, class_names=["a", "b", "c", "d"], head=head, seed=1)
        learner.begin_experience(experience)
        g = torch.Generator().manual_seed(0)
        f1, labels = torch.randn(9, tiny_clip.embed_dim, generator=g), torch.randint(0, 2, (9,), generator=g)
        stored = torch.randn(6, 4, generator=g)
        if head == "seen":
            stored[:3, 2:] = float("-inf")
        memory = {"image_features": torch.randn(6, tiny_clip.embed_dim, generator=g),
                  "labels": torch.randint(0, 2, (6,), generator=g), "logits": stored}
        full = learner.loss(f1, labels, memory=memory)
        grads_full = torch.autograd.grad(full.loss, learner.trainable_parameters())
        shards = [(slice(0, 5), slice(0, 3)), (slice(5, 9), slice(3, 6))]
        parts = [learner.loss(f1[b], labels[b], memory={k: v[m] for k, v in memory.items()}) for b, m in shards]
        totals = {name: sum(float(p.counts[name]) for p in parts) for name in full.terms}
        assert totals == {name: float(full.counts[name]) for name in full.terms}
        total, grads = 0.0, None
        for part in parts:
            objective = sum(part.weights[n] * part.terms[n] * float(part.counts[n]) / totals[n] for n in part.terms)
            g_part = torch.autograd.grad(objective, learner.trainable_parameters())
            grads = g_part if grads is None else [x + y for x, y in zip(grads, g_part)]
            total = total + objective.detach()
        assert torch.allclose(total, full.loss.detach(), atol=1e-5, rtol=1e-6)
        for a, b in zip(grads, grads_full):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max()


# ============================================================================ 2 processes
def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    """Equal up to float32 summation order: within ``rel`` of the largest magnitude (logits of
    the tiny model reach ~50, where one float32 ulp is 3.8e-6)."""
    finite = torch.isfinite(b)
    if not torch.equal(torch.isfinite(a), finite) or not torch.equal(a[~finite], b[~finite]):
        return False  # the same -inf (classes outside a "seen" head)
    a, b = a[finite], b[finite]
    return bool((a - b).abs().max() <= rel * b.abs().max().clamp_min(1.0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stream():
    return alta.ScenarioStream.from_name("digits", resolution=32)


def _step_setup(backbone, *, method, head, seed=0):
    """A learner, optimizer and buffer from seeds, begun on the first experience, and the
    features the steps train on (the same in every process)."""
    stream = _stream()
    learner = alta.CrossModalLearner(backbone, class_names=stream.class_names, method=method, head=head, seed=seed)
    learner.begin_experience(stream[0])
    optimizer, _ = alta.build_optimizer(learner, lr=0.02, schedule="constant")
    buffer = alta.MemoryBuffer(20, seed=3)
    g = torch.Generator().manual_seed(11)
    features = torch.randn(sum(STEP_SIZES), backbone.embed_dim, generator=g)
    labels = torch.randint(0, 2, (sum(STEP_SIZES),), generator=g)
    probe = torch.randn(16, backbone.embed_dim, generator=g)
    return learner, optimizer, buffer, features, labels, probe


def _run_steps(backbone, *, method, head, shard_text=None, parallel: bool):
    learner, optimizer, buffer, features, labels, probe = _step_setup(backbone, method=method, head=head)
    stats, start = [], 0
    for size in STEP_SIZES:
        x, y = features[start : start + size], labels[start : start + size]
        start += size
        if parallel:
            part = dist.shard_range(size)
            out = alta.train_step(learner, x[part.start : part.stop], y[part.start : part.stop], optimizer=optimizer,
                                  buffer=buffer, parallel=DataParallelStep(shard_sizes=dist.split_sizes(size),
                                                                           shard_text=shard_text))
        else:
            out = alta.train_step(learner, x, y, optimizer=optimizer, buffer=buffer)
        stats.append({k: float(v) for k, v in out.items()})
    with torch.no_grad():
        logits = learner.logits_from_features(probe)
    return {"logits": logits, "buffer": buffer.data(), "stats": stats,
            "params": [p.detach().clone() for p in learner.trainable_parameters()]}


class _Recorder(alta.Callback):
    def __init__(self) -> None:
        self.events = []

    def on_epoch_end(self, *, experience, epoch, stats, result):
        self.events.append((experience, epoch))


def _run_stream(backbone):
    loop_parallel.SHARD_TEXT_MIN_CLASSES = 4  # (this worker only) the sharded text, also with snapshotted classes
    stream = _stream()
    experiences = list(stream)[:2]
    learner = alta.CrossModalLearner(backbone, class_names=stream.class_names, seed=0)
    optimizer, scheduler = alta.build_optimizer(learner, lr=0.05, schedule="constant")
    buffer = alta.MemoryBuffer(50, seed=5)
    loop = alta.LoopConfig(epochs=2, eval_every=1, train_cache="fixed", seed=7, distributed=True)
    everywhere, main_only = _Recorder(), _Recorder()
    result = alta.run_stream(learner, experiences, optimizer=optimizer, scheduler=scheduler, buffer=buffer,
                             loop=loop, callbacks=[everywhere, alta.loop.callbacks.MainProcessOnly(main_only)])
    return {"class_il": result.class_il, "task_il": result.task_il, "history": result.history,
            "evaluations": result.evaluations, "buffer": buffer.data(), "events": everywhere.events,
            "main_only_events": main_only.events}


class _SquaredLogits(LossTerm):
    """An extra loss term: the mean squared logit over the logit scale, over B * C items."""

    name = "squared_logits"

    def forward(self, inputs):
        return TermValue((inputs.logits / inputs.learner.backbone.logit_scale).pow(2).mean(), inputs.logits.numel())


def _probe_stream(backbone, *, distributed: bool):
    """The example's learner (examples/linear_probe.py, not ALTA) with an extra loss term, through
    run_stream: on each rank of a process group, or in one process."""
    probe = import_plugin(LINEAR_PROBE)[0].LinearProbe
    stream = _stream()
    learner = probe(backbone, class_names=stream.class_names, seed=0, loss_terms=[_SquaredLogits(weight=0.5)])
    optimizer = torch.optim.SGD(learner.trainable_parameters(), lr=0.05)
    loop = alta.LoopConfig(epochs=2, eval_every=1, train_cache="fixed", seed=7, distributed=distributed)
    result = alta.run_stream(learner, list(stream)[:2], optimizer=optimizer, loop=loop)
    return {"class_il": result.class_il, "task_il": result.task_il, "history": result.history,
            "params": [p.detach().clone() for p in learner.trainable_parameters()]}


def _steps_on_images(learner, optimizer, *, parallel: bool, buffer=None) -> None:
    """Three steps on images (the frozen image encoder in the step), a global batch of 1 among
    them: with ``parallel``, rank 1 then has an empty shard of images."""
    g = torch.Generator().manual_seed(5)
    for size in (5, 1, 4):
        images = torch.randn(size, 3, 32, 32, generator=g)
        labels = torch.randint(0, 2, (size,), generator=g)
        if parallel:
            part = dist.shard_range(size)
            alta.train_step(learner, images[part.start : part.stop], labels[part.start : part.stop],
                            optimizer=optimizer, buffer=buffer, parallel=DataParallelStep())  # shard_sizes gathered
        else:
            alta.train_step(learner, images, labels, optimizer=optimizer, buffer=buffer)


def _image_steps(backbone, *, parallel: bool) -> torch.Tensor:
    """ALTA stepped on images with an empty shard among them."""
    learner, optimizer, buffer, _, _, probe = _step_setup(backbone, method="alta", head="all")
    _steps_on_images(learner, optimizer, parallel=parallel, buffer=buffer)
    with torch.no_grad():
        return learner.logits_from_features(probe)


def _probe_image_steps(backbone, *, parallel: bool) -> torch.Tensor:
    """The example's learner (not ALTA) stepped on images with an empty shard among them (the
    loop passes it as no features, of the backbone's D)."""
    probe = import_plugin(LINEAR_PROBE)[0].LinearProbe
    stream = _stream()
    learner = probe(backbone, class_names=stream.class_names, seed=0)
    learner.begin_experience(list(stream)[0])
    optimizer = torch.optim.SGD(learner.trainable_parameters(), lr=0.05)
    _steps_on_images(learner, optimizer, parallel=parallel)
    return learner.head.weight.detach().clone()


def _different_seeds(backbone) -> str:
    """A run whose ranks built their adapters from different seeds is refused on every rank."""
    stream = _stream()
    learner = alta.CrossModalLearner(backbone, class_names=stream.class_names, seed=dist.get_rank())
    optimizer, _ = alta.build_optimizer(learner)
    try:
        alta.run_stream(learner, list(stream)[:1], optimizer=optimizer, loop=alta.LoopConfig(epochs=1, distributed=True))
    except alta.StateError as error:
        return str(error)
    return "not refused"


def _cached_features(backbone):
    stream = _stream()
    dataset = stream[0].train.with_transform(stream[0].test.transform)
    fixed = alta.FeatureCache(distributed=True).features(backbone, dataset, batch_size=64)
    views = alta.FeatureCache(distributed=True).features(backbone, stream[0].train, views=2, seed=3, batch_size=64)
    return {"fixed": fixed, "views": views}


def _worker(rank: int, port: int, out: str, backbone) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    assert dist.init_from_env() and dist.is_distributed()
    try:
        result = {
            "features": _cached_features(backbone),
            "alta_sharded_text": _run_steps(backbone, method="alta", head="all", shard_text=True, parallel=True),
            "seen_replicated_text": _run_steps(backbone, method="cprompt_mlp", head="seen", shard_text=False,
                                               parallel=True),
            "stream": _run_stream(backbone),
            "different_seeds": _different_seeds(backbone),
            "images": _image_steps(backbone, parallel=True),
            "probe": _probe_stream(backbone, distributed=True),
            "probe_images": _probe_image_steps(backbone, parallel=True),
        }
        torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tiny_clip, tmp_path_factory):
    """What each of 2 gloo processes computed (a list indexed by rank)."""
    out = tmp_path_factory.mktemp("distributed")
    mp.start_processes(_worker, args=(_free_port(), str(out), tiny_clip), nprocs=WORLD, start_method="fork")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_cached_features_are_bit_identical_to_one_process(two_processes, tiny_clip):
    stream = _stream()
    dataset = stream[0].train.with_transform(stream[0].test.transform)
    fixed = alta.FeatureCache().features(tiny_clip, dataset, batch_size=64)
    views = alta.FeatureCache().features(tiny_clip, stream[0].train, views=2, seed=3, batch_size=64)
    for rank in range(WORLD):
        got = two_processes[rank]["features"]
        assert torch.equal(got["fixed"].features, fixed.features) and torch.equal(got["fixed"].labels, fixed.labels)
        assert torch.equal(got["views"].features, views.features) and torch.equal(got["views"].labels, views.labels)


@pytest.mark.parametrize("case, method, head", [("alta_sharded_text", "alta", "all"),
                                                ("seen_replicated_text", "cprompt_mlp", "seen")])
def test_steps_from_a_common_state_give_the_single_process_logits_and_buffer(two_processes, tiny_clip, case,
                                                                             method, head):
    reference = _run_steps(tiny_clip, method=method, head=head, parallel=False)
    initial = _step_setup(tiny_clip, method=method, head=head)[0].trainable_parameters()
    assert all((a - b).abs().max() > 1e-3 for a, b in zip(reference["params"], initial))  # the steps did train
    for rank in range(WORLD):
        got = two_processes[rank][case]
        assert _close(got["logits"], reference["logits"])
        for a, b in zip(got["params"], reference["params"]):
            assert _close(a, b)
        for step, (mine, theirs) in enumerate(zip(got["stats"], reference["stats"])):
            assert mine["correct"] == theirs["correct"], step
            for key in ("loss", "ce", "replay_ce", "replay_mse"):
                # a loss is a difference of logits of magnitude ~50: 1e-4 is a few float32 ulps of those
                assert abs(mine[key] - theirs[key]) <= 1e-4 * max(1.0, abs(theirs[key])), (step, key)
        buffer = got["buffer"]
        assert sorted(buffer) == sorted(reference["buffer"])
        for name in ("labels", "experience_ids", "image_features"):  # the same items, exactly
            assert torch.equal(buffer[name], reference["buffer"][name]), name
        assert _close(buffer["logits"], reference["buffer"]["logits"])
    for name, value in two_processes[0][case]["buffer"].items():  # one global buffer: the same on every rank
        assert torch.equal(value, two_processes[1][case]["buffer"][name])
    assert all(torch.equal(a, b) for a, b in zip(two_processes[0][case]["params"], two_processes[1][case]["params"]))


def test_run_stream_on_two_processes_gives_the_single_process_accuracy_matrices(two_processes, tiny_clip):
    stream = _stream()
    learner = alta.CrossModalLearner(tiny_clip, class_names=stream.class_names, seed=0)
    optimizer, scheduler = alta.build_optimizer(learner, lr=0.05, schedule="constant")
    buffer = alta.MemoryBuffer(50, seed=5)
    loop = alta.LoopConfig(epochs=2, eval_every=1, train_cache="fixed", seed=7)
    reference = alta.run_stream(learner, list(stream)[:2], optimizer=optimizer, scheduler=scheduler, buffer=buffer,
                                loop=loop)
    for rank in range(WORLD):
        got = two_processes[rank]["stream"]
        for key in ("class_il", "task_il"):
            measured = ~torch.isnan(torch.as_tensor(getattr(reference, key)))
            assert torch.equal(~torch.isnan(torch.as_tensor(got[key])), measured)
            diff = torch.as_tensor(got[key] - getattr(reference, key))[measured].abs().max()
            assert diff <= 0.1, (key, got[key], getattr(reference, key))
        assert len(got["evaluations"]) == len(reference.evaluations) == 4
        for mine, theirs in zip(sum(got["history"], []), sum(reference.history, [])):
            assert (mine["steps"], mine["samples"]) == (theirs["steps"], theirs["samples"])
            assert abs(mine["loss"] - theirs["loss"]) < 1e-4
        assert torch.equal(got["buffer"]["labels"], buffer.data()["labels"])
        assert got["events"] == [(0, 0), (0, 1), (1, 0), (1, 1)]  # every rank runs the callbacks...
        assert got["main_only_events"] == (got["events"] if rank == 0 else [])  # ...MainProcessOnly only rank 0


def test_a_learner_that_is_not_alta_with_an_extra_term_gives_the_single_process_run(two_processes, tiny_clip):
    """examples/linear_probe.py's learner, its loss the cross-entropy plus an extra LossTerm, on 2
    processes: the shards' terms weighed by their counts give the 1-process run."""
    reference = _probe_stream(tiny_clip, distributed=False)
    for rank in range(WORLD):
        got = two_processes[rank]["probe"]
        for key in ("class_il", "task_il"):
            assert abs(got[key] - reference[key]).max() <= 0.1, (key, got[key], reference[key])
        for mine, theirs in zip(sum(got["history"], []), sum(reference["history"], [])):
            for key in ("loss", "ce", "squared_logits"):
                assert abs(mine[key] - theirs[key]) <= 1e-4 * max(1.0, abs(theirs[key])), (key, mine, theirs)
        for a, b in zip(got["params"], reference["params"]):
            assert _close(a, b)
    initial = import_plugin(LINEAR_PROBE)[0].LinearProbe(tiny_clip, class_names=_stream().class_names, seed=0)
    assert (reference["params"][0] - initial.head.weight).abs().max() > 1e-3  # it did train


def test_image_batches_with_an_empty_shard_give_the_single_process_step(two_processes, tiny_clip):
    reference = _image_steps(tiny_clip, parallel=False)
    for rank in range(WORLD):
        assert _close(two_processes[rank]["images"], reference)


def test_a_learner_that_is_not_alta_steps_on_an_empty_shard_of_images(two_processes, tiny_clip):
    reference = _probe_image_steps(tiny_clip, parallel=False)
    initial = import_plugin(LINEAR_PROBE)[0].LinearProbe(tiny_clip, class_names=_stream().class_names, seed=0)
    assert (reference - initial.head.weight).abs().max() > 1e-4  # it did train
    for rank in range(WORLD):
        assert _close(two_processes[rank]["probe_images"], reference)


def test_ranks_built_from_different_seeds_are_refused(two_processes):
    for rank in range(WORLD):
        assert "differs between the ranks" in two_processes[rank]["different_seeds"]


def test_main_process_only_dispatches_everything_in_one_process():
    recorder = _Recorder()
    alta.loop.callbacks.MainProcessOnly(recorder).on_epoch_end(experience=0, epoch=3, stats={}, result=None)
    assert recorder.events == [(0, 3)]
