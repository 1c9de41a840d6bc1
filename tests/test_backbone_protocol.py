"""The learner depends on the Backbone protocol, not on clip-anytorch: a backbone written from
scratch here (word tokenizer, a linear image encoder, a causal cumulative-mean text encoder) runs
the whole learner API."""

from __future__ import annotations

import zlib
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers import synthetic_experiences
from torch import nn

import alta
from alta import ConfigError, CrossModalLearner, MemoryBuffer, build_optimizer
from alta.backbones import BACKBONE_MEMBERS, Backbone, check_backbone

SOS, EOT, VOCAB = 1, 2, 97


class FakeBackbone(nn.Module):
    """A minimal Backbone: features are linear in the pixels; a token's hidden state is the mean of
    the (embedding + position) vectors up to it (causal), read at EOT and projected."""

    def __init__(self, *, resolution=8, dim=16, width=12, context_length=16, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.name, self.pretrained = "fake", False
        self.input_resolution, self.embed_dim, self.token_width = resolution, dim, width
        self.context_length, self.logit_scale = context_length, 10.0
        self.image = nn.Linear(3 * resolution * resolution, dim)
        self.embedding = nn.Embedding(VOCAB, width)
        self.positions = nn.Parameter(torch.randn(context_length, width, generator=g))
        self.text = nn.Linear(width, dim)
        for p in self.parameters():
            nn.init.normal_(p, generator=g)
        self.requires_grad_(False)

    @property
    def device(self):
        return self.positions.device

    @property
    def dtype(self):
        return torch.float32

    def train(self, mode=True):
        return super().train(False)

    def encode_images(self, images):
        return self.image(images.flatten(1))

    def tokenize(self, texts):
        rows = []
        for text in texts:
            ids = [SOS] + [3 + zlib.crc32(w.encode()) % (VOCAB - 3) for w in text.split()] + [EOT]
            rows.append(ids + [0] * (self.context_length - len(ids)))
        return torch.tensor(rows)

    def eot_positions(self, tokens):
        return (tokens == EOT).int().argmax(dim=-1)

    def token_embeddings(self, tokens):
        return self.embedding(tokens).float()

    def encode_tokens(self, tokens, *, truncate=True):
        return self.encode_prompt_embeddings(self.token_embeddings(tokens), self.eot_positions(tokens))

    def encode_prompt_embeddings(self, embeddings, eot_positions, *, truncate=True, prefix=None):
        if prefix is not None:
            embeddings = torch.cat([prefix.expand(embeddings.shape[0], -1, -1), embeddings], dim=1)
        x = embeddings + self.positions[: embeddings.shape[1]]  # (N, L', W)
        x = x.cumsum(1) / torch.arange(1, x.shape[1] + 1).view(1, -1, 1)  # causal mean
        return self.text(x[torch.arange(x.shape[0]), eot_positions])  # (N, D)

    def fingerprint(self):
        return "fake-0"

    def describe(self):
        return {"name": self.name, "pretrained": self.pretrained, "fingerprint": self.fingerprint()}


def test_fake_backbone_satisfies_the_protocol():
    fake = FakeBackbone()
    assert isinstance(fake, Backbone)
    check_backbone(fake)  # no error


def test_learner_runs_on_a_backbone_written_from_scratch():
    fake = FakeBackbone()
    exps = synthetic_experiences(2, 2, resolution=8)
    names = ["cat", "dog", "red fox", "owl"]
    learner = CrossModalLearner(fake, class_names=names, method="alta", replay_batch_size=4)

    # text features: w1 is the hand-written prompt through the fake text encoder, w2 starts as
    # the learned prompt "a photo of a <name> ." (ctx initialised from the same words)
    text = learner.text_features(grad=False)
    w1 = F.normalize(fake.encode_tokens(fake.tokenize([f"a photo of a {n}" for n in names])), dim=-1)
    torch.testing.assert_close(text.w1, w1)
    w2 = F.normalize(fake.encode_tokens(fake.tokenize([f"a photo of a {n}." for n in names])), dim=-1)
    torch.testing.assert_close(text.w2, w2)

    images, labels = exps[0].train.tensors
    logits = learner(images[:4])
    f1 = F.normalize(fake.encode_images(images[:4]), dim=-1)
    f2 = F.normalize(learner.adapter(fake.encode_images(images[:4])), dim=-1)
    torch.testing.assert_close(logits, 10.0 * (f1 @ text.w2.t() + f2 @ text.w1.t()))

    buffer = MemoryBuffer(8, seed=0)
    optimizer, _ = build_optimizer(learner, lr=0.5, schedule="constant")
    learner.begin_experience(exps[0])
    first = [alta.train_step(learner, images[:4], labels[:4], optimizer=optimizer, buffer=buffer) for _ in range(3)]
    assert first[-1]["replay_ce"] > 0 and len(buffer) == 8
    learner.end_experience(exps[0])
    snapshot = learner.text_features(grad=False).w2[:2].clone()
    assert (snapshot - w2[:2]).abs().max() > 1e-4  # the context learned

    learner.begin_experience(exps[1])
    images1, labels1 = exps[1].train.tensors
    for _ in range(2):
        alta.train_step(learner, images1[:4], labels1[:4], optimizer=optimizer, buffer=buffer)
    after = learner.text_features(grad=False).w2
    assert torch.equal(after[:2], snapshot)  # the snapshot of experience 0 is frozen
    assert (after[2:] - w2[2:]).abs().max() > 1e-4

    state = learner.state_dict()
    assert not any(k.startswith("backbone.") for k in state)
    fresh = CrossModalLearner(fake, class_names=names, method="alta", replay_batch_size=4)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(images1[:4]), learner(images1[:4]))
    assert bool(fresh.snapshotted[:2].all()) and int(fresh.experience_index) == 1


def test_an_object_missing_members_is_refused_by_name():
    fake = FakeBackbone()
    partial = SimpleNamespace(**{m: getattr(fake, m) for m in BACKBONE_MEMBERS if m not in ("fingerprint", "tokenize")})
    with pytest.raises(ConfigError, match="lacks tokenize, fingerprint") as info:
        CrossModalLearner(partial, class_names=["cat", "dog"])
    assert "Backbone protocol" in str(info.value)
    with pytest.raises(ConfigError, match=", ".join(BACKBONE_MEMBERS[:3])):
        CrossModalLearner(object(), class_names=["cat", "dog"])
