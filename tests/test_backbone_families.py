"""Every open_clip family alta supports equals open_clip's own encoders (issue 24).

For SigLIP, SigLIP 2, EVA-02, MetaCLIP / DFN, MobileCLIP 2, PE-Core, ViT-L/14 and ViT-L/14@336:
image features, hand-written-prompt text features, learned-prompt features at initialisation
(with and without truncation and the shared prefix) and zero-shot logits (logit scale and bias)
equal ``encode_image`` / ``encode_text`` / ``get_logits`` of the model open_clip's own factory
built from the family's config, at 1e-5, fp32, CPU. The models are ``open_clip:tiny-<name>``:
the family's config with the sizes shrunk, random weights, built once per module; nothing is
downloaded (conftest sets HF_HUB_OFFLINE=1). SigLIP's tokenizers come from a Hugging Face cache
this module writes: synthetic vocabularies with the real special-token layout (T5's for SigLIP,
Gemma's for SigLIP 2), since the real files cannot be downloaded here.
"""

from __future__ import annotations

import json
import logging
import string

import pytest
import torch
import torch.nn.functional as F
from helpers import synthetic_experiences

from alta import BackboneError, CheckpointError, ConfigError, CrossModalLearner, load_backbone
from alta.backbones import FAMILIES, save_backbone
from alta.prompt import PromptLearner

open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")

NAMES = ["cat", "dog", "small red fox", "x"]
# family -> the tiny variant of its reference model (the tag's architecture: MetaCLIP's and DFN's
# weights are ViT-B-16-quickgelu's, OpenAI's ViT-L/14@336 is ViT-L-14-336-quickgelu's)
TINY = {
    "SigLIP": "tiny-ViT-B-16-SigLIP",
    "SigLIP 2": "tiny-ViT-B-16-SigLIP2",
    "EVA-02": "tiny-EVA02-B-16",
    "MetaCLIP / DFN": "tiny-ViT-B-16-quickgelu",
    "MobileCLIP 2-S0": "tiny-MobileCLIP2-S0",
    "MobileCLIP 2-L/14": "tiny-MobileCLIP2-L-14",
    "MobileCLIP-S2": "tiny-MobileCLIP-S2",
    "PE-Core": "tiny-PE-Core-B-16",
    "ViT-L/14": "tiny-ViT-L-14",
    "ViT-L/14@336": "tiny-ViT-L-14-336-quickgelu",
}
BIDIRECTIONAL = {"SigLIP", "SigLIP 2", "MobileCLIP 2-S0", "MobileCLIP 2-L/14", "MobileCLIP-S2"}

_WORDS = ["a", "photo", "of", "the", "cat", "dog", "small", "red", "fox", "x", "this", "is", "an", "image", "picture",
          "bird", "car", "plane", "ship", "truck", "horse", "deer", "frog", "big", "little"]


def _siglip_tokenizer(folder):
    """T5-style (SigLIP): ids 0 <pad>, 1 </s>, 2 <unk>; no BOS; </s> ends the text and pads (big_vision)."""
    chars = list(string.ascii_lowercase + string.digits)
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -1.0) for w in _WORDS]
    vocab += [(c, -5.0) for c in chars] + [("\u2581" + c, -5.0) for c in chars if c not in _WORDS] + [("\u2581", -5.0)]
    transformers.T5Tokenizer(vocab=vocab, extra_ids=0, pad_token="</s>", eos_token="</s>", unk_token="<unk>",
                             model_max_length=64).save_pretrained(folder)


