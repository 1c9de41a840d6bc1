"""The public surface and import behaviour of the package."""

from __future__ import annotations

import subprocess
import sys

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
    "ClipBackbone",
    "Experience",
    "EvaluationResult",
    "FeatureCache",
    "StreamResult",
    "epoch_batches",
    "DataParallelStep",
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
