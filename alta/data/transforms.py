"""Named image transform presets for the continual-learning streams of ALTA.

ALTA (Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023) feeds CLIP images prepared the way its reference code (vijaylee/ALTA,
built on mammoth) prepares them, which is *not* CLIP's own preprocessing: training images get
``RandomResizedCrop`` + horizontal flip (no flip for Seq-CIFAR-100) and every image is normalised
with the *dataset's* mean/std. This module offers that protocol (``"reference"``), CLIP's own
preprocessing (``"clip"``), ZSCL's MTIL preprocessing (``"zscl"``) and an augmentation-free,
unnormalised preset for tests (``"plain"``), all through one registry:

    >>> t = make_transform("reference", train=True, resolution=224, dataset="seq-cifar10")

Every transform built here is a ``torchvision.transforms.Compose`` of picklable objects (so it
works in ``DataLoader`` worker processes) whose ``repr`` is deterministic (it is part of the feature
cache keys, see :meth:`alta.data.ExperienceDataset.cache_key`). Every preset converts its input to
RGB first, so grayscale and palette images work.

References:
    W. Li et al., IEEE Transactions on Multimedia, 2023 (IEEE Xplore 10347466); reference code
    github.com/vijaylee/ALTA.
    A. Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
    ICML 2021 (CLIP's preprocessing and mean/std).
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from ..errors import ConfigError, DataError
from ..registry import Registry

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ConvertRGB",
    "TRANSFORM_PRESETS",
    "dataset_stats",
    "list_transform_presets",
    "make_transform",
    "to_rgb8",
]

logger = logging.getLogger(__name__)

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

# Per-dataset normalisation of the reference protocol. Keys are stream names (see
# ``alta.data.list_datasets()``). Values are per-channel (mean, std) of ToTensor() outputs.
_DATASET_STATS: dict[str, Stats] = {
    "seq-cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2615)),
    "seq-cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "seq-tinyimagenet": ((0.4802, 0.4480, 0.3975), (0.2770, 0.2691, 0.2821)),
    # Grayscale datasets are converted to RGB, so the one-channel statistic is repeated.
    "fashion-mnist": ((0.2860,) * 3, (0.3530,) * 3),
    # Computed once over all 1,797 scikit-learn digits at their native 8x8 size, with pixels
    # mapped 0..16 -> 0..255 as alta.data.datasets does: mean 0.3053, std 0.3759.
    "digits": ((0.3053,) * 3, (0.3759,) * 3),
    # Folders of arbitrary images have no agreed statistics: use CLIP's, the natural choice for
    # a CLIP backbone.
    "image-folder": (CLIP_MEAN, CLIP_STD),
}

# The reference code has no horizontal flip for these streams.
_NO_FLIP = frozenset({"seq-cifar100"})


# PIL modes holding one channel of more than 8 bits; ``convert("RGB")`` clips them to 0..255.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _declared_bits(image: Image.Image) -> int | None:
    """Bits per sample of the file an image was read from, when known.

    PNG and PGM/PPM files hold at most 16 bits per sample (PIL reads 16-bit ones as mode ``I``
    in some versions, and scales a PGM's maxval to 65535); TIFF declares BitsPerSample.
    """
    if image.format in ("PNG", "PPM"):
        return 16
    tags = getattr(image, "tag_v2", None)
    try:
        bits = tags.get(258) if tags is not None else None  # BitsPerSample
    except Exception:  # pragma: no cover - exotic tag values
        return None
    if isinstance(bits, tuple):
        bits = bits[0] if bits else None
    return int(bits) if isinstance(bits, int) and bits > 0 else None


def _wide_to_l(image: Image.Image, where: str) -> Image.Image:
    """A one-channel image of more than 8 bits as an 8-bit ``L`` image (see :func:`to_rgb8`)."""
    mode = image.mode
    if mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.round(values / 257.0).astype(np.uint8), mode="L")
    if mode == "I":
        values = np.asarray(image, dtype=np.float64)
        if values.size == 0:
            return Image.new("L", image.size)
        low, high = float(values.min()), float(values.max())
        bits = _declared_bits(image)
        if low < 0:
            raise DataError(
                f"{where}: 32-bit integer image (PIL mode I) holds negative values (min {low:g}); "
                "expected unsigned pixel values with a known bit depth. Fix: convert it to an 8- or "
                "16-bit PNG (e.g. after scaling it to 0..255 or 0..65535)"
            )
        if bits is None or bits > 16:
            # No usable declared depth: infer it from the values.
            if high <= 255:
                bits = 8
            elif high <= 65535:
                bits = 16
            else:
                raise DataError(
                    f"{where}: 32-bit integer image (PIL mode I) with values up to {high:g} has no "
                    "8- or 16-bit range alta could map to 0..255. Fix: convert it to an 8- or 16-bit "
                    "PNG (e.g. after scaling it to 0..255 or 0..65535)"
                )
        scale = 255.0 / (2**bits - 1)
        return Image.fromarray(np.round(np.clip(values, 0, 2**bits - 1) * scale).astype(np.uint8), mode="L")
    # mode F: 32-bit float
    values = np.asarray(image, dtype=np.float64)
    if values.size and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise DataError(
            f"{where}: float image (PIL mode F) holds {bad} NaN/inf pixels; expected finite values. "
            "Fix: replace them (e.g. numpy.nan_to_num) and save the image again"
        )
    if values.size == 0:
        return Image.new("L", image.size)
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return Image.fromarray(np.round(np.clip(scaled, 0, 255)).astype(np.uint8), mode="L")


def to_rgb8(image: Image.Image, *, where: str = "image") -> Image.Image:
    """Any PIL image as an 8-bit ``RGB`` image, rescaling high-bit-depth single-channel images.

    PIL's ``convert("RGB")`` clips values above 255, so a 16-bit image would come out nearly
    black and white. The rule for one-channel images of more than 8 bits:

    - ``I;16`` (16-bit PNG/TIFF/PGM): ``round(v / 257)``, mapping 0..65535 onto 0..255 exactly.
    - ``I`` (32-bit int): b = 16 for images read from PNG or PGM/PPM files, the declared
      BitsPerSample of a TIFF when it is at most 16; otherwise (32-bit TIFFs, images built in
      memory) b = 8 if every value is <= 255, else 16 if every value is <= 65535; then
      ``round(v * 255 / (2**b - 1))``. Negative values, and values above 65535 in a 32-bit
      image, are refused.
    - ``F`` (32-bit float): values all in [0, 1] are read as intensities, ``round(v * 255)``;
      otherwise the image is min-max scaled, ``round((v - min) * 255 / (max - min))`` per image
      (a constant image becomes 0). NaN/inf are refused.

    The gray value is then repeated over the three channels. Palette images with transparency go
    through ``RGBA`` (as PIL recommends); every other mode uses ``convert("RGB")``.

    Args:
        image: A PIL image of any mode.
        where: What to name in error messages (e.g. the file path).

    Returns:
        An ``RGB`` image (``image`` itself when it already is one).

    Raises:
        DataError: an image the rule above refuses, or a mode PIL cannot convert to RGB.
    """
    if image.mode == "RGB":
        return image
    try:
        if image.mode in _WIDE_MODES:
            return _wide_to_l(image, where).convert("RGB")
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # avoids PIL's palette-transparency warning
        return image.convert("RGB")
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise DataError(
            f"{where}: cannot convert a PIL image of mode {image.mode!r} to RGB ({err}); expected "
            "an RGB, grayscale, palette or 16-bit image. Fix: save it as an 8-bit RGB PNG or JPEG"
        ) from err


class ConvertRGB:
    """Convert a PIL image (any mode) or a 1-channel image tensor to 3-channel RGB.

    PIL images go through :func:`to_rgb8`, so 16-bit and float images are rescaled to 8 bits
    rather than clipped. A class rather than a lambda so that it pickles and has a stable ``repr``.

    Shape:
        Tensor input: (1, H, W) -> (3, H, W); (3, H, W) is returned unchanged.
    """

    def __call__(self, image):
        if isinstance(image, Image.Image):
            return to_rgb8(image)
        if isinstance(image, torch.Tensor) and image.dim() >= 3 and image.shape[-3] == 1:
            return image.expand(*image.shape[:-3], 3, *image.shape[-2:]).clone()
        return image

    def __repr__(self) -> str:
        return "ConvertRGB()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConvertRGB)

    def __hash__(self) -> int:
        return hash(ConvertRGB)


class PresetBuilder(Protocol):
    """Signature of a preset in :data:`TRANSFORM_PRESETS`."""

    def __call__(
        self,
        *,
        train: bool,
        resolution: int,
        dataset: str | None,
        mean: tuple[float, float, float] | None,
        std: tuple[float, float, float] | None,
    ) -> Callable: ...


TRANSFORM_PRESETS: Registry[PresetBuilder] = Registry("transform preset")


def list_transform_presets() -> list[str]:
    """Names of the registered transform presets (``"reference"``, ``"clip"``, ``"proof"``, ``"zscl"``,
    ``"plain"``)."""
    return TRANSFORM_PRESETS.names()


def dataset_stats(name: str | None) -> Stats:
    """Per-channel (mean, std) the reference protocol normalises a dataset with.

    Args:
        name: A stream name (``"seq-cifar10"``, ``"seq-cifar100"``, ``"seq-tinyimagenet"``,
            ``"fashion-mnist"``, ``"digits"``, ``"image-folder"``) or ``None``. ``"image-folder"``
            and ``None`` (unknown data) give CLIP's mean/std.

    Returns:
        ``((m_r, m_g, m_b), (s_r, s_g, s_b))`` of ``ToTensor()`` outputs (values in [0, 1]).

    Raises:
        ConfigError: if ``name`` is not a known dataset; pass ``mean``/``std`` to
            :func:`make_transform` for your own data.
    """
    if name is None:
        return CLIP_MEAN, CLIP_STD
    if name not in _DATASET_STATS:
        raise ConfigError(
            f"no normalisation statistics for dataset {name!r}; known: "
            f"{', '.join(sorted(_DATASET_STATS))}. Pass mean=... and std=... to make_transform, "
            "or dataset=None to use CLIP's mean/std"
        )
    return _DATASET_STATS[name]


def _check_resolution(resolution: object) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        raise ConfigError(
            f"resolution must be a positive int (the backbone's input size in pixels, e.g. 224 "
            f"for RN50, 288 for RN50x4), got {resolution!r}"
        )
    return resolution


def _check_triplet(value: object, what: str, *, positive: bool) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (float(value),) * 3
    try:
        triplet = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        triplet = ()
    if len(triplet) != 3 or (positive and min(triplet) <= 0):
        need = "3 positive numbers" if positive else "3 numbers"
        raise ConfigError(
            f"{what} must be one number or {need} (one per RGB channel), got {value!r}"
        )
    return triplet  # type: ignore[return-value]


def make_transform(
    preset: str,
    *,
    train: bool,
    resolution: int,
    dataset: str | None = None,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
) -> Callable:
    """Build a named image transform.

    Args:
        preset: A name from :func:`list_transform_presets`:
            ``"reference"`` (ALTA's reference protocol; train: RandomResizedCrop + horizontal flip
            (no flip for ``"seq-cifar100"``); test: Resize + CenterCrop; both normalised with the
            dataset's mean/std, see :func:`dataset_stats`), ``"clip"`` (CLIP's preprocessing:
            bicubic Resize + CenterCrop for test, bicubic RandomResizedCrop + flip for train,
            CLIP's mean/std), ``"proof"`` (the CLIP class-incremental suite's, PROOF's
            ``build_transform``: bicubic Resize to a square, CenterCrop, CLIP's mean/std, the same
            for training and test: no augmentation), ``"zscl"`` (ZSCL's MTIL preprocessing: bicubic
            RandomResizedCrop of scale (0.9, 1.0), no flip, for train; CLIP's test side) or
            ``"plain"`` (Resize + CenterCrop + ToTensor for both sides, no augmentation, no
            normalisation; for tests and plots).
        train: Build the training-side transform (with augmentation) if True.
        resolution: Output side length in pixels (the backbone's input size).
        dataset: Stream name whose statistics the ``"reference"`` preset normalises with (and
            whose flip rule it follows); ``None`` uses CLIP's mean/std.
        mean: Per-channel mean overriding the preset's (one number or three); needs ``std``.
        std: Per-channel std overriding the preset's; needs ``mean``.

    Returns:
        A picklable callable mapping a PIL image (any mode) to a float tensor, with a
        deterministic ``repr``.

    Shape:
        Output: (3, resolution, resolution).

    Raises:
        ConfigError: unknown preset (lists the valid ones), bad resolution, unknown dataset
            statistics, or only one of ``mean``/``std``.

    Examples:
        >>> make_transform("clip", train=False, resolution=224)  # doctest: +ELLIPSIS
        Compose(...)
    """
    builder = TRANSFORM_PRESETS.get(preset)
    resolution = _check_resolution(resolution)
    if (mean is None) != (std is None):
        raise ConfigError(
            f"pass both mean and std or neither; got mean={mean!r}, std={std!r}"
        )
    mean_t = None if mean is None else _check_triplet(mean, "mean", positive=False)
    std_t = None if std is None else _check_triplet(std, "std", positive=True)
    return builder(train=bool(train), resolution=resolution, dataset=dataset, mean=mean_t, std=std_t)


@TRANSFORM_PRESETS.register("reference")
def _reference(*, train, resolution, dataset, mean, std):
    if mean is None:
        mean, std = dataset_stats(dataset)
    if train:
        steps = [ConvertRGB(), T.RandomResizedCrop(resolution)]
        if dataset not in _NO_FLIP:
            steps.append(T.RandomHorizontalFlip())
    else:
        steps = [ConvertRGB(), T.Resize(resolution), T.CenterCrop(resolution)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


@TRANSFORM_PRESETS.register("clip")
def _clip(*, train, resolution, dataset, mean, std):
    if mean is None:
        mean, std = CLIP_MEAN, CLIP_STD
    bicubic = InterpolationMode.BICUBIC
    if train:
        steps = [
            ConvertRGB(),
            T.RandomResizedCrop(resolution, interpolation=bicubic),
            T.RandomHorizontalFlip(),
        ]
    else:
        steps = [ConvertRGB(), T.Resize(resolution, interpolation=bicubic), T.CenterCrop(resolution)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


@TRANSFORM_PRESETS.register("proof")
def _proof(*, train, resolution, dataset, mean, std):
    # PROOF's build_transform (github.com/zhoudw-zdw/PROOF@0bb20520 utils/data.py), the same for
    # training and test: no augmentation, the image squeezed to a square (aspect ratio not kept)
    if mean is None:
        mean, std = CLIP_MEAN, CLIP_STD
    bicubic = InterpolationMode.BICUBIC
    steps = [ConvertRGB(), T.Resize((resolution, resolution), interpolation=bicubic), T.CenterCrop(resolution)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


@TRANSFORM_PRESETS.register("zscl")
def _zscl(*, train, resolution, dataset, mean, std):
    """ZSCL's MTIL transforms (Thunderbeee/ZSCL ``mtil/clip/clip.py:_transform``): training images
    get a bicubic ``RandomResizedCrop`` of scale (0.9, 1.0) and no flip; test images CLIP's
    bicubic Resize + CenterCrop; both CLIP's mean/std."""
    if mean is None:
        mean, std = CLIP_MEAN, CLIP_STD
    bicubic = InterpolationMode.BICUBIC
    if train:
        steps = [ConvertRGB(), T.RandomResizedCrop(resolution, scale=(0.9, 1.0), interpolation=bicubic)]
    else:
        steps = [ConvertRGB(), T.Resize(resolution, interpolation=bicubic), T.CenterCrop(resolution)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


@TRANSFORM_PRESETS.register("plain")
def _plain(*, train, resolution, dataset, mean, std):
    steps = [ConvertRGB(), T.Resize(resolution), T.CenterCrop(resolution), T.ToTensor()]
    if mean is not None:
        steps.append(T.Normalize(mean, std))
    return T.Compose(steps)