def _siglip2_tokenizer(folder):
    """Gemma-style (SigLIP 2): ids 0 <pad>, 1 <eos>, 2 <bos>; no BOS added, <eos> appended, padded with 0."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for c in list(string.ascii_lowercase + string.digits) + ["\u2581"]:
        vocab.setdefault(c, len(vocab))
    merges = []
    for word in ["\u2581" + w for w in _WORDS] + _WORDS:
        piece = word[0]
        for ch in word[1:]:
            if (piece, ch) not in merges:
                merges.append((piece, ch))
            piece += ch
            vocab.setdefault(piece, len(vocab))
    transformers.GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=False, add_eos_token=True,
                                model_max_length=64, padding_side="right").save_pretrained(folder)


def write_hf_cache(root):
    """A Hugging Face cache holding the tokenizers of timm/ViT-B-16-SigLIP and timm/ViT-B-16-SigLIP2,
    laid out as `huggingface-cli download` leaves it (a timm config.json beside the tokenizer files)."""
    for repo, make in (("timm/ViT-B-16-SigLIP", _siglip_tokenizer), ("timm/ViT-B-16-SigLIP2", _siglip2_tokenizer)):
        repo_dir = root / f"models--{repo.replace('/', '--')}"
        snapshot = repo_dir / "snapshots" / ("0" * 40)
        make(snapshot)
        (snapshot / "config.json").write_text(json.dumps({"architecture": "vit_base_patch16_siglip_224"}))
        (repo_dir / "refs").mkdir()
        (repo_dir / "refs" / "main").write_text("0" * 40)
    return root


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    return write_hf_cache(tmp_path_factory.mktemp("hf-cache"))


@pytest.fixture(scope="module")
def backbones(hf_cache):
    return {family: load_backbone(f"open_clip:{name}", download_root=hf_cache) for family, name in TINY.items()}


def _images(backbone, n=3, seed=0):
    size = backbone.input_resolution
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", list(TINY))
def test_tiny_variant_keeps_the_family_config(backbones, family):
    backbone = backbones[family]
    real = open_clip.get_model_config(TINY[family].removeprefix("tiny-"))
    model, text = backbone.model, real["text_cfg"]
    tower = getattr(model, "text", model)
    assert type(model).__name__ == ("CustomTextCLIP" if real.get("custom_text") else "CLIP")
    assert (tower.attn_mask is None) == bool(text.get("no_causal_mask", False))
    assert backbone.pool == text.get("pool_type", "argmax")
    assert backbone.context_length == text.get("context_length", 77) and tower.vocab_size == text["vocab_size"]
    assert backbone.logit_bias == real.get("init_logit_bias")
    assert backbone.describe()["quick_gelu"] == bool(real.get("quick_gelu", False))
    assert isinstance(tower.text_projection, torch.nn.Linear) == bool(text.get("proj_bias", False))
    timm_name = real["vision_cfg"].get("timm_model_name")
    if timm_name:  # the family's own timm architecture (timm's class), only smaller
        reference = type(__import__("timm").create_model(timm_name, pretrained=False, num_classes=0,
                                                         **_tiny_timm_kwargs(timm_name)))
        assert type(model.visual.trunk) is reference
    assert not backbone.pretrained and "RANDOM" in repr(backbone)
    assert backbone.causal_text == (family not in BIDIRECTIONAL)
    assert backbone.text_prefix_length == (0 if family.startswith("SigLIP") else 1)


def _tiny_timm_kwargs(timm_name):
    if timm_name.startswith("fastvit"):
        return {"layers": (1, 1, 1, 1), "embed_dims": (16, 32, 64, 64)}
    small = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 1, "num_heads": 2}
    return {**small, "ref_feat_shape": (4, 4)} if timm_name.startswith(("eva", "vit_pe")) else small


@pytest.mark.parametrize("family", list(TINY))
def test_family_equals_open_clip(backbones, family):
    backbone = backbones[family]
    model = backbone.model
    images = _images(backbone)
    hand = [f"a photo of a {n}" for n in NAMES]
    learned = [f"a photo of a {n}." for n in NAMES]
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode_images(images), model.encode_image(images), atol=1e-5, rtol=0)
        hand_ref = model.encode_text(backbone.tokenize(hand))
        learned_ref = model.encode_text(backbone.tokenize(learned))
        for truncate in (True, False):
            torch.testing.assert_close(backbone.encode_tokens(backbone.tokenize(hand), truncate=truncate), hand_ref,
                                       atol=1e-5, rtol=0)
    for truncate in (True, False):
        for share in (True, False):
            learner = CrossModalLearner(backbone, class_names=NAMES, truncate_text=truncate)
            with torch.no_grad():
                raw = learner.prompt_learner.encode(backbone, truncate=truncate, share_prefix=share)
            torch.testing.assert_close(raw, learned_ref, atol=1e-5, rtol=0)  # learned prompt at initialisation
            text = learner.text_features(grad=False)
            torch.testing.assert_close(text.w1, F.normalize(hand_ref, dim=-1), atol=1e-5, rtol=0)
            torch.testing.assert_close(text.w2, F.normalize(learned_ref, dim=-1), atol=1e-5, rtol=0)
    # the gradient reaches the context vectors through the family's tower
    learner.prompt_learner.encode(backbone).sum().backward()
    assert learner.prompt_learner.ctx.grad.abs().sum() > 0
    # zero-shot logits: the library's own, logit scale and (SigLIP) bias included
    zeroshot = CrossModalLearner(backbone, class_names=NAMES, method="zeroshot")
    with torch.no_grad():
        expected, _ = model.get_logits(images, backbone.tokenize(hand))
    torch.testing.assert_close(zeroshot(images), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", [f for f in TINY if f not in BIDIRECTIONAL])
def test_causal_families_share_the_prefix(backbones, family):
    """The shared-prefix path really runs (the blocks are seen as TextBlocks), not its fallback."""
    backbone = backbones[family]
    assert backbone._text_blocks() is not None
    learner = CrossModalLearner(backbone, class_names=NAMES)
    assert learner.prompt_learner.causal and learner.prompt_learner.share_prefix


@pytest.mark.parametrize("family", sorted(BIDIRECTIONAL))
def test_bidirectional_families_switch_the_optimisations_off_and_say_why(backbones, family, caplog):
    backbone = backbones[family]
    with caplog.at_level(logging.INFO, logger="alta.prompt"):
        learner = CrossModalLearner(backbone, class_names=NAMES)
    assert not learner.prompt_learner.causal
    assert f"at all {backbone.context_length} positions, without the shared prefix or truncation" in caplog.text
    assert "exact only under a causal mask" in caplog.text
    described = backbone.describe()["text_tower"]
    assert described["causal"] is False and described["pool"] == backbone.pool
    # why they are off: the same prompts encoded truncated (as a causal tower allows) are wrong
    with torch.no_grad():
        expected = backbone.model.encode_text(backbone.tokenize([f"a photo of a {n}." for n in NAMES]))
    backbone.causal_text = True
    try:
        with torch.no_grad():
            truncated = PromptLearner(backbone, NAMES).encode(backbone, share_prefix=False)
    finally:
        backbone.causal_text = False
    assert (truncated - expected).abs().max() > 0.1 * expected.abs().max()


def test_siglip_tokenizer_layout(backbones):
    """No [SOS]; the end of text is the first end-of-sequence id; SigLIP reads position L - 1; the
    tokenizer's cleaning drops CoOp's "." and lower-cases."""
    for family, pad in (("SigLIP", 1), ("SigLIP 2", 0)):
        backbone = backbones[family]
        tokens = backbone.tokenize(["a photo of a cat.", "A Photo of a CAT", "a photo of a small red fox"])
        assert torch.equal(tokens[0], tokens[1])
        eot = backbone.eot_positions(tokens)
        assert eot.tolist() == [5, 5, 7] and bool((tokens[torch.arange(3), eot] == 1).all())
        assert int(tokens[0, -1]) == pad and backbone.text_prefix_length == 0
        assert backbone._readout_positions(eot, backbone.context_length).tolist() == [63, 63, 63]
        learner = CrossModalLearner(backbone, class_names=NAMES)
        assert learner.prompt_learner.token_prefix.shape[1] == 0  # the context vectors start at position 0


def test_siglip_refuses_what_its_tokenizer_cannot_tell_apart_or_fit(backbones):
    backbone = backbones["SigLIP"]
    with pytest.raises(ConfigError, match="'a photo of a t-shirt' \\(label 0\\) and 'a photo of a tshirt' \\(label 1\\) "
                                          "give the same tokens"):
        CrossModalLearner(backbone, class_names=["t-shirt", "tshirt"], method="zeroshot")
    with pytest.raises(ConfigError, match="longer than the model's 64 tokens"):
        backbone.tokenize(["a photo of a " + "x " * 80])


def test_siglip_tokenizer_missing_offline_says_where_to_put_it(tmp_path):
    with pytest.raises(BackboneError, match="(?s)tokenizer of open_clip model 'ViT-B-16-SigLIP2'.*not available "
                                            "offline.*huggingface-cli download timm/ViT-B-16-SigLIP2.*download_root"):
        load_backbone("open_clip:tiny-ViT-B-16-SigLIP2", download_root=tmp_path)


def test_logit_bias_is_in_every_term_and_cancels_in_the_loss(backbones):
    """ALTA's crossed pairing adds SigLIP's bias to each of its two terms (each term is the library's
    logit); the row shift leaves the losses as they are without it."""
    backbone = backbones["SigLIP"]
    learner = CrossModalLearner(backbone, class_names=NAMES, method="alta", replay_batch_size=2)
    experience = synthetic_experiences(2, 2, resolution=backbone.input_resolution)[0]
    learner.begin_experience(experience)
    images, labels = experience.train.tensors
    f1 = backbone.encode_images(images[:4])
    text = learner.text_features(grad=False)
    s, b = backbone.logit_scale, backbone.logit_bias
    f2 = learner.adapter(f1)
    expected = (s * F.normalize(f1, dim=-1) @ text.w2.t() + b) + (s * F.normalize(f2, dim=-1) @ text.w1.t() + b)
    with torch.no_grad():
        torch.testing.assert_close(learner.logits_from_features(f1, text), expected, atol=1e-5, rtol=0)
    memory = {"image_features": f1[:2], "labels": labels[:2], "logits": expected[:2].detach() + 0.5}
    step = learner.loss(f1, labels[:4], memory=memory)
    assert torch.allclose(step.logits, expected.detach(), atol=1e-5)  # reported and stored with the bias
    unbiased = expected - 2 * b
    torch.testing.assert_close(step.terms["ce"], F.cross_entropy(unbiased, labels[:4]), atol=1e-6, rtol=0)
    torch.testing.assert_close(step.terms["replay_ce"], F.cross_entropy(unbiased[:2], labels[:2]), atol=1e-6, rtol=0)
    torch.testing.assert_close(step.terms["replay_mse"], torch.tensor(0.25), atol=1e-5, rtol=0)


def test_a_state_or_weights_file_of_one_family_is_refused_by_another(backbones, hf_cache, tmp_path):
    siglip, eva = backbones["SigLIP"], backbones["EVA-02"]
    state = CrossModalLearner(siglip, class_names=NAMES).state_dict()
    with pytest.raises(CheckpointError, match="saved with another backbone than this one \\('open_clip:tiny-EVA02-B-16', "
                                              "family EVA-02"):
        CrossModalLearner(eva, class_names=NAMES).load_state_dict(state)
    path = save_backbone(siglip, tmp_path / "siglip.pt")
    with pytest.raises(BackboneError, match="holds open_clip weights of 'tiny-ViT-B-16-SigLIP' \\(family SigLIP.*not of "
                                            "'tiny-EVA02-B-16' \\(family EVA-02\\).*open_clip:tiny-ViT-B-16-SigLIP"):
        load_backbone("open_clip:tiny-EVA02-B-16", pretrained=path)
    again = load_backbone("open_clip:tiny-ViT-B-16-SigLIP", pretrained=path, download_root=hf_cache)
    images = _images(siglip)
    assert torch.equal(again.encode_images(images), siglip.encode_images(images))
    assert again.logit_bias == siglip.logit_bias and again.pretrained is False  # the sidecar says RANDOM


def test_weights_carry_their_preprocessing(tmp_path):
    """A tag's mean/std/interpolation/resize mode (open_clip applies them only when it downloads by
    tag, not for the file alta resolved), and a saved file's, through its sidecar."""
    from alta.backbones.open_clip import _weights_preprocess

    assert _weights_preprocess(open_clip, "ViT-L-14", "laion2b_s32b_b82k", {}) == {
        "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bicubic", "resize_mode": "shortest"}
    assert _weights_preprocess(open_clip, "ViT-B-16-SigLIP", "webli", {})["resize_mode"] == "squash"
    backbone = load_backbone("open_clip:tiny-EVA02-B-16")
    backbone.preprocess.update(mean=(0.1, 0.2, 0.3), interpolation="bilinear")  # as if from a tag
    path = save_backbone(backbone, tmp_path / "eva.pt")
    again = load_backbone("open_clip:tiny-EVA02-B-16", pretrained=path)
    assert again.preprocess["mean"] == (0.1, 0.2, 0.3) and again.preprocess["interpolation"] == "bilinear"
    assert again.preprocess["size"] == backbone.preprocess["size"]


