"""Transform presets: the reference protocol, CLIP's preprocessing, RGB conversion, picklability."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from alta.data import dataset_stats, list_transform_presets, make_transform
from alta.data.transforms import CLIP_MEAN, CLIP_STD, ConvertRGB
from alta.errors import ConfigError


def _steps(transform) -> list[type]:
    return [type(step) for step in transform.transforms]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    gray = Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8))  # mode L
    rgba = Image.fromarray(rng.integers(0, 256, (33, 17, 4), dtype=np.uint8), mode="RGBA")
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    return [rgb, gray, rgba, palette, rgb.convert("1"), gray.convert("I")]


def test_presets_are_registered():
    assert {"reference", "clip", "zscl", "plain"} <= set(list_transform_presets())


@pytest.mark.parametrize("preset", ["reference", "clip", "zscl", "plain"])
@pytest.mark.parametrize("train", [True, False])
def test_every_preset_gives_rgb_tensors_of_the_resolution(preset, train):
    transform = make_transform(preset, train=train, resolution=24, dataset="seq-cifar10")
    for image in _images():
        out = transform(image)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        assert out.shape == (3, 24, 24), image.mode


@pytest.mark.parametrize("preset", ["reference", "clip", "zscl", "plain"])
@pytest.mark.parametrize("train", [True, False])
def test_repr_is_deterministic_and_transforms_pickle(preset, train):
    a = make_transform(preset, train=train, resolution=32, dataset="seq-cifar100")
    b = make_transform(preset, train=train, resolution=32, dataset="seq-cifar100")
    assert repr(a) == repr(b)
    assert " at 0x" not in repr(a)
    clone = pickle.loads(pickle.dumps(a))
    assert repr(clone) == repr(a)
    if not train:  # deterministic side: same output
        image = _images()[0]
        torch.testing.assert_close(clone(image), a(image))


def test_reference_protocol_steps_and_dataset_stats():
    train = make_transform("reference", train=True, resolution=224, dataset="seq-cifar10")
    assert _steps(train) == [ConvertRGB, T.RandomResizedCrop, T.RandomHorizontalFlip, T.ToTensor,
                             T.Normalize]
    assert tuple(train.transforms[-1].mean) == (0.4914, 0.4822, 0.4465)
    assert tuple(train.transforms[-1].std) == (0.2470, 0.2435, 0.2615)
    # The reference code has no flip for Seq-CIFAR-100.
    c100 = make_transform("reference", train=True, resolution=224, dataset="seq-cifar100")
    assert T.RandomHorizontalFlip not in _steps(c100)
    assert tuple(c100.transforms[-1].mean) == (0.5071, 0.4867, 0.4408)
    test = make_transform("reference", train=False, resolution=224, dataset="seq-tinyimagenet")
    assert _steps(test) == [ConvertRGB, T.Resize, T.CenterCrop, T.ToTensor, T.Normalize]
    assert tuple(test.transforms[-1].std) == (0.2770, 0.2691, 0.2821)


def test_dataset_stats_values_and_fallbacks():
    assert dataset_stats("fashion-mnist") == ((0.2860,) * 3, (0.3530,) * 3)
    assert dataset_stats("image-folder") == (CLIP_MEAN, CLIP_STD)
    assert dataset_stats(None) == (CLIP_MEAN, CLIP_STD)
    with pytest.raises(ConfigError, match="seq-cifar10"):
        dataset_stats("cifar-ten")


def test_digits_stats_match_the_data():
    from alta.data.datasets.digits import digits_arrays as _digits_arrays

    train_x, _, test_x, _ = _digits_arrays()
    pixels = np.concatenate([train_x, test_x]).astype(np.float64) / 255.0
    mean, std = dataset_stats("digits")
    assert mean[0] == pytest.approx(pixels.mean(), abs=1e-3)
    assert std[0] == pytest.approx(pixels.std(), abs=1e-3)


def test_clip_preset_matches_clips_own_preprocessing():
    clip = pytest.importorskip("clip")
    theirs = clip.clip._transform(32)
    ours = make_transform("clip", train=False, resolution=32)
    image = _images()[0]
    torch.testing.assert_close(ours(image), theirs(image))
    train = make_transform("clip", train=True, resolution=32)
    assert train.transforms[1].interpolation == T.InterpolationMode.BICUBIC


def test_plain_preset_is_unnormalised_and_deterministic():
    plain = make_transform("plain", train=True, resolution=8)
    out = plain(Image.new("RGB", (8, 8), (255, 0, 0)))
    assert out[0].min() == 1.0 and out[1].max() == 0.0
    torch.testing.assert_close(plain(_images()[0]), plain(_images()[0]))


def test_explicit_mean_std_override():
    t = make_transform("reference", train=False, resolution=8, dataset="seq-cifar10", mean=0.5, std=0.25)
    assert tuple(t.transforms[-1].mean) == (0.5, 0.5, 0.5)
    assert tuple(t.transforms[-1].std) == (0.25, 0.25, 0.25)


def test_convert_rgb_on_tensors():
    gray = torch.rand(1, 4, 4)
    assert ConvertRGB()(gray).shape == (3, 4, 4)
    rgb = torch.rand(3, 4, 4)
    assert ConvertRGB()(rgb) is rgb


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"preset": "refrence"}, "did you mean 'reference'"),
        ({"resolution": 0}, "positive int"),
        ({"resolution": 22.5}, "positive int"),
        ({"mean": (0.5, 0.5, 0.5)}, "both mean and std"),
        ({"mean": (0.5, 0.5), "std": (1, 1, 1)}, "mean must be"),
        ({"mean": 0.5, "std": (1, 0, 1)}, "std must be"),
        ({"dataset": "cifar"}, "no normalisation statistics"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, match):
    args = {"preset": "reference", "train": True, "resolution": 32, **kwargs}
    preset = args.pop("preset")
    with pytest.raises(ConfigError, match=match):
        make_transform(preset, **args)
