"""Splits, class orders and class names: the field's vocabulary for a class-incremental benchmark.

Class-incremental papers with CLIP (and before them iCaRL, PODNet, DyTox, PyCIL) describe a
benchmark by three things this module reads:

- **the split**, written ``B<base>-Inc<increment>``: a first experience of ``base`` classes, then
  experiences of ``increment`` classes (``B0`` means no separate base: every experience has
  ``increment`` classes). CIFAR-100 ``B0-Inc10`` is 10 x 10, ``B50-Inc10`` is 50 + 5 x 10,
  ImageNet-100 ``B50-Inc5`` is 50 + 10 x 5. :func:`parse_split` turns the name into
  ``initial_classes`` and ``classes_per_experience``.
- **the class order**: which original class comes at which position. :data:`CLASS_ORDERS` holds
  the orders papers use by name: ``icarl-1993`` (PyCIL's ``np.random.seed(1993);
  np.random.permutation(C)``, for any C) and ``dytox-cifar100`` (the 100 CIFAR-100 ids of
  DyTox and Continual-CLIP, shipped as ``alta/data/dytox_cifar100_order.txt`` with its source).
  :func:`resolve_class_order` also reads an explicit list or a file of ids.
- **the class names** CLIP reads: :func:`read_class_names` takes a list, a file with one name per
  line, or a ``folder<TAB>name`` map (Tiny-ImageNet's ``words.txt`` layout). Names that look like
  identifiers (WordNet ids ``n01440764``, bare numbers) are found by :func:`identifier_names`.

References:
    S.-A. Rebuffi et al., "iCaRL: Incremental Classifier and Representation Learning", CVPR 2017.
    D.-W. Zhou et al., "PyCIL: A Python Toolbox for Class-Incremental Learning", 2023
    (github.com/G-U-N/PyCIL, utils/data_manager.py: DataManager._setup_data).
    A. Douillard et al., "DyTox: Transformers for Continual Learning with DYnamic TOken
    eXpansion", CVPR 2022 (github.com/arthurdouillard/dytox, options/data/cifar100_order1.yaml).
    V. Thengane et al., "CLIP model is an Efficient Continual Learner", arXiv:2210.03114, 2022.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..classnames import check_distinguishable, class_name_list, readable
from ..errors import ConfigError, DataError
from ..registry import Registry

__all__ = [
    "CLASS_ORDERS",
    "ClassOrder",
    "Split",
    "identifier_names",
    "list_class_orders",
    "parse_split",
    "read_class_names",
    "resolve_class_order",
]

# --------------------------------------------------------------------------------------------
# Splits: B<base>-Inc<increment>
# --------------------------------------------------------------------------------------------

_SPLIT = re.compile(r"^\s*b\s*(\d+)\s*[-_ /]?\s*inc\s*(\d+)\s*$", re.IGNORECASE | re.ASCII)
_SPLIT_EXAMPLES = "B0-Inc10 (10 x 10 on CIFAR-100), B50-Inc10 (50 + 5 x 10), B100-Inc20"


@dataclass(frozen=True)
class Split:
    """A split as the CLIP continual-learning papers write it: ``B<base>-Inc<increment>``.

    Attributes:
        base: Classes of the first experience when it differs from the others; 0 means every
            experience has ``increment`` classes.
        increment: Classes of every other experience.
    """

    base: int
    increment: int

    @property
    def initial_classes(self) -> int | None:
        """``initial_classes`` of :class:`~alta.data.ScenarioStream` (``None`` for ``B0``)."""
        return self.base or None

    @property
    def classes_per_experience(self) -> int:
        """``classes_per_experience`` of :class:`~alta.data.ScenarioStream`."""
        return self.increment

    def __str__(self) -> str:
        return f"B{self.base}-Inc{self.increment}"


def parse_split(text: str) -> Split:
    """Read a split name such as ``"B50-Inc10"`` (case, dash and spaces optional).

    Args:
        text: ``B<base>-Inc<increment>`` with integers base >= 0 and increment >= 1
            (``b50inc10``, ``B50 Inc10`` and ``B50_Inc10`` are read too).

    Returns:
        The :class:`Split`; ``split.initial_classes`` and ``split.classes_per_experience`` are the
        stream's arguments. Whether it divides a dataset's classes is checked by the stream,
        which knows C.

    Raises:
        ConfigError: ``text`` is not a string of that form, or the increment is 0.

    Examples:
        >>> parse_split("B50-Inc10")
        Split(base=50, increment=10)
        >>> parse_split("B0-Inc10").initial_classes is None
        True
    """
    if not isinstance(text, str):
        raise ConfigError(
            f"split must be a string such as 'B50-Inc10', got {type(text).__name__} {text!r}"[:300]
        )
    match = _SPLIT.match(text)
    if match is None:
        raise ConfigError(
            f"cannot read the split {text!r}; expected B<base>-Inc<increment> as the CLIP "
            f"continual-learning papers write it, e.g. {_SPLIT_EXAMPLES}. Fix: write the split in "
            "that form, or give initial_classes / classes_per_experience instead"
        )
    base, increment = int(match.group(1)), int(match.group(2))
    if increment < 1:
        raise ConfigError(
            f"split {text!r} has Inc0: every experience after the first needs at least one class; "
            f"expected e.g. {_SPLIT_EXAMPLES}"
        )
    return Split(base, increment)


# --------------------------------------------------------------------------------------------
# Named class orders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassOrder:
    """A class order papers use, by name.

    Args:
        name: Registry name (e.g. ``"icarl-1993"``).
        make: ``make(num_classes) -> list[int]``: original class id at every position.
        num_classes: The only C the order is defined for (``None``: any C).
        source: Where the order comes from (paper, repository, file).
    """

    name: str
    make: Callable[[int], list[int]]
    num_classes: int | None
    source: str


CLASS_ORDERS: Registry[ClassOrder] = Registry("class order")


def list_class_orders() -> list[str]:
    """Names of the registered class orders (``class_order=`` of the stream)."""
    return CLASS_ORDERS.names()


def _numpy_permutation(seed: int) -> Callable[[int], list[int]]:
    def make(num_classes: int) -> list[int]:
        # PyCIL: np.random.seed(seed); order = np.random.permutation(len(order)).tolist().
        # A private RandomState seeded the same way draws the same permutation without touching
        # NumPy's global generator.
        return np.random.RandomState(seed).permutation(num_classes).tolist()

    return make


def read_class_order_file(path: str | os.PathLike) -> list[int]:
    """Integer class ids from a file: whitespace or commas between ids, ``#`` comments.

    A DyTox/Continual-CLIP YAML file (``class_order: [87, 0, 52, ...]``) is read as well.

    Raises:
        DataError: the file cannot be read or holds something that is not an integer.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the class-order file {str(path)!r} ({err})") from err
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    body = " ".join(lines).strip()
    body = re.sub(r"^\s*class_order\s*:", "", body)
    tokens = [t for t in re.split(r"[\s,\[\]]+", body) if t]
    bad = [t for t in tokens if not re.fullmatch(r"\d+", t)]
    if bad:
        raise DataError(
            f"class-order file {str(path)!r} holds {bad[:5]}, which are not class ids; expected "
            "non-negative integers separated by spaces, commas or newlines (# starts a comment)"
        )
    return [int(t) for t in tokens]


