"""benchmarks/run.py must keep making its tables: the smoke scale runs every cell of every table
(one epoch on a few digits, tiny random-weight CLIP) through the library's public runner, and the
pieces the tables rest on (aggregation over seeds, cell keys, resuming, plans, projections) are
checked on known inputs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))  # run.py imports its neighbours
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tables():
    return _load("_tables")


@pytest.fixture(scope="module")
def run():
    return _load("run")


@pytest.fixture(scope="module")
def smoke(run, tmp_path_factory):
    """Every table at the smoke scale, once for the module: (results folder, exit code)."""
    out = tmp_path_factory.mktemp("smoke")
    return out, run.main(["all", "--scale", "smoke", "--out", str(out)])


def test_smoke_scale_fills_every_cell_of_every_table(smoke, tables):
    out, code = smoke
    assert code == 0
    for name in ("main", "ablation", "backbones", "mtil"):
        spec = tables.load_table(name)
        table = json.loads((out / f"{name}.json").read_text())
        assert table["format"] == "alta.benchmark-table" and table["scale"] == "smoke"
        assert [r["key"] for r in table["rows"]] == [r.key for r in spec.rows]
        for row in table["rows"]:
            assert set(row["cells"]) == {c.key for c in spec.columns}
            for column, entry in row["cells"].items():
                assert entry["status"] == "done", (name, row["key"], column, entry)
                assert entry["stand_in"].startswith("digits")
                assert "(random init)" in entry["backbone"]
                last = entry["metrics"]["task_il.mtil_last" if name == "mtil" else "class_il.last"]
                assert last["n"] == 1 and 0.0 <= last["mean"] <= 100.0
    # every distinct run has one record holding how it was obtained
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert records and all(r["status"] == "done" for r in records)
    for record in records:
        assert record["pretrained"] is False and record["backbone"]["name"] in ("tiny-vit", "tiny-rn")
        assert record["config"]["seed"] == record["seed"] == 0
        assert record["data"]["dataset"] in ("digits", "digits-twice") and record["data"]["stand_in"]
        assert record["summary"]["versions"]["torch"] and record["summary"]["device"]["type"] == "cpu"
        assert record["started_at"] <= record["finished_at"]
        assert record["cost"]["wall_time_s"] > 0


def test_smoke_markdown_says_how_it_was_made(smoke):
    out, _ = smoke
    text = (out / "main.md").read_text()
    assert text.startswith("# Main table")
    assert f"Produced by `python benchmarks/run.py all --scale smoke --out {out}`" in text
    assert "Random-weight backbone" in text and "NOT the paper's" in text
    assert "| DER++, buffer 200 [S1] | ResNet-18, trained from scratch | 64.88 | 91.92 |" in text
    assert "83.87" in text and "likely task-IL" in text
    ablation = (out / "ablation.md").read_text()
    assert "oriclip2cprompt_mlp (parallel pairing)" in ablation and "`s*cos(f1, w2) + s*cos(f2, w1)`" in ablation
    assert "ALTA, alternate every 10 steps" in ablation


def test_cost_table_lists_each_distinct_run_once(smoke, tables):
    out, _ = smoke
    cost = json.loads((out / "cost.json").read_text())
    sources = set(tables.load_table("cost").from_tables)
    records = {r["key"] for r in map(json.loads, (p.read_text() for p in (out / "cells").glob("*.json")))
               if r["requested_by"]["table"] in sources}
    keys = [k for row in cost["rows"] for k in row["cells"]["run"]["keys"]]
    assert len(keys) == len(set(keys))  # a run shared by two tables (ALTA buffer 200) appears once
    assert len(cost["rows"]) == len(records)
    shared = next(r for r in cost["rows"] if r["key"] == "main/alta-200/seq-cifar10")
    assert "ablation/alta" in shared["also_in"]
    for row in cost["rows"]:
        metrics = row["cells"]["run"]["metrics"]
        assert metrics["cost.wall_time_s"]["mean"] > 0
        if "Zero-shot" in row["label"] or "zero-shot" in row["label"]:
            assert metrics["cost.images_per_s"]["mean"] is None  # nothing trained
        else:
            images = metrics["cost.train_images"]["mean"]
            assert images > 0
            assert metrics["cost.images_per_s"]["mean"] == pytest.approx(images / metrics["cost.wall_time_s"]["mean"])


def test_a_second_invocation_skips_the_done_cells(smoke, run, capsys):
    out, _ = smoke
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert run.main(["main", "--scale", "smoke", "--out", str(out)]) == 0
    assert "0 to run" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == before


def test_aggregation_of_known_numbers(tables):
    stat = tables.aggregate([1.0, 2.0, 3.0])
    assert stat["mean"] == 2.0 and stat["std"] == pytest.approx(1.0) and stat["n"] == 3  # sample std (n - 1)
    stat = tables.aggregate([None, 4.0, 6.0])  # an undefined value (forgetting of one experience) is left out
    assert stat["mean"] == 5.0 and stat["std"] == pytest.approx(math.sqrt(2.0)) and stat["n"] == 2
    assert tables.aggregate([7.5])["std"] is None
    assert tables.aggregate([None])["mean"] is None
    assert tables.format_stat("class_il.last", tables.aggregate([60.0, 62.0])) == "61.0 ± 1.4"
    assert tables.format_stat("cost.peak_cuda_mib", tables.aggregate([None])) == "—"


def test_cpu_plan_runs_cifar10_and_marks_what_it_cannot_run(tables):
    scale = tables.load_scales()["cpu"]
    cells = tables.plan_cells(tables.load_table("main"), scale, seeds=[0, 1, 2], data_root=Path("/data"))
    skipped = [c for c in cells if c.config is None]
    assert {c.column for c in skipped} == {"seq-cifar100", "seq-tinyimagenet"}
    assert all("not available" in c.skip for c in skipped)
    runs = [c for c in cells if c.config is not None]
    assert {c.column for c in runs} == {"seq-cifar10"}
    for cell in runs:
        config = cell.config
        assert config.model.visual == "tiny-vit" and config.train.train_cache == "fixed"
        assert config.data.max_train_per_class == 1000 and config.data.root == "/data"
        assert config.train.epochs == (33 if cell.row == "joint" else 10)  # reference epochs / 3
        assert config.seed == cell.seed
    assert [c.seed for c in runs if c.row == "zeroshot"] == [0]  # deterministic: one seed
    assert len({c.key for c in runs}) == len(runs)
    ablation = tables.plan_cells(tables.load_table("ablation"), scale, seeds=[0])
    alta_200 = next(c for c in runs if c.row == "alta-200" and c.seed == 0)
    assert alta_200.key in {c.key for c in ablation if c.row == "alta"}  # one run for both tables


def test_full_plan_is_the_shipped_protocol(tables):
    from alta.cli.config import load_config

    scale = tables.load_scales()["full"]
    cells = tables.plan_cells(tables.load_table("backbones"), scale, seeds=[0])
    assert [c.config.model.visual for c in cells] == ["RN50", "RN101", "RN50x4", "RN50x16", "ViT-B/32", "ViT-B/16"]
    shipped = load_config("il_cifar100")
    for cell in cells:
        assert cell.config.train == shipped.train and cell.config.optim == shipped.optim
        assert cell.config.buffer == shipped.buffer and cell.config.data.max_train_per_class is None


def test_full_scale_stops_at_once_without_pretrained_weights(run, tmp_path, capsys):
    from PIL import Image

    from alta.data.datasets import CIFAR10_CLASSES

    data = tmp_path / "data"  # the data is there (one image per class and split): the weights are what is missing
    for split in ("train", "test"):
        for name in CIFAR10_CLASSES:
            (data / "cifar10" / split / name).mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(data / "cifar10" / split / name / "0.png")
    out = tmp_path / "out"
    code = run.main(["main", "--scale", "full", "--seeds", "0", "--out", str(out), "--offline", "--data-root",
                     str(data), "--weights-dir", str(tmp_path / "no-weights"), "--no-isolate"])
    assert code == 2
    err = capsys.readouterr().err
    assert "could not load its backbone" in err and "RN50" in err
    table = json.loads((out / "main.json").read_text())
    assert {e["status"] for row in table["rows"] for e in row["cells"].values()} == {"pending"}


def test_records_made_before_a_config_key_was_added_still_match(tables):
    from alta.cli.config import load_config

    config = load_config("il_cifar10")
    stored = config.to_dict()
    assert tables.config_match(stored, config) == (True, [])
    del stored["model"]["truncate_text"]  # as if the key did not exist when the run was recorded
    assert tables.config_match(stored, config) == (True, ["model.truncate_text"])
    changed = config.to_dict()
    changed["buffer"]["size"] = 500
    assert tables.config_match(changed, config)[0] is False
    moved = config.to_dict()
    moved["device"], moved["data"]["root"] = "cuda", "/elsewhere"  # where it ran does not matter
    assert tables.config_match(moved, config)[0] is True


def test_published_numbers_are_the_ones_of_the_method_notes(tables):
    main = {p.label: p.values for p in tables.load_table("main").published}
    assert main["DER++, buffer 200"]["seq-cifar10"] == {"class_il.last": 64.88, "task_il.last": 91.92}
    assert main["DER++, buffer 500"]["seq-cifar10"] == {"class_il.last": 72.70, "task_il.last": 93.88}
    assert main["DER++, buffer 5120"]["seq-cifar10"] == {"class_il.last": 85.24, "task_il.last": 96.12}
    assert main["RAPF"]["seq-cifar100"] == {"class_il.avg": 86.9, "class_il.last": 79.3}
    backbones = {p.label: p.values["seq-cifar100"]["task_il.last"] for p in tables.load_table("backbones").published}
    assert backbones == {"ALTA (paper), RN50": 83.87, "ALTA (paper), RN101": 84.77, "ALTA (paper), RN50x4": 84.91,
                         "ALTA (paper), ViT-B/16": 92.85}


def test_projection_counts_follow_the_reference_protocol(tables):
    estimate = _load("_estimate")
    from alta.cli.config import load_config

    counts = estimate.protocol_counts(load_config("il_cifar100"))
    assert counts["steps"] == 47_100  # 10 experiences x 30 epochs x ceil(5000 / 32), as speed.py counts
    assert counts["evaluations"] == 10 * 2 + 10 + 1  # epochs 10 and 20, each experience's end, zero-shot
    assert counts["encoded_images"] == 10_000  # test features once; training images are encoded in the steps
    joint = estimate.protocol_counts(load_config("joint_cifar10"))
    assert joint["steps"] == 100 * math.ceil(50_000 / 32)
    costs = {"t_step": 2.0, "t_img": 0.5, "t_text_eval": 3.0, "t_head": 0.25}
    assert estimate.project({"steps": 10, "encoded_images": 4, "evaluations": 2, "scored_images": 8}, costs) == 30.0


OWN_TABLE = """
name: probe
title: "Your own method beside ALTA"
description: A linear probe (examples/linear_probe.py, a plug-in given with --import) against ALTA.
columns:
  - {key: seq-cifar10, label: Seq-CIFAR-10, dataset: seq-cifar10, configs: cifar10}