@pytest.mark.slow
def test_a_weights_tag_sets_its_preprocessing_end_to_end(tmp_path):
    """MobileCLIP2-S0 dfndr2b (mean 0, std 1, bilinear) from a Hugging Face cache holding random
    weights of the full architecture (about 300 MB written)."""
    from safetensors.torch import save_file

    repo = open_clip.get_pretrained_cfg("MobileCLIP2-S0", "dfndr2b")["hf_hub"].rstrip("/")
    snapshot = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    model = open_clip.create_model("MobileCLIP2-S0", pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "open_clip_model.safetensors"))
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    backbone = load_backbone("open_clip:MobileCLIP2-S0", pretrained="dfndr2b", download_root=tmp_path)
    assert backbone.pretrained and backbone.describe()["family"] == "MobileCLIP / MobileCLIP 2"
    assert backbone.preprocess["mean"] == (0.0, 0.0, 0.0) and backbone.preprocess["std"] == (1.0, 1.0, 1.0)
    assert backbone.preprocess["interpolation"] == "bilinear" and backbone.preprocess["size"] == (256, 256)


def test_tiny_names_are_checked():
    with pytest.raises(ConfigError, match="small size with random weights; the weights tag 'webli' is for "
                                          "open_clip:ViT-B-16-SigLIP"):
        load_backbone("open_clip:tiny-ViT-B-16-SigLIP", pretrained="webli")
    with pytest.raises(BackboneError, match="no small size for its timm image tower 'convnext_base'"):
        load_backbone("open_clip:tiny-convnext_base")
    with pytest.raises(BackboneError, match="unknown open_clip model 'EVA02-B-61'.*'tiny-EVA02-B-16'"):
        load_backbone("open_clip:tiny-EVA02-B-61")


