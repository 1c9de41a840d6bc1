"""MemoryBuffer: reservoir (algorithm R), class-balanced (CBRS) and herding policies, state, errors.

The property tests offer random sequences of batches and give every offered item a unique id
(its position in the stream), so that "stored", "aligned" and "no duplicate" are checkable.
"""

from __future__ import annotations

import io
import math

import numpy as np

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alta.buffer import BUFFER_POLICIES, MemoryBuffer, list_buffer_policies
from alta.errors import CheckpointError, ConfigError, ShapeError, StateError, TrainingError

PROPERTY = settings(max_examples=60, deadline=None)


def offer(buffer: MemoryBuffer, labels: list[int], *, start: int, num_classes: int = 6) -> torch.Tensor:
    """Offer items ``start, start+1, ...`` with the given labels; fields derived from the id."""
    ids = torch.arange(start, start + len(labels), dtype=torch.long)
    return buffer.add(
        labels=torch.tensor(labels, dtype=torch.long),
        ids=ids,
        features=torch.stack([ids.float(), -2.0 * ids.float()], dim=1),
        logits=torch.nn.functional.one_hot(torch.tensor(labels, dtype=torch.long) % num_classes,
                                           num_classes).float() * ids[:, None],
    )


def run(buffer: MemoryBuffer, batches: list[list[int]], *, start: int = 0) -> list[int]:
    """Offer all batches; return the labels of every offered item, by id."""
    offered: list[int] = []
    for batch in batches:
        offer(buffer, batch, start=start + len(offered))
        offered.extend(batch)
    return offered


batches_strategy = st.lists(
    st.lists(st.integers(0, 5), min_size=0, max_size=12), min_size=1, max_size=14
)


# ---- properties ---------------------------------------------------------------------------------


@PROPERTY
@given(
    capacity=st.integers(1, 20),
    batches=batches_strategy,
    policy=st.sampled_from(["reservoir", "class_balanced"]),
    seed=st.integers(0, 2**31),
)
def test_invariants_after_every_add(capacity, batches, policy, seed):
    """len <= capacity, len == min(num_seen, capacity), stored items were offered, once each, and
    every stored row's fields belong to one offered item (alignment); returned slots point at the
    stored item."""
    buffer = MemoryBuffer(capacity, policy=policy, seed=seed)
    offered: list[int] = []
    for batch in batches:
        slots = offer(buffer, batch, start=len(offered))
        offered.extend(batch)
        assert len(buffer) <= capacity
        assert len(buffer) == min(buffer.num_seen, capacity) and buffer.num_seen == len(offered)
        if buffer.is_empty():
            continue
        data = buffer.data()
        ids = data["ids"].tolist()
        assert len(set(ids)) == len(ids)  # no duplicate
        assert all(0 <= i < len(offered) for i in ids)  # every stored item was offered
        assert data["labels"].tolist() == [offered[i] for i in ids]
        torch.testing.assert_close(data["features"][:, 0], data["ids"].float())
        torch.testing.assert_close(data["features"][:, 1], -2.0 * data["ids"].float())
        assert data["logits"].sum(1).tolist() == [float(i) for i in ids]
        start = len(offered) - len(batch)
        for k, slot in enumerate(slots.tolist()):
            if slot >= 0:
                assert ids[slot] == start + k


@PROPERTY
@given(capacity=st.integers(1, 15), batches=batches_strategy, seed=st.integers(0, 2**31))
def test_class_balanced_water_filling(capacity, batches, seed):
    """CBRS invariant, checked after every add while the buffer is full: with M the largest
    stored count, every seen class c has ``stored_c == offered_c`` (it kept everything) or
    ``stored_c >= M - 1``. Hence for any two seen classes a, b whose stored counts differ by more
    than one, the smaller one holds every item it was offered."""
    buffer = MemoryBuffer(capacity, policy="class_balanced", seed=seed)
    offered: list[int] = []
    for batch in batches:
        offer(buffer, batch, start=len(offered))
        offered.extend(batch)
        if len(buffer) < capacity:
            assert len(buffer) == len(offered)
            continue
        stored = torch.bincount(buffer.data()["labels"], minlength=6).tolist()
        seen = torch.bincount(torch.tensor(offered), minlength=6).tolist()
        largest = max(stored)
        for c in range(6):
            if seen[c]:
                assert stored[c] == seen[c] or stored[c] >= largest - 1, (stored, seen)
        for a in range(6):
            for b in range(6):
                if seen[a] and seen[b] and stored[b] - stored[a] > 1:
                    assert stored[a] == seen[a]


