"""Storage policies of the replay memory: which offered items a buffer keeps, and in which slots.

A :class:`~alta.buffer.MemoryBuffer` stores named tensors; *what* to keep is decided by a policy
registered in :data:`BUFFER_POLICIES` (``"reservoir"``: Vitter's algorithm R, as mammoth's buffer
that ALTA's reference code uses; ``"class_balanced"``: class-balancing reservoir sampling;
``"herding"``: a fixed number of exemplars per class chosen by iCaRL's herding on the frozen image
features, as the PyCIL/PROOF line keeps its memory). A policy sees counters and labels (and, if
it asks for them, the offered features), never the stored tensors (Avalanche's
``storage_policy.py`` separates them the same way).

Two ways of being offered items (:attr:`BufferPolicy.offered_per`): ``"step"`` policies
(reservoir, class-balanced) are offered every training batch by :func:`alta.train_step`;
``"experience"`` policies (herding) are offered the whole training set of an experience once, at
its end, by the loop (:func:`alta.loop.exemplars.offer_experience`), since herding chooses among
all images of a class at once.

References:
    J. S. Vitter, "Random Sampling with a Reservoir", ACM TOMS 11(1), 1985 (algorithm R).
    A. Chrysakis, M.-F. Moens, "Online Continual Learning from Imbalanced Data", ICML 2020
    (class-balancing reservoir sampling, CBRS).
    S.-A. Rebuffi et al., "iCaRL: Incremental Classifier and Representation Learning", CVPR 2017
    (herding, Algorithm 4); its PyCIL form: github.com/G-U-N/PyCIL ``models/base.py``
    (``_construct_exemplar_unified``), as in github.com/zhoudw-zdw/PROOF@0bb20520.
    W. Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
    Learning", IEEE Transactions on Multimedia, 2023.
"""

from __future__ import annotations

import abc
import bisect
import inspect
import logging
from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from .errors import CheckpointError, ConfigError, ShapeError, TrainingError
from .registry import Registry

__all__ = ["BUFFER_POLICIES", "BufferPolicy", "ClassBalancedPolicy", "HerdingPolicy", "ReservoirPolicy",
           "herding_selection", "list_buffer_policies"]

logger = logging.getLogger("alta.buffer")


# --------------------------------------------------------------------------------------------
# Storage policies: what to keep
# --------------------------------------------------------------------------------------------


# State checks shared with the buffer's own state (MemoryBuffer.load_state_dict).
KIND_NAMES = {int: "plain int", Mapping: "dict", torch.Tensor: "torch.ByteTensor"}


