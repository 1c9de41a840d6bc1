"""CrossModalLearner: the method's formulas, snapshots, gradients, alternation, replay, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import synthetic_experiences

import alta
from alta import AlternatingSchedule, CrossModalLearner, MemoryBuffer, build_optimizer, list_methods
from alta.backbones import import_clip
from alta.errors import ConfigError, ShapeError, StateError

NAMES = ["cat", "dog", "golden retriever", "truck"]


def make(tiny_clip, method="alta", **kw):
    return CrossModalLearner(tiny_clip, class_names=NAMES, method=method, **kw)


def direct_text_features(model, sentences):
    clip = import_clip()
    return model.encode_text(clip.tokenize(sentences)).float()


def direct_w2(model, ctx, names):
    """Learned-prompt features computed by hand: CLIP's text path over all 77 positions with
    the context vectors written into positions 1..M of "X X X X {name}."."""
    clip = import_clip()
    tokens = clip.tokenize([f"a photo of a {n}." for n in names])
    x = model.token_embedding(tokens).float()
    x = torch.cat([x[:, :1], ctx.unsqueeze(0).expand(len(names), -1, -1), x[:, 1 + ctx.shape[0]:]], dim=1)
    x = x + model.positional_embedding
    x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = model.ln_final(x)
    return x[torch.arange(len(names)), tokens.argmax(-1)] @ model.text_projection


def test_methods_registry_has_the_reference_names():
    assert list_methods() == [
        "mlp", "resmlp", "sprompt", "cprompt", "cprompt_oriprompt", "cprompt_mlp", "cprompt_resmlp",
        "oriclip2cprompt_mlp", "oritext_mlp2cprompt_oriimg", "zeroshot",
    ]


def test_unknown_method_lists_valid_names_and_closest(tiny_clip):
    with pytest.raises(ConfigError) as info:
        make(tiny_clip, method="cprompt_mpl")
    assert "did you mean 'cprompt_mlp'" in str(info.value) and "oritext_mlp2cprompt_oriimg" in str(info.value)


def test_alias_alta_is_the_default_method(tiny_clip):
    assert make(tiny_clip, method="alta").method.name == "oritext_mlp2cprompt_oriimg"
    assert CrossModalLearner(tiny_clip, class_names=NAMES).method.name == "oritext_mlp2cprompt_oriimg"


def test_initial_learned_prompt_equals_encode_text_of_the_sentence(tiny_clip):
    learner = make(tiny_clip)
    w2 = learner.prompt_learner.encode(tiny_clip)  # (C, D), unnormalised
    expected = direct_text_features(tiny_clip.model, [f"a photo of a {n}." for n in NAMES])
    torch.testing.assert_close(w2, expected, rtol=0, atol=1e-5)
    w1 = direct_text_features(tiny_clip.model, [f"a photo of a {n}" for n in NAMES])
    torch.testing.assert_close(learner.w1, F.normalize(w1, dim=-1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", list_methods())
def test_logits_equal_the_formula(tiny_clip, method):
    learner = make(tiny_clip, method=method)
    g = torch.Generator().manual_seed(1)
    if learner.prompt_learner is not None:  # move away from the initialisation
        learner.prompt_learner.ctx.data += 0.05 * torch.randn(learner.prompt_learner.ctx.shape, generator=g)
    if learner.adapter is not None:
        for p in learner.adapter.parameters():
            p.data += 0.05 * torch.randn(p.shape, generator=g)
    images = torch.randn(5, 3, 32, 32, generator=g)
    logits = learner(images)

    model, s = tiny_clip.model, tiny_clip.logit_scale
    f1 = model.encode_image(images).float()
    reps = {"f1": F.normalize(f1, dim=-1)}
    if learner.adapter is not None:
        f2 = learner.adapter(f1)
        reps["f2"], reps["f1+f2"] = F.normalize(f2, dim=-1), F.normalize(f1 + f2, dim=-1)
    texts = {"w1": F.normalize(direct_text_features(model, [f"a photo of a {n}" for n in NAMES]), dim=-1)}
    if learner.prompt_learner is not None:
        texts["w2"] = F.normalize(direct_w2(model, learner.prompt_learner.ctx.detach(), NAMES), dim=-1)
    expected = sum(s * reps[i] @ texts[t].T for i, t in learner.method.terms)
    assert logits.shape == (5, len(NAMES))
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)


def test_trainable_parameter_counts(tiny_clip):
    d, w = tiny_clip.embed_dim, tiny_clip.token_width
    adapter = d * (d // 16) + d // 16 + (d // 16) * d + d
    assert make(tiny_clip, method="mlp").num_trainable_parameters() == adapter
    assert make(tiny_clip, method="cprompt").num_trainable_parameters() == 4 * w
    assert make(tiny_clip, method="alta").num_trainable_parameters() == 4 * w + adapter
    assert make(tiny_clip, method="zeroshot").num_trainable_parameters() == 0
    assert not any(p.requires_grad for p in tiny_clip.parameters())


def run_steps(learner, experience, optimizer, steps=3, buffer=None, schedule=None):
    images, labels = experience.train.tensors
    for _ in range(steps):
        alta.train_step(learner, images[:8], labels[:8], optimizer=optimizer, buffer=buffer, schedule=schedule)


def test_snapshot_freezes_old_classes_and_later_classes_keep_learning(tiny_clip):
    exps = synthetic_experiences(2, 2)
    learner = make(tiny_clip, method="alta")
    optimizer, _ = build_optimizer(learner, lr=0.5, schedule="constant")
    learner.begin_experience(exps[0])
    run_steps(learner, exps[0], optimizer)
    learner.end_experience(exps[0])
    before = learner.text_features(grad=False).w2.clone()
    learner.begin_experience(exps[1])
    run_steps(learner, exps[1], optimizer)
    after = learner.text_features(grad=False).w2
    assert torch.equal(after[:2], before[:2])  # bit-identical
    assert (after[2:] - before[2:]).abs().max() > 1e-4
    # the snapshot is what the context gave at the end of experience 0, not the initial prompt
    init = F.normalize(make(tiny_clip).prompt_learner.encode(tiny_clip), dim=-1)
    assert (before[:2] - init[:2]).abs().max() > 1e-4


def test_sprompt_never_snapshots(tiny_clip):
    exps = synthetic_experiences(2, 2)
    learner = make(tiny_clip, method="sprompt")
    optimizer, _ = build_optimizer(learner, lr=0.5, schedule="constant")
    learner.begin_experience(exps[0])
    run_steps(learner, exps[0], optimizer)
    learner.end_experience(exps[0])
    before = learner.text_features(grad=False).w2.clone()
    learner.begin_experience(exps[1])
    run_steps(learner, exps[1], optimizer)
    assert (learner.text_features(grad=False).w2[:2] - before[:2]).abs().max() > 1e-4
    assert not learner.snapshotted.any()


def test_crossed_pairing_gradients(tiny_clip):
    """ALTA: ctx gets gradient only through cos(f1, w2), the adapter only through cos(f2, w1)."""
    learner = make(tiny_clip, method="alta")
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    f1 = tiny_clip.encode_images(images)
    s = tiny_clip.logit_scale

    def grads(loss):
        params = [learner.prompt_learner.ctx, *learner.adapter.parameters()]
        return torch.autograd.grad(loss, params, allow_unused=True)

    text = learner.text_features()
    full = grads(F.cross_entropy(learner.logits_from_features(f1, text), labels))
    text = learner.text_features()
    f1n = F.normalize(f1, dim=-1)
    f2n = F.normalize(learner.adapter(f1), dim=-1)
    term_text = s * f1n @ text.w2.T  # cos(f1, w2)
    term_image = s * f2n @ text.w1.T  # cos(f2, w1)
    # d CE / d ctx flows through term_text only: detach the other term and compare
    only_text = grads(F.cross_entropy(term_text + term_image.detach(), labels))
    text2 = learner.text_features()
    only_image = grads(F.cross_entropy((s * f1n @ text2.w2.T).detach() + s * F.normalize(learner.adapter(f1), dim=-1) @ text2.w1.T, labels))
    torch.testing.assert_close(full[0], only_text[0])
    for a, b in zip(full[1:], only_image[1:]):
        torch.testing.assert_close(a, b)
    assert only_text[1] is None and only_image[0] is None  # the other branch gets nothing at all


def test_alternate_schedule_updates_one_branch_at_a_time(tiny_clip):
    exps = synthetic_experiences(1, 4)
    learner = make(tiny_clip, method="alta")
    optimizer, _ = build_optimizer(learner, lr=0.1, schedule="constant")
    schedule = AlternatingSchedule("alternate", period=1, unit="step", start="text")
    learner.begin_experience(exps[0])
    images, labels = exps[0].train.tensors
    for step in range(4):
        ctx = learner.prompt_learner.ctx.detach().clone()
        adapter = [p.detach().clone() for p in learner.adapter.parameters()]
        active = schedule.active_branches()
        alta.train_step(learner, images[:8], labels[:8], optimizer=optimizer, schedule=schedule)
        ctx_same = torch.equal(ctx, learner.prompt_learner.ctx)
        adapter_same = all(torch.equal(a, p) for a, p in zip(adapter, learner.adapter.parameters()))
        if active == {"text"}:
            assert adapter_same and not ctx_same, step
        else:
            assert ctx_same and not adapter_same, step
    assert schedule.steps == 4


def test_alternate_refuses_single_branch_methods(tiny_clip):
    exps = synthetic_experiences(1, 4)
    learner = make(tiny_clip, method="mlp")
    optimizer, _ = build_optimizer(learner)
    learner.begin_experience(exps[0])
    images, labels = exps[0].train.tensors
    with pytest.raises(ConfigError, match="trains only the image branch"):
        alta.train_step(learner, images[:4], labels[:4], optimizer=optimizer, schedule=AlternatingSchedule("alternate"))


def test_replay_fills_buffer_and_adds_loss_terms(tiny_clip):
    exps = synthetic_experiences(1, 4)
    learner = make(tiny_clip, method="alta")
    optimizer, _ = build_optimizer(learner)
    buffer = MemoryBuffer(10, seed=0)
    learner.begin_experience(exps[0])
    images, labels = exps[0].train.tensors
    first = alta.train_step(learner, images[:8], labels[:8], optimizer=optimizer, buffer=buffer)
    assert float(first["replay_ce"]) == 0.0 and len(buffer) == 8  # empty buffer: no replay on step 1
    stored = buffer.sample(8)
    assert set(stored) == {"labels", "image_features", "logits", "experience_ids"}
    assert stored["image_features"].shape == (8, tiny_clip.embed_dim)
    assert stored["logits"].shape == (8, len(NAMES))
    second = alta.train_step(learner, images[8:16], labels[8:16], optimizer=optimizer, buffer=buffer)
    assert float(second["replay_ce"]) > 0 and float(second["replay_mse"]) >= 0
    expected = second["ce"] + 0.4 * second["replay_ce"] + 0.4 * second["replay_mse"]
    torch.testing.assert_close(second["loss"], expected)
    assert len(buffer) == 10 and buffer.num_seen == 16


def test_stored_logits_are_pre_step_logits(tiny_clip):
    exps = synthetic_experiences(1, 4)
    learner = make(tiny_clip, method="alta")
    optimizer, _ = build_optimizer(learner, lr=0.5, schedule="constant")
    buffer = MemoryBuffer(100, seed=0)
    learner.begin_experience(exps[0])
    images, labels = exps[0].train.tensors
    with torch.no_grad():
        before = learner(images[:4])
    alta.train_step(learner, images[:4], labels[:4], optimizer=optimizer, buffer=buffer)
    data = buffer.data()
    torch.testing.assert_close(data["logits"], before, rtol=0, atol=1e-5)
    with torch.no_grad():
        assert (learner(images[:4]) - before).abs().max() > 1e-4  # the step did change the model


def test_methods_without_replay_ignore_the_buffer(tiny_clip):
    exps = synthetic_experiences(1, 4)
    learner = make(tiny_clip, method="cprompt")
    optimizer, _ = build_optimizer(learner)
    buffer = MemoryBuffer(10, seed=0)
    learner.begin_experience(exps[0])
    images, labels = exps[0].train.tensors
    alta.train_step(learner, images[:8], labels[:8], optimizer=optimizer, buffer=buffer)
    assert buffer.is_empty()


def test_head_seen_masks_unseen_classes(tiny_clip):
    exps = synthetic_experiences(2, 2)
    learner = make(tiny_clip, method="alta", head="seen")
    learner.begin_experience(exps[0])
    logits = learner(exps[0].test.tensors[0][:3])
    assert torch.isinf(logits[:, 2:]).all() and torch.isfinite(logits[:, :2]).all()
    optimizer, _ = build_optimizer(learner)
    buffer = MemoryBuffer(16, seed=0)
    run_steps(learner, exps[0], optimizer, steps=2, buffer=buffer)
    learner.end_experience(exps[0])
    learner.begin_experience(exps[1])
    images, labels = exps[1].train.tensors
    out = alta.train_step(learner, images[:8], labels[:8], optimizer=optimizer, buffer=buffer)
    assert all(torch.isfinite(v) for v in out.values())  # stored -inf columns are left out of the MSE


def test_training_errors(tiny_clip):
    exps = synthetic_experiences(2, 2)
    learner = make(tiny_clip, method="alta", head="seen")
    optimizer, _ = build_optimizer(learner)
    images, labels = exps[0].train.tensors
    with pytest.raises(StateError, match="begin_experience"):
        alta.train_step(learner, images[:4], labels[:4], optimizer=optimizer)
    learner.begin_experience(exps[0])
    with pytest.raises(ShapeError, match=r"\(B, 3, 32, 32\)"):
        alta.train_step(learner, torch.zeros(4, 3, 64, 64), labels[:4], optimizer=optimizer)
    with pytest.raises(ShapeError, match="labels must have shape"):
        alta.train_step(learner, images[:4], labels[:3], optimizer=optimizer)
    with pytest.raises(ShapeError, match=r"\[0, 4\)"):
        alta.train_step(learner, images[:2], torch.tensor([0, 7]), optimizer=optimizer)
    with pytest.raises(StateError, match="not begun"):
        alta.train_step(learner, images[:2], torch.tensor([0, 3]), optimizer=optimizer)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        zs = make(tiny_clip, method="zeroshot")
        zs.begin_experience(exps[0])
        alta.train_step(zs, images[:2], labels[:2], optimizer=optimizer)


@pytest.mark.parametrize("head", ["all", "seen"])
def test_train_step_refuses_labels_of_an_experience_not_begun_for_every_head(tiny_clip, head):
    """After begin_experience(stream[0]), labels of stream[1]'s classes are a data leak: refused
    (they were trained on without a word with head="all"), and nothing is updated."""
    exps = synthetic_experiences(2, 2)
    learner = make(tiny_clip, method="alta", head=head)
    optimizer, _ = build_optimizer(learner)
    buffer = MemoryBuffer(8, seed=0)
    learner.begin_experience(exps[0])
    images, labels = exps[1].train.tensors  # classes 2 and 3
    before = [p.detach().clone() for p in learner.trainable_parameters()]
    with pytest.raises(StateError, match=r"labels \[2, 3\] belong to classes whose experience has not begun"):
        alta.train_step(learner, images, labels, optimizer=optimizer, buffer=buffer)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.trainable_parameters())) and len(buffer) == 0
    learner.end_experience(exps[0])
    learner.begin_experience(exps[1])  # the loops begin an experience before training on it
    alta.train_step(learner, images, labels, optimizer=optimizer, buffer=buffer)
    assert len(buffer) == 8


def test_the_joint_upper_bound_trains_on_every_class_after_its_one_experience_begins(tiny_clip):
    stream = alta.ScenarioStream.from_name("digits", resolution=32, joint=True)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, method="alta")
    optimizer, _ = build_optimizer(learner)
    (experience,) = list(stream)
    learner.begin_experience(experience)
    images, labels = next(iter(torch.utils.data.DataLoader(experience.train, batch_size=200, shuffle=True,
                                                            generator=torch.Generator().manual_seed(0))))
    assert labels.unique().numel() == 10
    alta.train_step(learner, images, labels, optimizer=optimizer)
    learner.end_experience(experience)


def test_labels_on_an_accelerator_are_checked_at_the_experience_boundary_without_a_sync(tiny_clip):
    """Labels on a CUDA device are not read back at every step (a host-device sync); the classes
    not begun are recorded on the device and refused at the next begin_experience or
    end_experience. The record is exercised here on CPU tensors (what the CUDA path runs)."""
    exps = synthetic_experiences(3, 2)
    learner = CrossModalLearner(tiny_clip, class_names=[f"class {k}" for k in range(6)], method="alta")
    learner.begin_experience(exps[0])
    learner._record_unbegun(torch.tensor([0, 1, 4, 4]))  # what _check_labels does for labels on a GPU
    learner._record_unbegun(torch.tensor([5]))
    with pytest.raises(StateError, match=r"end_experience\(0\).*trained on labels \[4, 5\]"):
        learner.end_experience(exps[0])
    learner._record_unbegun(torch.tensor([3]))
    with pytest.raises(StateError, match=r"begin_experience\(1\).*labels \[3\]"):
        learner.begin_experience(exps[1])
    learner.begin_experience(exps[1])  # once reported, the record is cleared
    learner._record_unbegun(torch.tensor([0, 3]))  # begun classes are not recorded
    learner.end_experience(exps[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_labels_of_classes_not_begun_are_refused_at_the_experience_end():
    exps = synthetic_experiences(2, 2)
    learner = make(alta.load_backbone("tiny-vit", device="cuda", seed=0), method="alta")
    optimizer, _ = build_optimizer(learner)
    learner.begin_experience(exps[0])
    images, labels = exps[1].train.tensors
    alta.train_step(learner, images.cuda(), labels.cuda(), optimizer=optimizer, check_finite=False)
    with pytest.raises(StateError, match=r"trained on labels \[2, 3\]"):
        learner.end_experience(exps[0])


def test_buffer_from_another_backbone_is_rejected(tiny_clip):
    exps = synthetic_experiences(1, 4)
    learner = make(tiny_clip, method="alta")
    optimizer, _ = build_optimizer(learner)
    buffer = MemoryBuffer(8, seed=0)
    buffer.add(labels=torch.tensor([0, 1]), image_features=torch.zeros(2, 64), logits=torch.zeros(2, 4),
               experience_ids=torch.tensor([0, 0]))
    learner.begin_experience(exps[0])
    images, labels = exps[0].train.tensors
    with pytest.raises(ShapeError, match=r"image features of shape \(64,\).*D=512"):
        alta.train_step(learner, images[:4], labels[:4], optimizer=optimizer, buffer=buffer)


@pytest.mark.parametrize("names, match", [([], "empty"), (["cat", ""], "non-empty"), (["cat", "dog", "cat"], "distinct")])
def test_bad_class_names(tiny_clip, names, match):
    with pytest.raises(ConfigError, match=match):
        CrossModalLearner(tiny_clip, class_names=names)


def test_bad_head_and_weights(tiny_clip):
    with pytest.raises(ConfigError, match="head"):
        make(tiny_clip, head="future")
    with pytest.raises(ConfigError, match="alpha"):
        make(tiny_clip, alpha=-1)


def test_state_dict_excludes_backbone_and_round_trips(tiny_clip):
    exps = synthetic_experiences(2, 2)
    learner = make(tiny_clip, method="alta")
    optimizer, _ = build_optimizer(learner, lr=0.5, schedule="constant")
    learner.begin_experience(exps[0])
    run_steps(learner, exps[0], optimizer)
    learner.end_experience(exps[0])
    state = learner.state_dict()
    assert not any(k.startswith("backbone.") for k in state)
    assert sum(v.numel() for v in state.values()) < 0.01 * sum(p.numel() for p in tiny_clip.parameters())
    fresh = make(tiny_clip, method="alta")
    fresh.load_state_dict(state)
    images = exps[1].test.tensors[0][:4]
    torch.testing.assert_close(fresh(images), learner(images))
    assert int(fresh.experience_index) == 0 and bool(fresh.snapshotted[:2].all())


def test_state_dict_of_another_method_is_rejected(tiny_clip):
    from alta.errors import CheckpointError

    with pytest.raises(CheckpointError, match="missing"):
        make(tiny_clip, method="alta").load_state_dict(make(tiny_clip, method="mlp").state_dict())


def test_snapshot_timing_last_forward_keeps_the_pre_step_context(tiny_clip):
    """The reference code snapshots the prompts of the last training forward, computed before the
    final optimiser step; ``snapshot_timing="last_forward"`` does the same, "end" uses the
    context after that step."""
    exps = synthetic_experiences(2, 2)
    snaps = {}
    for timing in ("end", "last_forward"):
        learner = make(tiny_clip, method="alta", snapshot_timing=timing)
        optimizer, _ = build_optimizer(learner, lr=0.5, schedule="constant")
        learner.begin_experience(exps[0])
        images, labels = exps[0].train.tensors
        alta.train_step(learner, images[:8], labels[:8], optimizer=optimizer)
        with torch.no_grad():
            pre_last = learner.text_features(grad=False).w2[:2].clone()  # the context before the last step
        alta.train_step(learner, images[8:], labels[8:], optimizer=optimizer)
        with torch.no_grad():
            post_last = learner.text_features(grad=False).w2[:2].clone()
        learner.end_experience(exps[0])
        snaps[timing] = (learner.snapshot_features[:2].clone(), pre_last, post_last)
    end, _, post = snaps["end"]
    last, pre, _ = snaps["last_forward"]
    torch.testing.assert_close(end, post)
    torch.testing.assert_close(last, pre)
    assert (end - last).abs().max() > 1e-4
    with pytest.raises(ConfigError, match="snapshot_timing"):
        make(tiny_clip, snapshot_timing="later")


def test_w1_raw_names_keeps_underscores_in_the_hand_written_prompt_only(tiny_clip):
    """The reference builds w1 from the raw name ("a photo of a maple_tree") and its learned
    prompt from the readable one ("a photo of a maple tree.")."""
    raw = ["cat", "maple_tree", "sweet_pepper"]
    readable = CrossModalLearner(tiny_clip, class_names=raw, method="alta")
    verbatim = CrossModalLearner(tiny_clip, class_names=raw, method="alta", w1_raw_names=True)
    model = tiny_clip.model
    with torch.no_grad():
        expected_raw = F.normalize(direct_text_features(model, [f"a photo of a {n}" for n in raw]), dim=-1)
        expected_readable = F.normalize(
            direct_text_features(model, [f"a photo of a {n.replace('_', ' ')}" for n in raw]), dim=-1)
        torch.testing.assert_close(verbatim.w1, expected_raw, rtol=0, atol=1e-5)
        torch.testing.assert_close(readable.w1, expected_readable, rtol=0, atol=1e-5)
        assert (verbatim.w1[1:] - readable.w1[1:]).abs().max() > 1e-3  # the knob changes w1 ...
        torch.testing.assert_close(verbatim.w1[0], readable.w1[0])  # ... only for names with underscores
        lw2 = verbatim.text_features(grad=False).w2
        torch.testing.assert_close(lw2, readable.text_features(grad=False).w2, rtol=0, atol=0)  # w2 unchanged
    assert verbatim.class_names == ["cat", "maple tree", "sweet pepper"]
    with pytest.raises(ConfigError, match="w1_raw_names"):
        make(tiny_clip, w1_raw_names="yes")
    from alta.run import ModelConfig

    assert ModelConfig.from_dict({"w1_raw_names": True}).learner_options()["w1_raw_names"] is True  # run config


def test_state_of_other_class_names_or_backbone_is_refused_and_leaves_learner_unchanged(tiny_clip, tiny_clip_rn):
    from alta.errors import CheckpointError

    base = make(tiny_clip, method="alta")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    swapped = CrossModalLearner(tiny_clip, class_names=list(reversed(NAMES)), method="alta")
    with pytest.raises(CheckpointError, match="other class names"):
        base.load_state_dict(swapped.state_dict())
    other_backbone = CrossModalLearner(tiny_clip_rn, class_names=NAMES, method="alta")
    with pytest.raises(CheckpointError, match="another backbone"):
        base.load_state_dict(other_backbone.state_dict())
    mlp = make(tiny_clip, method="mlp")
    mlp.adapter.linear1.weight.data += 1.0
    with pytest.raises(CheckpointError, match="missing"):
        base.load_state_dict(mlp.state_dict())
    after = base.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing was changed by the refusals


def test_experience_of_another_class_order_is_refused(tiny_clip):
    from alta import ScenarioStream

    native = ScenarioStream.from_name("digits", resolution=32)
    shuffled = ScenarioStream.from_name("digits", resolution=32, seed=3)
    learner = CrossModalLearner(tiny_clip, class_names=native.class_names)
    with pytest.raises(ConfigError, match="another stream or class order"):
        learner.begin_experience(shuffled[0])
    learner.begin_experience(native[0])  # its own stream is fine


def test_ending_an_experience_that_never_began_is_refused(tiny_clip):
    exps = synthetic_experiences(2, 2)
    learner = make(tiny_clip)
    learner.begin_experience(exps[0])
    with pytest.raises(StateError, match="never begun"):
        learner.end_experience(exps[1])


def test_non_float_images_and_wrong_argument_types_are_refused(tiny_clip):
    exps = synthetic_experiences(1, 4)
    learner = make(tiny_clip)
    optimizer, _ = build_optimizer(learner)
    learner.begin_experience(exps[0])
    images, labels = exps[0].train.tensors
    with pytest.raises(ShapeError, match="uint8"):
        alta.train_step(learner, (images[:2] * 50).to(torch.uint8), labels[:2], optimizer=optimizer)
    with pytest.raises(ShapeError, match="empty batch"):
        alta.train_step(learner, images[:0], labels[:0], optimizer=optimizer)
    with pytest.raises(ConfigError, match="optimizer"):
        alta.train_step(learner, images[:2], labels[:2], optimizer=None)
    with pytest.raises(ConfigError, match="schedule"):
        alta.train_step(learner, images[:2], labels[:2], optimizer=optimizer, schedule="alternate")
    with pytest.raises(ConfigError, match="list or tuple"):
        CrossModalLearner(tiny_clip, class_names={"cat", "dog"})
    with pytest.raises(ConfigError, match="non-empty"):
        CrossModalLearner(tiny_clip, class_names=["cat", "_"])
    with pytest.raises(ConfigError, match="seed"):
        make(tiny_clip, seed=1.5)


def test_buffer_with_foreign_fields_is_refused_before_any_update(tiny_clip):
    exps = synthetic_experiences(1, 4)
    learner = make(tiny_clip)
    optimizer, _ = build_optimizer(learner)
    buffer = MemoryBuffer(8, seed=0)
    buffer.add(labels=torch.tensor([0, 1]), image_features=torch.zeros(2, tiny_clip.embed_dim))
    learner.begin_experience(exps[0])
    before = [p.detach().clone() for p in learner.trainable_parameters()]
    images, labels = exps[0].train.tensors
    with pytest.raises(ShapeError, match="fields"):
        alta.train_step(learner, images[:4], labels[:4], optimizer=optimizer, buffer=buffer)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.trainable_parameters()))


def test_from_pretrained_passes_the_learner_options_through_and_refuses_others():
    from alta import CrossModalLearner

    learner = CrossModalLearner.from_pretrained("tiny-vit", class_names=["cat", "dog"], method="mlp", alpha=0.25)
    assert learner.method.name == "mlp" and learner.alpha == 0.25
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['alfa'\]"):
        CrossModalLearner.from_pretrained("tiny-vit", class_names=["cat", "dog"], alfa=0.25)
