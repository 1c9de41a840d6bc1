"""Raw labelled sources and the registry of named datasets (:data:`DATASETS`).

A raw source returns ``(PIL RGB image, original label)`` with no transform, knows its readable
class names and has a stable ``identity`` for cache keys; a dataset is registered with
:func:`register` (a loader reading its sources from a root folder) and listed by
:func:`list_datasets`. The loaders are one module per family beside this one.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ...classnames import class_name_list
from ...errors import ConfigError, DataError
from ...registry import Registry
from ..transforms import to_rgb8

logger = logging.getLogger("alta.data.datasets")


# torchvision's ImageFolder extensions (torchvision.datasets.folder.IMG_EXTENSIONS), matched
# case-insensitively at the end of the file name as ImageFolder does; a test pins the equality.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

class DataRootError(DataError):
    """The data root is missing or not laid out as the dataset expects.

    Raised (instead of a plain :class:`~alta.errors.DataError`) only for problems that pointing
    ``root`` elsewhere or downloading can fix: no root, missing folders or files, class folders
    that do not match the dataset, data torchvision cannot find. Front ends append their "where
    to put the data" hint (e.g. the CLI's ``--data-root``/``--download``) to these errors only, not
    to errors about class orders, class names or corrupt files.

    Attributes:
        can_download: Whether the dataset can be downloaded (torchvision's CIFAR-10/100,
            Fashion-MNIST), so that a front end may offer its download option.
    """

    def __init__(self, message: str, *, can_download: bool = False) -> None:
        super().__init__(message)
        self.can_download = can_download


def class_key(name: str) -> str:
    """Normalised spelling used to match folder names to known class names."""
    return "_".join(name.lower().replace("-", "_").replace(" ", "_").split("_"))




class LabelledSource(Dataset):
    """A raw labelled dataset: ``source[i] -> (PIL RGB image, original label)``, no transform.

    Subclasses set ``targets`` (LongTensor (N,), original labels, readable without loading any
    image), ``class_names`` (human-readable, one per original label), ``class_ids`` (what the
    data calls each label: folder names, WordNet ids; the keys of a ``folder<TAB>name`` map) and
    ``identity`` (a stable string naming dataset, root and split, used in cache keys).

    ``split_info`` says where the train/test split comes from, for run summaries, when a loader
    knows: ``{"kind": "file", "name": ..., "sha256": <of the split file>, "source": ...}`` for a
    split file, ``{"kind": "folders", ..., "sha256": <of the file list>}`` for a split given by
    train/ and test/ folders, ``{"kind": "seeded", ...}`` or ``{"kind": "official", ...}``;
    ``None`` when the loader does not say.
    """

    targets: torch.Tensor
    class_names: list[str]
    class_ids: list[str]
    identity: str
    split_info: dict | None = None

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.identity!r}, n={len(self)}, classes={len(self.class_names)})"


class ImageFileSource(LabelledSource):
    """Images read from files, converted to RGB on load.

    Args:
        paths: One image file per sample.
        targets: Original label of each sample.
        class_names: Human-readable name of each original label.
        identity: Stable description (dataset, root, split) for cache keys.
        class_ids: What the data calls each label (e.g. its folder name); ``class_names`` when
            omitted.

    Raises:
        DataError: if ``paths`` and ``targets`` differ in length.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        targets: Sequence[int] | torch.Tensor,
        class_names: Sequence[str],
        *,
        identity: str,
        class_ids: Sequence[str] | None = None,
    ) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
        if len(self.paths) != self.targets.shape[0]:
            raise DataError(
                f"{identity}: got {len(self.paths)} image paths but {self.targets.shape[0]} labels; "
                "expected one label per image"
            )
        self.class_names = class_name_list(class_names, what=identity)
        self.class_ids = list(class_ids) if class_ids is not None else list(self.class_names)
        if len(self.class_ids) != len(self.class_names):
            raise DataError(
                f"{identity}: got {len(self.class_ids)} class ids for {len(self.class_names)} class "
                "names; expected one id per class"
            )
        self.identity = identity

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image.load()
                rgb = to_rgb8(image, where=f"image file {path!r}")
                if rgb is image:
                    rgb = image.copy()  # the opened image is unusable once its file is closed
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
            raise DataError(
                f"cannot read image file {path!r} (sample {index} of {self.identity}): "
                f"{type(err).__name__}: {err}. Expected a readable image; the file is corrupt, "
                "truncated or not an image. Fix: replace or delete that file"
            ) from err
        return rgb, int(self.targets[index])


