"""Plug-ins: user code registers methods, loss terms, datasets and loggers, and every tool of alta
takes them by name.

The plug-in is tests/plugin_package (a package with entry points, as a user publishes one). The
default tests give its module to ``alta run --import`` (plus the four lines that register its
objects), in this process: a run by name, a run group beside ALTA, ``--seeds``, ``alta report``,
and a resumed run that refuses a missing or changed plug-in. Entry points are read from a real
``*.dist-info`` folder on ``sys.path``; the slow test installs the package with pip and runs the
command line in fresh processes (a missing package, another version).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import alta
from alta import plugins
from alta.cli import main as alta_main
from alta.errors import ConfigError, PluginError
from alta.methods import METHODS, LearnerMethod, MethodSpec
from alta.plugins import PluginOrigin
from alta.registry import Registry, preserved
from alta.run import RunConfig
from alta.run.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "tests" / "plugin_package"
SOURCE = (PACKAGE / "alta_plugin_demo" / "__init__.py").read_text(encoding="utf-8")
# What the package's entry points do, as code an `alta run --import` file runs
REGISTER = """
from alta.data import DATASETS
from alta.loop.loggers import LOGGERS
from alta.losses import LOSS_TERMS
from alta.methods import METHODS

METHODS.add("alta3", ALTA3)
LOSS_TERMS.add("logit_norm", LogitNorm)
DATASETS.add("demo-shapes", SHAPES)
LOGGERS.add("loss_jsonl", loss_jsonl)
"""
QUICK = ["--dataset", "demo-shapes", "--epochs", "2", "--eval-every", "1", "--train-cache", "fixed", "--no-plots",
         "--no-progress", "-q", "--threads", "1"]
PLUGIN_RUN = ["--method", "alta3", "--loss-term", "logit_norm=0.2"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = alta_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def files_of(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (to show nothing there changed)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def plugin_file(tmp_path) -> Path:
    path = tmp_path / "demo_plugin.py"
    path.write_text(SOURCE + REGISTER, encoding="utf-8")
    return path


# ============================================================================ the command line
def test_an_imported_plugin_runs_by_name_in_groups_seeds_reports_and_resumes_only_as_itself(
        tmp_path, plugin_file, capsys):
    imp = ["--import", str(plugin_file)]
    single, group, seeds, partial = (tmp_path / n for n in ("single", "group", "seeds", "partial"))
    with preserved():  # the file's registrations last for this block: then the plug-in is "missing"
        code, out, _ = run_cli(capsys, "list", "plugins", *imp)
        assert code == 0
        for line in ("method 'alta3'", "loss term 'logit_norm'", "dataset 'demo-shapes'", "logger 'loss_jsonl'"):
            assert line in out and f"--import {plugin_file}" in out, out
        # one run, by name: the method, the dataset, the loss term and the logger of the plug-in
        assert run_cli(capsys, "run", *imp, *QUICK, *PLUGIN_RUN, "--logger", "loss_jsonl",
                       "--output-dir", str(single))[0] == 0
        summary = json.loads((single / "summary.json").read_text())
        assert (summary["method"], summary["dataset"]) == ("alta3", "demo-shapes")
        assert summary["formula"] == "s*cos(f1, w2) + s*cos(f2, w1) + s*cos(f1, w1)"
        digest = hashlib.sha256(plugin_file.read_bytes()).hexdigest()
        assert {(p["kind"], p["name"], p["source"], p["sha256"]) for p in summary["plugins"]} == {
            (kind, name, "import", digest) for kind, name in (("method", "alta3"), ("dataset", "demo-shapes"),
                                                              ("loss term", "logit_norm"), ("logger", "loss_jsonl"))}
        saved = (single / "config.yaml").read_text()
        assert "plugins:" in saved and f"sha256: {digest}" in saved and "logit_norm:\n      weight: 0.2" in saved
        lines = [json.loads(x) for x in (single / "losses.jsonl").read_text().splitlines()]
        assert len(lines) == 4 and all(line["logit_norm"] > 0 for line in lines)  # logged per term, every epoch
        state = read_checkpoint(single / "checkpoint.pt", config_hash=load_config(single).fingerprint(),
                                num_experiences=2)
        assert float(state["learner"]["extra_terms.logit_norm.running"]) != 1.0  # the term's state, checkpointed
        # a run group beside ALTA, a seed group, and the report of all of them
        assert run_cli(capsys, "run", *imp, *QUICK, "--method", "alta3,alta", "--loss-term", "logit_norm=0.2",
                       "--logger", "loss_jsonl", "--output-dir", str(group))[0] == 0
        member = json.loads((group / "alta3" / "summary.json").read_text())
        assert member["group"]["size"] == 2 and member["accuracy_matrix"] == summary["accuracy_matrix"]
        # a member records its logger plug-in as a run alone does (it was left out of a group's summaries)
        assert {(p["kind"], p["name"]) for p in member["plugins"]} == {(p["kind"], p["name"]) for p in summary["plugins"]}
        assert run_cli(capsys, "run", *imp, *QUICK, *PLUGIN_RUN, "--seeds", "0", "1", "--output-dir", str(seeds))[0] == 0
        aggregate = json.loads((seeds / "aggregate.json").read_text())
        assert aggregate["method"] == "alta3" and aggregate["seeds"] == [0, 1] and aggregate["plugins"]
        code, out, _ = run_cli(capsys, "report", str(group), str(seeds), str(single))
        assert code == 0
        assert "| alta3 | alta3 | 200 | 42 |" in out and "| seeds | alta3 | 200 | 0,1 |" in out
        assert "| oritext_mlp2cprompt_oriimg | oritext_mlp2cprompt_oriimg |" in out
        assert f"Plug-in code: method 'alta3': --import {plugin_file}, sha256 {digest[:12]}" in out
        # a run stopped after its first experience, to resume below
        code, out, _ = run_cli(capsys, "run", *imp, *QUICK, *PLUGIN_RUN, "--stop-after", "1", "--output-dir",
                               str(partial))
        assert code == 0 and f"continue with: alta run --resume {partial} --import {plugin_file}" in out
    on_disk = files_of(partial)

    code, _, err = run_cli(capsys, "run", "--resume", str(partial))  # the plug-in is not registered now
    assert code == 2
    assert (f"this run was made with the method plug-in 'alta3' (--import {plugin_file}, sha256 {digest[:12]}), "
            f"which is not registered now: pass --import {plugin_file} as when the run started") in err
    original = plugin_file.read_text()
    plugin_file.write_text(original + "\n# edited since\n")
    with preserved():
        code, _, err = run_cli(capsys, "run", "--resume", str(partial), *imp)  # another version of it
    assert code == 2 and "the method plug-in 'alta3' changed since this run was started" in err
    assert f"sha256 {digest[:12]}, it is now --import {plugin_file}, sha256 " in err
    assert files_of(partial) == on_disk  # refused before anything was written
    plugin_file.write_text(original)
    with preserved():
        assert run_cli(capsys, "run", "--resume", str(partial), *imp)[0] == 0  # its own code: it goes on
    resumed = json.loads((partial / "summary.json").read_text())
    assert resumed["accuracy_matrix"] == summary["accuracy_matrix"]  # bit-identical, the term's state restored


def load_config(folder: Path) -> RunConfig:
    from alta.run import load_saved_config

    return load_saved_config(folder / "config.yaml")


def test_an_unknown_name_lists_the_registered_ones_and_says_how_to_register(capsys):
    code, _, err = run_cli(capsys, "run", "--method", "alta3", "--epochs", "1")
    assert code == 2
    assert "unknown method 'alta3'" in err and "oritext_mlp2cprompt_oriimg" in err
    assert "an entry point in group 'alta.methods'" in err and "alta run --import MODULE_OR_FILE" in err
    for flags, group in ((["--loss-term", "nope"], "alta.loss_terms"), (["--dataset", "nope"], "alta.datasets"),
                         (["--logger", "nope"], "alta.loggers")):
        code, _, err = run_cli(capsys, "run", *flags, "--epochs", "1")
        assert code == 2 and f"group {group!r}" in err, err


# ============================================================================ broken plug-ins
def test_a_plugin_that_fails_to_import_is_named_with_its_error(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("import alta\n\nscale = 1 / 0\n")
    code, _, err = run_cli(capsys, "run", "--import", str(broken), "--epochs", "1")
    assert code == 2
    assert f"alta: error: --import {broken} failed: ZeroDivisionError: division by zero (at {broken}:3)" in err
    code, _, err = run_cli(capsys, "list", "--import", str(tmp_path / "absent.py"))
    assert code == 2 and "no such file" in err
    code, _, err = run_cli(capsys, "list", "--import", str(tmp_path))  # a folder was called "no such file"
    assert code == 2 and f"--import {tmp_path}: is a folder, not a file" in err
    assert "broken" not in sys.modules  # nothing half-imported is left behind


@pytest.mark.parametrize("registration, message", [
    ("METHODS.add('probe2', LearnerMethod('probe2', lambda backbone: None))",
     "--import {file}: method 'probe2': its build\\(backbone\\) cannot be called as build\\(backbone, "
     "class_names=..., seed=...\\) .* \\(at {file}:5\\)"),
    ("METHODS.add('probe3', lambda backbone, *, seed: None)",
     "method plug-in 'probe3' of --import {file}, sha256 .* does not follow the method protocol: .*cannot be called "
     "as build\\(backbone, class_names=..., seed=...\\)"),
    ("METHODS.add('odd', MethodSpec('odd', (('f3', 'w1'),), replay=True, snapshot=True, description=''))",
     "--import {file}: method 'odd': each term of a MethodSpec is a pair \\(image kind, text kind\\)"),
    ("LOSS_TERMS.add('noweight', lambda scale: None)", "loss term plug-in 'noweight' .* takes no keyword 'weight'"),
    ("from alta.losses import LossTerm\nLOSS_TERMS.add('noforward', type('NoForward', (LossTerm,), {}))",
     "loss term plug-in 'noforward' .* NoForward does not define forward\\(inputs\\)"),
    ("LOGGERS.add('nolog', lambda: None)", "logger plug-in 'nolog' .* cannot be called as factory\\(output_dir"),
    ("METHODS.add('alta', MethodSpec('x', (('f1', 'w2'),), replay=True, snapshot=True, description=''))",
     "method plug-in 'alta' .* cannot be registered: a method named 'alta' is already registered \\(built into"),
])
def test_a_plugin_of_the_wrong_shape_is_refused_naming_it(tmp_path, capsys, registration, message):
    path = tmp_path / "shapes.py"
    path.write_text("from alta.methods import METHODS, LearnerMethod, MethodSpec\nfrom alta.losses import LOSS_TERMS\n"
                    f"from alta.loop.loggers import LOGGERS\n\n{registration}\n")
    with pytest.raises(PluginError, match=message.format(file=path)):
        plugins.import_plugin(path)


TERMS = '''
import torch
from alta.losses import LOSS_TERMS, LossTerm, TermValue


class Vector(LossTerm):
    name = "vector"

    def forward(self, inputs):
        return TermValue(inputs.logits.mean(0), inputs.logits.shape[0])  # (C,): not a scalar


class LateNaN(LossTerm):
    name = "late_nan"

    def forward(self, inputs):
        value = inputs.logits.pow(2).mean()
        if int(inputs.learner.experience_index) >= 1:  # NaN from the second experience on
            value = value * float("nan")
        return TermValue(value, inputs.logits.numel())


LOSS_TERMS.add("vector", Vector)
LOSS_TERMS.add("late_nan", LateNaN)
'''


def test_a_term_returning_a_non_scalar_or_nan_is_named_and_no_run_on_disk_is_lost(tmp_path, capsys):
    terms = tmp_path / "terms.py"
    terms.write_text(TERMS)
    imp = ["--import", str(terms)]
    done, broken = tmp_path / "done", tmp_path / "nan"
    assert run_cli(capsys, "run", "--dataset", "digits", "--num-experiences", "2", *QUICK[2:],
                   "--set", "data.max_train_per_class=8", "--output-dir", str(done))[0] == 0
    finished = files_of(done)

    code, _, err = run_cli(capsys, "run", *imp, "--dataset", "digits", "--num-experiences", "2", *QUICK[2:],
                           "--loss-term", "vector", "--output-dir", str(tmp_path / "vector"))
    assert code == 2
    assert (f"loss term plug-in 'vector' (--import {terms}, sha256 " in err
            and "returned a value that is a torch.float32 tensor of shape (10,), not a scalar" in err), err

    code, _, err = run_cli(capsys, "run", *imp, "--dataset", "digits", "--num-experiences", "2", *QUICK[2:],
                           "--set", "data.max_train_per_class=8", "--loss-term", "late_nan=0.1",
                           "--output-dir", str(broken))
    assert code == 1
    assert f"loss term plug-in 'late_nan' (--import {terms}, sha256 " in err and "returned nan at this step" in err
    assert f"the last complete checkpoint {broken / 'checkpoint.pt'} is intact" in err
    assert f"alta run --resume {broken} --import {terms}" in err
    assert "when the fix is a setting (a lower --lr, fp32), start a new run with it instead" in err  # resume keeps it
    state = read_checkpoint(broken / "checkpoint.pt", config_hash=load_config(broken).fingerprint(),
                            num_experiences=2)
    assert state["next_experience"] == 1 and not (broken / "summary.json").exists()  # experience 1 kept
    assert files_of(done) == finished  # the finished run beside it is untouched


def test_the_epoch_check_names_a_non_finite_term_with_its_plugin():
    from alta.errors import TrainingError
    from alta.loop.divergence import DivergenceMonitor

    with preserved():
        with plugins.loading(PluginOrigin("entry point", "demo_terms", distribution="alta-demo", version="2.0",
                                          group="alta.loss_terms")):
            alta.losses.LOSS_TERMS.add("blowup", alta.losses.CrossEntropy)
        with pytest.raises(TrainingError, match=r"Non-finite: loss term plug-in 'blowup' \(package alta-demo 2\.0 "
                                                r"\(entry point in alta.loss_terms, module demo_terms\)\) is NaN"):
            DivergenceMonitor().check(mean_loss=float("nan"), parameters=[], experience=0, epoch=0, lr=0.1,
                                      terms={"ce": 1.0, "blowup": float("nan")})


# ============================================================================ entry points
def write_distribution(site: Path, name: str, version: str, entry_points: str, modules: dict[str, str]) -> Path:
    """An installed distribution as pip lays it out: its modules and ``<name>-<version>.dist-info``
    with METADATA and entry_points.txt."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    return site


