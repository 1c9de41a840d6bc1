"""Run-loop faults of issue 13: each class of "lost or silent" found by trying to break a run.

1 non-finite loss, 2 corrupted checkpoint contents, 3 output folder gone mid-run, 9 plots lost
after summary.json, 10 temporary files left by a kill, 11 full disk and failed allocations,
14 Ctrl-C while starting and SIGTERM.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import run_cli

import alta.loop.fit as training  # the loop's module, whose names a test replaces
from alta import CrossModalLearner, MemoryBuffer, ScenarioStream, build_optimizer, train_step
from alta.cli.config import apply_overrides, load_config
from alta.errors import CheckpointError, OutputError, ResourceError, TrainingError
from alta.io import append_jsonl, atomic_write, json_line, write_json
from alta.loop.callbacks import Callback
from alta.run import MetricsWriter, run_experiment
from alta.run.checkpoint import payload_digest, read_checkpoint
from alta.run.summary import CONFUSION_PLOT, PLOT_FILES

ROOT = Path(__file__).parents[1]
QUICK = ["--epochs", "2", "--eval-every", "1", "--set", "data.max_train_per_class=16", "--set",
         "data.max_test_per_class=8", "--no-progress", "--no-plots", "--threads", "1", "--device", "cpu"]


def quick_config(**overrides):
    base = {"train.epochs": 2, "eval.every": 1, "data.max_train_per_class": 16, "data.max_test_per_class": 8,
            "device": "cpu"}
    return apply_overrides(load_config("default"), {**base, **overrides})



def strict_json(text: str):
    """json.loads that refuses the bare NaN / Infinity Python's json writes by default."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------ 1: non-finite loss


@pytest.fixture()
def stepping(tiny_clip):
    stream = ScenarioStream.from_name("digits", resolution=tiny_clip.input_resolution)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, seed=0)
    learner.begin_experience(stream[0])
    optimizer, _ = build_optimizer(learner)
    labels = torch.tensor(stream[0].classes[:2] * 2)
    return learner, optimizer, labels


def test_a_nan_batch_through_train_step_is_refused_and_leaves_the_parameters_as_they_were(stepping, tiny_clip):
    learner, optimizer, labels = stepping
    buffer = MemoryBuffer(8, seed=0)
    features = torch.randn(len(labels), tiny_clip.embed_dim)
    train_step(learner, features, labels, optimizer=optimizer, buffer=buffer)  # a good step first
    before = [p.detach().clone() for p in learner.trainable_parameters()]
    stored = len(buffer)
    bad = features.clone()
    bad[1, 3] = float("nan")
    with pytest.raises(TrainingError, match="loss is not finite.*update was refused.*learning rate too high.*NaN or Inf"):
        train_step(learner, bad, labels, optimizer=optimizer, buffer=buffer)
    after = list(learner.trainable_parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(torch.isfinite(p).all() for p in after)
    assert len(buffer) == stored  # the bad batch was not offered to the buffer


def test_an_overflowing_update_in_train_step_is_not_silent(stepping, tiny_clip):
    learner, optimizer, labels = stepping
    for group in optimizer.param_groups:
        group["lr"] = 1e38
    generator = torch.Generator().manual_seed(0)  # unseeded features made the first failure vary (seen once)
    with pytest.raises(TrainingError, match="parameters are not finite after the update"):
        for _ in range(3):
            train_step(learner, torch.randn(len(labels), tiny_clip.embed_dim, generator=generator), labels,
                       optimizer=optimizer)


def test_a_diverging_run_stops_before_its_checkpoint_and_the_last_good_one_resumes(tmp_path, monkeypatch):
    """NaN inputs from experience 2, epoch 2, step 3: the run stops naming them; the checkpoint
    of epoch 1 stays (finite) and a resume without the bad inputs completes."""
    real = training.training_batches  # the loop's batches (epochs, or rounds of an iteration budget)

    def poisoned(experience, *, epoch, **kwargs):
        for step, (inputs, labels) in enumerate(real(experience, epoch=epoch, **kwargs)):
            if (int(experience.index), epoch, step) >= (1, 1, 2):
                inputs = torch.full_like(inputs, float("nan"))
            yield inputs, labels

    monkeypatch.setattr(training, "training_batches", poisoned)
    config = quick_config(**{"data.num_experiences": 2, "train.batch_size": 8})
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingError) as caught:
        run_experiment(config, output_dir=run_dir, plots=False)
    message = str(caught.value)
    assert "step 3 of experience 2 (index 1), epoch 2" in message and "NaN" in message
    assert "learning rate" in message and "inputs" in message
    state = read_checkpoint(run_dir / "checkpoint.pt", config_hash=config.fingerprint(), num_experiences=2)
    assert (state["next_experience"], state["next_epoch"]) == (1, 1)  # after epoch 1 of experience 2
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        assert strict_json(line)["loss"] is not None  # no record of the diverged epoch

    monkeypatch.setattr(training, "training_batches", real)
    summary = run_experiment(config, output_dir=run_dir, resume=True, plots=False)
    assert summary["complete"] is True


