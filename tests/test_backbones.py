"""Backbones: frozen encoders, exact truncated text encoding, loading and offline errors."""

from __future__ import annotations

import pytest
import torch

import alta
from alta.backbones import import_clip, list_backbones, load_backbone, save_backbone
from alta.errors import AltaError, BackboneError, ShapeError


def full_length_encode_text(model, tokens):
    """CLIP's own encode_text over all 77 positions (the reference computation)."""
    return model.encode_text(tokens).float()


def test_truncated_text_encoding_equals_full_length(tiny_clip):
    clip = import_clip()
    tokens = clip.tokenize(["a photo of a cat", "a photo of a very large golden retriever dog.", "x"])
    full = full_length_encode_text(tiny_clip.model, tokens)
    truncated = tiny_clip.encode_tokens(tokens, truncate=True)
    assert truncated.shape == full.shape == (3, tiny_clip.embed_dim)
    torch.testing.assert_close(truncated, full, rtol=0, atol=1e-5)
    # and the full-length path of encode_tokens is CLIP's encode_text exactly
    torch.testing.assert_close(tiny_clip.encode_tokens(tokens, truncate=False), full, rtol=0, atol=1e-6)


def test_truncated_prompt_encoding_keeps_gradients_equal(tiny_clip):
    clip = import_clip()
    tokens = clip.tokenize(["a photo of a cat.", "a photo of a small red fox."])
    eot = tokens.argmax(-1)
    emb_full = tiny_clip.model.token_embedding(tokens).float().detach().requires_grad_(True)
    emb_cut = emb_full.detach()[:, : int(eot.max()) + 1].clone().requires_grad_(True)
    out_full = tiny_clip.encode_prompt_embeddings(emb_full, eot, truncate=False)
    out_cut = tiny_clip.encode_prompt_embeddings(emb_cut, eot, truncate=True)
    torch.testing.assert_close(out_cut, out_full, rtol=0, atol=1e-5)
    out_full.sum().backward()
    out_cut.sum().backward()
    scale = float(emb_full.grad.abs().max())  # gradients reach ~1e2 here: compare relative to that
    torch.testing.assert_close(emb_cut.grad, emb_full.grad[:, : emb_cut.shape[1]], rtol=0, atol=1e-6 * scale)
    assert emb_full.grad[:, emb_cut.shape[1]:].abs().max() == 0  # padding never influences the EOT feature


def test_backbone_is_frozen_and_stays_in_eval(tiny_clip_rn):
    assert all(not p.requires_grad for p in tiny_clip_rn.parameters())
    tiny_clip_rn.train()
    assert not tiny_clip_rn.training and not tiny_clip_rn.model.training
    feats = tiny_clip_rn.encode_images(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, tiny_clip_rn.embed_dim) and feats.dtype == torch.float32


def test_random_backbones_are_seeded_and_marked(tiny_clip):
    again = load_backbone("tiny-vit", seed=0)
    other = load_backbone("tiny-vit", seed=1)
    assert tiny_clip.pretrained is False and "random" in repr(tiny_clip).lower()
    assert torch.equal(again.model.text_projection, tiny_clip.model.text_projection)
    assert not torch.equal(other.model.text_projection, tiny_clip.model.text_projection)
    assert again.fingerprint() == tiny_clip.fingerprint() != other.fingerprint()
    assert tiny_clip.input_resolution == 32


def test_image_size_mismatch_is_a_clear_error(tiny_clip):
    with pytest.raises(ShapeError, match=r"\(B, 3, 32, 32\).*got \(2, 3, 64, 64\)"):
        tiny_clip.encode_images(torch.zeros(2, 3, 64, 64))


def test_unknown_backbone_lists_names():
    with pytest.raises(BackboneError) as info:
        load_backbone("RN49")
    message = str(info.value)
    assert "RN50" in message and "tiny-vit" in message and "local checkpoint" in message


def test_offline_pretrained_name_fails_fast_with_placement_hint(tmp_path):
    with pytest.raises(BackboneError) as info:
        load_backbone("RN50", download_root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "RN50.pt") in message
    assert "--visual" in message
    assert isinstance(info.value, AltaError)


def test_local_checkpoint_round_trip(tmp_path, tiny_clip):
    path = save_backbone(tiny_clip, tmp_path / "tiny.pt")
    loaded = load_backbone(path)
    assert loaded.pretrained is False  # the sidecar keeps the provenance
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.encode_images(images), tiny_clip.encode_images(images))
    # clip-anytorch itself can read the same file
    clip = import_clip()
    model, preprocess = clip.load(str(path), device="cpu")
    assert model.visual.input_resolution == 32


def test_corrupt_checkpoint_is_a_backbone_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="could not read"):
        load_backbone(bad)


def test_list_backbones_covers_the_reference_choices():
    names = list_backbones()
    for name in ["RN50", "RN101", "RN50x4", "RN50x16", "ViT-B/32", "ViT-B/16", "tiny-vit", "tiny-rn"]:
        assert name in names
    assert set(list_backbones(pretrained=False)).isdisjoint(list_backbones(pretrained=True))
    assert alta.list_backbones() == names


def test_a_file_that_is_no_checkpoint_is_named_without_torch_advice(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(BackboneError) as info:
        load_backbone(str(garbage))
    message = str(info.value)
    assert "neither a TorchScript archive nor a torch state dict" in message and "weights_only" not in message


def test_a_checkpoint_path_with_a_tilde_is_expanded(tmp_path, monkeypatch, tiny_clip):
    monkeypatch.setenv("HOME", str(tmp_path))
    save_backbone(tiny_clip, tmp_path / "mine.pt")
    loaded = load_backbone("~/mine.pt")
    assert loaded.embed_dim == tiny_clip.embed_dim and loaded.source == str(tmp_path / "mine.pt")