def test_entry_points_load_once_lazily_in_name_order_with_their_package(tmp_path, monkeypatch):
    site = write_distribution(tmp_path / "site", "gizmo-pack", "3.1", "[alta.test_gizmos]\nzeta = gizmo_mod:ZETA\n"
                              "alpha = gizmo_mod:ALPHA\nself = gizmo_self\n",
                              {"gizmo_mod": "ZETA = 'z'\nALPHA = 'a'\nLOADS = []\n",
                               "gizmo_self": "from alta.registry import registries\n"
                                             "[r for r in registries() if r.group == 'alta.test_gizmos'][0]"
                                             ".add('self', 's')\n"})
    monkeypatch.syspath_prepend(str(site))
    gizmos = Registry("gizmo", group="alta.test_gizmos")
    gizmos.add("first", "f")  # no lookup yet: nothing loaded
    assert gizmos._entries == {"first": "f"}
    assert gizmos.names() == ["first", "alpha", "self", "zeta"]  # what was there, then by entry-point name
    assert gizmos.get("zeta") == "z"
    mine = gizmos.origin("first")  # registered by this module: a "code" origin with its file's hash
    assert (mine.source, Path(mine.file).name, mine.sha256) == ("code", "test_plugins.py",
                                                                hashlib.sha256(Path(__file__).read_bytes()).hexdigest())
    origin = gizmos.origin("alpha")
    assert (origin.source, origin.distribution, origin.version, origin.module) == ("entry point", "gizmo-pack",
                                                                                    "3.1", "gizmo_mod")
    assert gizmos.origin("self").module == "gizmo_self"  # a module entry point registers itself
    assert "package gizmo-pack 3.1 (entry point in alta.test_gizmos, module gizmo_mod)" == origin.describe()