def test_declared_families_agree_with_open_clip():
    """The listing's families name real models and tags that load under those names (activation)."""
    from alta.backbones.open_clip import _config_problem

    models = set(open_clip.list_models())
    for family in FAMILIES:
        if family.source != "open_clip":
            continue
        for name, tags in family.models:
            architecture = name.removeprefix("open_clip:")
            assert architecture in models, (family.name, name)
            config = open_clip.get_model_config(architecture)
            assert _config_problem(config) is None, (family.name, name)
            for tag in tags:
                tag_cfg = open_clip.get_pretrained_cfg(architecture, tag)
                assert tag_cfg, (name, tag)
                assert bool(tag_cfg.get("quick_gelu", False)) == bool(config.get("quick_gelu", False)), (name, tag)


def test_list_backbones_shows_each_family(capsys):
    from alta.cli import main

    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    for family in FAMILIES:
        assert f"  {family.name} [{family.source}]" in out
    siglip = next(line for line in out.splitlines() if line.strip().startswith("open_clip:ViT-B-16-SigLIP "))
    assert "224 px" in siglip and "bidirectional, last position" in siglip and "tags: webli" in siglip
    assert "exact at all 64 positions, shared prefix and truncation off" in siglip
    eva = next(line for line in out.splitlines() if line.strip().startswith("open_clip:EVA02-B-16 "))
    assert "causal, end of text" in eva and "shared prefix and truncation on" in eva
    assert "weights: Hugging Face cache timm/ViT-B-16-SigLIP | tokenizer: Hugging Face cache timm/ViT-B-16-SigLIP" in out
    assert "open_clip:tiny-<model>" in out


