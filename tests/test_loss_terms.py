"""The LossTerm seam: ALTA's loss is three terms summed as before, and other terms add to it.

ALTA's CE, replay CE and replay MSE (alta/losses.py) give the loss the learner computed before it
was split into terms, bit for bit (the suite's pinned numbers, tests/test_reference_equivalence.py,
check the rest). An extra term is summed after them, weighed by its item count in a data-parallel
step, stores fields in the buffer and reads them back, keeps state that is checkpointed with the
learner, and a term that breaks the protocol is refused by name.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import alta
from alta.errors import CheckpointError, ConfigError, PluginError, ShapeError, TrainingError
from alta.losses import LOSS_TERMS, LossTerm, TermValue, normalise_loss_terms
from alta.replay import ReplayBatch, replay_terms
from helpers import synthetic_experiences

NAMES = ["a", "b", "c", "d"]


class LogitSquare(LossTerm):
    """Mean squared logit, with a running count of its calls (state)."""

    name = "logit_square"

    def __init__(self, *, weight: float = 0.5) -> None:
        super().__init__(weight=weight)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, inputs):
        self.calls += 1
        return TermValue(inputs.logits.pow(2).mean(), inputs.logits.numel())


class StoredProbs(LossTerm):
    """Stores each sample's class probabilities and distils the replayed ones (KL, DER-style)."""

    name = "stored_probs"
    stores = ("probs",)

    def forward(self, inputs):
        if inputs.memory is None:
            return None
        log_probs = F.log_softmax(inputs.memory_logits, dim=1)
        value = F.kl_div(log_probs, inputs.memory["probs"], reduction="batchmean")
        return TermValue(value, int(log_probs.shape[0]))

    def items(self, inputs):
        return {"probs": F.softmax(inputs.logits, dim=1)}


def _batch(tiny_clip, *, seen_stored: bool = False):
    g = torch.Generator().manual_seed(0)
    f1, labels = torch.randn(9, tiny_clip.embed_dim, generator=g), torch.randint(0, 2, (9,), generator=g)
    stored = torch.randn(6, 4, generator=g)
    if seen_stored:
        stored[:3, 2:] = float("-inf")
    memory = {"image_features": torch.randn(6, tiny_clip.embed_dim, generator=g),
              "labels": torch.randint(0, 2, (6,), generator=g), "logits": stored}
    return f1, labels, memory


@pytest.mark.parametrize("head", ["all", "seen"])
def test_alta_loss_is_its_three_terms_summed_as_before(tiny_clip, head):
    experience = synthetic_experiences(num_experiences=2)[0]
    learner = alta.CrossModalLearner(tiny_clip, class_names=NAMES, head=head, alpha=0.3, beta=0.7, seed=1)
    learner.begin_experience(experience)
    f1, labels, memory = _batch(tiny_clip, seen_stored=head == "seen")
    out = learner.loss(f1, labels, memory=memory)
    assert [t.name for t in learner.loss_terms] == ["ce", "replay_ce", "replay_mse"]
    assert out.weights == {"ce": 1.0, "replay_ce": 0.3, "replay_mse": 0.7}
    # the loss as the learner wrote it before its terms: CE + alpha * CE_b + beta * MSE_b, in that order
    with torch.no_grad():
        text = learner.text_features(grad=False)
        logits = learner.logits_from_features(f1, text)
        stored = ReplayBatch(memory["image_features"], memory["labels"], memory["logits"])
        replay = replay_terms(learner.logits_from_features(stored.image_features, text), stored,
                              seen_only=head == "seen")
        expected = F.cross_entropy(logits, labels) + 0.3 * replay.ce + 0.7 * replay.mse
    assert torch.equal(out.loss.detach(), expected)
    assert torch.equal(out.terms["replay_mse"].detach(), replay.mse)
    assert out.counts["ce"] == 9 and out.counts["replay_ce"] == 6
    assert int(out.counts["replay_mse"]) == (6 * 4 - 3 * 2 if head == "seen" else 6 * 4)
    plain = learner.loss(f1, labels)  # no memory: the loss is the cross-entropy itself, replay terms logged as 0
    assert plain.loss is plain.terms["ce"] and float(plain.terms["replay_ce"]) == 0.0 and plain.counts["replay_mse"] == 0