def test_a_broken_entry_point_is_reported_every_time_and_registers_nothing(tmp_path, monkeypatch):
    site = write_distribution(tmp_path / "site", "bad-pack", "0.1", "[alta.test_broken]\ngood = ok_mod:X\n"
                              "worse = bad_mod:Y\n",
                              {"ok_mod": "X = 1\n", "bad_mod": "import math\nY = math.sqrt(-1)\n"})
    monkeypatch.syspath_prepend(str(site))
    broken = Registry("widget", group="alta.test_broken")
    for _ in range(2):  # never skipped: the next lookup raises again
        with pytest.raises(PluginError, match=r"the widget plug-in 'worse' of package bad-pack 0.1 \(entry point in "
                                              r"alta.test_broken, module bad_mod\) failed to load \(bad_mod:Y\): "
                                              r"ValueError: math domain error \(at .*bad_mod.py:2\)"):
            broken.names()
        assert broken._entries == {}  # all or nothing
    shutil.rmtree(site)
    write_distribution(site, "bad-pack", "0.2", "[alta.test_broken]\nempty = ok_mod\n", {"ok_mod": "X = 1\n"})
    with pytest.raises(PluginError, match="names the module ok_mod, which registered no widget named 'empty'"):
        Registry("widget", group="alta.test_broken").names()