@PROPERTY
@given(
    capacity=st.integers(1, 20),
    batches=batches_strategy,
    policy=st.sampled_from(["reservoir", "class_balanced"]),
    seed=st.integers(0, 2**31),
    n=st.integers(0, 30),
)
def test_same_seed_same_contents_and_sample_never_repeats(capacity, batches, policy, seed, n):
    a, b = MemoryBuffer(capacity, policy=policy, seed=seed), MemoryBuffer(capacity, policy=policy, seed=seed)
    run(a, batches)
    run(b, batches)
    for name, value in a.data().items():
        assert torch.equal(value, b.data()[name])
    if a.is_empty():
        return
    drawn = a.sample(n)
    ids = drawn["ids"].tolist()
    assert len(ids) == min(n, len(a)) and len(set(ids)) == len(ids)
    assert set(ids) <= set(a.data()["ids"].tolist())
    assert drawn["labels"].shape == (len(ids),) and drawn["features"].shape == (len(ids), 2)
    assert ids == b.sample(n)["ids"].tolist()


@PROPERTY
@given(
    capacity=st.integers(1, 20),
    before=batches_strategy,
    after=batches_strategy,
    policy=st.sampled_from(["reservoir", "class_balanced"]),
    seed=st.integers(0, 2**31),
)
def test_state_dict_round_trip_continues_identically(capacity, before, after, policy, seed):
    original = MemoryBuffer(capacity, policy=policy, seed=seed)
    offered = run(original, before)
    blob = io.BytesIO()
    torch.save(original.state_dict(), blob)
    blob.seek(0)
    restored = MemoryBuffer(capacity, policy=policy, seed=seed + 1)  # seed is restored too
    restored.load_state_dict(torch.load(blob, weights_only=True))
    assert len(restored) == len(original) and restored.num_seen == original.num_seen
    assert restored.seed == original.seed
    for buffer in (original, restored):
        run(buffer, after, start=len(offered))
    assert original.num_seen == restored.num_seen
    for name, value in original.data().items():
        assert torch.equal(value, restored.data()[name])
    if not original.is_empty():
        assert torch.equal(original.sample(7)["ids"], restored.sample(7)["ids"])


# ---- algorithm R exactly ------------------------------------------------------------------------


def reference_reservoir(capacity: int, batch_sizes: list[int], seed: int) -> list[int]:
    """Algorithm R item by item (mammoth's ``reservoir``), consuming the generator as the buffer
    does: one float64 uniform per item offered past the capacity, drawn per batch."""
    generator = torch.Generator().manual_seed(seed)
    slots: list[int] = []
    seen = 0
    for size in batch_sizes:
        num_full = sum(1 for k in range(size) if seen + k >= capacity)
        uniforms = torch.rand(num_full, generator=generator, dtype=torch.float64).tolist()
        for _ in range(size):
            if seen < capacity:
                slots.append(seen)
            else:
                j = math.floor(uniforms.pop(0) * (seen + 1))
                if j < capacity:
                    slots[j] = seen  # later items overwrite earlier ones, even in one batch
            seen += 1
    return slots


@pytest.mark.parametrize("capacity, sizes", [(5, [3, 4, 32, 1, 32, 32]), (1, [32] * 4), (50, [32] * 10)])
def test_reservoir_matches_item_by_item_algorithm_r(capacity, sizes):
    buffer = MemoryBuffer(capacity, seed=11)
    start = 0
    for size in sizes:
        ids = torch.arange(start, start + size)
        buffer.add(labels=ids % 3, ids=ids)
        start += size
    assert buffer.data()["ids"].tolist() == reference_reservoir(capacity, sizes, 11)


