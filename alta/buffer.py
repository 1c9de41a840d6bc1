"""The replay memory of ALTA: a fixed-capacity store of named tensor fields.

ALTA (Li et al., IEEE TMM 2023) replays in feature space as DER++ does: every training sample is
offered to a reservoir buffer that keeps its label, its frozen CLIP image feature and the logits
the model produced for it (plus the experience it came from). :class:`MemoryBuffer` stores any set
of named tensors; *what* to keep is decided by a storage policy from :data:`BUFFER_POLICIES`
(``"reservoir"``, ``"class_balanced"``, ``"herding"``: a fixed number of exemplars per class
chosen by iCaRL's herding at the end of each experience), *where* it lives (preallocated tensors
on one device) is the buffer's job, as in Avalanche's ``storage_policy.py``.

Examples:
    >>> buffer = MemoryBuffer(200, seed=0)
    >>> buffer.add(labels=torch.tensor([3, 1]), image_features=torch.randn(2, 1024))
    tensor([0, 1])
    >>> batch = buffer.sample(32)  # both items, in random order
    >>> sorted(batch["labels"].tolist())
    [1, 3]

References:
    J. S. Vitter, "Random Sampling with a Reservoir", ACM TOMS 11(1), 1985 (algorithm R).
    P. Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
    Baseline", NeurIPS 2020 (DER++, the mammoth buffer ALTA's reference code uses).
    A. Chrysakis, M.-F. Moens, "Online Continual Learning from Imbalanced Data", ICML 2020
    (class-balancing reservoir sampling, CBRS).
    W. Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
    Learning", IEEE Transactions on Multimedia, 2023.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch

from .config import ConfigSection, check_int, resolve_name, set_canonical
from .errors import CheckpointError, ConfigError, ShapeError, StateError
from .policies import BUFFER_POLICIES, list_buffer_policies, state_field
from .resources import allocate_zeros

__all__ = ["BufferConfig", "MemoryBuffer", "BUFFER_POLICIES", "list_buffer_policies"]

logger = logging.getLogger(__name__)

_STATE_FORMAT = "alta.MemoryBuffer"
_STATE_VERSION = 1


def _check_capacity(capacity: object) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
        raise ConfigError(
            f"buffer capacity must be a positive int (number of stored items, e.g. 200), got "
            f"{capacity!r}; to train without replay, do not build a buffer"
        )
    return capacity


def check_seed(seed: object, *, what: str = "seed") -> int | None:
    """``seed`` as an int in [0, 2**64) (what ``torch.Generator.manual_seed`` takes), or ``None``.

    Raises:
        ConfigError: a non-integer (bools included) or an int outside [0, 2**64).
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not hasattr(seed, "__index__") or isinstance(seed, torch.Tensor):
        raise ConfigError(
            f"{what} must be an int in [0, 2**64) or None, got {type(seed).__name__} {seed!r}"[:300]
            + "; pass e.g. seed=0 (None draws one)"
        )
    value = int(seed.__index__())  # type: ignore[attr-defined]
    if not 0 <= value < 2**64:
        raise ConfigError(
            f"{what} must be an int in [0, 2**64) (the range torch.Generator accepts), got {value}; "
            f"reduce it, e.g. {what} % 2**64"
        )
    return value


_DEVICE_FORMS = "'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device"