def state_field(state: Mapping[str, Any], key: str, kind: type) -> Any:
    """``state[key]`` if it is a ``kind`` (an int must be a plain int, not a tensor or bool)."""
    if key not in state:
        raise CheckpointError(
            f"buffer state lacks the key {key!r} (got keys {sorted(map(str, state))[:12]}); the state dict is "
            "incomplete: save it again with MemoryBuffer.state_dict()"
        )
    value = state[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CheckpointError(
            f"buffer state {key!r} must be a {KIND_NAMES.get(kind, kind.__name__)}, got {describe_value(value)}; "
            "the state dict is corrupt "
            "or was not written by MemoryBuffer.state_dict(): save it again"
        )
    return value


def as_int(value: Any) -> int:
    """``value`` as an int if it is an integer (int, integer tensor/NumPy scalar); else TypeError."""
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is a bool, not an int")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype.is_floating_point or value.dtype.is_complex:
            raise TypeError(f"tensor {tuple(value.shape)} {value.dtype} is not an integer")
        return int(value)
    if hasattr(value, "__index__"):
        return int(value.__index__())
    raise TypeError(f"{value!r} ({type(value).__name__}) is not an int")


def describe_value(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


# --------------------------------------------------------------------------------------------
# The buffer: where it lives
# --------------------------------------------------------------------------------------------


class BufferPolicy(abc.ABC):
    """Decides which offered items a buffer keeps and in which slots.

    A policy sees only counters and labels (and the offered features when ``needs_features``),
    never the stored tensors: the buffer asks it for a slot per offered item and writes the
    winners itself.

    Class attributes:
        name: Registry name.
        needs_labels: ``assign`` gets the offered labels.
        needs_features: ``assign`` gets the offered features (the buffer's ``feature_field``).
        offered_per: ``"step"``: offered every training batch (:func:`alta.train_step`);
            ``"experience"``: offered an experience's whole training set once, at its end
            (:func:`alta.loop.exemplars.offer_experience`).
        fills_first: Every offered item is stored while the buffer is not full (then the buffer
            holds ``min(num_seen, capacity)`` items, which it checks).
        uses_per_class: The policy keeps a fixed number of items per class (``per_class``).

    Args:
        capacity: Number of slots of the buffer.
        label_field: Name of the label field (for policies that need labels).
    """

    name: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = False
    needs_features: ClassVar[bool] = False
    offered_per: ClassVar[str] = "step"
    fills_first: ClassVar[bool] = True
    uses_per_class: ClassVar[bool] = False

    def __init__(self, capacity: int, *, label_field: str = "labels") -> None:
        self.capacity = capacity
        self.label_field = label_field

    @abc.abstractmethod
    def assign(
        self,
        *,
        num_seen: int,
        size: int,
        batch_size: int,
        labels: list[int] | None,
        generator: torch.Generator,
    ) -> list[int]:
        """Slot of every offered item, ``-1`` for items not kept.

        Items are taken in order; a later item may be given the slot of an earlier one (it then
        overwrites it). The buffer holds ``size`` items in slots ``0..size-1`` and fills slots in
        increasing order until full.

        Args:
            num_seen: Items offered before this batch.
            size: Items stored before this batch.
            batch_size: B, items offered now.
            labels: The B labels (only for policies with ``needs_labels``).
            generator: Source of all randomness.
            features: (B, D) features of the offered items, passed as a keyword only to policies
                with ``needs_features``.

        Returns:
            B slot numbers in [-1, capacity).
        """

    def state_dict(self) -> dict[str, Any]:
        """The policy's own state (counters); empty for stateless policies."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any], *, size: int, labels: list[int] | None) -> None:
        """Restore :meth:`state_dict`; ``size``/``labels`` describe the restored storage.

        Raises:
            CheckpointError: if ``state`` does not fit this policy or the storage.
        """
        if state:
            raise CheckpointError(f"policy {self.name!r} keeps no state, got keys {sorted(state)}")


def _check_policy(name: str, entry: Any) -> type[BufferPolicy]:
    """What :data:`BUFFER_POLICIES` accepts: a concrete subclass of :class:`BufferPolicy`."""
    if not (isinstance(entry, type) and issubclass(entry, BufferPolicy)) or inspect.isabstract(entry):
        raise TypeError(f"a buffer policy is a concrete subclass of alta.policies.BufferPolicy (implementing assign), "
                        f"got {entry!r}")
    return entry


#: The storage policies by name; plug-ins: entry-point group ``alta.buffer_policies``.
BUFFER_POLICIES: Registry[type[BufferPolicy]] = Registry("buffer policy", group="alta.buffer_policies",
                                                         check=_check_policy,
                                                         registry_name="alta.policies.BUFFER_POLICIES")


def list_buffer_policies() -> list[str]:
    """Names of the registered storage policies (``"reservoir"``, ``"class_balanced"``, ``"herding"``)."""
    return BUFFER_POLICIES.names()


@BUFFER_POLICIES.register("reservoir")
class ReservoirPolicy(BufferPolicy):
    """Vitter's algorithm R, as in mammoth's buffer (ALTA's reference code).

    The item offered when ``n`` items have been seen goes to slot ``n`` while ``n < capacity``;
    afterwards ``j`` is drawn uniformly from ``{0, ..., n}`` and the item replaces slot ``j`` iff
    ``j < capacity``. Every offered item is then stored with probability ``capacity / num_seen``.
    The random integers of a batch are drawn in one call (float64 uniforms scaled to ``n + 1``,
    exact up to 2**53 items).
    """

    name = "reservoir"

    def assign(self, *, num_seen, size, batch_size, labels, generator):
        seen = torch.arange(num_seen, num_seen + batch_size, dtype=torch.long)  # n of each item
        slots = seen.clone()
        full = seen >= self.capacity
        num_full = int(full.sum())
        if num_full:
            u = torch.rand(num_full, generator=generator, dtype=torch.float64)
            j = torch.floor(u * (seen[full] + 1).to(torch.float64)).long()
            slots[full] = torch.where(j < self.capacity, j, torch.full_like(j, -1))
        return slots.tolist()


@BUFFER_POLICIES.register("class_balanced")
class ClassBalancedPolicy(BufferPolicy):
    """Class-balancing reservoir sampling (CBRS, Chrysakis & Moens, ICML 2020).

    While the buffer is not full every item is stored. Once it is full, let the *largest* classes
    be those with the most stored items (ties included). An item of class c

    - that is not among the largest classes replaces a stored item drawn uniformly from all items
      of the largest classes;
    - that is among the largest classes replaces a uniformly drawn stored item of class c with
      probability ``m_c / n_c`` (``m_c`` stored items of class c, ``n_c`` items of class c offered
      so far, this one included), and is discarded otherwise (reservoir sampling within c).

    The result is "water-filling": small classes keep everything they were offered and the large
    ones share the rest evenly (tests/test_buffer.py states and checks the exact invariant).
    The paper calls a class *full* once it has been the largest and lets full classes only replace
    their own items; this implementation tests the *current* largest classes, so a class that lost
    items while largest can regain them. Both keep the water-filling invariant. Two uniforms per
    item past the full point are drawn in one call per batch.

    Raises:
        ConfigError: (from the buffer) if the label field is missing.
    """

    name = "class_balanced"
    needs_labels = True

    def __init__(self, capacity: int, *, label_field: str = "labels") -> None:
        super().__init__(capacity, label_field=label_field)
        self._offered: dict[int, int] = {}
        self._slots_of: dict[int, list[int]] = {}  # class -> sorted slots holding it

    @property
    def stored_counts(self) -> dict[int, int]:
        """Stored items per class."""
        return {c: len(s) for c, s in sorted(self._slots_of.items()) if s}

    @property
    def offered_counts(self) -> dict[int, int]:
        """Offered items per class."""
        return dict(sorted(self._offered.items()))

    def assign(self, *, num_seen, size, batch_size, labels, generator):
        assert labels is not None and len(labels) == batch_size
        num_full = max(0, batch_size - (self.capacity - size))
        u = torch.rand(2 * num_full, generator=generator, dtype=torch.float64).tolist()
        slots: list[int] = []
        draw = 0
        for c in labels:
            self._offered[c] = self._offered.get(c, 0) + 1
            own = self._slots_of.setdefault(c, [])
            if size < self.capacity:
                own.append(size)  # appended slots are increasing: the list stays sorted
                slots.append(size)
                size += 1
                continue
            u1, u2 = u[draw], u[draw + 1]
            draw += 2
            largest_count = max(len(s) for s in self._slots_of.values())
            if len(own) < largest_count:
                largest = sorted(k for k, s in self._slots_of.items() if len(s) == largest_count)
                r = min(int(u2 * largest_count * len(largest)), largest_count * len(largest) - 1)
                victim_class = largest[r // largest_count]
                victim_slots = self._slots_of[victim_class]
                slot = victim_slots.pop(r % largest_count)
                bisect.insort(own, slot)
                slots.append(slot)
            elif u1 < len(own) / self._offered[c]:
                slots.append(own[min(int(u2 * len(own)), len(own) - 1)])
            else:
                slots.append(-1)
        return slots

    def state_dict(self) -> dict[str, Any]:
        slot_labels: dict[int, int] = {}
        for c, owned in self._slots_of.items():
            for s in owned:
                slot_labels[s] = c
        return {
            "offered": [[c, n] for c, n in sorted(self._offered.items())],
            "slot_labels": [slot_labels[s] for s in range(len(slot_labels))],
        }

    def load_state_dict(self, state, *, size, labels):
        offered = self._read_offered(state)
        slot_labels = self._read_slot_labels(state)
        if len(slot_labels) != size:
            raise CheckpointError(
                f"class_balanced policy state lists {len(slot_labels)} slot labels but the buffer "
                f"state stores {size} items; expected one label per stored item. The state dict is "
                "corrupt or mixed from two buffers: save it again with MemoryBuffer.state_dict()"
            )
        if labels is not None and slot_labels != labels:
            first = next(s for s, (a, b) in enumerate(zip(slot_labels, labels)) if a != b)
            raise CheckpointError(
                f"class_balanced policy state and the stored items do not match: slot {first} holds "
                f"label {labels[first]} but the policy state says {slot_labels[first]}. The state "
                "dict is corrupt or mixed from two buffers: save it again with "
                "MemoryBuffer.state_dict()"
            )
        slots_of: dict[int, list[int]] = {}
        for s, c in enumerate(slot_labels):
            slots_of.setdefault(c, []).append(s)
        over = {c: (len(s), offered.get(c, 0)) for c, s in slots_of.items() if offered.get(c, 0) < len(s)}
        if over:
            c, (stored, seen) = next(iter(sorted(over.items())))
            raise CheckpointError(
                f"class_balanced policy state stores {stored} items of class {c} but says only "
                f"{seen} were offered; a class cannot keep more items than it offered. The state "
                "dict is corrupt"
            )
        self._offered = offered
        self._slots_of = slots_of

    @staticmethod
    def _field(state: Any, key: str) -> Any:
        if not isinstance(state, Mapping):
            raise CheckpointError(
                f"class_balanced policy state must be a dict with keys 'offered' and 'slot_labels' "
                f"(from MemoryBuffer.state_dict()), got {type(state).__name__}"
            )
        if key not in state:
            raise CheckpointError(
                f"class_balanced policy state lacks the key {key!r} (got keys "
                f"{sorted(map(str, state))}); expected 'offered' and 'slot_labels' as written by "
                "MemoryBuffer.state_dict()"
            )
        return state[key]

    @classmethod
    def _read_offered(cls, state: Any) -> dict[int, int]:
        value = cls._field(state, "offered")
        pairs = value.items() if isinstance(value, Mapping) else value
        offered: dict[int, int] = {}
        try:
            for pair in pairs:
                c, n = pair
                c, n = as_int(c), as_int(n)
                if c < 0 or n < 0:
                    raise ValueError(f"negative entry {[c, n]}")
                offered[c] = n
        except (TypeError, ValueError) as err:
            raise CheckpointError(
                f"class_balanced policy state 'offered' must be a list of [class, count] pairs of "
                f"non-negative ints (or a class -> count dict), got {describe_value(value)}: {err}. The "
                "state dict is corrupt or was not written by MemoryBuffer.state_dict()"
            ) from err
        return offered

    @classmethod
    def _read_slot_labels(cls, state: Any) -> list[int]:
        value = cls._field(state, "slot_labels")
        try:
            if isinstance(value, (str, bytes, Mapping)):
                raise TypeError(f"{type(value).__name__} is not a list")
            return [as_int(c) for c in value]
        except (TypeError, ValueError) as err:
            raise CheckpointError(
                f"class_balanced policy state 'slot_labels' must be a list of int labels, one per "
                f"stored item, got {describe_value(value)}: {err}. The state dict is corrupt or was not "
                "written by MemoryBuffer.state_dict()"
            ) from err


# --------------------------------------------------------------------------------------------
# Herding: a fixed number of exemplars per class (iCaRL, as PyCIL and PROOF keep it)
# --------------------------------------------------------------------------------------------

HERDING_EPSILON = 1e-8  # added to the feature norms before dividing, as PyCIL's EPSILON


def _check_finite_features(x: torch.Tensor) -> None:
    """Refuse (n, D) features holding NaN or inf: herding's distances to them all compare false, so
    it would keep arbitrary exemplars, silently."""
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        raise TrainingError(f"herding got non-finite features (NaN or inf) for {int((~finite).sum())} of its "
                            f"{x.shape[0]} items: herding would keep arbitrary exemplars. The backbone's image "
                            "features are not finite (a NaN in its weights, or half precision overflowing: use "
                            "precision='fp32')")


def herding_selection(features: torch.Tensor, m: int) -> list[int]:
    """iCaRL's herding: the ``m`` items of one class whose running mean best follows the class mean.

    Each feature is L2-normalised (norm + 1e-8); the class mean ``mu`` is the mean of the
    normalised features (not renormalised). Step k = 1..m picks, among the items not chosen yet,
    the ``i`` that minimises ``|| mu - (x_i + S) / k ||`` where ``S`` is the sum of the chosen
    features; ties go to the first such item. The result is in selection order, so its first
    ``j`` entries are the herding choice for ``j`` exemplars. Computed with NumPy in the features'
    own precision (float32 or float64; half precision is read as float32), with PyCIL's
    expressions, so that near-ties are broken as PyCIL breaks them.

    Args:
        features: The class's features in the order offered.
        m: Exemplars to choose; ``min(m, n)`` are returned (PyCIL would fail for ``n < m``).

    Returns:
        Indices into ``features``, in the order herding chose them.

    Raises:
        ShapeError: features that are not (n, D).
        TrainingError: a non-finite feature (herding would choose arbitrarily).

    Shape:
        features: (n, D).

    References:
        S.-A. Rebuffi et al., "iCaRL: Incremental Classifier and Representation Learning", CVPR
        2017, Algorithm 4; github.com/G-U-N/PyCIL ``models/base.py`` (``_construct_exemplar``),
        the same in github.com/zhoudw-zdw/PROOF@0bb20520.
    """
    x = features.detach().to("cpu")
    if x.ndim != 2:
        raise ShapeError(f"herding needs features of shape (n, D), got {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    _check_finite_features(x)
    vectors = x.numpy()
    vectors = (vectors.T / (np.linalg.norm(vectors.T, axis=0) + HERDING_EPSILON)).T  # (n, D)
    class_mean = np.mean(vectors, axis=0)  # (D,)
    remaining = np.arange(vectors.shape[0])
    chosen: list[int] = []
    chosen_vectors: list[np.ndarray] = []
    for k in range(1, min(m, vectors.shape[0]) + 1):
        total = np.sum(chosen_vectors, axis=0)  # S (0.0 while nothing is chosen)
        candidates = vectors[remaining]
        distance = np.sqrt(np.sum((class_mean - (candidates + total) / k) ** 2, axis=1))
        i = int(np.argmin(distance))  # the first minimum, among the items not chosen yet, in order
        chosen.append(int(remaining[i]))
        chosen_vectors.append(candidates[i])
        remaining = np.delete(remaining, i)
    return chosen


@BUFFER_POLICIES.register("herding")
class HerdingPolicy(BufferPolicy):
    """A fixed number of exemplars per class chosen by herding on the frozen image features
    (iCaRL, Rebuffi et al., CVPR 2017), the memory of the PyCIL/PROOF class-incremental line
    ("20 exemplars per class").

    The policy is offered an experience's whole training set at once (``offered_per =
    "experience"``): for every class of the offer that holds no exemplars yet, in increasing label
    order, it keeps the ``min(per_class, n_c)`` items that :func:`herding_selection` picks from
    that class's features, in herding order, in the next free slots. Classes already stored keep
    their exemplars (PyCIL's fixed memory, ``_construct_exemplar_unified``): offering them again
    stores nothing. Nothing is ever replaced, and nothing is random: the choice depends only on
    the features (the buffer's seed still drives :meth:`~alta.MemoryBuffer.sample`).

    Args:
        capacity: Slots of the buffer: at least ``per_class`` times the number of classes.
        label_field: Name of the label field.
        per_class: Exemplars kept per class (20, PROOF's ``memory_per_class``).

    Raises:
        ConfigError: ``per_class`` not a positive int; (at ``assign``) an offer whose new classes
            need more slots than are free.
    """

    name = "herding"
    needs_labels = True
    needs_features = True
    offered_per = "experience"
    fills_first = False
    uses_per_class = True

    def __init__(self, capacity: int, *, label_field: str = "labels", per_class: int = 20) -> None:
        super().__init__(capacity, label_field=label_field)
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ConfigError(
                f"the herding policy keeps a fixed number of exemplars per class: per_class must be a positive "
                f"int (20 in PROOF), got {per_class!r}; e.g. MemoryBuffer(2000, policy='herding', per_class=20) "
                f"or buffer.per_class: 20"
            )
        self.per_class = per_class
        self._stored: dict[int, int] = {}  # class -> exemplars stored

    @property
    def stored_counts(self) -> dict[int, int]:
        """Exemplars stored per class."""
        return dict(sorted(self._stored.items()))

    def assign(self, *, num_seen, size, batch_size, labels, generator, features=None):
        assert labels is not None and len(labels) == batch_size and features is not None
        _check_finite_features(features)  # before any class is stored: the buffer stays as it was
        by_class: dict[int, list[int]] = {}
        for item, c in enumerate(labels):
            by_class.setdefault(c, []).append(item)
        new = {c: items for c, items in sorted(by_class.items()) if c not in self._stored}
        needed = sum(min(self.per_class, len(items)) for items in new.values())
        if size + needed > self.capacity:
            raise ConfigError(
                f"the herding buffer keeps {self.per_class} exemplars per class: the {len(new)} new classes offered "
                f"need {needed} slots but only {self.capacity - size} of its {self.capacity} are free. Make the "
                f"buffer hold per_class x classes of the stream (buffer.size, --buffer-size)"
            )
        slots = [-1] * batch_size
        for c, items in new.items():
            index = torch.tensor(items, dtype=torch.long)
            for position in herding_selection(features[index.to(features.device)], self.per_class):
                slots[items[position]] = size
                size += 1
            self._stored[c] = min(self.per_class, len(items))
        return slots

    def state_dict(self) -> dict[str, Any]:
        return {"per_class": self.per_class}

    def load_state_dict(self, state, *, size, labels):
        if not isinstance(state, Mapping) or set(state) != {"per_class"}:
            raise CheckpointError(
                f"herding policy state must be {{'per_class': int}} as MemoryBuffer.state_dict() writes it, got "
                f"{describe_value(state)}; the state dict is corrupt or of another policy"
            )
        saved = state["per_class"]
        if saved != self.per_class or isinstance(saved, bool):
            raise CheckpointError(
                f"buffer state keeps {saved!r} exemplars per class but this buffer keeps {self.per_class}; build "
                f"MemoryBuffer with per_class={saved!r} to load it"
            )
        stored: dict[int, int] = {}
        for c in labels or []:
            stored[c] = stored.get(c, 0) + 1
        over = {c: n for c, n in stored.items() if n > self.per_class}
        if over:
            c, n = next(iter(sorted(over.items())))
            raise CheckpointError(
                f"herding buffer state stores {n} items of class {c} but keeps at most {self.per_class} per class; "
                f"the state dict is corrupt or of another buffer"
            )
        self._stored = stored