def test_reservoir_inclusion_is_uniform_over_the_stream():
    """Chi-square test: with capacity 10 and 100 offered items, every stream position is kept
    with probability 10/100. Fixed seeds make the outcome deterministic (it cannot flake); the
    threshold would reject an order-dependent bias such as keeping the first item of a batch."""
    repetitions, capacity, length = 2000, 10, 100
    sizes = [7, 1, 13, 32, 20, 27]  # uneven batches exercise in-batch overwrites
    assert sum(sizes) == length
    counts = torch.zeros(length)
    for r in range(repetitions):
        buffer = MemoryBuffer(capacity, seed=10_000 + r)
        start = 0
        for size in sizes:
            buffer.add(ids=torch.arange(start, start + size))
            start += size
        counts[buffer.data()["ids"]] += 1
    p = capacity / length
    expected = repetitions * p
    statistic = float(((counts - expected) ** 2 / (expected * (1 - p))).sum())
    try:
        from scipy.stats import chi2

        p_value = float(chi2.sf(statistic, df=length))
    except ImportError:  # Wilson-Hilferty approximation of the chi-square tail
        z = ((statistic / length) ** (1 / 3) - (1 - 2 / (9 * length))) / math.sqrt(2 / (9 * length))
        p_value = 0.5 * math.erfc(z / math.sqrt(2))
    assert p_value > 1e-3, (statistic, p_value)
    frequencies = counts / repetitions
    assert float((frequencies - p).abs().max()) < 6 * math.sqrt(p * (1 - p) / repetitions)


# ---- API ---------------------------------------------------------------------------------------


def test_policies_registry():
    assert list_buffer_policies() == ["reservoir", "class_balanced", "herding"]
    with pytest.raises(ConfigError, match="did you mean 'reservoir'"):
        MemoryBuffer(10, policy="resevoir")
    assert "reservoir" in BUFFER_POLICIES


def test_alta_fields_and_basic_api():
    buffer = MemoryBuffer(4, seed=0)
    assert buffer.is_empty() and len(buffer) == 0 and buffer.fields == []
    slots = buffer.add(
        labels=torch.tensor([1, 2, 3]),
        image_features=torch.randn(3, 8, requires_grad=True),
        logits=torch.randn(3, 5),
        experience_ids=torch.zeros(3, dtype=torch.long),
    )
    assert slots.tolist() == [0, 1, 2]
    assert buffer.fields == ["labels", "image_features", "logits", "experience_ids"]
    assert len(buffer) == 3 and buffer.num_seen == 3 and buffer.capacity == 4
    assert not buffer.data()["image_features"].requires_grad
    empty = buffer.add(labels=torch.empty(0, dtype=torch.long), image_features=torch.empty(0, 8),
                       logits=torch.empty(0, 5), experience_ids=torch.empty(0, dtype=torch.long))
    assert empty.shape == (0,) and buffer.num_seen == 3
    zero = buffer.sample(0)
    assert zero["image_features"].shape == (0, 8) and zero["labels"].dtype == torch.long
    assert buffer.sample(100)["logits"].shape == (3, 5)
    assert buffer.to("cpu") is buffer
    text = repr(buffer)
    assert "capacity=4" in text and "image_features: float32[8]" in text and "len=3" in text


def test_sample_with_external_generator_does_not_touch_the_buffer_generator():
    a, b = MemoryBuffer(10, seed=3), MemoryBuffer(10, seed=3)
    for buffer in (a, b):
        buffer.add(ids=torch.arange(30))
    a.sample(5, generator=torch.Generator().manual_seed(0))
    a.add(ids=torch.arange(30, 60))
    b.add(ids=torch.arange(30, 60))
    assert torch.equal(a.data()["ids"], b.data()["ids"])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(a.sample(4, generator=g1)["ids"], a.sample(4, generator=g2)["ids"])