def test_alta_run_with_a_huge_learning_rate_exits_with_a_message(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "run", *QUICK, "--num-experiences", "2", "--lr", "1e30", "--output-dir",
                             str(run_dir))
    assert code == 1, err
    assert "training diverged" in err and "experience 1" in err and "learning rate 1e+30" in err
    assert "Accuracy" not in out  # no table of NaN accuracies
    assert not (run_dir / "summary.json").exists()


def test_json_writers_write_non_finite_numbers_as_null(tmp_path):
    record = {"experience": 0, "loss": float("nan"), "class_il": [50.0, float("inf")], "x": -float("inf")}
    assert strict_json(json_line(record)) == {"experience": 0, "loss": None, "class_il": [50.0, None], "x": None}
    append_jsonl(tmp_path / "a.jsonl", record)
    write_json(tmp_path / "b.json", record)
    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    writer.on_run_start(result=training.StreamResult.empty(1))
    writer.on_evaluation(record=record)
    for name in ("a.jsonl", "b.json", "metrics.jsonl"):
        assert strict_json((tmp_path / name).read_text().strip())["loss"] is None


# ------------------------------------------------------------------------ 2: corrupted checkpoints


@pytest.fixture()
def stopped_run(tmp_path):
    """A run stopped after its first experience (checkpoint kept) and its config."""
    config = quick_config(**{"data.num_experiences": 2, "buffer.size": 20})
    run_dir = tmp_path / "run"
    run_experiment(config, output_dir=run_dir, plots=False, stop_after=1)
    return config, run_dir