def _dytox_cifar100(num_classes: int) -> list[int]:
    with resources.as_file(resources.files("alta.data") / "dytox_cifar100_order.txt") as path:
        return read_class_order_file(path)


CLASS_ORDERS.add(
    "icarl-1993",
    ClassOrder(
        "icarl-1993", _numpy_permutation(1993), None,
        "iCaRL/PyCIL: np.random.seed(1993); np.random.permutation(C) "
        "(github.com/G-U-N/PyCIL utils/data_manager.py)",
    ),
    aliases=("pycil-1993",),
)
CLASS_ORDERS.add(
    "dytox-cifar100",
    ClassOrder(
        "dytox-cifar100", _dytox_cifar100, 100,
        "DyTox / Continual-CLIP CIFAR-100 order (github.com/arthurdouillard/dytox "
        "options/data/cifar100_order1.yaml), alta/data/dytox_cifar100_order.txt",
    ),
    aliases=("continual-clip-cifar100",),
)


def resolve_class_order(
    class_order: object, num_classes: int
) -> tuple[list[int] | None, str | None]:
    """An explicit class order from a list, a registered name or a file.

    Args:
        class_order: ``None``; a sequence, tensor or array of original ids; a name of
            :func:`list_class_orders`; or the path of a file of ids
            (:func:`read_class_order_file`).
        num_classes: C, the classes of the dataset (a named order defined for another C is
            refused).

    Returns:
        ``(order, description)``: the ids as given (the stream checks that they are a
        permutation), and how they were chosen (``"icarl-1993"``, ``"file:/path"``), ``None``
        for a list or no order.

    Raises:
        ConfigError: a string that is neither a registered name nor an existing file (lists the
            names and the closest match), or a named order defined for another number of classes.
        DataError: a file that cannot be read.
    """
    if class_order is None or isinstance(class_order, (torch.Tensor, np.ndarray)):
        return class_order, None  # type: ignore[return-value]
    if isinstance(class_order, os.PathLike) or isinstance(class_order, str):
        text = os.fspath(class_order)
        if isinstance(class_order, str) and text in CLASS_ORDERS:
            spec = CLASS_ORDERS.get(text)
            if spec.num_classes is not None and spec.num_classes != num_classes:
                raise ConfigError(
                    f"class order {text!r} is defined for {spec.num_classes} classes but the dataset "
                    f"has {num_classes}; expected a dataset of {spec.num_classes} classes ({spec.source}). "
                    f"Fix: pick an order of {list_class_orders()} that fits, or pass the ids yourself"
                )
            return spec.make(num_classes), spec.name
        if Path(text).expanduser().is_file():
            path = Path(text).expanduser().resolve()
            return read_class_order_file(path), f"file:{path}"
        try:
            CLASS_ORDERS.get(text)  # raises with the valid names and the closest match
        except ConfigError as err:
            raise ConfigError(
                f"class_order {text!r} is neither a known class order nor an existing file: {err}; "
                "or pass the path of a file of class ids, a list of ids, or seed= for a drawn order"
            ) from None
    return class_order, None  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Class names