def test_empty_sample_raises_state_error():
    buffer = MemoryBuffer(3)
    with pytest.raises(StateError, match="empty buffer.*is_empty"):
        buffer.sample(32)
    assert isinstance(buffer.seed, int)  # drawn once when none is given


@pytest.mark.parametrize("capacity", [0, -3, 2.5, True, "10", None])
def test_bad_capacity(capacity):
    with pytest.raises(ConfigError, match=f"positive int.*got {capacity!r}"):
        MemoryBuffer(capacity)


def test_add_errors():
    buffer = MemoryBuffer(5, seed=0)
    with pytest.raises(ConfigError, match="at least one field"):
        buffer.add()
    with pytest.raises(ShapeError, match="must be a torch.Tensor, got list"):
        buffer.add(labels=[1, 2])
    with pytest.raises(ShapeError, match="0-dim"):
        buffer.add(labels=torch.tensor(1))
    with pytest.raises(ShapeError, match=r"same number of items.*'labels': 2, 'logits': 3"):
        buffer.add(labels=torch.tensor([1, 2]), logits=torch.zeros(3, 4))
    assert buffer.fields == [] and buffer.num_seen == 0  # failed adds changed nothing
    buffer.add(labels=torch.tensor([1, 2]), logits=torch.zeros(2, 4))
    with pytest.raises(ShapeError, match=r"'logits': received torch.float32 items of shape \(5,\), "
                                         r"expected torch.float32 of shape \(4,\)"):
        buffer.add(labels=torch.tensor([1]), logits=torch.zeros(1, 5))
    with pytest.raises(ShapeError, match="torch.float16.*expected torch.float32"):
        buffer.add(labels=torch.tensor([1]), logits=torch.zeros(1, 4, dtype=torch.float16))
    with pytest.raises(ConfigError, match=r"missing \[\], unexpected \['ids'\]"):
        buffer.add(labels=torch.tensor([1]), logits=torch.zeros(1, 4), ids=torch.zeros(1))
    with pytest.raises(ConfigError, match=r"missing \['logits'\]"):
        buffer.add(labels=torch.tensor([1]))
    assert buffer.num_seen == 2


def test_class_balanced_needs_integer_labels():
    buffer = MemoryBuffer(5, policy="class_balanced", seed=0)
    with pytest.raises(ConfigError, match="needs integer labels in field 'labels'.*label_field"):
        buffer.add(y=torch.tensor([1, 2]))
    with pytest.raises(ShapeError, match="1-D integer"):
        buffer.add(labels=torch.tensor([1.0, 2.0]))
    custom = MemoryBuffer(3, policy="class_balanced", seed=0, label_field="y")
    custom.add(y=torch.tensor([0, 0, 0, 1]))
    assert sorted(custom.data()["y"].tolist()) == [0, 0, 1]
    for policy, extra in (("class_balanced", {}), ("herding", {"image_features": torch.randn(2, 4)})):
        counted = MemoryBuffer(40, policy=policy, seed=0)  # -1 was stored as a class of its own
        with pytest.raises(ShapeError, match=r"negative labels \(-1\).*0\.\.C-1"):
            counted.add(labels=torch.tensor([0, -1]), **extra)
        assert len(counted) == 0


def test_class_balanced_keeps_minority_classes():
    buffer = MemoryBuffer(20, policy="class_balanced", seed=0)
    labels = [0] * 200 + [1] * 5 + [2] * 200
    for start in range(0, len(labels), 32):
        chunk = labels[start:start + 32]
        buffer.add(labels=torch.tensor(chunk), ids=torch.arange(start, start + len(chunk)))
    counts = torch.bincount(buffer.data()["labels"], minlength=3).tolist()
    assert counts[1] == 5 and sorted(counts) == [5, 7, 8]
    reservoir = MemoryBuffer(20, seed=0)
    reservoir.add(labels=torch.tensor(labels), ids=torch.arange(len(labels)))
    assert torch.bincount(reservoir.data()["labels"], minlength=3)[1] < 5


