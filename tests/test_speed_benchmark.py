"""benchmarks/speed.py must keep running: its smoke mode (a couple of steps on tiny-vit).

Only the structure of the results is checked here; speed-ups are measured, never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))  # speed.py imports its neighbours
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_speed_smoke_mode_writes_complete_results(tmp_path):
    speed = _load("speed")
    out = tmp_path / "speed-smoke.json"
    assert speed.main(["--smoke", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {"machine", "protocol", "protocol_counts", "formula", "results", "targets"} <= set(data)
    assert data["machine"]["cpu_cores"] >= 1 and data["machine"]["torch"]
    (result,) = data["results"]
    assert result["backbone"]["name"] == "tiny-vit" and result["num_classes"] == 10
    assert {"alta[none]", "alta[fixed]", "reference"} <= set(result["steps"])
    for name, step in result["steps"].items():
        assert step["n"] == 2 and step["median_s"] > 0, name
    for ratio in (*result["step_speedup"].values(), *result["projection_worst_case"]["speedup"].values()):
        assert math.isfinite(ratio) and ratio > 0
    assert data["protocol_counts"]["steps"] == 10 * 30 * 157
    assert out.with_suffix(".md").read_text().startswith("# Speed")


def test_protocol_counts_follow_the_reference_protocol():
    counts = _load("speed").protocol_counts()
    assert counts == {
        "steps": 47_100,  # 10 experiences x 30 epochs x ceil(5000 / 32)
        "evaluations": 30,  # epochs 10, 20, 30 of each experience
        "eval_images": 165_000,  # 3 x 1000 x (1 + ... + 10)
        "reference_eval_batches": 5_280,  # 3 x ceil(1000 / 32) x 55
        "train_images": 50_000,
        "test_images": 10_000,
    }
