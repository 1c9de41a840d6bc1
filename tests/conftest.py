"""Shared test fixtures: a tiny random-weight CLIP, the shared real-data folder, seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: torch's thread count before the tests set one: what a fresh Python (a reader running a docs
#: page) gets
DEFAULT_THREADS = pytest.StashKey[int]()


def pytest_configure(config):
    """One torch thread: the tests run tiny models, for which thread start-up costs more than it
    saves, and a second thread competing for 2 cores slows everything down."""
    import torch

    config.stash[DEFAULT_THREADS] = torch.get_num_threads()
    torch.set_num_threads(1)
    # Nothing is ever downloaded in tests: open_clip and Hugging Face read only their local caches.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _restore_threads():
    """Tests (and the in-process CLI) may set torch's thread count: give it back after each."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def shared_data_root() -> Path | None:
    """The shared real-data folder: $ALTA_DATA_ROOT, else ../shared/data beside the repo."""
    env = os.environ.get("ALTA_DATA_ROOT")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Root of the shared real data; skips the test when it is absent (users' machines)."""
    root = shared_data_root()
    if root is None:
        pytest.skip("shared real-data folder not found: set ALTA_DATA_ROOT to a folder holding cifar10/")
    return root


@pytest.fixture(scope="session")
def cifar10_root(data_root: Path) -> Path:
    path = data_root / "cifar10"
    if not (path / "train").is_dir():
        pytest.skip(f"CIFAR-10 image folders not found under {path}")
    return path


@pytest.fixture(scope="session")
def tiny_imagenet_root(data_root: Path) -> Path:
    path = data_root / "tiny-imagenet-200-sample"
    if not (path / "wnids.txt").is_file():
        pytest.skip(f"Tiny-ImageNet sample not found under {path}")
    return path


@pytest.fixture(scope="session")
def tiny_clip():
    """A tiny CLIP (clip.model.CLIP, ViT image encoder, 32 px, D = 512, W = 128) with seeded
    random weights, frozen. Session-scoped: never mutate it."""
    from alta.backbones import load_backbone

    return load_backbone("tiny-vit", device="cpu", seed=0)


@pytest.fixture(scope="session")
def tiny_clip_rn():
    """The ResNet flavour of the tiny CLIP (modified ResNet image encoder, 32 px)."""
    from alta.backbones import load_backbone

    return load_backbone("tiny-rn", device="cpu", seed=0)


@pytest.fixture(autouse=True)
def _restore_registries():
    """What a test registers (plug-ins, ``--import``'ed files, methods added by a docs page) is
    gone after it: every registry is restored (alta.registry.preserved)."""
    from alta.registry import preserved

    with preserved():
        yield