def test_sample_argument_errors():
    buffer = MemoryBuffer(3, seed=0)
    buffer.add(ids=torch.arange(2))
    for bad in (-1, 2.0, True):
        with pytest.raises(ConfigError, match="int n >= 0"):
            buffer.sample(bad)


def test_load_state_dict_rejects_incompatible_states():
    buffer = MemoryBuffer(4, seed=0)
    buffer.add(labels=torch.arange(6), ids=torch.arange(6))
    state = buffer.state_dict()
    with pytest.raises(CheckpointError, match="capacity=4 but this buffer has capacity=5"):
        MemoryBuffer(5).load_state_dict(state)
    with pytest.raises(CheckpointError, match="policy='reservoir'.*class_balanced"):
        MemoryBuffer(4, policy="class_balanced").load_state_dict(state)
    with pytest.raises(CheckpointError, match="expected a MemoryBuffer state dict"):
        MemoryBuffer(4).load_state_dict({"weights": 1})
    broken = dict(state, size=3)
    with pytest.raises(CheckpointError, match="size = min"):
        MemoryBuffer(4).load_state_dict(broken)
    broken = dict(state, fields={"ids": torch.arange(2)})
    with pytest.raises(CheckpointError, match="should hold 4 items"):
        MemoryBuffer(4).load_state_dict(broken)
    broken = dict(state)
    del broken["generator"]
    with pytest.raises(CheckpointError, match="incomplete"):
        MemoryBuffer(4).load_state_dict(broken)
    balanced = MemoryBuffer(4, policy="class_balanced", seed=0)
    balanced.add(labels=torch.tensor([0, 1, 1, 2, 2]))
    state = balanced.state_dict()
    state["policy_state"] = dict(state["policy_state"], slot_labels=[0, 0, 0, 0])
    with pytest.raises(CheckpointError, match="do not match"):
        MemoryBuffer(4, policy="class_balanced").load_state_dict(state)
    target = MemoryBuffer(4, seed=1)
    target.add(ids=torch.arange(2))
    before = target.data()
    with pytest.raises(CheckpointError):
        target.load_state_dict(dict(buffer.state_dict(), size=1))
    assert torch.equal(target.data()["ids"], before["ids"])  # a failed load changes nothing


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_and_cpu_inputs():
    buffer = MemoryBuffer(8, device="cuda", seed=0)
    buffer.add(labels=torch.arange(10), feats=torch.randn(10, 3))
    assert buffer.data()["feats"].is_cuda and buffer.sample(4)["labels"].is_cuda
    buffer.add(labels=torch.arange(10, device="cuda"), feats=torch.randn(10, 3, device="cuda"))
    assert buffer.to("cpu").data()["labels"].device.type == "cpu"