def test_a_resumed_run_refuses_another_version_of_an_entry_point_plugin():
    spec = MethodSpec("variant", (("f1", "w2"),), replay=False, snapshot=True, description="")
    old = PluginOrigin("entry point", "demo_pkg", distribution="alta-demo", version="1.0.0", group="alta.methods")
    new = PluginOrigin("entry point", "demo_pkg", distribution="alta-demo", version="1.1.0", group="alta.methods")
    with plugins.loading(new):  # what loading version 1.1.0's entry point does
        METHODS.add("variant", spec)
    config = RunConfig.from_dict({"model": {"method": "variant"}})
    assert config.plugins == [new.record("method", "variant")]
    assert config.fingerprint() != RunConfig.from_dict({"model": {"method": "cprompt"}}).fingerprint()
    with pytest.raises(PluginError, match=r"the method plug-in 'variant' changed since this run was started: it was "
                                          r"package alta-demo 1\.0\.0 .*, it is now package alta-demo 1\.1\.0 .*"
                                          r"install alta-demo==1\.0\.0"):
        RunConfig.from_dict({"model": {"method": "variant"}, "plugins": [old.record("method", "variant")]})
    assert RunConfig.from_dict({"model": {"method": "variant"}, "plugins": config.plugins}) == config
    assert "plugins" not in RunConfig().to_yaml() and RunConfig().plugins == []  # alta's own: nothing recorded


