"""alta's learner and loop against a faithful re-implementation of the reference code's loop.

``benchmarks/reference_loop.py`` computes every step the way github.com/vijaylee/ALTA does (all
text re-encoded at 77 positions at every forward, a second text forward for the replay batch,
the image encoder on every batch, evaluation re-encoding everything) and runs ``main.py``'s loop
(evaluation inside the epoch loop, snapshot at the start of the next experience from the last
forward, raw class names in w1, a never-stepped scheduler). Two comparisons, fp32 on CPU, the
tiny backbone, for every method:

- **Step by step, from a common state** (lr 0.002, the paper's): before each step the reference
  loop receives the library's trainable parameters, SGD momentum and buffer; each step's
  logits, losses, parameter updates and buffer contents must agree within 1e-5 relative to
  their scale, and so must the accuracies at the reference's evaluation point. A common state
  is needed at this learning rate: the two loops round differently (77 vs L' text positions,
  shared prefix), ~1e-7 relative, and with this random tiny backbone training amplifies any
  difference (a 1e-6 perturbation of the initial parameters moves the logits by ~1e-2 within
  six steps at lr 0.002).
- **Free-running, under the ``reference`` protocol** (:mod:`alta.run.protocols`): alta's
  :func:`~alta.run_stream` and ``ReferenceLoop.run`` each train three experiences of two epochs
  from the same initial state and the same batches, evaluating every epoch. The accuracy
  matrices and every evaluation must be equal, and the logits at every evaluation and the
  losses of every step within 1e-5. At the protocol's learning rate (1e-5) the rounding
  differences stay ~1e-6; flipping any one of the protocol's quirks moves the logits by ~1e-2,
  which the last test checks, so the comparison can tell each of them apart.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

import alta
from alta import (
    Callback,
    CrossModalLearner,
    FeatureCache,
    LoopConfig,
    MemoryBuffer,
    build_optimizer,
    epoch_batches,
    evaluate,
    get_method,
    list_methods,
    protocols,
    run_stream,
)

REPO = Path(__file__).resolve().parents[1]
NAMES = ["cat", "dog", "golden retriever", "truck", "maple_tree", "sweet_pepper"]  # raw, as the reference spells them
TOL = 1e-5
LR = 0.002  # the paper's learning rate


def _load_reference():
    spec = importlib.util.spec_from_file_location("reference_loop", REPO / "benchmarks" / "reference_loop.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("reference_loop", module)
    spec.loader.exec_module(module)
    return module


reference_loop = _load_reference()


class KeyedTensorDataset(TensorDataset):
    """A TensorDataset with the ``cache_key()`` FeatureCache needs."""

    def __init__(self, key: str, *tensors: torch.Tensor) -> None:
        super().__init__(*tensors)
        self._key = key

    def cache_key(self) -> str:
        return self._key


class Experience:
    def __init__(self, index, classes, mapping, train, test):
        self.index, self.classes, self.class_to_experience = index, classes, mapping
        self.train, self.test = train, test


def make_experiences(num_experiences=3, per_experience=2, per_class=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    mapping = torch.arange(num_experiences * per_experience) // per_experience
    out = []
    for t in range(num_experiences):
        classes = list(range(t * per_experience, (t + 1) * per_experience))
        labels = torch.tensor(classes).repeat_interleave(per_class)
        train = torch.randn(labels.shape[0], 3, 32, 32, generator=g)
        test = torch.randn(labels.shape[0], 3, 32, 32, generator=g)
        out.append(Experience(t, classes, mapping, TensorDataset(train, labels),
                              KeyedTensorDataset(f"equivalence-test-{seed}-{t}", test, labels)))
    return out


def trainable(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.trainable_parameters()]


def close(actual: torch.Tensor, expected: torch.Tensor, what: str, *, resolution: float = 0.0) -> None:
    """Within 1e-5 relative to the scale of ``expected`` (plus ``resolution``, the rounding of
    the numbers a difference was taken from)."""
    scale = max(float(expected.abs().max()), 1e-3)
    torch.testing.assert_close(actual, expected, rtol=TOL, atol=TOL * scale + resolution,
                               msg=lambda m: f"{what}: {m}")


def sync(ref, lib, opt_ref, opt_lib, buf_ref, buf_lib) -> None:
    """Give the reference loop the library's trainable state, momentum and buffer."""
    with torch.no_grad():
        for p_ref, p_lib in zip(ref.trainable_parameters(), lib.trainable_parameters()):
            p_ref.copy_(p_lib)
            if p_lib in opt_lib.state:
                opt_ref.state[p_ref] = {k: v.clone() for k, v in opt_lib.state[p_lib].items()}
    buf_ref.load_state_dict(buf_lib.state_dict())