# ---- argument validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device, match",
    [
        ("gpu", r"device='gpu' is not a torch device \(did you mean 'cuda'\?\)"),
        ("CPU", r"did you mean 'cpu'"),
        (0, "device string or torch.device.*got int 0"),
        (None, "got NoneType"),
        ("meta", "not supported"),
    ],
)
def test_bad_device_is_a_config_error_at_construction(device, match):
    with pytest.raises(ConfigError, match=match):
        MemoryBuffer(4, device=device)
    buffer = MemoryBuffer(4, seed=0)
    with pytest.raises(ConfigError, match=match):
        buffer.to(device)
    assert buffer.device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_fails_at_construction():
    for device in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ConfigError, match="CUDA is not available.*device='cpu'"):
            MemoryBuffer(4, device=device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_index_beyond_visible_devices():
    with pytest.raises(ConfigError, match="CUDA device"):
        MemoryBuffer(4, device=f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("seed, match", [("x", "got str 'x'"), (2**64, "got 18446744073709551616"),
                                         (-1, "got -1"), (True, "got bool"), (1.5, "got float")])
def test_bad_seed(seed, match):
    with pytest.raises(ConfigError, match=r"seed must be an int in \[0, 2\*\*64\).*" + match):
        MemoryBuffer(4, seed=seed)


def test_seed_edges():
    import numpy as np

    assert MemoryBuffer(4, seed=2**64 - 1).seed == 2**64 - 1
    assert MemoryBuffer(4, seed=np.int64(5)).seed == 5
    assert 0 <= MemoryBuffer(4, seed=None).seed < 2**63


def test_sample_generator_must_be_a_generator():
    buffer = MemoryBuffer(3, seed=0)
    buffer.add(ids=torch.arange(2))
    for bad in ("x", 0, torch.tensor(1)):
        with pytest.raises(ConfigError, match="torch.Generator or None"):
            buffer.sample(2, generator=bad)


def test_class_balanced_state_errors_name_the_real_cause():
    buffer = MemoryBuffer(4, policy="class_balanced", seed=0)
    buffer.add(labels=torch.tensor([0, 1, 1, 2, 2]))
    state = buffer.state_dict()
    policy_state = state["policy_state"]
    cases = [
        (dict(policy_state, offered=[1, 2]), r"'offered' must be a list of \[class, count\] pairs.*"
                                             r"got list \[1, 2\]: cannot unpack"),
        (dict(policy_state, offered=[[0, "a"]]), r"'offered'.*'a' \(str\) is not an int"),
        (dict(policy_state, offered=[[0, -1]]), r"'offered'.*negative"),
        (dict(policy_state, slot_labels="0112"), r"'slot_labels' must be a list of int labels.*got str"),
        (dict(policy_state, slot_labels=[0, 1.5, 1, 2]), r"'slot_labels'.*1.5 \(float\) is not an int"),
        ({"offered": policy_state["offered"]}, r"lacks the key 'slot_labels' \(got keys \['offered'\]\)"),
        ([1, 2], "must be a dict.*got list"),
        (dict(policy_state, slot_labels=[0, 1, 1]), "lists 3 slot labels but the buffer state stores 4"),
        (dict(policy_state, offered=[[0, 1], [1, 2], [2, 1]]), "stores 2 items of class 2 but says only 1"),
    ]
    for bad, match in cases:
        with pytest.raises(CheckpointError, match=match):
            MemoryBuffer(4, policy="class_balanced").load_state_dict(dict(state, policy_state=bad))
    # A class -> count dict is read as well.
    offered = {c: n for c, n in policy_state["offered"]}
    restored = MemoryBuffer(4, policy="class_balanced")
    restored.load_state_dict(dict(state, policy_state=dict(policy_state, offered=offered)))
    assert restored.state_dict()["policy_state"] == policy_state


def test_registry_messages_pluralise_the_kind():
    from alta.registry import Registry, pluralize

    assert [pluralize(w) for w in ("buffer policy", "method", "box", "key", "class")] == [
        "buffer policies", "methods", "boxes", "keys", "classes"]
    with pytest.raises(ConfigError) as info:
        MemoryBuffer(4, policy="zzz")
    assert str(info.value).startswith("unknown buffer policy 'zzz'. Valid buffer policies: reservoir, class_balanced, "
                                      "herding. To add one: an entry point in group 'alta.buffer_policies'")
    with pytest.raises(ConfigError, match=r"; did you mean 'reservoir'\? Valid buffer policies:"):
        MemoryBuffer(4, policy="resevoir")
    with pytest.raises(ConfigError, match="valid buffer policies"):
        MemoryBuffer(4, policy=3)
    mice = Registry("mouse", plural="mice")
    mice.add("a", 1)
    with pytest.raises(ConfigError, match="registered mice: a"):
        mice.add("a", 2)


# ---- herding: a fixed number of exemplars per class (iCaRL) -------------------------------------


def icarl_herding(vectors: np.ndarray, m: int) -> list[int]:
    """iCaRL's herding written directly from the paper (Rebuffi et al., CVPR 2017, Algorithm 4)
    in the form PyCIL and PROOF run it (models/base.py): L2-normalise (norm + 1e-8), class mean
    not renormalised, at step k the candidate whose mean with the k - 1 chosen ones is nearest
    to the class mean, first on ties, chosen items removed from the candidates. Returns the
    original indices in the order chosen (at most n: PyCIL itself fails for n < m)."""
    vectors = (vectors.T / (np.linalg.norm(vectors.T, axis=0) + 1e-8)).T
    mean = np.mean(vectors, axis=0)
    index = np.arange(len(vectors))
    chosen, chosen_vectors = [], []
    for k in range(1, min(m, len(index)) + 1):
        total = np.sum(chosen_vectors, axis=0)  # 0.0 while nothing is chosen
        distances = np.sqrt(np.sum((mean - (vectors + total) / k) ** 2, axis=1))
        i = int(np.argmin(distances))
        chosen.append(int(index[i]))
        chosen_vectors.append(vectors[i])
        vectors, index = np.delete(vectors, i, axis=0), np.delete(index, i)
    return chosen


def offer_experience_items(buffer: MemoryBuffer, labels: list[int], features: torch.Tensor, *, start: int):
    """Offer one experience's items at once (as alta.loop.exemplars does), ids from ``start``."""
    ids = torch.arange(start, start + len(labels), dtype=torch.long)
    return buffer.add(labels=torch.tensor(labels, dtype=torch.long), image_features=features, ids=ids)


experiences_strategy = st.lists(  # each experience: (its classes' labels, items per class)
    st.tuples(st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True), st.integers(1, 9)),
    min_size=1, max_size=4)


@PROPERTY
@given(n=st.integers(1, 40), dim=st.integers(1, 12), m=st.integers(1, 25), data_seed=st.integers(0, 2**31))
def test_herding_order_equals_a_direct_icarl_implementation(n, dim, m, data_seed):
    """On random features the herding policy keeps, in order, exactly what iCaRL's herding picks."""
    features = torch.from_numpy(np.random.default_rng(data_seed).normal(size=(n, dim)))
    buffer = MemoryBuffer(25, policy="herding", per_class=m, seed=0)
    slots = offer_experience_items(buffer, [3] * n, features, start=0)
    expected = icarl_herding(features.numpy(), m)
    assert buffer.data()["ids"].tolist() == expected  # slot order = herding order
    assert [int(slots[i]) for i in expected] == list(range(len(expected)))
    assert int((slots >= 0).sum()) == min(m, n)


def test_herding_equals_icarl_on_float32_clip_sized_features():
    rng = np.random.default_rng(0)
    for n in (1, 19, 20, 21, 120):
        features = torch.from_numpy(rng.normal(size=(n, 512)).astype(np.float32))
        buffer = MemoryBuffer(20, policy="herding", seed=0)  # per_class: the policy's 20
        offer_experience_items(buffer, [0] * n, features, start=0)
        assert buffer.per_class == 20
        assert buffer.data()["ids"].tolist() == icarl_herding(features.numpy(), 20)


@PROPERTY
@given(experiences=experiences_strategy, per_class=st.integers(1, 6), seed=st.integers(0, 2**31),
       data_seed=st.integers(0, 2**31))
def test_herding_per_class_counts_are_exact_and_old_classes_keep_their_exemplars(experiences, per_class, seed,
                                                                                 data_seed):
    rng = np.random.default_rng(data_seed)
    buffer = MemoryBuffer(8 * per_class, policy="herding", per_class=per_class, seed=seed)
    offered: dict[int, int] = {}  # class -> items offered when it was first offered
    start = 0
    for classes, per in experiences:
        labels = [c for c in classes for _ in range(per)]
        before = {k: v.clone() for k, v in buffer.data().items()}
        offer_experience_items(buffer, labels, torch.from_numpy(rng.normal(size=(len(labels), 4))), start=start)
        start += len(labels)
        for c in classes:
            offered.setdefault(c, per)
        data = buffer.data()
        counts = torch.bincount(data["labels"], minlength=8).tolist()
        assert counts == [min(per_class, offered[c]) if c in offered else 0 for c in range(8)]
        for name, value in before.items():  # nothing stored is replaced or moved
            assert torch.equal(data[name][: value.shape[0]], value)
        assert len(buffer) <= buffer.num_seen and len(buffer) <= buffer.capacity


@PROPERTY
@given(experiences=experiences_strategy, seed=st.integers(0, 2**31), data_seed=st.integers(0, 2**31))
def test_herding_is_deterministic_for_a_seed_and_resumes_identically(experiences, seed, data_seed):
    rng = np.random.default_rng(data_seed)
    offers = [([c for c in classes for _ in range(per)], torch.from_numpy(rng.normal(size=(len(classes) * per, 3))))
              for classes, per in experiences]
    a = MemoryBuffer(24, policy="herding", per_class=3, seed=seed)
    b = MemoryBuffer(24, policy="herding", per_class=3, seed=seed)
    other_seed = MemoryBuffer(24, policy="herding", per_class=3, seed=seed + 1)
    half = len(offers) // 2
    start = 0
    for k, (labels, features) in enumerate(offers):
        for buffer in (a, b, other_seed):
            offer_experience_items(buffer, labels, features, start=start)
        start += len(labels)
        if k + 1 == half:  # b continues from its own state dict
            blob = io.BytesIO()
            torch.save(b.state_dict(), blob)
            blob.seek(0)
            b = MemoryBuffer(24, policy="herding", per_class=3, seed=0)
            b.load_state_dict(torch.load(blob, weights_only=True))
    for name, value in a.data().items():
        assert torch.equal(value, b.data()[name])
        assert torch.equal(value, other_seed.data()[name])  # herding draws nothing at random
    if not a.is_empty():
        assert torch.equal(a.sample(5)["ids"], b.sample(5)["ids"])


def test_herding_is_offered_experiences_and_refuses_what_it_cannot_keep():
    buffer = MemoryBuffer(10, policy="herding", per_class=5, seed=0)
    assert buffer.offered_per == "experience" and MemoryBuffer(10, seed=0).offered_per == "step"
    with pytest.raises(ConfigError, match="features in field 'image_features'"):
        buffer.add(labels=torch.arange(3))
    with pytest.raises(ShapeError, match="2-D float tensor"):
        buffer.add(labels=torch.arange(3), image_features=torch.arange(3))
    buffer.add(labels=torch.zeros(6, dtype=torch.long), image_features=torch.randn(6, 2))
    assert len(buffer) == 5
    with pytest.raises(ConfigError, match=r"need 10 slots but only 5 of its 10 are free.*per_class x classes"):
        buffer.add(labels=torch.tensor([1] * 6 + [2] * 6), image_features=torch.randn(12, 2))
    assert len(buffer) == 5 and buffer.num_seen == 6  # a refused offer changes nothing
    with pytest.raises(ConfigError, match="per_class must be a positive int"):
        MemoryBuffer(10, policy="herding", per_class=0)
    with pytest.raises(ConfigError, match="only used by policies that keep a fixed number"):
        MemoryBuffer(10, policy="class_balanced", per_class=20)
    state = buffer.state_dict()
    with pytest.raises(CheckpointError, match="keeps 5 exemplars per class but this buffer keeps 4"):
        MemoryBuffer(10, policy="herding", per_class=4).load_state_dict(state)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_herding_refuses_non_finite_features_and_keeps_what_it_had(bad):
    """A NaN feature made every distance compare false: herding kept the first items, silently."""
    buffer = MemoryBuffer(20, policy="herding", per_class=2, seed=0)
    buffer.add(labels=torch.zeros(4, dtype=torch.long), image_features=torch.randn(4, 3))
    features = torch.randn(8, 3)
    features[6, 1] = bad  # class 2's; class 1 comes first and must not be stored either
    with pytest.raises(TrainingError, match=r"non-finite features \(NaN or inf\) for 1 of its 8 items"):
        buffer.add(labels=torch.tensor([1] * 4 + [2] * 4), image_features=features)
    assert len(buffer) == 2 and buffer.num_seen == 4  # the refused offer changed nothing
    buffer.add(labels=torch.tensor([1] * 4), image_features=features[:4])
    assert len(buffer) == 4  # class 1 was not marked stored by the refused offer
    from alta.policies import herding_selection

    with pytest.raises(TrainingError, match="non-finite"):
        herding_selection(features[4:], 2)