def test_an_extra_term_adds_to_the_loss_and_is_weighed_by_its_count_over_shards(tiny_clip):
    experience = synthetic_experiences(num_experiences=2)[0]
    learner = alta.CrossModalLearner(tiny_clip, class_names=NAMES, seed=1, loss_terms=[LogitSquare(weight=0.25)])
    learner.begin_experience(experience)
    f1, labels, memory = _batch(tiny_clip)
    full = learner.loss(f1, labels, memory=memory)
    assert list(full.terms) == ["ce", "replay_ce", "replay_mse", "logit_square"]
    t = full.terms
    assert torch.equal(full.loss, t["ce"] + 0.4 * t["replay_ce"] + 0.4 * t["replay_mse"] + 0.25 * t["logit_square"])
    assert full.counts["logit_square"] == 9 * 4
    # DataParallelStep's rule: each shard's term weighed by its share of the term's items
    shards = [(slice(0, 5), slice(0, 3)), (slice(5, 9), slice(3, 6))]
    parts = [learner.loss(f1[b], labels[b], memory={k: v[m] for k, v in memory.items()}) for b, m in shards]
    total = sum(sum(p.weights[n] * p.terms[n] * float(p.counts[n]) / float(full.counts[n]) for n in p.terms)
                for p in parts)
    assert torch.allclose(total, full.loss, atol=1e-5, rtol=1e-6)
    optimizer, _ = alta.build_optimizer(learner)
    stats = alta.train_step(learner, f1, labels, optimizer=optimizer)
    assert set(stats) == {"loss", "ce", "replay_ce", "replay_mse", "logit_square", "correct"}


def test_a_term_stores_fields_in_the_buffer_and_reads_them_back(tiny_clip):
    experience = synthetic_experiences(num_experiences=2)[0]
    learner = alta.CrossModalLearner(tiny_clip, class_names=NAMES, seed=1, loss_terms=[StoredProbs(weight=0.5)])
    learner.begin_experience(experience)
    optimizer, _ = alta.build_optimizer(learner)
    buffer = alta.MemoryBuffer(12, seed=0)
    f1, labels, _ = _batch(tiny_clip)
    first = alta.train_step(learner, f1, labels, optimizer=optimizer, buffer=buffer)
    assert float(first["stored_probs"]) == 0.0  # nothing stored yet: the term gives nothing
    assert set(buffer.fields) == {"labels", "image_features", "logits", "experience_ids", "probs"}
    assert torch.allclose(buffer.data()["probs"].sum(1), torch.ones(9))
    second = alta.train_step(learner, f1, labels, optimizer=optimizer, buffer=buffer)
    assert float(second["stored_probs"]) > 0.0  # the replayed items' stored probabilities, read back
    without = alta.CrossModalLearner(tiny_clip, class_names=NAMES, seed=1)
    with pytest.raises(ShapeError, match="holds the fields .*probs"):
        without.check_buffer(buffer)


def test_a_term_with_state_is_checkpointed_with_the_learner(tiny_clip):
    experience = synthetic_experiences(num_experiences=2)[0]
    learner = alta.CrossModalLearner(tiny_clip, class_names=NAMES, seed=1, loss_terms=[LogitSquare()])
    learner.begin_experience(experience)
    f1, labels, _ = _batch(tiny_clip)
    for _ in range(3):
        learner.loss(f1, labels)
    state = learner.state_dict()
    assert int(state["extra_terms.logit_square.calls"]) == 3
    again = alta.CrossModalLearner(tiny_clip, class_names=NAMES, seed=1, loss_terms=[LogitSquare()])
    again.load_state_dict(state)
    assert int(again.extra_terms.logit_square.calls) == 3
    with pytest.raises(CheckpointError, match=r"unexpected \['extra_terms.logit_square.calls'\]"):
        alta.CrossModalLearner(tiny_clip, class_names=NAMES, seed=1).load_state_dict(state)
    assert "extra_terms" not in dict(alta.CrossModalLearner(tiny_clip, class_names=NAMES).named_children())


class _Returns(LossTerm):
    name = "returns"

    def __init__(self, value, *, weight: float = 1.0) -> None:
        super().__init__(weight=weight)
        self.value = value

    def forward(self, inputs):
        return self.value(inputs)


