"""Loggers as callbacks: what each wrote is read back with its own library's reader.

One short run on the digits (2 experiences x 2 epochs, evaluation every epoch, tiny random CLIP)
feeds the CSV, TensorBoard and W&B (offline) loggers at once; each test reads one of them back.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from alta import metrics
from alta.loop.loggers import CSVLogger, MissingExtraError, TensorBoardLogger, WandbLogger, accuracy_matrix_image

EPOCHS = 2


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def logged(tiny_clip, tmp_path_factory):
    """The run's result and the folder each logger wrote to."""
    from alta import (
        AlternatingSchedule,
        CrossModalLearner,
        LoopConfig,
        MemoryBuffer,
        ScenarioStream,
        build_optimizer,
        run_stream,
    )

    root = tmp_path_factory.mktemp("loggers")
    stream = ScenarioStream.from_name("digits", resolution=32)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, seed=0)
    optimizer, scheduler = build_optimizer(learner, epochs=EPOCHS)
    callbacks = [CSVLogger(root / "evaluations.csv")]
    if _has("tensorboard"):
        callbacks.append(TensorBoardLogger(root / "tensorboard"))
    with pytest.MonkeyPatch.context() as env:
        if _has("wandb"):
            for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
                env.setenv(name, str(root / "wandb-home"))
            env.setenv("WANDB_SILENT", "true")
            env.setenv("WANDB_CONSOLE", "off")
            callbacks.append(WandbLogger("alta-tests", name="digits", dir=root, mode="offline",
                                         config={"method": "alta", "epochs": EPOCHS}))
        result = run_stream(learner, [stream[0], stream[1]], optimizer=optimizer, scheduler=scheduler,
                            buffer=MemoryBuffer(40, seed=0), schedule=AlternatingSchedule(),
                            loop=LoopConfig(epochs=EPOCHS, batch_size=64, seed=0, train_cache="fixed", eval_every=1),
                            callbacks=callbacks)
    return result, root


def test_csv_has_one_row_per_evaluation_with_the_records_values(logged):
    result, root = logged
    with open(root / "evaluations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(result.evaluations) == 2 * EPOCHS  # every epoch, the last one at the experience end
    for row, record in zip(rows, result.evaluations):
        assert (int(row["experience"]), int(row["epoch"])) == (record["experience"], record["epoch"])
        assert float(row["class_il_mean"]) == record["class_il_mean"]  # repr round-trips exactly
        assert float(row["class_il_top5_mean"]) == record["class_il_top5_mean"]
        for k, value in zip(record["experiences"], record["task_il"]):
            assert float(row[f"task_il_{k}"]) == value
        assert row["class_il_1"] == ("" if record["experience"] == 0 else str(record["class_il"][1]))
    assert rows[-1]["old_class_accuracy"] != "" and rows[1]["old_class_accuracy"] == ""  # none at t = 0


def test_csv_of_a_resumed_run_starts_from_the_checkpointed_records(tmp_path):
    from alta.loop import StreamResult

    done = StreamResult.empty(2)
    done.evaluations = [{"experience": 0, "epoch": 1, "experiences": [0], "class_il": [50.0], "task_il": [90.0],
                         "class_il_mean": 50.0, "task_il_mean": 90.0, "loss": 1.5}]
    logger = CSVLogger(tmp_path / "e.csv")
    (tmp_path / "e.csv").write_text("rows a killed run wrote after its checkpoint\n")
    logger.on_run_start(num_experiences=2, start_experience=0, start_epoch=1, result=done)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "e.csv").read_text())))
    assert [(r["experience"], r["epoch"], r["class_il_0"], r["class_il_1"]) for r in rows] == [("0", "1", "50.0", "")]