# --------------------------------------------------------------------------------------------

_WNID = re.compile(r"^n\d{8}$")
_NUMBER = re.compile(r"^\d+$")


def identifier_names(names: Sequence[str]) -> list[str]:
    """The names that look like identifiers rather than words: WordNet ids or bare numbers.

    CLIP reads class names as text, so "a photo of a n01440764" carries no meaning.

    Examples:
        >>> identifier_names(["n01440764", "tench", "007"])
        ['n01440764', '007']
    """
    return [n for n in names if isinstance(n, str) and (_WNID.match(n.strip()) or _NUMBER.match(n.strip()))]


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the class-names file {str(path)!r} ({err})") from err
    return [line.rstrip("\r") for line in text.split("\n")]


def read_name_map(path: str | os.PathLike) -> dict[str, str]:
    """A ``folder<TAB>name`` map (Tiny-ImageNet's ``words.txt``): first synonym before a comma.

    Lines starting with ``#`` and blank lines are skipped; ``n01443537<TAB>goldfish, Carassius
    auratus`` maps ``n01443537`` to ``"goldfish"``.

    Raises:
        DataError: a line without a tab, or a folder listed twice with different names.
    """
    path = Path(path)
    mapping: dict[str, str] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        folder, tab, text = line.partition("\t")
        name = text.split(",")[0].strip()
        if not tab or not folder.strip() or not name:
            raise DataError(
                f"class-names map {str(path)!r} line {number} is {line!r}; expected "
                "'folder<TAB>name' (e.g. 'n01443537\\tgoldfish, Carassius auratus')"
            )
        folder = folder.strip()
        if mapping.get(folder, name) != name:
            raise DataError(
                f"class-names map {str(path)!r} names folder {folder!r} twice: {mapping[folder]!r} "
                f"and {name!r} (line {number}); expected one name per folder"
            )
        mapping[folder] = name
    return mapping