# ============================================================================ learner plug-ins
def test_a_learner_plugin_gets_its_options_and_loss_terms_from_the_config(tiny_clip):
    from alta.run.experiment import build_learner

    namespace: dict = {}
    exec(compile((REPO / "examples" / "linear_probe.py").read_text(), "linear_probe.py", "exec"), namespace)
    config = RunConfig.from_dict({"model": {"method": "linear_probe", "visual": "tiny-vit",
                                            "method_options": {"init": "random"}, "loss_terms": {"ce": 0.5}}})
    assert config.model.loss_terms == {"ce": {"weight": 0.5}}
    with pytest.raises(ConfigError, match=r"loss term\(s\) \['ce'\] named twice"):
        build_learner(config, tiny_clip, ["a", "b"])
    config = RunConfig.from_dict({"model": {"method": "linear_probe", "method_options": {"init": "random"},
                                            "loss_terms": {"replay_mse": 0.5}}})
    learner = build_learner(config, tiny_clip, ["a", "b"])
    assert isinstance(learner, namespace["LinearProbe"]) and [t.name for t in learner._extra] == ["replay_mse"]
    with pytest.raises(ConfigError, match=r"model.method_options.*build\(backbone, \*, class_names.*does not take"):
        RunConfig.from_dict({"model": {"method": "linear_probe", "method_options": {"depth": 2}}})
    with pytest.raises(ConfigError, match="method 'oritext_mlp2cprompt_oriimg' is a variant of ALTA"):
        RunConfig.from_dict({"model": {"method": "alta", "method_options": {"init": "random"}}})
    METHODS.add("bare", LearnerMethod("bare", lambda backbone, *, class_names, seed: object()))
    with pytest.raises(ConfigError, match="takes no loss_terms argument"):
        RunConfig.from_dict({"model": {"method": "bare", "loss_terms": {"ce": 1.0}}})
    with pytest.raises(PluginError, match="method plug-in 'bare' .* built object is not a learner .* lacks backbone"):
        build_learner(RunConfig.from_dict({"model": {"method": "bare"}}), tiny_clip, ["a", "b"])


