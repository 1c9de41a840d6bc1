"""Class names as CLIP reads them, and the one rule both the stream and the learner apply.

CLIP's text encoder sees a class name only through its prompt ("a photo of a {name}."), and
its tokenizer (clip-anytorch's ``simple_tokenizer``, the BPE tokenizer of Radford et al., ICML
2021) first cleans the text: ``ftfy.fix_text``, HTML unescaping, whitespace collapsed to one
space, and lower-casing. alta also reads underscores as spaces (as CoOp, Zhou et al., IJCV
2022, does). Names that read alike ("Cat"/"cat", "sea  lion"/"sea_lion") give identical prompts,
hence identical text features: one of their labels could never be predicted. Such class names
are refused by :class:`~alta.data.ScenarioStream` and :class:`~alta.CrossModalLearner` with the
same function, :func:`check_distinguishable`.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import AltaError, DataError

__all__ = ["clip_reading", "check_distinguishable", "check_utf8", "readable", "class_name_list"]


@lru_cache(maxsize=1)
def _tokenizer_cleaning() -> tuple[Callable[[str], str], Callable[[str], str]]:
    with warnings.catch_warnings():  # clip-anytorch's import warns about pkg_resources
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from clip.simple_tokenizer import basic_clean, whitespace_clean  # noqa: PLC0415 - lazy, heavy

    return basic_clean, whitespace_clean


def clip_reading(name: str) -> str:
    """The text CLIP's tokenizer reads for a class name, exactly as ``SimpleTokenizer.encode``
    cleans it (after alta's underscores-to-spaces).

    Args:
        name: A class name (valid UTF-8 text).

    Returns:
        The cleaned, lower-cased text, e.g. ``"sea lion"`` for ``"Sea_Lion"``.
    """
    basic_clean, whitespace_clean = _tokenizer_cleaning()
    return whitespace_clean(basic_clean(name.replace("_", " "))).lower()


def check_utf8(name: str, *, what: str, error: type[AltaError]) -> None:
    """Refuse text that is not valid UTF-8 (a ``str`` holding surrogate escapes).

    ``os.listdir`` returns such names for folders named in another encoding (e.g. Latin-1
    ``caf\\xe9``); CLIP's tokenizer and JSON results need UTF-8.

    Args:
        name: The text to check.
        what: What it is, for the message (e.g. ``"class folder '/data/train/caf?'"``).
        error: The :class:`~alta.errors.AltaError` subclass to raise.

    Raises:
        error: if ``name`` cannot be encoded as UTF-8.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
        raise error(
            f"{what} is not valid UTF-8 text: its bytes are {raw!r} (undecodable bytes appear when a "
            "name was written in another encoding, e.g. Latin-1); CLIP's tokenizer and alta's results "
            "need UTF-8. Fix: rename it to UTF-8 text (e.g. convmv -f latin1 -t utf8 --notest -r <folder>)"
        ) from None


def check_distinguishable(names: Sequence[str], *, error: type[AltaError]) -> None:
    """Refuse class names that are not UTF-8 or that CLIP reads alike (:func:`clip_reading`).

    Args:
        names: One non-empty string per class, in label order.
        error: The :class:`~alta.errors.AltaError` subclass to raise (``DataError`` for a stream,
            ``ConfigError`` for a learner).

    Raises:
        error: a name that is not valid UTF-8, or two names that read alike (both are named,
            with their positions and the text CLIP reads).
    """
    for i, name in enumerate(names):
        check_utf8(name, what=f"class name {name!r} (label {i})", error=error)
    first: dict[str, int] = {}
    clashes = []
    for i, name in enumerate(names):
        reading = clip_reading(name)
        if reading in first:
            clashes.append((first[reading], i, reading))
        first.setdefault(reading, i)
    if clashes:
        a, b, reading = clashes[0]
        raise error(
            f"class names must be distinct as CLIP reads them, but {len(clashes)} are not: e.g. "
            f"{names[a]!r} (label {a}) and {names[b]!r} (label {b}) both read as {reading!r} (CLIP's "
            "tokenizer lower-cases and collapses whitespace, alta reads underscores as spaces), so their "
            "prompts and text features are identical and one label could never be predicted. Fix: give "
            "every class a name CLIP can tell apart (e.g. 'crane (bird)' and 'crane (machine)')"
        )


def readable(name: str) -> str:
    """A class folder/label name as CLIP prompts need it: underscores become spaces."""
    return " ".join(name.replace("_", " ").split())


def class_name_list(class_names: object, *, what: str) -> list[str]:
    """``class_names`` as a list, refusing unordered containers.

    Raises:
        DataError: a set, dict, string or other non-sequence (their order is not reproducible or
            not what the labels mean).
    """
    if isinstance(class_names, np.ndarray) and class_names.ndim == 1:
        class_names = class_names.tolist()
    if isinstance(class_names, (set, frozenset)):
        raise DataError(
            f"{what}: class_names is a {type(class_names).__name__}, whose order is arbitrary, so "
            "names would not line up with labels reproducibly; expected a list or tuple with "
            "class_names[label] naming each label. Fix: pass a list in label order (e.g. "
            "sorted(names) if the labels follow sorted order)"
        )
    if isinstance(class_names, Mapping):
        raise DataError(
            f"{what}: class_names is a {type(class_names).__name__}; expected a list or tuple with "
            "class_names[label] naming each label. Fix: for a {label: name} dict pass "
            "[names[k] for k in range(len(names))]; for {name: label} pass "
            "sorted(names, key=names.get)"
        )
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise DataError(
            f"{what}: class_names must be a list of strings (or a tuple; one per label), got "
            f"{type(class_names).__name__} {class_names!r}"[:300]
        )
    return list(class_names)
