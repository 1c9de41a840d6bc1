"""Shared-prefix text encoding: [SOS] + ctx computed once for all classes, exactly.

Under CLIP's causal mask the first 1 + M prompt positions are the same for every class, so
``PromptLearner.encode(..., share_prefix=True)`` computes their hidden states once and lets every
class's later positions attend to them. Features and gradients to the context vectors must equal
the plain per-class encoding within 1e-5 relative to their scale.
"""

from __future__ import annotations

import pytest
import torch

from alta import CrossModalLearner
from alta.backbones import import_clip
from alta.errors import ShapeError
from alta.prompt import PromptLearner

NAMES = ["cat", "dog", "golden retriever", "truck", "maple tree", "sweet pepper", "aquarium fish"]


def close_to_scale(actual, expected, tol=1e-5):
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=0, atol=tol * scale)


def encode_with_grad(learner, backbone, weights, **kwargs):
    learner.ctx.grad = None
    features = learner.encode(backbone, **kwargs)
    (features * weights).sum().backward()
    return features.detach(), learner.ctx.grad.detach().clone()


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("subset", [None, [5, 0, 3], [2]])
def test_shared_prefix_equals_plain_encoding_with_gradients(tiny_clip, truncate, subset):
    learner = PromptLearner(tiny_clip, NAMES)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        learner.ctx.add_(0.1 * torch.randn(learner.ctx.shape, generator=g))  # away from the word embeddings
    class_ids = None if subset is None else torch.tensor(subset)
    n = len(NAMES) if subset is None else len(subset)
    weights = torch.randn(n, tiny_clip.embed_dim, generator=g)
    plain = encode_with_grad(learner, tiny_clip, weights, class_ids=class_ids, truncate=truncate, share_prefix=False)
    shared = encode_with_grad(learner, tiny_clip, weights, class_ids=class_ids, truncate=truncate, share_prefix=True)
    assert shared[0].shape == (n, tiny_clip.embed_dim)
    close_to_scale(shared[0], plain[0])
    close_to_scale(shared[1], plain[1])


def test_shared_prefix_encoding_equals_clip_encode_text(tiny_clip):
    """With the context at its initial words, the shared-prefix path is CLIP's own encode_text."""
    learner = PromptLearner(tiny_clip, NAMES)
    tokens = import_clip().tokenize([f"a photo of a {n}." for n in NAMES])
    expected = tiny_clip.model.encode_text(tokens).float()  # all 77 positions, one class at a time
    close_to_scale(learner.encode(tiny_clip, share_prefix=True), expected)


def test_prefix_argument_of_the_backbone(tiny_clip):
    """encode_prompt_embeddings(after, eot, prefix=...) equals the plain call on the full sequences."""
    tokens = import_clip().tokenize(["a photo of a cat.", "a photo of a small red fox.", "a photo of a x"])
    eot = tokens.argmax(-1)
    emb = tiny_clip.model.token_embedding(tokens).float()
    prefix_length = 3
    full = tiny_clip.encode_prompt_embeddings(emb, eot)
    shared = tiny_clip.encode_prompt_embeddings(emb[:, prefix_length:], eot, prefix=emb[0, :prefix_length])
    close_to_scale(shared, full)
    full_length = tiny_clip.encode_prompt_embeddings(emb[:, prefix_length:], eot, prefix=emb[0, :prefix_length],
                                                     truncate=False)  # 77 positions: same result
    close_to_scale(full_length, full)


def test_shared_prefix_errors(tiny_clip):
    tokens = import_clip().tokenize(["a photo of a cat."])
    eot = tokens.argmax(-1)  # 7
    emb = tiny_clip.model.token_embedding(tokens).float()
    with pytest.raises(ShapeError, match="inside the shared prefix"):
        tiny_clip.encode_prompt_embeddings(emb[:, 8:], eot, prefix=emb[0, :8])
    with pytest.raises(ShapeError, match="shared prefix of shape"):
        tiny_clip.encode_prompt_embeddings(emb[:, 2:], eot, prefix=emb[:, :2])
    with pytest.raises(ShapeError, match="need at least"):
        tiny_clip.encode_prompt_embeddings(emb[:, :5], eot, prefix=emb[0, :2])


def test_learner_shares_the_prefix_by_default_and_can_turn_it_off(tiny_clip):
    learner = CrossModalLearner(tiny_clip, class_names=NAMES, method="alta")
    assert learner.prompt_learner.share_prefix is True
    with torch.no_grad():
        shared = learner.text_features(grad=False).w2
        learner.prompt_learner.share_prefix = False
        plain = learner.text_features(grad=False).w2
    close_to_scale(shared, plain)