@pytest.mark.skipif(not _has("tensorboard"), reason="tensorboard not installed (pip install 'alta[tensorboard]')")
def test_tensorboard_events_read_back_with_event_accumulator(logged):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, root = logged
    events = EventAccumulator(str(root / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/lr", "eval/class_il_mean", "eval/task_il/experience_0",
            "experience/class_il_accuracy", "loss/ce", "loss/replay_ce", "loss/replay_mse"} <= set(tags["scalars"])
    assert [e.value for e in events.Scalars("loss/ce")] == pytest.approx([s["ce"] for h in result.history for s in h],
                                                                         rel=1e-6)  # every loss term, by name
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4]  # epoch_step: epochs trained so far
    assert [e.value for e in loss] == pytest.approx([s["loss"] for h in result.history for s in h], rel=1e-6)
    means = events.Scalars("eval/class_il_mean")
    assert [e.value for e in means] == pytest.approx([r["class_il_mean"] for r in result.evaluations], rel=1e-6)
    per_experience = events.Scalars("experience/task_il_accuracy")
    assert [e.step for e in per_experience] == [0, 1]
    assert per_experience[1].value == pytest.approx(np.mean(result.task_il[1, :2]), rel=1e-6)
    images = events.Images("accuracy_matrix/class_il")
    assert [i.step for i in images] == [0, 1]
    picture = Image.open(io.BytesIO(images[-1].encoded_image_string))
    assert picture.size == (images[-1].width, images[-1].height) and min(picture.size) > 100
    assert len(set(np.asarray(picture.convert("L")).ravel().tolist())) > 10  # a drawn heatmap, not a blank


def _wandb_records(path: Path):
    """The protobuf records of a ``.wandb`` file, decoded with wandb's own schema.

    wandb <= 0.24 ships the file's reader (``wandb.sdk.internal.datastore``); later versions read
    it in their Go core only, so the same LevelDB-log framing (7-byte ``:W&B`` header; chunks of
    crc32, length, type in 32 KiB blocks) is unpacked here, checksums checked.
    """
    from wandb.proto import wandb_internal_pb2

    try:
        from wandb.sdk.internal import datastore
    except ImportError:
        datastore = None
    payloads = []
    if datastore is not None:
        store = datastore.DataStore()
        store.open_for_scan(str(path))
        while (data := store.scan_data()) is not None:
            payloads.append(data)
    else:
        raw = path.read_bytes()
        assert raw[:7] == struct.pack("<4sHB", b":W&B", 0xBEE1, 0), "not a .wandb file"
        crc = {kind: zlib.crc32(bytes([kind])) for kind in (1, 2, 3, 4)}
        offset, pending = 7, b""
        while offset + 7 <= len(raw):
            if 32768 - offset % 32768 < 7:  # block trailer
                offset += 32768 - offset % 32768
                continue
            checksum, length, kind = struct.unpack("<IHB", raw[offset:offset + 7])
            data = raw[offset + 7:offset + 7 + length]
            assert zlib.crc32(data, crc[kind]) & 0xFFFFFFFF == checksum, "corrupt .wandb record"
            offset += 7 + length
            pending += data
            if kind in (1, 4):  # FULL or LAST
                payloads.append(pending)
                pending = b""
    records = []
    for data in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        records.append(record)
    return records


def _wandb_items(items) -> dict:
    """History / summary / config items as a dict; nested keys (an image's fields) as sub-dicts."""
    out: dict = {}
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)
    return out