def read_class_names(
    class_names: object, *, class_ids: Sequence[str], what: str = "class_names"
) -> tuple[list[str], str]:
    """Class names from a list, a name-per-line file or a ``folder<TAB>name`` map.

    Args:
        class_names: A list/tuple of names in label order; a ``{folder: name}`` mapping; or the
            path of a file: with tabs it is a ``folder<TAB>name`` map (Tiny-ImageNet's
            ``words.txt``: the first synonym before a comma is the name; extra folders are
            ignored), without tabs one name per line in label order (blank and ``#`` lines
            skipped).
        class_ids: What the dataset calls each original label (folder names, WordNet ids), in
            label order: the keys a map is looked up with; its length is C.
        what: Name of the argument in messages.

    Returns:
        ``(names, kind)``: one name per original label and ``"list"``, ``"file"`` or ``"map"``.

    Raises:
        DataError: a list or file with a number of names other than C, a map without a name for
            some class folder (lists them), or an unreadable file.
    """
    C = len(class_ids)
    if isinstance(class_names, Mapping):
        mapping = {str(k): v for k, v in class_names.items()}
        kind, source = "map", "the mapping"
    elif isinstance(class_names, (str, os.PathLike)):
        path = Path(class_names).expanduser()
        if not path.is_file():
            raise DataError(
                f"{what}={os.fspath(class_names)!r} is not a file; expected a list of names, or the "
                "path of a file with one name per line or 'folder<TAB>name' lines. Fix: check the path"
            )
        lines = [line for line in _read_lines(path) if line.strip() and not line.lstrip().startswith("#")]
        if any("\t" in line for line in lines):
            mapping = read_name_map(path)
            kind, source = "map", f"{str(path)!r}"
        else:
            names = [line.strip() for line in lines]
            if len(names) != C:
                raise DataError(
                    f"{what} file {str(path)!r} has {len(names)} names but the dataset has {C} "
                    f"classes ({', '.join(class_ids[:5])}{' ...' if C > 5 else ''}); expected one name "
                    "per line in label order, or 'folder<TAB>name' lines"
                )
            return names, "file"
    else:
        if isinstance(class_names, (set, frozenset)) or not isinstance(class_names, Sequence):
            raise DataError(
                f"{what} must be a list of names in label order, a {{folder: name}} mapping or a file "
                f"path, got {type(class_names).__name__}"
            )
        names = list(class_names)
        if len(names) != C:
            raise DataError(
                f"{what} has {len(names)} names but the dataset has {C} classes "
                f"({', '.join(class_ids[:5])}{' ...' if C > 5 else ''}); expected one name per class in "
                "label order"
            )
        return names, "list"
    missing = [c for c in class_ids if not str(mapping.get(c, "")).strip()]
    if missing:
        raise DataError(
            f"{what}: {source} has no name for {len(missing)} of the {C} class folders, e.g. "
            f"{missing[:5]}; expected a 'folder<TAB>name' entry for every class folder. Fix: add "
            "those folders to the map"
        )
    return [str(mapping[c]).strip() for c in class_ids], kind


# --------------------------------------------------------------------------------------------
# Splitting helpers
# --------------------------------------------------------------------------------------------