def check_device(device: object, *, what: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine.

    Accepts ``'cpu'``, ``'cuda'``, ``'cuda:N'``, ``'mps'``, ``'xpu'`` (strings or
    ``torch.device``). CUDA/MPS/XPU devices must be available now, so a wrong device fails here and
    not at the first tensor copy.

    Raises:
        ConfigError: not a device, an unknown device type (e.g. ``'gpu'``), an unavailable
            accelerator, or a CUDA index beyond the visible devices. ``'meta'`` is refused (it
            holds no data).
    """
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError) as err:
            hint = " (did you mean 'cuda'?)" if device.strip().lower() in ("gpu", "cuda()", "nvidia") else ""
            hint = hint or (f" (did you mean {device.strip().lower()!r}?)"
                            if device.strip().lower() in ("cpu", "cuda", "mps") else "")
            raise ConfigError(
                f"{what}={device!r} is not a torch device{hint}; expected {_DEVICE_FORMS}"
            ) from err
    else:
        raise ConfigError(
            f"{what} must be a device string or torch.device ({_DEVICE_FORMS}), got "
            f"{type(device).__name__} {device!r}"[:300]
        )
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{what}={str(dev)!r} but CUDA is not available on this machine (torch "
                f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use {what}='cpu' "
                "or run where a GPU is visible"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(
                f"{what}={str(dev)!r} but only {count} CUDA device(s) are visible (cuda:0.."
                f"cuda:{count - 1}); pick one of those"
            )
        return dev
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"{what}='mps' but MPS is not available on this machine; use {what}='cpu'")
        return dev
    if dev.type == "xpu":
        xpu = getattr(torch, "xpu", None)
        if xpu is None or not xpu.is_available():
            raise ConfigError(
                f"{what}={str(dev)!r} but no XPU is available on this machine; use {what}='cpu'"
            )
        return dev
    raise ConfigError(
        f"{what}={str(dev)!r}: device type {dev.type!r} is not supported for stored tensors; "
        f"expected {_DEVICE_FORMS}"
    )


class MemoryBuffer:
    """A fixed-capacity store of named tensor fields filled by a storage policy.

    Fields (e.g. ``labels``, ``image_features``, ``logits``, ``experience_ids``) are created by the
    first :meth:`add` with its dtypes and trailing shapes, preallocated to ``capacity`` rows on
    ``device``; every later add must give the same names, dtypes and trailing shapes.

    Args:
        capacity: M, the number of items kept.
        policy: Storage policy name from :func:`list_buffer_policies`: ``"reservoir"`` (Vitter's
            algorithm R, mammoth's and ALTA's buffer), ``"class_balanced"`` (CBRS) or
            ``"herding"`` (``per_class`` exemplars per class by iCaRL's herding on
            ``feature_field``; offered an experience's training set at its end, see
            :attr:`offered_per`).
        device: Where the stored tensors live: ``'cpu'``, ``'cuda'``, ``'cuda:N'``, ``'mps'`` or
            a ``torch.device``; checked here (an accelerator must be available now).
        seed: Seed of the buffer's own CPU ``torch.Generator`` (all insertion choices, and
            :meth:`sample` when no generator is given), an int in [0, 2**64). ``None`` draws a
            seed once from the OS (see ``buffer.seed``); the global RNG is never used.
        label_field: Field holding integer class labels (needed by ``"class_balanced"`` and
            ``"herding"``).
        per_class: Items kept per class, for a policy that keeps a fixed number per class
            (``"herding"``; ``None``: the policy's default, 20); refused by the others.
        feature_field: Field holding the features a policy with ``needs_features`` chooses by
            (``"herding"``: the frozen image features f1).

    Raises:
        ConfigError: capacity not a positive int, unknown policy (lists the valid ones), bad seed,
            a device that is not one or is not available (e.g. ``'gpu'``, or ``'cuda'`` on a
            machine without CUDA), ``per_class`` for a policy that does not use it (or missing for
            one that needs it).

    Examples:
        >>> buffer = MemoryBuffer(2, seed=0)
        >>> buffer.add(labels=torch.arange(5), logits=torch.zeros(5, 10))
        tensor([ 0,  1, -1, -1, -1])
        >>> len(buffer), buffer.num_seen
        (2, 5)
    """

    def __init__(
        self,
        capacity: int,
        *,
        policy: str = "reservoir",
        device: str | torch.device = "cpu",
        seed: int | None = None,
        label_field: str = "labels",
        per_class: int | None = None,
        feature_field: str = "image_features",
    ) -> None:
        self._capacity = _check_capacity(capacity)
        self._policy_name = BUFFER_POLICIES.resolve(policy)
        for what, name in (("label_field", label_field), ("feature_field", feature_field)):
            if not isinstance(name, str) or not name:
                raise ConfigError(
                    f"{what} must be the name of a field (a non-empty str, e.g. 'labels'), got {name!r}"
                )
        self._device = check_device(device)
        seed = check_seed(seed)
        if seed is None:
            seed = secrets.randbits(63)
        self._policy_options = _policy_options(self._policy_name, per_class)
        self._policy = BUFFER_POLICIES.get(policy)(capacity, label_field=label_field, **self._policy_options)
        self._seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self._label_field = label_field
        self._feature_field = feature_field
        self._storage: dict[str, torch.Tensor] = {}
        self._size = 0
        self._num_seen = 0

    # ---- properties -----------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """M, the maximum number of stored items."""
        return self._capacity

    @property
    def num_seen(self) -> int:
        """Number of items offered so far."""
        return self._num_seen

    @property
    def fields(self) -> list[str]:
        """Names of the stored fields (empty before the first add)."""
        return list(self._storage)

    @property
    def policy(self) -> str:
        """Name of the storage policy."""
        return self._policy_name

    @property
    def device(self) -> torch.device:
        """Device of the stored tensors."""
        return self._device

    @property
    def seed(self) -> int:
        """Seed of the buffer's generator (drawn from the OS when none was given)."""
        return self._seed

    @property
    def label_field(self) -> str:
        """Name of the label field."""
        return self._label_field

    @property
    def per_class(self) -> int | None:
        """Items kept per class by a per-class policy (``"herding"``), else ``None``."""
        return getattr(self._policy, "per_class", None) if self._policy.uses_per_class else None

    @property
    def offered_per(self) -> str:
        """When the buffer is offered items: ``"step"`` (every training batch, by
        :func:`alta.train_step`: reservoir, class-balanced) or ``"experience"`` (an experience's
        whole training set once, at its end, by :func:`alta.loop.exemplars.offer_experience`:
        herding)."""
        return self._policy.offered_per

    def __len__(self) -> int:
        return self._size

    def is_empty(self) -> bool:
        """True before any item is stored."""
        return self._size == 0

    # ---- adding ---------------------------------------------------------------------------------

    def _validate(self, fields: Mapping[str, Any]) -> int:
        if not fields:
            raise ConfigError("add() needs at least one field, e.g. add(labels=y, logits=z)")
        for name, value in fields.items():
            if not isinstance(value, torch.Tensor):
                raise ShapeError(
                    f"field {name!r} must be a torch.Tensor, got {type(value).__name__}; "
                    "convert it with torch.as_tensor"
                )
            if value.is_meta or value.layout != torch.strided:
                kind = "a meta tensor (no data)" if value.is_meta else f"a {value.layout} tensor"
                raise ShapeError(
                    f"field {name!r} is {kind}; the buffer stores dense tensors with data. Pass "
                    "a dense tensor (value.to_dense() for a sparse one; a meta tensor holds no data "
                    "to store)"
                )
            if value.dim() == 0:
                raise ShapeError(
                    f"field {name!r} is a 0-dim tensor; expected a batch with the items along "
                    "dim 0 (use value.reshape(1) for a single item)"
                )
        sizes = {name: int(v.shape[0]) for name, v in fields.items()}
        if len(set(sizes.values())) > 1:
            raise ShapeError(
                f"all fields must hold the same number of items (dim 0), got {sizes}"
            )
        if self._storage:
            if set(fields) != set(self._storage):
                missing = sorted(set(self._storage) - set(fields))
                extra = sorted(set(fields) - set(self._storage))
                raise ConfigError(
                    f"add() must give exactly the fields of the first add {self.fields}; missing "
                    f"{missing}, unexpected {extra}"
                )
            for name, value in fields.items():
                stored = self._storage[name]
                if value.dtype != stored.dtype or value.shape[1:] != stored.shape[1:]:
                    raise ShapeError(
                        f"field {name!r}: received {value.dtype} items of shape "
                        f"{tuple(value.shape[1:])}, expected {stored.dtype} of shape "
                        f"{tuple(stored.shape[1:])} as in the first add; cast/reshape it "
                        f"(e.g. value.to({stored.dtype}))"
                    )
        elif self._policy.needs_labels and self._label_field not in fields:
            raise ConfigError(
                f"policy {self._policy_name!r} needs integer labels in field "
                f"{self._label_field!r}, got fields {sorted(fields)}; add that field or pass "
                "label_field=<name of your label field>"
            )
        elif self._policy.needs_features and self._feature_field not in fields:
            raise ConfigError(
                f"policy {self._policy_name!r} chooses by the features in field {self._feature_field!r}, got "
                f"fields {sorted(fields)}; add that field or pass feature_field=<name of your feature field>"
            )
        if self._policy.needs_labels:
            labels = fields[self._label_field]
            if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex:
                raise ShapeError(
                    f"label field {self._label_field!r} must be a 1-D integer tensor (B,), got "
                    f"{labels.dtype} of shape {tuple(labels.shape)}"
                )
        if self._policy.needs_features:
            features = fields[self._feature_field]
            if features.dim() != 2 or not features.dtype.is_floating_point:
                raise ShapeError(
                    f"feature field {self._feature_field!r} must be a 2-D float tensor (B, D), got "
                    f"{features.dtype} of shape {tuple(features.shape)}"
                )
        return next(iter(sizes.values()))

    def add(self, **fields: torch.Tensor) -> torch.Tensor:
        """Offer a batch of items; the policy decides which are kept.

        Items are processed in batch order (a later item may overwrite an earlier one of the same
        batch). Tensors may live on any device; they are detached and copied to the buffer's
        device with one indexed copy per field.

        Args:
            **fields: Named tensors sharing the first dimension B.

        Returns:
            LongTensor (B,): the slot each item occupies after the call, ``-1`` for items not
            kept (discarded, or overwritten later in the same batch).

        Shape:
            Each field: (B, *trailing); the trailing shape and dtype are fixed by the first add.

        Raises:
            ShapeError: non-tensor values, meta or sparse tensors, fields of different lengths, dtype or trailing shape
                different from the first add, non-integer or non-1-D labels (class_balanced).
            ConfigError: no fields, or field names different from the first add, or a missing
                label field for class_balanced.
            ResourceError: the buffer's storage cannot be allocated (first add).
        """
        batch_size = self._validate(fields)
        labels = fields[self._label_field].tolist() if self._policy.needs_labels and batch_size else None
        if labels and min(labels) < 0:  # a policy counts per class: -1 would be a class of its own
            raise ShapeError(f"label field {self._label_field!r} holds negative labels ({min(labels)}); policy "
                             f"{self._policy_name!r} keeps items per class, and class labels are 0..C-1")
        if not self._storage:
            for name, value in fields.items():
                self._storage[name] = self._allocate(name, value)
        if batch_size == 0:
            return torch.empty(0, dtype=torch.long)
        extra = {"features": fields[self._feature_field]} if self._policy.needs_features else {}
        slots = self._policy.assign(
            num_seen=self._num_seen,
            size=self._size,
            batch_size=batch_size,
            labels=labels,
            generator=self._generator,
            **extra,
        )
        assert len(slots) == batch_size
        winner: dict[int, int] = {}  # slot -> last item of the batch written there
        for item, slot in enumerate(slots):
            if slot >= 0:
                winner[slot] = item
        result = [-1] * batch_size
        for slot, item in winner.items():
            result[item] = slot
        if winner:
            dst = torch.tensor(list(winner), dtype=torch.long)
            src = torch.tensor(list(winner.values()), dtype=torch.long)
            assert int(dst.max()) < self._capacity and int(dst.min()) >= 0
            dst_dev = dst.to(self._device, non_blocking=True)  # no stream sync for these small index copies
            src_by_device: dict[torch.device, torch.Tensor] = {}
            for name, value in fields.items():
                value = value.detach()
                if value.device not in src_by_device:
                    src_by_device[value.device] = src.to(value.device, non_blocking=True)
                # asynchronous only towards a GPU: a non-blocking copy to the CPU could be read early
                rows = value[src_by_device[value.device]].to(self._device, non_blocking=self._device.type == "cuda")
                self._storage[name][dst_dev] = rows
            self._size = max(self._size, int(dst.max()) + 1)
        self._num_seen += batch_size
        assert self._size == min(self._num_seen, self._capacity) if self._policy.fills_first else (
            self._size <= min(self._num_seen, self._capacity)), (self._size, self._num_seen)
        return torch.tensor(result, dtype=torch.long)

    # ---- reading --------------------------------------------------------------------------------

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Draw ``min(n, len(buffer))`` distinct stored items uniformly without replacement.

        Args:
            n: Number of items wanted; 0 gives empty tensors with the fields' trailing shapes.
            generator: Source of randomness; the buffer's own generator when ``None`` (then
                sampling advances the state that insertion also uses, which the state dict saves).

        Returns:
            Field name -> tensor on the buffer's device, rows aligned across fields.

        Shape:
            Each field: (min(n, len), *trailing).

        Raises:
            ConfigError: ``n`` negative or not an int, ``generator`` not a ``torch.Generator``.
            StateError: the buffer is empty (check ``buffer.is_empty()`` first).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"sample(n) needs an int n >= 0, got {n!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ConfigError(
                f"sample(generator=...) needs a torch.Generator or None, got "
                f"{type(generator).__name__} {generator!r}"[:300]
                + "; e.g. torch.Generator().manual_seed(0), or omit it to use the buffer's own"
            )
        if self._size == 0:
            raise StateError(
                f"cannot sample from an empty buffer (capacity {self._capacity}, "
                f"{self._num_seen} items offered); check `if not buffer.is_empty()` first"
            )
        generator = self._generator if generator is None else generator
        k = min(n, self._size)
        index = torch.randperm(self._size, generator=generator, device=generator.device)[:k]
        index = index.to(self._device, non_blocking=True)
        return {name: stored[index] for name, stored in self._storage.items()}

    def data(self) -> dict[str, torch.Tensor]:
        """Copies of all stored items, in slot order.

        Shape:
            Each field: (len, *trailing).
        """
        return {name: stored[: self._size].clone() for name, stored in self._storage.items()}

    def _allocate(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """Zeroed storage for field ``name`` (capacity rows shaped like ``value``'s items).

        Raises:
            ResourceError: the memory cannot be allocated (says the size and how to shrink it).
        """
        return allocate_zeros((self._capacity, *value.shape[1:]), dtype=value.dtype, device=self._device,
                              what=f"the memory buffer's field {name!r} ({self._capacity} items)",
                              fix="use a smaller buffer size (buffer.size, --buffer-size N) or keep the buffer on "
                                  "another device")

    # ---- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically: contents, counters, generator, policy.

        Returns:
            A dict of CPU tensors and plain Python values (``torch.save``-able, loadable with
            ``weights_only=True``).
        """
        return {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "capacity": self._capacity,
            "policy": self._policy_name,
            "label_field": self._label_field,
            "seed": self._seed,
            "num_seen": self._num_seen,
            "size": self._size,
            "fields": {n: t[: self._size].detach().cpu().clone() for n, t in self._storage.items()},
            "generator": self._generator.get_state(),
            "policy_state": self._policy.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into this buffer (replacing its contents).

        Raises:
            CheckpointError: the state is not a buffer state, or was saved from a buffer with
                another capacity, policy or label field, or is internally inconsistent, or a
                field has the wrong type (e.g. a tensor-valued ``capacity`` or ``version``, a
                ``policy_state`` that is not a dict): every damage is reported by key.
        """
        if not isinstance(state, Mapping) or state.get("format") != _STATE_FORMAT:
            raise CheckpointError(
                f"expected a MemoryBuffer state dict (format {_STATE_FORMAT!r}), got "
                f"{type(state).__name__}"
                + (f" with keys {sorted(state)[:8]}" if isinstance(state, Mapping) else "")
            )
        version = state_field(state, "version", int)
        if version != _STATE_VERSION:
            raise CheckpointError(
                f"buffer state version {version!r} is not supported (expected "
                f"{_STATE_VERSION}); save it again with this alta version"
            )
        for key, mine in (("capacity", self._capacity), ("policy", self._policy_name),
                          ("label_field", self._label_field)):
            theirs = state_field(state, key, type(mine))
            if theirs != mine:
                raise CheckpointError(
                    f"buffer state has {key}={theirs!r} but this buffer has {key}={mine!r}; "
                    f"build MemoryBuffer with {key}={theirs!r} to load it"
                )
        size, num_seen = state_field(state, "size", int), state_field(state, "num_seen", int)
        seed = state_field(state, "seed", int)
        fields = state_field(state, "fields", Mapping)
        policy_state = state_field(state, "policy_state", Mapping)
        generator_state = state_field(state, "generator", torch.Tensor)
        if not all(isinstance(name, str) for name in fields):
            raise CheckpointError(f"buffer state 'fields' must map field names to tensors, got keys {list(fields)[:5]}")
        fields = dict(fields)
        fills_first = self._policy.fills_first
        if size < 0 or (size != min(num_seen, self._capacity) if fills_first else size > min(num_seen, self._capacity)):
            raise CheckpointError(
                f"buffer state holds size={size} after num_seen={num_seen} items with capacity "
                f"{self._capacity}; expected size {'=' if fills_first else '<='} min(num_seen, capacity)"
            )
        for name, value in fields.items():
            if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != size:
                raise CheckpointError(
                    f"buffer state field {name!r} should hold {size} items, got "
                    f"{getattr(value, 'shape', type(value).__name__)}"
                )
        if size and not fields:
            raise CheckpointError(f"buffer state says {size} items are stored but has no fields")
        labels = None
        if self._policy.needs_labels and fields:
            if self._label_field not in fields:
                raise CheckpointError(f"buffer state lacks the label field {self._label_field!r}")
            labels = fields[self._label_field].tolist()
        generator = torch.Generator()
        try:
            generator.set_state(generator_state)
        except (RuntimeError, TypeError) as err:
            raise CheckpointError(f"buffer state holds an invalid generator state ({err})") from err
        policy = BUFFER_POLICIES.get(self._policy_name)(self._capacity, label_field=self._label_field,
                                                        **self._policy_options)
        policy.load_state_dict(policy_state, size=size, labels=labels)

        storage = {}
        for name, value in fields.items():
            stored = self._allocate(name, value)
            stored[:size] = value.to(self._device)
            storage[name] = stored
        self._storage, self._size, self._num_seen = storage, size, num_seen
        self._generator, self._policy, self._seed = generator, policy, seed

    def to(self, device: str | torch.device) -> MemoryBuffer:
        """Move the stored tensors to ``device`` (the generator stays on CPU).

        Returns:
            ``self``.

        Raises:
            ConfigError: not a device, or one that is not available (see the constructor).
        """
        self._device = check_device(device)
        self._storage = {name: t.to(self._device) for name, t in self._storage.items()}
        return self

    def __repr__(self) -> str:
        specs = ", ".join(
            f"{name}: {str(t.dtype).replace('torch.', '')}{list(t.shape[1:])}"
            for name, t in self._storage.items()
        )
        return (
            f"MemoryBuffer(capacity={self._capacity}, policy={self._policy_name!r}, "
            f"len={self._size}, num_seen={self._num_seen}, device={self._device}, "
            f"fields={{{specs}}})"
        )


def _policy_options(policy: str, per_class: object) -> dict[str, Any]:
    """The options a policy takes beyond capacity and label field: ``per_class`` for the
    policies that keep a fixed number of items per class.

    Raises:
        ConfigError: ``per_class`` for a policy that does not use it.
    """
    if BUFFER_POLICIES.get(policy).uses_per_class:
        return {} if per_class is None else {"per_class": per_class}  # the policy checks it
    if per_class is not None:
        raise ConfigError(
            f"per_class={per_class!r} is only used by policies that keep a fixed number of items per class "
            f"(herding); policy {policy!r} fills its capacity as it goes. Drop per_class, or use policy='herding'"
        )
    return {}


MAX_BUFFER_SIZE = 10_000_000


@dataclass(frozen=True)
class BufferConfig(ConfigSection):
    """The replay memory of a run (YAML section ``buffer``): a :class:`MemoryBuffer`.

    Attributes:
        replay: Replay on (``il_*`` configs) or off (``sgd_*`` lower bound, ``joint_*``).
        size: Capacity M (200; the reference's ``--buffer_size``). 0 turns replay off.
        policy: Storage policy: ``reservoir`` (the reference), ``class_balanced`` or ``herding``
            (``per_class`` exemplars per class by iCaRL's herding, chosen at the end of each
            experience: the PyCIL/PROOF memory; ``size`` must hold ``per_class`` x classes).
        per_class: Exemplars kept per class by ``herding`` (``None``: the policy's default, 20 as
            in PROOF); refused with the other policies when the configuration is read.
    """

    _SECTION: ClassVar[str] = "buffer"

    replay: bool = True
    size: int = 200
    policy: str = "reservoir"
    per_class: int | None = None

    def __post_init__(self) -> None:
        check_int(self.size, "buffer.size", low=0, high=MAX_BUFFER_SIZE,
                  why="stored items (the paper uses 200 to 5120; 0 turns replay off)")
        set_canonical(self, "policy", resolve_name(BUFFER_POLICIES, self.policy, "buffer.policy"))
        check_int(self.per_class, "buffer.per_class", low=1, optional=True,
                  why="exemplars kept per class by the herding policy (20 in PROOF)")
        try:  # when the config is read, not after the backbone is built
            _policy_options(self.policy, self.per_class)
        except ConfigError as exc:
            raise ConfigError(f"config key 'buffer.per_class': {exc}") from None

    @property
    def enabled(self) -> bool:
        """Whether a buffer is used at all (``replay`` and a positive ``size``)."""
        return self.replay and self.size > 0

    def build(self, *, device: torch.device, seed: int) -> MemoryBuffer | None:
        """The buffer (``None`` when :attr:`enabled` is false)."""
        if not self.enabled:
            return None
        try:
            return MemoryBuffer(self.size, policy=self.policy, device=device, seed=seed, per_class=self.per_class)
        except ConfigError as exc:
            if self.per_class is None:
                raise
            raise ConfigError(f"config key 'buffer.per_class': {exc}") from None