@pytest.mark.skipif(not _has("wandb"), reason="wandb not installed (pip install 'alta[wandb]')")
def test_wandb_offline_run_reads_back_from_its_run_folder(logged):
    result, root = logged
    (path,) = (root / "wandb").glob("offline-run-*/run-*.wandb")
    history, summary, config = [], {}, {}
    for record in _wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(_wandb_items(record.history.item))
        elif kind == "summary":
            summary.update(_wandb_items(record.summary.update))
        elif kind in ("run", "config"):  # the config comes with the run record, updates after it
            config.update(_wandb_items((record.run.config if kind == "run" else record.config).update))
    evaluations = [row for row in history if "eval/class_il_mean" in row]
    assert [row["eval/class_il_mean"] for row in evaluations] == [r["class_il_mean"] for r in result.evaluations]
    assert [row["epoch_step"] for row in evaluations] == [1, 2, 3, 4]
    train = [row for row in history if "train/loss" in row]
    assert [row["train/loss"] for row in train] == [s["loss"] for h in result.history for s in h]
    assert [row["loss/replay_mse"] for row in train] == [s["replay_mse"] for h in result.history for s in h]
    ends = [row for row in history if "accuracy_matrix/class_il" in row]
    assert [row["experience"] for row in ends] == [0, 1]
    image = ends[-1]["accuracy_matrix/class_il"]
    assert image["_type"] == "image-file" and (path.parent / "files" / image["path"]).is_file()
    assert summary["class_il/avg_accuracy"] == pytest.approx(metrics.average_accuracy(result.class_il))
    assert summary["task_il/bwt"] == pytest.approx(metrics.backward_transfer(result.task_il))
    assert (config["method"], config["epochs"]) == ("alta", EPOCHS)


def test_a_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    with pytest.raises(MissingExtraError, match=r'pip install "alta\[wandb\]"'):
        WandbLogger()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingExtraError, match=r'alta\[tensorboard\]'):
        TensorBoardLogger("unused")