QUICK = ["--epochs", "1", "--set", "data.max_train_per_class=8", "--set", "data.max_test_per_class=4",
         "--set", "data.num_experiences=2", "--no-progress", "--no-plots", "--threads", "1"]


def test_cli_runs_siglip_eva02_and_vit_l_14_end_to_end(hf_cache, tmp_path, capsys):
    from alta.cli import main

    runs = {"siglip": "open_clip:tiny-ViT-B-16-SigLIP", "eva02": "open_clip:tiny-EVA02-B-16",
            "vit-l-14": "open_clip:tiny-ViT-L-14"}
    for label, visual in runs.items():
        argv = ["run", "--visual", visual, *QUICK, "--set", f"model.download_root={hf_cache}",
                "--output-dir", str(tmp_path / label)]
        assert main(argv) == 0, capsys.readouterr().err
        summary = json.loads((tmp_path / label / "summary.json").read_text())
        assert summary["backbone"]["name"] == visual and summary["pretrained"] is False
        assert len(summary["accuracy_matrix"]["class_il"]) == 2
    assert summary["backbone"]["family"] == "ViT-L/14"
    siglip = json.loads((tmp_path / "siglip" / "summary.json").read_text())["backbone"]
    assert siglip["family"] == "SigLIP" and siglip["logit_bias"] == -10.0 and siglip["text_tower"]["causal"] is False
    capsys.readouterr()
    # a run of one family does not resume with another
    assert main(["run", "--resume", str(tmp_path / "siglip"), "--visual", runs["eva02"]]) != 0
    assert "gives 'open_clip:tiny-EVA02-B-16' but the run was started with 'open_clip:tiny-ViT-B-16-SigLIP'" in \
        capsys.readouterr().err


def test_families_benchmark_smoke_mode_writes_complete_results(tmp_path):
    """benchmarks/families.py keeps running (its smoke mode: open_clip:tiny-<model>, 10 classes);
    its ratios are measured there, never asserted."""
    import importlib.util
    import math
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("families_benchmark", folder / "families.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "families-smoke.json"
    assert module.main(["--smoke", "--only", "SigLIP", "EVA-02", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["family"] for r in data["results"]] == ["ViT-B/16", "SigLIP", "EVA-02"]
    siglip = data["results"][1]
    assert siglip["causal_text"] is False and siglip["logit_bias"] == -10.0 and siglip["context_length"] == 64
    for row in data["results"]:
        assert row["step"]["n"] >= 1 and all(math.isfinite(v) and v > 0 for v in row["ratio"].values())
    assert data["results"][0]["ratio"] == {"step": 1.0, "image": 1.0, "text_eval": 1.0}
