"""The public surface and import behaviour of the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

import alta

EXPECTED_ALL = {
    "__version__",
    "ScenarioStream",
    "MemoryBuffer",
    "CrossModalLearner",
    "AlternatingSchedule",
    "load_backbone",
    "list_backbones",
    "list_methods",
    "get_method",
    "list_datasets",
    "list_buffer_policies",
    "make_transform",
    "build_optimizer",
    "train_step",
    "evaluate",
    "fit_experience",
    "LoopConfig",
    "Callback",
    "callbacks",
    "distributed",
    "run_stream",
    "run_group",
    "GroupMember",
    "metrics",
    "protocols",
    "LossTerm",
    "TermValue",
    "LearnerMethod",
    "ClipBackbone",
    "Experience",
    "EvaluationResult",
    "FeatureCache",
    "StreamResult",
    "epoch_batches",
    "MultiDomainStream",
    "list_sequences",
    "DataParallelStep",
    "loggers",
    "Learner",
    "AltaError",
    "BackboneError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ShapeError",
    "StateError",
}


def test_public_surface_is_pinned():
    assert set(alta.__all__) == EXPECTED_ALL
    assert len(alta.__all__) == len(set(alta.__all__))
    for name in alta.__all__:
        assert hasattr(alta, name), name


def test_error_hierarchy():
    for name in ("BackboneError", "CheckpointError", "ConfigError", "DataError", "ShapeError", "StateError"):
        assert issubclass(getattr(alta, name), alta.AltaError)
    assert issubclass(alta.ConfigError, ValueError) and issubclass(alta.DataError, ValueError)


def test_import_has_no_side_effects():
    """Importing alta prints nothing, touches no global RNG state, imports no CLIP weights code
    that downloads, and leaves torch's thread count alone."""
    code = (
        "import torch; torch.manual_seed(7); state = torch.get_rng_state().clone(); threads = torch.get_num_threads();"
        "import alta, sys;"
        "assert torch.equal(state, torch.get_rng_state());"
        "assert torch.get_num_threads() == threads;"
        "assert 'clip' not in sys.modules, 'clip-anytorch is imported lazily'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


def test_the_layers_hold_and_no_module_imports_in_a_cycle():
    """cli > run > loop > the pieces, imports only downward, no cycle (import-linter contracts in
    pyproject.toml; CONTRIBUTING.md)."""
    import os
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    command = shutil.which("lint-imports")
    if command is None:
        pytest.skip("import-linter not installed (pip install -e '.[test]')")
    done = subprocess.run([command, "--no-cache"], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout, done.stdout[-2000:]


#: Imports a function body of the library may hold: optional third-party packages, imported where
#: they are used, and the lazy top-level attribute ``alta.protocols`` (alta/__init__.py).
OPTIONAL_MODULES = {"open_clip", "transformers", "wandb", "tensorboard", "submitit", "matplotlib", "timm",
                    "torch.utils.tensorboard", "huggingface_hub", "safetensors"}


def test_no_alta_import_inside_a_function_of_the_library():
    import ast
    from pathlib import Path

    package = Path(alta.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.level or (inner.module or "").startswith("alta")):
                    module = "." * inner.level + (inner.module or "")
                    names = {a.name for a in inner.names}
                    allowed = (path.name == "__init__.py" and path.parent == package and module == ".run") or (
                        path.parent.name == "backbones" and (module.lstrip(".") in {"open_clip", "hf"} or (
                            module == "." and names <= {"open_clip", "hf"})))  # optional extras, on use
                    if not allowed:
                        found.append(f"{path.relative_to(package.parent)}:{inner.lineno} from {module}")
    assert not found, "alta imports inside function bodies (move them to the top of the module):\n" + "\n".join(found)