@pytest.mark.parametrize("logger, module", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
@pytest.mark.parametrize("method", ["alta", "alta,mlp"])
def test_a_logger_without_its_package_is_refused_before_the_run_starts(tmp_path, capsys, monkeypatch, logger, module,
                                                                        method):
    """`alta run --logger tensorboard` without tensorboard loaded the data, evaluated zero-shot CLIP
    and left a run folder that neither finished nor resumed: now refused at once, no folder made."""
    from alta.cli import main

    monkeypatch.setitem(sys.modules, module, None)  # not installed: its import raises ImportError
    out = tmp_path / "run"
    assert main(["run", *_QUICK, "--method", method, "--logger", f"csv,{logger}", "--output-dir", str(out)]) == 1  # an environment problem, not a usage error
    captured = capsys.readouterr()
    assert f'--logger {logger} needs the {module} package' in captured.err
    assert f'pip install "alta[{logger}]"' in captured.err
    assert "zero-shot" not in captured.out + captured.err  # nothing was evaluated
    assert not out.exists()


def test_accuracy_matrix_image_leaves_unmeasured_cells_blank():
    R = np.array([[90.0, math.nan], [40.0, 85.0]])
    image = accuracy_matrix_image(R)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


# ---- a resumed `alta run` writes what the uninterrupted one writes, for every logger ---------

_QUICK = ["--num-experiences", "3", "--initial-classes", "4", "--epochs", "2", "--eval-every", "1", "--train-cache",
          "fixed", "--set", "data.max_train_per_class=8", "--set", "data.max_test_per_class=4", "--set",
          "eval.zeroshot_baseline=false", "-q", "--threads", "1", "--no-progress"]
_ALL = [name for name, module in (("csv", "csv"), ("tensorboard", "tensorboard"), ("wandb", "wandb")) if _has(module)]


def _logged_values(folder: Path) -> dict:
    """What each logger of a run folder holds, read back with its own reader: the CSV text, the
    TensorBoard scalars and image steps, the W&B history (over every offline-run folder: a resume
    adds one) and final summary, without W&B's clock entries (``_timestamp``, ``_runtime``)."""
    out: dict = {}
    if (folder / "evaluations.csv").is_file():
        out["csv"] = (folder / "evaluations.csv").read_text()
    if (folder / "tensorboard").is_dir():
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
        events.Reload()
        out["tensorboard"] = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
        out["tensorboard images"] = {tag: [i.step for i in events.Images(tag)] for tag in events.Tags()["images"]}
    if (folder / "wandb").is_dir():
        history, summary = [], {}
        for path in sorted((folder / "wandb").glob("offline-run-*/run-*.wandb")):
            for record in _wandb_records(path):
                kind = record.WhichOneof("record_type")
                if kind == "history":
                    history.append({k: v for k, v in _wandb_items(record.history.item).items()
                                    if not k.startswith("_") and not isinstance(v, dict)})
                elif kind == "summary":
                    summary.update({k: v for k, v in _wandb_items(record.summary.update).items()
                                    if "/" in k and not isinstance(v, dict) and not k.startswith("_")})
        out["wandb"] = (history, summary)
    return out


def _files(folder: Path) -> list[str]:
    """The run folder's files, logger folders by their kind (their names hold clocks and hosts)."""
    names = set()
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        names.add(parts[0] if parts[0] in ("tensorboard", "wandb") else "/".join(parts))
    return sorted(names)


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    for name, value in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true"), ("WANDB_CONSOLE", "off")):
        monkeypatch.setenv(name, value)


def test_a_resumed_run_restores_its_loggers_and_writes_what_the_uninterrupted_run_writes(tmp_path, capsys,
                                                                                           wandb_offline):
    """`--logger csv --stop-after 2`, then the `alta run --resume DIR` that alta prints, kept 4 of
    10 rows of evaluations.csv: the resume now restores the loggers (and plots) it was started with."""
    from alta.cli import main

    loggers = ["--logger", ",".join(_ALL)]
    assert main(["run", *_QUICK, *loggers, "--output-dir", str(tmp_path / "whole")]) == 0
    assert main(["run", *_QUICK, *loggers, "--no-plots", "--output-dir", str(tmp_path / "cut"),
                 "--stop-after", "1"]) == 0
    assert f"alta run --resume {tmp_path / 'cut'}" in capsys.readouterr().out
    # another logger, or plots, would write what the uninterrupted run did not: refused, saying what to pass
    assert main(["run", "--resume", str(tmp_path / "cut"), "--logger", "csv", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"pass --logger {','.join(_ALL)} --no-plots" in err
    assert main(["run", "--resume", str(tmp_path / "cut"), "-q", "--threads", "1", "--no-progress"]) == 0
    whole, cut = _logged_values(tmp_path / "whole"), _logged_values(tmp_path / "cut")
    assert set(whole) == set(cut) and len(whole["csv"].splitlines()) == 1 + 6  # a header and 3 x 2 evaluations
    assert whole == cut
    plots = {"accuracy_matrix.png", "accuracy_curve.png", "confusion_matrix.png", "seen_class_curves.png"}
    assert _files(tmp_path / "cut") == sorted(set(_files(tmp_path / "whole")) - plots)  # --no-plots was kept
    assert (tmp_path / "whole" / "metrics.jsonl").read_text() == (tmp_path / "cut" / "metrics.jsonl").read_text()


def test_a_run_group_logs_every_member_and_resumes_with_the_same_files(tmp_path, capsys):
    from alta.cli import main

    loggers = ["--logger", ",".join(n for n in _ALL if n != "wandb")]
    group = ["run", "--method", "alta,mlp", *_QUICK, *loggers]
    assert main([*group, "--output-dir", str(tmp_path / "whole")]) == 0
    assert main([*group, "--output-dir", str(tmp_path / "cut"), "--stop-after", "2"]) == 0
    assert main(["run", "--resume", str(tmp_path / "cut"), "-q", "--threads", "1", "--no-progress"]) == 0
    capsys.readouterr()
    for member in ("oritext_mlp2cprompt_oriimg", "mlp"):
        whole, cut = tmp_path / "whole" / member, tmp_path / "cut" / member
        assert _files(whole) == _files(cut) and "evaluations.csv" in _files(whole)
        assert _logged_values(whole) == _logged_values(cut)
        assert (whole / "metrics.jsonl").read_text() == (cut / "metrics.jsonl").read_text()