def check_count(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise ConfigError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def split_sizes(
    num_classes: int,
    *,
    num_experiences: int | None,
    classes_per_experience: int | None,
    initial_classes: int | None,
) -> list[int]:
    """Number of classes of each experience."""
    num_experiences = check_count(num_experiences, "num_experiences")
    classes_per_experience = check_count(classes_per_experience, "classes_per_experience")
    initial_classes = check_count(initial_classes, "initial_classes")
    C = num_classes
    if num_experiences is None and classes_per_experience is None:
        if initial_classes == C:
            return [C]
        raise ConfigError(
            f"give num_experiences or classes_per_experience to split the {C} classes into "
            f"experiences; valid num_experiences: {divisors(C)}"
            + (" (add initial_classes for an unevenly sized first experience)"
               if initial_classes is None else "")
        )
    if initial_classes is not None and initial_classes > C:
        raise ConfigError(
            f"initial_classes={initial_classes} exceeds the {C} classes of the dataset; expected "
            f"1..{C}"
        )
    first = initial_classes if initial_classes is not None else 0
    rest = C - first
    if initial_classes is None:
        valid_t = divisors(C)
        valid_k = divisors(C)
    else:
        valid_t = [1] if rest == 0 else [1 + d for d in divisors(rest)]
        valid_k = divisors(rest) if rest else []
    hint = (
        "; or set initial_classes so that the remaining classes divide evenly"
        if initial_classes is None
        else f"; or change initial_classes={initial_classes} (the {rest} remaining classes are split "
             "evenly over the other experiences)"
    )
    what = f"{C} classes" if initial_classes is None else f"{rest} classes left after initial_classes={initial_classes}"
    if num_experiences is not None:
        if num_experiences not in valid_t:
            raise ConfigError(
                f"num_experiences={num_experiences} does not split the {what} evenly; valid "
                f"num_experiences: {valid_t}{hint}"
            )
        others = num_experiences - (1 if initial_classes is not None else 0)
        size = rest // others if others else 0
        if classes_per_experience is not None and others and classes_per_experience != size:
            raise ConfigError(
                f"num_experiences={num_experiences} and classes_per_experience="
                f"{classes_per_experience} disagree: {num_experiences} experiences of the "
                f"{C} classes" + (f" after initial_classes={initial_classes}" if initial_classes else "")
                + f" have {size} classes each; give only one of them"
            )
    else:
        assert classes_per_experience is not None
        if classes_per_experience not in valid_k:
            raise ConfigError(
                f"classes_per_experience={classes_per_experience} does not split the {what} "
                f"evenly; valid classes_per_experience: {valid_k or 'none (no classes left)'}{hint}"
            )
        size = classes_per_experience
        others = rest // size
    sizes = ([first] if initial_classes is not None else []) + [size] * others
    assert sum(sizes) == C and all(s > 0 for s in sizes), sizes
    return sizes


def resolve_order(num_classes: int, class_order: Any, seed: int | None) -> tuple[list[int], str]:
    """The class order and how it was chosen (``native``, ``seed=N``, ``explicit``, a registered
    name such as ``icarl-1993``, or ``file:/path``)."""
    class_order, described = resolve_class_order(class_order, num_classes)
    if class_order is not None and seed is not None:
        raise ConfigError(
            f"got both class_order and seed={seed!r}; they are alternatives: pass class_order for an "
            "explicit permutation or seed to draw one, not both"
        )
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(
                f"seed must be an int in [0, 2**64) or None, got {type(seed).__name__} {seed!r}"[:300]
                + "; pass e.g. seed=1993 to draw a class order, or None for the native order"
            )
        if not 0 <= int(seed) < 2**64:
            raise ConfigError(
                f"seed must be an int in [0, 2**64) (the range torch.Generator accepts), got "
                f"{int(seed)}; reduce it, e.g. seed % 2**64"
            )
        generator = torch.Generator().manual_seed(int(seed))
        return torch.randperm(num_classes, generator=generator).tolist(), f"seed={int(seed)}"
    if class_order is None:
        return list(range(num_classes)), "native"
    if isinstance(class_order, torch.Tensor):
        class_order = class_order.tolist()
    elif isinstance(class_order, np.ndarray):
        class_order = class_order.tolist()
    if isinstance(class_order, (str, bytes)) or not isinstance(class_order, Sequence):
        raise DataError(
            f"class_order must be a list of the {num_classes} original class ids, got "
            f"{type(class_order).__name__} {class_order!r}"
        )
    order = list(class_order)
    bad = [c for c in order if isinstance(c, bool) or not isinstance(c, (int, np.integer))]
    if bad:
        raise DataError(f"class_order must hold integer class ids, got {bad[:5]}")
    order = [int(c) for c in order]
    if sorted(order) != list(range(num_classes)):
        duplicates = sorted({c for c in order if order.count(c) > 1})
        missing = sorted(set(range(num_classes)) - set(order))
        outside = sorted(c for c in set(order) if not 0 <= c < num_classes)
        raise DataError(
            f"class_order must be a permutation of the dataset's labels 0..{num_classes - 1}; "
            f"received {len(order)} ids (missing: {missing[:10]}, duplicated: {duplicates[:10]}, "
            f"out of range: {outside[:10]}). Fix: list every original class id exactly once"
        )
    return order, described or "explicit"


def apply_split(
    split: str | Split | None,
    *,
    num_experiences: int | None,
    classes_per_experience: int | None,
    initial_classes: int | None,
) -> tuple[int | None, int | None]:
    """``(initial_classes, classes_per_experience)`` of a ``B<base>-Inc<increment>`` split; the
    given counts when ``split`` is ``None``.

    Raises:
        ConfigError: a split together with explicit counts (they would contradict each other).
    """
    if split is None:
        return initial_classes, classes_per_experience
    given = {k: v for k, v in (("num_experiences", num_experiences), ("initial_classes", initial_classes),
                               ("classes_per_experience", classes_per_experience)) if v is not None}
    if given:
        raise ConfigError(
            f"got split={str(split)!r} and {', '.join(f'{k}={v!r}' for k, v in given.items())}; a split "
            "already fixes the counts. Fix: give the split alone, or the counts alone"
        )
    parsed = split if isinstance(split, Split) else parse_split(split)
    return parsed.initial_classes, parsed.classes_per_experience


def check_names(class_names: Any) -> list[str]:
    names = class_name_list(class_names, what="ScenarioStream")
    bad = [(i, n) for i, n in enumerate(names) if not isinstance(n, str) or not readable(n)]
    if bad:
        raise DataError(
            f"class names must be non-empty strings (CLIP prompts are built from them, with "
            f"underscores read as spaces); received {bad[:5]} (index, name). Fix: give every "
            "label a readable name"
        )
    check_distinguishable(names, error=DataError)  # the same rule as CrossModalLearner's
    return names