class SubsetSource(LabelledSource):
    """The samples ``indices`` of a source, in that order, with its class names and ids.

    Args:
        source: The source to take samples from.
        indices: Positions in ``source`` (LongTensor or sequence of ints, shape (N,)).
        tag: What the subset is (e.g. ``"shots=5|seed=0"``), put in the source's identity before
            its last part, the split (``eurosat|...|shots=5|seed=0|train``), which stays last.

    Raises:
        DataError: an index outside ``[0, len(source))``.
    """

    def __init__(self, source: LabelledSource, indices: Sequence[int] | torch.Tensor, *, tag: str) -> None:
        self.source = source
        self.indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if self.indices.numel() and (int(self.indices.min()) < 0 or int(self.indices.max()) >= len(source)):
            raise DataError(
                f"{source.identity}: subset indices must lie in [0, {len(source)}), got "
                f"[{int(self.indices.min())}, {int(self.indices.max())}]"
            )
        self.targets = source.targets[self.indices]
        self.class_names = list(source.class_names)
        self.class_ids = list(source.class_ids)
        head, _, split = source.identity.rpartition("|")
        self.identity = f"{head}|{tag}|{split}" if head else f"{tag}|{split}"

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return self.source[int(self.indices[index])]


class ArraySource(LabelledSource):
    """Images held in memory as a uint8 array, returned as PIL RGB images.

    Args:
        images: uint8 array (N, H, W) (grayscale) or (N, H, W, 3) (RGB).
        targets: Original label of each sample.
        class_names: Human-readable name of each original label.
        identity: Stable description (dataset, root, split) for cache keys.

    Raises:
        DataError: wrong dtype/rank, or ``images`` and ``targets`` differ in length.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: Sequence[int] | np.ndarray | torch.Tensor,
        class_names: Sequence[str],
        *,
        identity: str,
    ) -> None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or (
            images.ndim == 4 and images.shape[-1] != 3
        ):
            raise DataError(
                f"{identity}: images must be a uint8 array (N, H, W) or (N, H, W, 3), got "
                f"{images.dtype} {images.shape}"
            )
        self.images = images
        self.targets = torch.tensor(np.asarray(targets, dtype=np.int64)).reshape(-1)
        if images.shape[0] != self.targets.shape[0]:
            raise DataError(
                f"{identity}: got {images.shape[0]} images but {self.targets.shape[0]} labels; "
                "expected one label per image"
            )
        self.class_names = class_name_list(class_names, what=identity)
        self.class_ids = list(self.class_names)
        self.identity = identity

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        image = Image.fromarray(self.images[index])
        if image.mode != "RGB":
            image = image.convert("RGB")
        return image, int(self.targets[index])




@dataclass(frozen=True)
class DatasetSpec:
    """A named stream: how to read its sources and its default split.

    Args:
        name: Registry name (e.g. ``"seq-cifar10"``).
        load: ``load(root: Path | None, *, download: bool, **options) -> (train, test)`` raw
            sources.
        classes_per_experience: Default split of the benchmark (``None``: the caller must choose).
        description: One line for listings.
        options: Names of the dataset-specific options ``load`` accepts (e.g. ``split_seed``).
        takes_root: Whether ``load`` reads a data root (``digits`` does not: a root given to it
            would be ignored, so a run refuses one).
        can_download: Whether ``download=True`` does anything (torchvision's CIFAR-10/100 and
            Fashion-MNIST); a run refuses ``download`` elsewhere.
    """

    name: str
    load: Callable[..., tuple[LabelledSource, LabelledSource]]
    classes_per_experience: int | None
    description: str = ""
    options: tuple[str, ...] = ()
    takes_root: bool = True
    can_download: bool = False

    def check_options(self, options: Mapping[str, object] | None) -> None:
        """Refuse options this dataset does not take.

        Raises:
            ConfigError: an unknown option (names the dataset's options and the closest one).
        """
        unknown = sorted(set(options or {}) - set(self.options))
        if unknown:
            import difflib

            close = [difflib.get_close_matches(k, self.options, n=1) for k in unknown]
            hint = "; ".join(f"did you mean {c[0]!r}?" for c in close if c)
            raise ConfigError(
                f"dataset {self.name!r} takes no option {', '.join(map(repr, unknown))}; its options: "
                f"{list(self.options) or 'none'}{'; ' + hint if hint else ''}"
            )


def _check_dataset(name: str, entry: object) -> DatasetSpec:
    """What :data:`DATASETS` accepts: a :class:`DatasetSpec` (it takes the registered name), or a
    loader ``load(root, *, download, **options) -> (train, test)`` (no default split; its
    docstring's first line describes it)."""
    if isinstance(entry, DatasetSpec):
        return entry if entry.name == name else dataclasses.replace(entry, name=name)
    if callable(entry):
        doc = (inspect.getdoc(entry) or "").strip()
        entry = DatasetSpec(name, entry, None, doc.splitlines()[0] if doc else "")
    else:
        raise TypeError(f"a dataset is a DatasetSpec or a loader load(root, *, download, **options) -> (train, test), "
                        f"got {type(entry).__name__} {entry!r}")
    try:
        signature = inspect.signature(entry.load)
    except (TypeError, ValueError):
        return entry
    try:
        signature.bind(None, download=False, **{option: None for option in entry.options})
    except TypeError as exc:
        raise TypeError(f"its loader{signature} cannot be called as load(root, download=...) ({exc})") from None
    return entry


#: The datasets by name; plug-ins: entry-point group ``alta.datasets``.
DATASETS: Registry[DatasetSpec] = Registry("dataset", group="alta.datasets", check=_check_dataset,
                                           registry_name="alta.data.DATASETS")


def list_datasets() -> list[str]:
    """Names of the registered streams, for :meth:`alta.data.ScenarioStream.from_name`."""
    return DATASETS.names()


def load_sources(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    options: Mapping[str, object] | None = None,
) -> tuple[LabelledSource, LabelledSource]:
    """Read the raw (train, test) sources of a registered dataset.

    Args:
        name: A name from :func:`list_datasets`.
        root: Folder holding the data (see each dataset's layouts); ignored by ``digits``.
        download: Let torchvision download CIFAR-10/100 or Fashion-MNIST into ``root``.
        options: Dataset-specific options (``DATASETS.get(name).options`` lists them), e.g.
            ``{"split_seed": 1}`` for ImageNet-R or ``{"class_list": "imagenet100.txt"}`` for
            ``imagenet-subset``.

    Returns:
        ``(train, test)``: raw sources returning ``(PIL RGB image, original label)``.

    Raises:
        ConfigError: unknown name (lists the valid ones), or an option the dataset does not take
            (lists those it takes).
        DataError: missing or wrongly laid out ``root`` (the message shows the expected layout).
    """
    spec = DATASETS.get(name)
    options = dict(options or {})
    spec.check_options(options)
    path = None if root is None else Path(root).expanduser().resolve()
    return spec.load(path, download=bool(download), **options)


def register(name: str, classes_per_experience: int | None, description: str,
              options: tuple[str, ...] = (), *, takes_root: bool = True, can_download: bool = False,
              aliases: tuple[str, ...] = ()):
    """Decorator registering a loader in :data:`DATASETS` (see :class:`DatasetSpec` for the
    arguments; ``aliases``: other names that resolve to ``name``)."""
    def decorator(load):
        DATASETS.add(name, DatasetSpec(name, load, classes_per_experience, description, options,
                                       takes_root=takes_root, can_download=can_download), aliases=aliases)
        return load

    return decorator