@pytest.mark.parametrize("method", list_methods())
def test_library_matches_the_reference_loop(tiny_clip, method):
    """Step by step from a common state: logits, losses, updates, buffer, snapshots, accuracies.

    alta runs with the reference's knobs that act within a step or at a boundary (raw names in
    w1, the snapshot of the last forward); the evaluation of each experience happens where the
    reference evaluates, after its last step and before its prompts are snapshotted.
    """
    experiences = make_experiences()
    lib = CrossModalLearner(tiny_clip, class_names=NAMES, method=method, replay_batch_size=4, seed=0,
                            w1_raw_names=True, snapshot_timing="last_forward")
    ref = reference_loop.ReferenceLoop(tiny_clip, class_names=NAMES, method=method, replay_batch_size=4, seed=0)
    for a, b in zip(trainable(lib), trainable(ref), strict=True):
        assert torch.equal(a, b)  # the same initial parameters, independently built
    probe = experiences[0].test.tensors[0][:5]

    if not lib.method.branches:  # zeroshot: nothing to train; logits and accuracies only
        with torch.no_grad():
            close(lib(probe), ref(probe), "zero-shot logits")
        for experience in experiences:
            lib.begin_experience(experience)
            ref.begin_experience(experience)
        assert evaluate(lib, experiences).class_il == tuple(ref.evaluate(experiences)["class_il"])
        return

    opt_lib, _ = build_optimizer(lib, lr=LR, schedule="constant")
    opt_ref = torch.optim.SGD(ref.trainable_parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    buf_lib, buf_ref = MemoryBuffer(10, seed=3), MemoryBuffer(10, seed=3)
    replayed = False
    for experience in experiences:
        lib.begin_experience(experience)
        ref.begin_experience(experience)  # the reference snapshots the earlier classes here
        if lib.method.snapshot:
            assert torch.equal(lib.snapshotted.cpu(), ref.snapshotted.cpu())
        with torch.no_grad():  # snapshots (or their absence) give the same logits
            close(lib(probe), ref(probe), f"logits at the start of experience {experience.index}")
        images, labels = experience.train.tensors
        for step in range(2):
            where = f"experience {experience.index} step {step}"
            x, y = images[step * 6 : step * 6 + 6], labels[step * 6 : step * 6 + 6]
            sync(ref, lib, opt_ref, opt_lib, buf_ref, buf_lib)
            before = trainable(lib)
            with torch.no_grad():
                close(lib(x), ref(x), f"logits, {where}")
            out_lib = alta.train_step(lib, x, y, optimizer=opt_lib, buffer=buf_lib)
            out_ref = ref.training_step(x, y, optimizer=opt_ref, buffer=buf_ref)
            for key in ("loss", "ce", "replay_ce", "replay_mse", "correct"):
                close(out_lib[key].float(), out_ref[key].float(), f"{key}, {where}")
            replayed |= bool(out_lib["replay_mse"] > 0)
            for p0, p_lib, p_ref in zip(before, trainable(lib), trainable(ref), strict=True):
                update = p_ref - p0
                assert float(update.abs().max()) > 0  # the step did move this parameter
                # an update read back as (after - before) carries the float32 rounding of the parameters
                ulp = 2 * torch.finfo(torch.float32).eps * float(p0.abs().max())
                close(p_lib - p0, update, f"parameter update, {where}", resolution=ulp)
            stored_lib, stored_ref = buf_lib.data(), buf_ref.data()  # what each loop put in its buffer
            assert sorted(stored_lib) == sorted(stored_ref)
            for field, value in stored_lib.items():
                close(value.float(), stored_ref[field].float(), f"buffer field {field}, {where}")
        sync(ref, lib, opt_ref, opt_lib, buf_ref, buf_lib)
        seen = experiences[: experience.index + 1]
        expected = ref.evaluate(seen, batch_size=4)  # the reference's evaluation point: before the snapshot
        for cache in (None, FeatureCache()):
            for _ in range(2):  # the second cached evaluation reads the stored features
                result = evaluate(lib, seen, batch_size=5, cache=cache)
                assert result.class_il == pytest.approx(expected["class_il"], abs=1e-9)
                assert result.task_il == pytest.approx(expected["task_il"], abs=1e-9)
        lib.end_experience(experience)

    assert replayed == lib.method.replay  # replay really ran for the methods that replay


def test_the_reference_trains_at_its_warm_up_rate_and_alta_reproduces_it(tiny_clip):
    """The reference builds SGD at 0.002 behind a warm-up scheduler it never steps: 1e-5 throughout."""
    ref = reference_loop.ReferenceLoop(tiny_clip, class_names=NAMES, method="alta")
    optimizer, _ = reference_loop.reference_optimizer(ref.trainable_parameters())
    lib = CrossModalLearner(tiny_clip, class_names=NAMES, method="alta")
    lib_optimizer, _ = build_optimizer(lib, lr=1e-5, schedule="constant")
    assert optimizer.param_groups[0]["lr"] == lib_optimizer.param_groups[0]["lr"] == 1e-5


def test_reference_loop_encodes_the_way_the_reference_does(tiny_clip):
    """The oracle itself: its text features are CLIP's encode_text at 77 positions."""
    clip = tiny_clip.model
    ref = reference_loop.ReferenceLoop(tiny_clip, class_names=NAMES, method="alta")
    tokenize = reference_loop.import_clip().tokenize
    tokens = tokenize([f"a photo of a {n.replace('_', ' ')}." for n in NAMES])  # the learned prompt: readable
    with torch.no_grad():
        expected = clip.encode_text(tokens).float()  # initial context = the words "a photo of a"
        torch.testing.assert_close(ref.text_encoder(ref.prompts()), expected, rtol=0, atol=1e-5)
        assert ref.prompts().shape[1] == clip.context_length == 77
    assert torch.equal(ref.text_input, tokenize([f"a photo of a {n}" for n in NAMES]))  # w1: raw names


# ---------------------------------------------------------------- free-running runs of several experiences
FREE = dict(epochs=2, eval_every=1, batch_size=4, seed=5)  # 3 experiences x 2 epochs x 3 steps
TRAINED = [m for m in list_methods() if get_method(m).branches]  # the reference's nine (zeroshot trains nothing)


def _logits(model, experiences) -> torch.Tensor:
    images = torch.cat([e.test.tensors[0] for e in experiences])
    with torch.no_grad():
        return model(images)


def run_library(backbone, experiences, method, *, learner=None, optimizer=None, loop=None):
    """alta under the reference protocol (knobs overridable), recording what the comparison needs."""
    kwargs = protocols.protocol_kwargs("reference")
    lib = CrossModalLearner(backbone, class_names=NAMES, method=method, seed=0,
                            **{**kwargs["learner"], "replay_batch_size": 4, **(learner or {})})
    opt, scheduler = build_optimizer(lib, **{**kwargs["optimizer"], "epochs": FREE["epochs"], **(optimizer or {})})
    config = LoopConfig(**{**kwargs["loop"], **FREE, **(loop or {})})
    buffer = MemoryBuffer(10, policy=kwargs["buffer"]["policy"], seed=3)
    steps, probes = [], []

    class Record(Callback):
        def on_step_end(self, *, experience, epoch, step, outputs):
            steps.append(outputs)

        def on_epoch_end(self, *, experience, epoch, stats, result):  # the state every evaluation saw
            if (epoch + 1) % config.eval_every == 0 and (epoch + 1 < config.epochs or config.eval_before_snapshot):
                probes.append(_logits(lib, experiences[: experience + 1]))

        def on_experience_end(self, *, experience, result):
            if not config.eval_before_snapshot:  # the final evaluation came after end_experience
                probes.append(_logits(lib, experiences[: experience + 1]))

    result = run_stream(lib, experiences, optimizer=opt, scheduler=scheduler, buffer=buffer, loop=config,
                        callbacks=[Record()])
    return result, steps, probes


def run_reference(backbone, experiences, method):
    ref = reference_loop.ReferenceLoop(backbone, class_names=NAMES, method=method, replay_batch_size=4, seed=0)
    optimizer, _ = reference_loop.reference_optimizer(ref.trainable_parameters())  # never stepped: 1e-5
    buffer = MemoryBuffer(10, seed=3)
    steps, probes, rows = [], [], {}

    def batches(experience, epoch):  # the same shuffled batches as alta's loop (same seed)
        return epoch_batches(experience, backbone=backbone, epoch=epoch,
                             loop=LoopConfig(batch_size=FREE["batch_size"], seed=FREE["seed"]))

    def on_evaluation(record):
        t = record["experience"]
        probes.append(_logits(ref, experiences[: t + 1]))
        if record["epoch"] == FREE["epochs"]:  # the matrix row: every experience, future ones included
            rows[t] = ref.evaluate(experiences, batch_size=4)

    evaluations = ref.run(experiences, optimizer=optimizer, epochs=FREE["epochs"], batches=batches, buffer=buffer,
                          eval_every=FREE["eval_every"], on_step=lambda e, epoch, out: steps.append(out),
                          on_evaluation=on_evaluation)
    return evaluations, steps, probes, rows


def largest_difference(lib_run, ref_run) -> tuple[float, bool]:
    """(max relative logit difference over all evaluations, whether every accuracy is equal)."""
    (result, _, lib_probes), (evaluations, _, ref_probes, _) = lib_run, ref_run
    worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(lib_probes, ref_probes, strict=True))
    same = [(r["class_il"], r["task_il"]) for r in result.evaluations] == [
        (e["class_il"], e["task_il"]) for e in evaluations]
    return worst, same