@pytest.mark.parametrize("value, message", [
    (lambda i: i.logits.mean(), "returned a tensor of shape \\(\\); a loss term returns TermValue\\(value, count\\)"),
    (lambda i: TermValue(i.logits.mean(0), 9), "returned a value that is a torch.float32 tensor of shape \\(4,\\), "
                                               "not a scalar"),
    (lambda i: TermValue(i.labels.sum(), 9), "returned a value that is a torch.int64 tensor of shape \\(\\), not a "
                                             "scalar"),
    (lambda i: TermValue(i.logits.mean(), -1), "returned the count -1"),
])
def test_a_term_that_breaks_the_protocol_is_refused_naming_it(tiny_clip, value, message):
    learner = alta.CrossModalLearner(tiny_clip, class_names=NAMES, seed=1, loss_terms=[_Returns(value)])
    learner.begin_experience(synthetic_experiences(num_experiences=2)[0])
    f1, labels, _ = _batch(tiny_clip)
    with pytest.raises(PluginError, match=f"loss term 'returns' \\(test_loss_terms._Returns\\) {message}"):
        learner.loss(f1, labels)


def test_a_non_finite_term_stops_the_step_before_the_update_naming_it(tiny_clip):
    nan = _Returns(lambda i: TermValue(i.logits.mean() * float("nan"), 9))
    learner = alta.CrossModalLearner(tiny_clip, class_names=NAMES, seed=1, loss_terms=[nan])
    learner.begin_experience(synthetic_experiences(num_experiences=2)[0])
    before = [p.detach().clone() for p in learner.trainable_parameters()]
    optimizer, _ = alta.build_optimizer(learner)
    f1, labels, _ = _batch(tiny_clip)
    with pytest.raises(TrainingError, match="loss term 'returns' .* returned nan at this step; the update was not"):
        alta.train_step(learner, f1, labels, optimizer=optimizer, check_finite=False)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.trainable_parameters()))


def test_terms_are_refused_for_their_names_weights_and_parameters(tiny_clip):
    class Quiet(LossTerm):  # forward is abstract: these terms add nothing, they are refused for other reasons
        def forward(self, inputs):
            return None

    class Trained(Quiet):
        name = "trained"

        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

    for term, message in ((Trained(), "has trainable parameters, which the optimiser never sees"),
                          (type("Loss", (Quiet,), {"name": "loss"})(), "name must be a Python identifier other"),
                          (type("Ce", (Quiet,), {"name": "ce"})(), r"loss term\(s\) \['ce'\] named twice")):
        with pytest.raises((PluginError, ConfigError), match=message):
            alta.CrossModalLearner(tiny_clip, class_names=NAMES, loss_terms=[term])
    with pytest.raises(ConfigError, match="weight must be a number >= 0"):
        LogitSquare(weight=-1.0)


def test_the_config_names_terms_and_fills_in_their_weight():
    LOSS_TERMS.add("logit_square", LogitSquare)
    assert normalise_loss_terms({"logit_square": None}) == {"logit_square": {"weight": 0.5}}
    assert normalise_loss_terms({"logit_square": 0.1}) == {"logit_square": {"weight": 0.1}}
    with pytest.raises(ConfigError, match=r"'model.loss_terms.logit_square': loss term plug-in 'logit_square' .* takes "
                                          r"\(\*, weight.*\(got an unexpected keyword argument 'momentum'\)"):
        normalise_loss_terms({"logit_square": {"momentum": 0.9}})
    with pytest.raises(ConfigError, match="unknown loss term 'logit_sqare'; did you mean 'logit_square'"):
        normalise_loss_terms({"logit_sqare": 0.1})
    with pytest.raises(ConfigError, match="names \\['ce'\\], which method 'oritext_mlp2cprompt_oriimg' computes itself"):
        alta.learner_config.LearnerConfig(loss_terms={"ce": 2.0})
    from alta.cli import build_parser, resolve_run_config

    config, _, _ = resolve_run_config(build_parser().parse_args(["run", "--loss-term", "logit_square=0.2"]))
    assert config.model.loss_terms == {"logit_square": {"weight": 0.2}}
    with pytest.raises(ConfigError, match=r"names \['replay_ce'\], which .* \(given as --loss-term"):
        resolve_run_config(build_parser().parse_args(["run", "--loss-term", "logit_square,replay_ce"]))