# ============================================================================ an installed package
@pytest.mark.slow
def test_an_installed_package_reaches_the_command_line_and_its_version_binds_a_resumed_run(tmp_path):
    """pip installs tests/plugin_package (1.0.0, then 1.1.0 elsewhere): fresh ``python -m alta``
    processes find it through its entry points, run it by name, in a run group and with --seeds,
    report it, and refuse to resume its run without it or with the other version."""

    def install(version: str) -> Path:
        source = tmp_path / f"src-{version}"
        shutil.copytree(PACKAGE, source)
        text = (source / "pyproject.toml").read_text().replace('version = "1.0.0"', f'version = "{version}"')
        (source / "pyproject.toml").write_text(text)
        target = tmp_path / f"site-{version}"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-build-isolation", "--target", str(target), str(source)], check=True, timeout=300)
        return target

    def alta_cli(*args: str, site: Path | None) -> subprocess.CompletedProcess:
        path = os.pathsep.join([*([str(site)] if site else []), str(REPO)])
        env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
        return subprocess.run([sys.executable, "-m", "alta", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)

    v1, v2 = install("1.0.0"), install("1.1.0")
    listed = alta_cli("list", "plugins", site=v1)
    assert listed.returncode == 0, listed.stderr
    for line in ("method 'alta3'", "loss term 'logit_norm'", "dataset 'demo-shapes'", "logger 'loss_jsonl'"):
        assert line in listed.stdout and "package alta-plugin-demo 1.0.0" in listed.stdout
    for args in ([*PLUGIN_RUN, "--logger", "loss_jsonl", "--output-dir", "single"],
                 ["--method", "alta3,alta", "--loss-term", "logit_norm", "--output-dir", "group"],
                 [*PLUGIN_RUN, "--seeds", "0", "1", "--output-dir", "seeds"],
                 [*PLUGIN_RUN, "--stop-after", "1", "--output-dir", "partial"]):
        done = alta_cli("run", *QUICK, *args, site=v1)
        assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "single" / "losses.jsonl").is_file()
    report = alta_cli("report", "group", "seeds", "single", site=v1)
    assert report.returncode == 0 and "| seeds | alta3 | 200 | 0,1 |" in report.stdout
    assert "Plug-in code: method 'alta3': package alta-plugin-demo 1.0.0" in report.stdout
    missing = alta_cli("run", "--resume", "partial", site=None)
    assert missing.returncode == 2
    assert "which is not registered now: install alta-plugin-demo==1.0.0" in missing.stderr
    other = alta_cli("run", "--resume", "partial", site=v2)
    assert other.returncode == 2
    assert ("it was package alta-plugin-demo 1.0.0 (entry point in alta.methods, module alta_plugin_demo), it is now "
            "package alta-plugin-demo 1.1.0") in other.stderr
    again = alta_cli("run", "--resume", "partial", site=v1)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed, single = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("partial", "single"))
    assert resumed["accuracy_matrix"] == single["accuracy_matrix"]