def _flip_a_byte_inside_the_largest_tensor(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = (int.from_bytes(data[info.header_offset + o: info.header_offset + o + 2], "little")
                                 for o in (26, 28))
    start = info.header_offset + 30 + name_length + extra_length
    data[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_flipped_bits_in_a_stored_tensor_are_refused_on_resume(stopped_run):
    config, run_dir = stopped_run
    checkpoint = run_dir / "checkpoint.pt"
    _flip_a_byte_inside_the_largest_tensor(checkpoint)
    torch.load(checkpoint, weights_only=True)  # the container itself is still readable
    with pytest.raises(CheckpointError, match="damaged: the SHA-256 digest"):
        run_experiment(config, output_dir=run_dir, resume=True, plots=False)


@pytest.mark.parametrize("where", ["snapshot_features", "buffer", "optimizer"])
def test_non_finite_restored_state_is_refused_even_with_a_matching_digest(stopped_run, where):
    config, run_dir = stopped_run
    checkpoint = run_dir / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    if where == "snapshot_features":
        state["learner"]["snapshot_features"][0, 0] = float("nan")
    elif where == "buffer":
        field = next(t for t in state["buffer"]["fields"].values() if t.is_floating_point())
        field.view(-1)[0] = float("inf")
    else:
        moments = [t for s in state["optimizer"]["state"].values() for t in s.values()
                   if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 1]
        moments[0].view(-1)[0] = float("nan")
    state["digest"] = payload_digest(state)  # a consistent file: only the finiteness check can refuse it
    torch.save(state, checkpoint)
    with pytest.raises(CheckpointError, match="non-finite state"):
        run_experiment(config, output_dir=run_dir, resume=True, plots=False)


# a field of the wrong type, in a file whose digest was recomputed (issue 26: next_experience="2"
# ended in a TypeError traceback): where, forged value
_FORGED = {
    "next_experience": "2", "next_epoch": 0.5, "num_experiences": True, "elapsed_s": "12", "config_hash": 5,
    "zeroshot": {"class_il": "x", "task_il": []}, "learner": {"prompt": 1}, "buffer": [1], "schedule": "s",
    "optimizer": 3, "scheduler": [], "result": [], "result.class_il": "x", "result.task_il": [["a"]],
    "result.evaluations": [1], "result.history": [[1]], "result.confusion": [1],
}


@pytest.fixture(scope="module")
def stopped_once(tmp_path_factory):
    """A run stopped after its first experience, made once for the tests that copy it."""
    config = quick_config(**{"data.num_experiences": 2, "buffer.size": 20})
    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    run_experiment(config, output_dir=run_dir, plots=False, stop_after=1)
    return config, run_dir


def _forge(source: Path, target: Path, where: str) -> None:
    """Write ``source`` to ``target`` with the field ``where`` of the wrong type and a digest that
    matches (only the type check can refuse it)."""
    state = torch.load(source, weights_only=True)
    outer, _, inner = where.partition(".")
    if inner:
        state[outer][inner] = _FORGED[where]
    else:
        state[outer] = _FORGED[where]
    state["digest"] = payload_digest(state)
    torch.save(state, target)


@pytest.mark.parametrize("where", sorted(_FORGED))
def test_every_restored_field_of_the_wrong_type_is_refused_by_name(stopped_once, where, tmp_path):
    config, run_dir = stopped_once
    forged = tmp_path / "checkpoint.pt"
    _forge(run_dir / "checkpoint.pt", forged, where)
    with pytest.raises(CheckpointError, match=rf"damaged: its {re.escape(where)} is .*Delete"):
        read_checkpoint(forged, config_hash=config.fingerprint(), num_experiences=2)


def test_a_forged_next_experience_ends_the_resume_with_a_message(stopped_once, tmp_path, capsys):
    """The issue's case: next_experience="2" with the digest recomputed ended in a TypeError traceback."""
    from alta.cli import main

    _, run_dir = stopped_once
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    _forge(run_dir / "checkpoint.pt", copy / "checkpoint.pt", "next_experience")
    assert main(["run", "--resume", str(copy), "-q"]) == 1
    err = capsys.readouterr().err
    assert "its next_experience is str '2', expected an integer >= 0" in err and "Traceback" not in err


def test_an_intact_checkpoint_still_resumes(stopped_run):
    config, run_dir = stopped_run
    assert run_experiment(config, output_dir=run_dir, resume=True, plots=False)["complete"] is True


# ------------------------------------------------------------------------ 3: folder gone mid-run


class _Move(Callback):
    def __init__(self, run_dir: Path, to: Path | None) -> None:
        self.run_dir, self.to = run_dir, to

    def on_epoch_end(self, *, experience, epoch, **_):
        if (experience, epoch) == (0, 0):
            if self.to is None:
                shutil.rmtree(self.run_dir)
            else:
                self.run_dir.rename(self.to)


@pytest.mark.parametrize("how", ["renamed", "deleted"])
def test_a_run_whose_folder_goes_away_stops_and_never_recreates_it(tmp_path, how):
    run_dir, moved = tmp_path / "run", tmp_path / "moved"
    with pytest.raises(OutputError, match=f"is gone: it was {how}"):
        run_experiment(quick_config(), output_dir=run_dir, plots=False,
                       callbacks=[_Move(run_dir, moved if how == "renamed" else None)])
    assert not run_dir.exists()
    if how == "renamed":
        assert (moved / "checkpoint.pt").is_file()


def test_run_files_are_never_written_into_a_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        atomic_write(tmp_path / "gone" / "summary.json", lambda f: f.write(b"{}"), parents=False)
    assert not (tmp_path / "gone").exists()


# ------------------------------------------------------------------------ 9, 10: finishing, temp files


def test_resuming_a_complete_run_writes_its_missing_plots_and_metrics(tmp_path):
    config = quick_config()
    run_dir = tmp_path / "run"
    run_experiment(config, output_dir=run_dir, plots=True)
    metrics = (run_dir / "metrics.jsonl").read_text()
    drawn = (*PLOT_FILES, CONFUSION_PLOT)
    for name in (*drawn, "metrics.jsonl"):
        (run_dir / name).unlink()  # a kill between summary.json and the plots, say
    summary = run_experiment(config, output_dir=run_dir, resume=True, plots=True)
    assert summary["complete"] is True
    assert all((run_dir / name).stat().st_size > 0 for name in drawn)  # the confusion plot from confusion.npz
    assert (run_dir / "metrics.jsonl").read_text() == metrics


def test_resume_removes_temporary_files_left_by_a_killed_write(stopped_run):
    config, run_dir = stopped_run
    stale = [run_dir / ".checkpoint.pt.k2x_9abc.tmp", run_dir / ".metrics.jsonl.00000000.tmp",
             run_dir / ".accuracy_curve.png.abcdefgh.tmp"]
    foreign = run_dir / ".notes.txt.abcdefgh.tmp"  # not a file alta writes: left alone
    for path in (*stale, foreign):
        path.write_bytes(b"half a file")
    run_experiment(config, output_dir=run_dir, resume=True, plots=False)
    assert not any(p.exists() for p in stale)
    assert foreign.exists()


# ------------------------------------------------------------------------ 11: full disk, allocation


class _FullDisk:
    """A file whose disk fills up after ``limit`` bytes (what torch.save sees on a full disk)."""

    def __init__(self, handle, limit: int) -> None:
        self.handle, self.left = handle, limit

    def write(self, data) -> int:
        if len(data) > self.left:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def test_a_full_disk_during_a_checkpoint_write_is_a_message_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    real, writes = torch.save, []

    def save(obj, f, *args, **kwargs):
        writes.append(1)
        if len(writes) == 3:  # the third checkpoint: the disk is full
            return real(obj, _FullDisk(f, 4096), *args, **kwargs)
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    run_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", *QUICK, "--num-experiences", "2", "--output-dir", str(run_dir))
    assert code == 1
    assert re.search(rf"cannot write {re.escape(str(run_dir / 'checkpoint.pt'))}: no space left on the device "
                     rf"after [0-9,]+ bytes; the previous checkpoint.pt, if there was one, is intact", err), err
    assert f"alta run --resume {run_dir}" in err
    assert not list(run_dir.glob(".*.tmp"))
    monkeypatch.setattr(torch, "save", real)
    code, _, err = run_cli(capsys, "run", "--resume", str(run_dir), "--no-progress", "--threads", "1")
    assert code == 0, err


def test_a_buffer_too_large_for_memory_says_its_size():
    buffer = MemoryBuffer(10_000_000, seed=0)
    with pytest.raises(ResourceError, match=r"memory buffer's field 'features'.*10000000 x 1000000 float32 = "
                                            r"36\.4 TiB.*smaller buffer size"):
        buffer.add(labels=torch.zeros(2, dtype=torch.long), features=torch.zeros(2, 1_000_000))


def test_an_allocation_failure_during_a_run_is_a_message(tmp_path, capsys, monkeypatch):
    real = CrossModalLearner.loss

    def loss(self, *args, **kwargs):
        if int(self.experience_index) == 1:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 "
                               "bytes. Error code 12 (Cannot allocate memory)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CrossModalLearner, "loss", loss)
    run_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", *QUICK, "--num-experiences", "2", "--output-dir", str(run_dir))
    assert code == 1
    assert "out of memory in the run" in err and "1099511627776 bytes" in err
    assert f"alta run --resume {run_dir}" in err


# ------------------------------------------------------------------------ 14: signals


def _console_script() -> tuple[str, str]:
    """The module and function of the ``alta`` console script (pyproject.toml)."""
    text = (ROOT / "pyproject.toml").read_text()
    scripts = text.split("[project.scripts]", 1)[1]
    target = re.search(r'^alta\s*=\s*"([^"]+)"', scripts, re.MULTILINE).group(1)
    module, function = target.split(":")
    return module, function


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def _maps_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the child import torch")
def test_ctrl_c_while_alta_starts_gives_no_traceback(tmp_path):
    module, function = _console_script()
    code = f"import sys; from {module} import {function} as main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "list"], env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _maps_torch(proc.pid) or proc.poll() is not None)
    proc.send_signal(signal.SIGINT)  # torch is being imported
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert proc.returncode in (0, 130), err  # 0 only if `alta list` was already done
    if proc.returncode == 130:
        assert "alta: interrupted" in err


def test_sigterm_checkpoints_prints_the_resume_command_and_exits_nonzero(tmp_path):
    run_dir = tmp_path / "run"
    flags = [*QUICK[2:], "--epochs", "500", "--eval-every", "0", "--output-dir", str(run_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "alta.cli", "run", *flags], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (run_dir / "checkpoint.pt").is_file() or proc.poll() is not None, timeout=300)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err, err
    assert "terminated (SIGTERM)" in err and f"alta run --resume {run_dir}" in err
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["next_epoch"] >= 1 and state["digest"] == payload_digest(state)
    assert not list(run_dir.glob(".*.tmp"))


def test_confusion_matrices_are_kept_sparse_in_checkpoints_and_restored_exactly(tmp_path):
    """A C x C confusion matrix per experience is stored by its nonzero counts (checkpoint format
    4): at MTIL's C = 1,201 a dense int64 matrix per experience made checkpoints of 127 MB, written
    at every epoch. The restored matrices equal the saved ones, dtype included, and a dense
    (format 3) entry still reads."""
    import numpy as np

    from alta.loop.result import StreamResult
    from alta.run import checkpoint as ckpt

    rng = np.random.default_rng(0)
    num_classes, num_samples = 1201, 3000
    result = StreamResult.empty(2)
    for t in range(2):
        labels = rng.integers(0, num_classes, num_samples)
        predicted = np.where(rng.random(num_samples) < 0.7, labels, rng.integers(0, num_classes, num_samples))
        matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(matrix, (labels, predicted), 1)
        result.confusion[t] = matrix
    state = ckpt._result_state(result)
    path = tmp_path / "result.pt"
    torch.save(state, path)
    assert path.stat().st_size < 200_000  # 2 x 11.5 MB dense
    restored = ckpt._result_from_state(torch.load(path, weights_only=True))
    for saved, back in zip(result.confusion, restored.confusion):
        assert back.dtype == np.int64 and np.array_equal(saved, back)
    dense = {**state, "confusion": [torch.as_tensor(m) for m in result.confusion]}  # format 3
    assert all(np.array_equal(a, b) for a, b in zip(ckpt._result_from_state(dense).confusion, result.confusion))
    assert ckpt._is_confusion(state["confusion"][0]) and not ckpt._is_confusion({"shape": torch.tensor([2, 2]),
                                                                                  "index": torch.tensor([7]),
                                                                                  "count": torch.tensor([1])})