rows:
  - {key: alta, label: ALTA, config: "il_{configs}", set: {model.method: alta}}
  - {key: probe, label: linear probe, config: "il_{configs}", set: {model.method: linear_probe}}
metric_groups:
  - title: "Accuracy (%)"
    metrics:
      - {key: class_il.last, label: Last class-IL}
"""


@pytest.mark.parametrize("isolate", ["--no-isolate", pytest.param("--isolate", marks=pytest.mark.slow)])
def test_a_table_of_ones_own_rows_runs_a_plugin_method_in_its_jobs(run, tmp_path, capsys, isolate):
    """A table spec of one's own names a plug-in method; --import registers it here (and, isolated,
    in the job process of the run group), and the records say what code produced each cell."""
    spec = tmp_path / "probe.yaml"
    spec.write_text(OWN_TABLE)
    out = tmp_path / "out"
    code = run.main([str(spec), "--scale", "smoke", "--out", str(out), isolate, "--import",
                     str(REPO / "examples" / "linear_probe.py")])
    assert code == 0, capsys.readouterr().out
    table = (out / "probe.md").read_text()
    assert "linear probe" in table and "ALTA" in table
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    probe = next(r for r in records if r["summary"]["method"] == "linear_probe")
    assert probe["status"] == "done" and probe["summary"]["group"]["size"] == 2  # one job ran both
    assert probe["summary"]["plugins"][0]["file"] == str(REPO / "examples" / "linear_probe.py")
# ---- the CLIP class-incremental suite (cil-suite.yaml) -----------------------------------------------


def test_smoke_scale_fills_the_cil_suite_table(smoke, tables):
    out, _ = smoke
    spec = tables.load_table("cil-suite")
    table = json.loads((out / "cil-suite.json").read_text())
    assert len(spec.columns) == 18 and [r["key"] for r in table["rows"]] == ["zeroshot", "alta"]
    for row in table["rows"]:
        for column, entry in row["cells"].items():
            assert entry["status"] == "done" and entry["stand_in"].startswith("digits"), (row["key"], column)
            for key in ("seen.avg", "seen.last"):
                assert 0.0 <= entry["metrics"][key]["mean"] <= 100.0
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    suite = [r for r in records if r["requested_by"]["table"] == "cil-suite"]
    assert len(suite) == 36
    for record in suite:
        summary, column = record["summary"], record["requested_by"]["column"]
        dataset = next(c.dataset for c in spec.columns if c.key == column)
        assert summary["preset"]["name"] == f"cil-suite/{dataset}/{column.split('/')[1]}"
        assert {"data.dataset", "data.split", "model.visual", "model.pretrained", "train.epochs"} <= set(
            summary["preset_deviations"])  # the stand-in and the smoke scale, said by every cell
        assert summary["curves"]["avg"] == tables.metric_value(record, "seen.avg")
        if record["requested_by"]["row"] == "alta":
            assert record["config"]["buffer"]["policy"] == "herding"
    text = (out / "cil-suite.md").read_text()
    assert "| PROOF [S1] | OpenCLIP ViT-B/16, LAION-400M | 64.61 | 63.60 | 86.77 |" in text
    assert "OpenAI CLIP ViT-B/16" in text and "NOT the suite's protocol" in text


def test_cil_suite_published_rows_say_their_weights_and_sources(tables):
    spec = tables.load_table("cil-suite")
    rows = {p.label: p for p in spec.published}
    proof = rows["PROOF"].values
    assert len(proof) == 18 and proof["cifar100/B0-Inc10"] == {"seen.avg": 86.77, "seen.last": 79.11}
    assert proof["objectnet/B100-Inc20"] == {"seen.avg": 49.78, "seen.last": 43.81}
    assert rows["Zero-shot CLIP"].values["aircraft/B0-Inc10"] == {"seen.avg": 26.66, "seen.last": 17.22}
    assert rows["BOFA"].values["cars/B0-Inc10"] == {"seen.avg": 93.77, "seen.last": 89.23}
    assert rows["ENGINE (ENGINE paper)"].values["imagenet_r/B0-Inc20"] == {"seen.last": 80.37}
    columns = {c.key for c in spec.columns}
    for published in spec.published:
        assert published.backbone and published.source and published.note
        assert set(published.values) <= columns
    assert {p.backbone for p in spec.published} == {"OpenCLIP ViT-B/16, LAION-400M", "OpenAI CLIP ViT-B/16"}


def test_cil_suite_cpu_plan_uses_the_real_images_this_machine_has(tables):
    scale = tables.load_scales()["cpu"]
    cells = tables.plan_cells(tables.load_table("cil-suite"), scale, seeds=[0, 1, 2], data_root=Path("/data"))
    run = [c for c in cells if c.config is not None]
    assert {c.column for c in run} == {"cifar100/B0-Inc10", "cifar100/B50-Inc10", "imagenet_r/B0-Inc20",
                                       "imagenet_r/B100-Inc20"}
    assert all("none of the suite's datasets" in c.skip for c in cells if c.config is None)
    for cell in run:
        config = cell.config
        assert config.model.visual == "tiny-vit" and config.model.pretrained is None  # no weights for tiny-vit
        assert config.buffer.policy == "herding" and config.preset.startswith("cil-suite/")
        if cell.column.startswith("imagenet_r"):
            assert config.data.dataset == "seq-tinyimagenet" and config.data.root == "/data/tiny-imagenet-200-sample"
            assert config.data.split == cell.column.split("/")[1]  # the suite's own splits on 200 classes
        else:
            assert config.data.dataset == "seq-cifar10" and config.buffer.size == 200
    full = tables.plan_cells(tables.load_table("cil-suite"), tables.load_scales()["full"], seeds=[0],
                             data_root=Path("/data"))
    cars = next(c for c in full if c.column == "cars/B50-Inc10" and c.row == "alta").config
    assert (cars.data.root, cars.model.visual, cars.model.pretrained) == ("/data", "open_clip:ViT-B-16", "laion400m_e32")
    assert not __import__("alta.run.presets", fromlist=["x"]).preset_deviations(cars)


def test_cil_suite_full_scale_stops_at_once_without_weights(run, tmp_path, capsys):
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import make_suite_archive

    from alta.data.datasets.cil_suite import SUITE

    make_suite_archive(tmp_path / "data", SUITE["cil-cars"])  # the data is there: the weights are what is missing
    out = tmp_path / "out"
    code = run.main(["cil-suite", "--scale", "full", "--seeds", "0", "--out", str(out), "--offline", "--data-root",
                     str(tmp_path / "data"), "--weights-dir", str(tmp_path / "no-weights"), "--no-isolate"])
    assert code == 2
    err = capsys.readouterr().err
    assert "could not load its backbone" in err and "laion400m_e32" in err
    table = json.loads((out / "cil-suite.json").read_text())
    statuses = {e["status"] for row in table["rows"] for e in row["cells"].values()}
    assert "done" not in statuses


def test_a_table_without_its_data_tries_each_dataset_once(run, tmp_path, monkeypatch, capsys):
    """A run that finds its data absent marks every later run of the same data unavailable with its
    error, without starting it again (a full table on a machine without the datasets ends at once)."""
    tried = []
    execute_unit = run.execute_unit

    def counting(jobs):
        tried.append([job["config"]["data"]["dataset"] for job in jobs])
        return execute_unit(jobs)

    monkeypatch.setattr(run, "execute_unit", counting)
    out = tmp_path / "out"
    code = run.main(["cil-suite", "--scale", "full", "--seeds", "0", "--out", str(out), "--offline", "--data-root",
                     str(tmp_path / "empty"), "--weights-dir", str(tmp_path / "no-weights"), "--no-isolate"])
    assert code == 1  # runs not done, none stopped the table
    datasets = [d for unit in tried for d in unit]
    assert len(datasets) == len(set(datasets)) == 9  # each of the nine datasets tried once
    table = json.loads((out / "cil-suite.json").read_text())
    cells = [e for row in table["rows"] for e in row["cells"].values() if e["status"] != "not run"]
    assert len(cells) > 9 and {e["status"] for e in cells} == {"unavailable"}
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert len(records) > 9 and all("DataRootError" in r["error"] for r in records)


def test_cil_suite_projection_counts_the_presets_work():
    cost = _load("cil_suite_cost")
    cifar = cost.counts("cil-cifar100", "B0-Inc10")
    assert cifar["steps"] == 5 * 10 * math.ceil(5000 / 32) and cifar["encoded_images"] == 60_000  # 5 epochs, 10 steps
    sun = cost.counts("cil-sun", "B150-Inc30")
    assert sun["experiences"] == 6 and sun["steps_per_experience"][0] == 10 * math.ceil(16_250 * 150 / 300 / 32)
    assert cost.counts("cil-cars", "B0-Inc10", method="zeroshot")["steps"] == 0
    step = {"t_step": 1.0, "flops_step": 2e12, "t_eval_text": 0.5}
    measured = {"t_img": 0.01, "flops_img": 1e10, "steps": {"C=100 first": step, "C=100 last": step}}
    result = cost.project(measured, gpu_tflops=100.0, gpu_step_ms=10.0, seeds=1)
    first = next(r for r in result["rows"] if r["dataset"] == "cil-cifar100" and r["method"] == "alta")
    assert first["cpu_s"] == pytest.approx(7850 * 1.0 + 60_000 * 0.01 + 11 * 0.5)
    assert first["gpu_s"] == pytest.approx((7850 * 2e12 + 60_000 * 1e10) / 1e14 + 7850 * 0.01)
    assert len(result["rows"]) == 36