def test_the_plugin_package_declares_what_the_import_file_registers():
    """The package's entry points and the --import file of these tests register the same objects."""
    text = (PACKAGE / "pyproject.toml").read_text()
    for group, line in (("alta.methods", 'alta3 = "alta_plugin_demo:ALTA3"'),
                        ("alta.loss_terms", 'logit_norm = "alta_plugin_demo:LogitNorm"'),
                        ("alta.datasets", 'demo-shapes = "alta_plugin_demo:SHAPES"'),
                        ("alta.loggers", 'loss_jsonl = "alta_plugin_demo:loss_jsonl"')):
        assert f'[project.entry-points."{group}"]\n{line}' in text
        name, _, target = line.partition(" = ")
        assert f'.add("{name}", {target.strip(chr(34)).split(":")[1]})' in REGISTER
    assert torch.__version__  # the package imports torch and alta only


SOURCE_AND_POLICY = '''
from alta.backbones import SOURCES, BackboneSource, load_backbone
from alta.buffer import BUFFER_POLICIES
from alta.policies import BufferPolicy


def load(identifier, *, pretrained=None, **options):
    return load_backbone(identifier, **options)  # the tiny random-weight CLIP, under another prefix


SOURCES.add("mirror", BackboneSource("mirror:", load, lambda: ["tiny-vit"], ""))


class Newest(BufferPolicy):
    """Keeps the newest items: first in, first out."""

    def assign(self, *, num_seen, size, batch_size, labels, generator):
        return [(num_seen + i) % self.capacity for i in range(batch_size)]


BUFFER_POLICIES.add("newest", Newest)
'''


def test_a_backbone_source_and_a_buffer_policy_plugin_are_taken_by_name(tmp_path, capsys):
    path = tmp_path / "source_and_policy.py"
    path.write_text(SOURCE_AND_POLICY)
    code, out, _ = run_cli(capsys, "list", "--import", str(path))
    assert code == 0 and "mirror             --visual mirror:MODEL" in out
    assert "newest             Keeps the newest items: first in, first out [plug-in: --import" in out
    code, _, err = run_cli(capsys, "run", "--import", str(path), "--visual", "mirror:tiny-vit", "--set",
                           "buffer.policy=newest", "--set", "buffer.size=20", "--dataset", "digits",
                           "--num-experiences", "2", *QUICK[2:], "--set", "data.max_train_per_class=8",
                           "--output-dir", str(tmp_path / "run"))
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [(p["kind"], p["name"]) for p in summary["plugins"]] == [("backbone source", "mirror"),
                                                                    ("buffer policy", "newest")]
    state = read_checkpoint(tmp_path / "run" / "checkpoint.pt", config_hash=load_config(tmp_path / "run")
                            .fingerprint(), num_experiences=2)
    buffer = state["buffer"]
    assert buffer["policy"] == "newest" and buffer["num_seen"] == 2 * 2 * 5 * 8  # 2 experiences x 2 epochs x 40
    assert buffer["fields"]["labels"].min() >= 5  # only the newest items: the last epoch's, classes 5-9