@pytest.fixture(scope="module")
def free_experiences():
    return make_experiences()


@pytest.fixture(scope="module")
def reference_runs(tiny_clip, free_experiences):
    return {}


def _reference_run(tiny_clip, free_experiences, reference_runs, method):
    if method not in reference_runs:
        reference_runs[method] = run_reference(tiny_clip, free_experiences, method)
    return reference_runs[method]


@pytest.mark.parametrize("method", TRAINED)
def test_reference_protocol_reproduces_the_reference_loop_free_running(tiny_clip, free_experiences, reference_runs,
                                                                       method):
    experiences = free_experiences
    result, lib_steps, lib_probes = run_library(tiny_clip, experiences, method)
    evaluations, ref_steps, ref_probes, rows = _reference_run(tiny_clip, experiences, reference_runs, method)

    assert len(lib_steps) == len(ref_steps) == 3 * FREE["epochs"] * 3
    logit_scale = 2 * tiny_clip.logit_scale  # the size of logits (at most two cosine terms)
    for i, (a, b) in enumerate(zip(lib_steps, ref_steps, strict=True)):
        for key in ("loss", "ce", "replay_ce"):
            close(a[key].float(), b[key].float(), f"{key}, step {i}")
        # the replay MSE averages squared differences of nearly equal logits: its root is in logit
        # units and carries their rounding, so it is compared at the scale of the logits
        close(a["replay_mse"].sqrt(), b["replay_mse"].sqrt(), f"replay RMS, step {i}", resolution=TOL * logit_scale)
        assert int(a["correct"]) == int(b["correct"]), f"correct, step {i}"
    assert len(result.evaluations) == len(evaluations) == 3 * FREE["epochs"]
    for i, (mine, theirs, a, b) in enumerate(zip(result.evaluations, evaluations, lib_probes, ref_probes, strict=True)):
        where = f"evaluation {i} (experience {theirs['experience']}, epoch {theirs['epoch']})"
        assert (mine["experience"], mine["epoch"]) == (theirs["experience"], theirs["epoch"]), where
        assert mine["class_il"] == theirs["class_il"] and mine["task_il"] == theirs["task_il"], where
        close(a, b, f"logits, {where}")
    for t, row in rows.items():  # the accuracy matrices, future experiences included
        assert list(result.class_il[t]) == row["class_il"] and list(result.task_il[t]) == row["task_il"], t


@pytest.mark.parametrize(("knob", "override"), [
    ("eval_before_snapshot", {"loop": {"eval_before_snapshot": False}}),
    ("snapshot_timing", {"learner": {"snapshot_timing": "end"}}),
    ("w1_raw_names", {"learner": {"w1_raw_names": False}}),
    ("lr", {"optimizer": {"lr": 0.002, "schedule": "cosine"}}),
])
def test_each_quirk_of_the_reference_protocol_is_needed(tiny_clip, free_experiences, reference_runs, knob, override):
    """Flipping one knob back to the paper's value breaks the equality (ALTA: every knob acts on it)."""
    reference = _reference_run(tiny_clip, free_experiences, reference_runs, "alta")
    worst, same = largest_difference(run_library(tiny_clip, free_experiences, "alta"), reference)
    assert worst <= TOL and same
    worst, _ = largest_difference(run_library(tiny_clip, free_experiences, "alta", **override), reference)
    assert worst > 100 * TOL, (knob, worst)
