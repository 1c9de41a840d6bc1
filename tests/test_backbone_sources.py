"""open_clip and Hugging Face backbones equal their own library's encodings (fp32, CPU, random
weights of small custom architectures), with and without the shared prefix; nothing is downloaded
(conftest sets HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from alta import BackboneError, CrossModalLearner, load_backbone
from alta.backbones import save_backbone

open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")

NAMES = ["cat", "dog", "small red fox", "x"]
TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
OPEN_CLIP_CONFIGS = {  # small custom architectures registered with open_clip.add_model_config
    "alta-test-vit": {"embed_dim": 64, "text_cfg": TEXT,
                      "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32}},
    "alta-test-vit-quickgelu": {"embed_dim": 64, "quick_gelu": True, "text_cfg": TEXT,
                                "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8,
                                               "head_width": 32}},
    "alta-test-rn": {"embed_dim": 64, "text_cfg": TEXT,
                     "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16}},
}


@pytest.fixture(scope="module")
def open_clip_names(tmp_path_factory):
    folder = tmp_path_factory.mktemp("open_clip_configs")
    for name, cfg in OPEN_CLIP_CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    return list(OPEN_CLIP_CONFIGS)


def _hf_folder(root, act):
    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
             "hidden_act": act}
    config = transformers.CLIPConfig(text_config=sizes, vision_config={**sizes, "image_size": 32, "patch_size": 8},
                                     projection_dim=32)
    config.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    return {act: _hf_folder(tmp_path_factory.mktemp(f"hf-{act}"), act) for act in ("gelu", "quick_gelu")}


def save_hf_checkpoint(folder, *, seed=0):
    """A complete local Hugging Face CLIP folder: tiny random weights saved with save_pretrained and
    a CLIPTokenizer built from clip-anytorch's BPE files (OpenAI CLIP's vocabulary)."""
    from alta.backbones import import_clip

    _hf_folder(folder, "quick_gelu")
    torch.manual_seed(seed)
    transformers.CLIPModel(transformers.CLIPConfig.from_pretrained(folder)).save_pretrained(folder)
    bpe = import_clip().simple_tokenizer.SimpleTokenizer()
    (folder / "vocab.json").write_text(json.dumps(bpe.encoder))
    merges = [" ".join(pair) for pair, _ in sorted(bpe.bpe_ranks.items(), key=lambda item: item[1])]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    return folder


def _library_text(backbone, texts):
    tokens = backbone.tokenize(texts)
    if backbone.library == "open_clip":
        return backbone.model.encode_text(tokens)
    return backbone.model.get_text_features(input_ids=tokens).pooler_output


def _library_images(backbone, images):
    if backbone.library == "open_clip":
        return backbone.model.encode_image(images)
    return backbone.model.get_image_features(pixel_values=images).pooler_output


def _check_equals_library(backbone):
    torch.manual_seed(0)
    images = torch.randn(3, 3, backbone.input_resolution, backbone.input_resolution)
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode_images(images), _library_images(backbone, images), atol=1e-5, rtol=0)
        hand = _library_text(backbone, [f"a photo of a {n}" for n in NAMES])
        learned = _library_text(backbone, [f"a photo of a {n}." for n in NAMES])
    for truncate in (True, False):
        for share in (True, False):
            learner = CrossModalLearner(backbone, class_names=NAMES, truncate_text=truncate)
            learner.prompt_learner.share_prefix = share
            text = learner.text_features(grad=False)
            torch.testing.assert_close(text.w1, F.normalize(hand, dim=-1), atol=1e-5, rtol=0)
            torch.testing.assert_close(text.w2, F.normalize(learned, dim=-1), atol=1e-5, rtol=0)
    zeroshot = CrossModalLearner(backbone, class_names=NAMES, method="zeroshot")
    with torch.no_grad():
        expected = backbone.model.logit_scale.exp() * F.normalize(_library_images(backbone, images), dim=-1) @ \
            F.normalize(hand, dim=-1).t()
    torch.testing.assert_close(zeroshot(images), expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("arch", list(OPEN_CLIP_CONFIGS))
def test_open_clip_equals_open_clip(open_clip_names, arch):
    backbone = load_backbone(f"open_clip:{arch}", pretrained=None)
    assert not backbone.pretrained and "RANDOM" in repr(backbone)
    assert backbone.describe()["quick_gelu"] == arch.endswith("quickgelu")
    _check_equals_library(backbone)


@pytest.mark.parametrize("act", ["gelu", "quick_gelu"])
def test_hf_equals_transformers(hf_folders, act):
    backbone = load_backbone(f"hf:{hf_folders[act]}", pretrained=False)
    assert not backbone.pretrained and backbone.describe()["hidden_act"] == act
    _check_equals_library(backbone)


def test_saved_hf_folder_loads_its_weights_and_tokenizer(tmp_path):
    from alta.backbones import import_clip

    folder = save_hf_checkpoint(tmp_path / "clip")
    backbone = load_backbone(f"hf:{folder}")
    assert backbone.pretrained and backbone.tokenizer is not None
    reference = transformers.CLIPModel.from_pretrained(folder).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode_images(images),
                                   reference.get_image_features(pixel_values=images).pooler_output, atol=1e-5, rtol=0)
    texts = ["a photo of a cat.", "a photo of a small red fox."]
    tokens = backbone.tokenize(texts)  # HF pads with EOT; the first EOT is read
    clip_tokens = import_clip().tokenize(texts)
    eot = backbone.eot_positions(tokens)
    assert torch.equal(eot, clip_tokens.argmax(-1))
    assert all(torch.equal(tokens[i, : e + 1], clip_tokens[i, : e + 1]) for i, e in enumerate(eot.tolist()))
    _check_equals_library(backbone)


def test_every_source_says_its_preprocessing(tmp_path):
    folder = save_hf_checkpoint(tmp_path / "clip")
    transformers.CLIPImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], resample=2,
                                    do_center_crop=False).save_pretrained(folder)
    assert load_backbone(f"hf:{folder}").preprocess == {"size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                                                        "interpolation": "bilinear", "resize_mode": "squash"}
    assert load_backbone("tiny-vit").preprocess["mean"] == open_clip.OPENAI_DATASET_MEAN  # clip.load's transform


def test_fingerprints_are_keyed_by_source_architecture_and_weights(open_clip_names, hf_folders):
    prints = {
        load_backbone("open_clip:alta-test-vit").fingerprint(),
        load_backbone("open_clip:alta-test-vit", seed=1).fingerprint(),
        load_backbone("open_clip:alta-test-vit-quickgelu").fingerprint(),  # same tensors, other activation
        load_backbone(f"hf:{hf_folders['gelu']}", pretrained=False).fingerprint(),
        load_backbone(f"hf:{hf_folders['quick_gelu']}", pretrained=False).fingerprint(),
        load_backbone("tiny-vit").fingerprint(),
    }
    assert len(prints) == 6
    assert load_backbone("open_clip:alta-test-vit").fingerprint() == load_backbone("open_clip:alta-test-vit").fingerprint()


def test_saved_open_clip_file_loads_and_refuses_another_architecture(open_clip_names, tmp_path):
    backbone = load_backbone("open_clip:alta-test-vit", seed=3)
    path = save_backbone(backbone, tmp_path / "vit.pt")
    again = load_backbone("open_clip:alta-test-vit", pretrained=path)
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(again.encode_images(images), backbone.encode_images(images))
    with pytest.raises(BackboneError, match="GELU activations but open_clip:alta-test-vit-quickgelu builds QuickGELU"):
        load_backbone("open_clip:alta-test-vit-quickgelu", pretrained=path)
    with pytest.raises(BackboneError, match="holds open_clip weights"):
        load_backbone(path)  # clip-anytorch would run GELU weights with QuickGELU
    torch.save(backbone.model.state_dict(), tmp_path / "plain.pt")  # no sidecar: the shapes must match
    with pytest.raises(BackboneError, match="do not match open_clip architecture 'alta-test-rn'"):
        load_backbone("open_clip:alta-test-rn", pretrained=str(tmp_path / "plain.pt"))


@pytest.mark.parametrize("name, content", [("garbage.pt", b"not a checkpoint"), ("empty.pt", b""),
                                           ("half.pt", None), ("garbage.safetensors", b"xx")])
def test_a_damaged_weights_file_is_named_not_a_bare_unpickling_error(open_clip_names, tmp_path, name, content):
    """A damaged or truncated --pretrained file was a bare UnpicklingError / EOFError /
    SafetensorError, or (truncated zip) reported as weights of another architecture."""
    if content is None:  # a copy cut short: a zip archive without its central directory
        whole = save_backbone(load_backbone("open_clip:alta-test-vit"), tmp_path / "whole.pt").read_bytes()
        content = whole[: len(whole) // 2]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(BackboneError, match=rf"cannot read the weights file '.*{name}' \(\w+: .*damaged, truncated"):
        load_backbone("open_clip:alta-test-vit", pretrained=str(tmp_path / name))


def test_weight_tags_are_checked_and_never_downloaded(tmp_path):
    with pytest.raises(BackboneError, match="QuickGELU activations but open_clip:ViT-B-32 builds GELU.*ViT-B-32-quickgelu"):
        load_backbone("open_clip:ViT-B-32", pretrained="openai")
    with pytest.raises(BackboneError, match="not available offline; place .*open_clip_model.safetensors"):
        load_backbone("open_clip:ViT-B-16", pretrained="laion400m_e32", download_root=tmp_path)
    with pytest.raises(BackboneError, match="neither a weights tag .* laion400m_e32"):
        load_backbone("open_clip:ViT-B-16", pretrained="laion400m")
    with pytest.raises(BackboneError, match="unknown open_clip model 'ViT-B-61'"):
        load_backbone("open_clip:ViT-B-61")
    with pytest.raises(BackboneError, match="(?s)not available locally.*huggingface-cli download"):
        load_backbone("hf:openai/clip-vit-base-patch32", download_root=tmp_path)


def test_hf_siglip_points_to_open_clip_and_unpromptable_families_are_refused(tmp_path):
    transformers.SiglipConfig().save_pretrained(tmp_path)
    with pytest.raises(BackboneError, match="siglip \\(SigLIP\\) checkpoint.*open_clip:ViT-B-16-SigLIP --pretrained webli"):
        load_backbone(f"hf:{tmp_path}", pretrained=False)
    # refused from the config, before anything is built, each with its reason
    with pytest.raises(BackboneError, match="coca_ViT-B-32.*CoCa"):
        load_backbone("open_clip:coca_ViT-B-32")
    with pytest.raises(BackboneError, match="roberta-ViT-B-32.*Hugging Face model 'roberta-base'"):
        load_backbone("open_clip:roberta-ViT-B-32")
    with pytest.raises(BackboneError, match="ViT-L-14-CLIPA.*drops or rewrites the end-of-text token"):
        load_backbone("open_clip:ViT-L-14-CLIPA")


QUICK = ["--epochs", "1", "--set", "data.max_train_per_class=8", "--set", "data.max_test_per_class=4",
         "--set", "data.num_experiences=2", "--no-progress", "--no-plots", "--threads", "1"]


def test_cli_runs_open_clip_and_hf_backbones_offline(open_clip_names, tmp_path, capsys):
    from alta.cli import main

    saved = save_backbone(load_backbone("open_clip:alta-test-vit", seed=5), tmp_path / "vit.pt")
    folder = save_hf_checkpoint(tmp_path / "hf")
    runs = {
        "random": ["--visual", "open_clip:alta-test-vit-quickgelu"],
        "file": ["--visual", "open_clip:alta-test-vit", "--pretrained", str(saved)],
        "hf": ["--visual", f"hf:{folder}"],
    }
    for label, argv in runs.items():
        assert main(["run", *argv, *QUICK, "--output-dir", str(tmp_path / label)]) == 0, capsys.readouterr().err
        summary = json.loads((tmp_path / label / "summary.json").read_text())
        assert summary["backbone"]["name"] == argv[1] and len(summary["accuracy_matrix"]["class_il"]) == 2
        # random weights stay marked RANDOM, also through a saved file (its sidecar says so); an HF
        # folder carries no such record and counts as trained weights
        assert summary["pretrained"] == (label == "hf")
    assert summary["backbone"]["library"] == "transformers"
    assert main(["run", "--visual", "open_clip:alta-test-vit-quickgelu", "--pretrained", str(saved), *QUICK,
                 "--output-dir", str(tmp_path / "mismatch")]) != 0
    assert "GELU activations but open_clip:alta-test-vit-quickgelu builds QuickGELU" in capsys.readouterr().err


def test_names_pick_their_source():
    from alta import ConfigError, list_backbones
    from alta.backbones import split_source

    assert split_source("open_clip:ViT-B-16") == ("open_clip", "ViT-B-16")
    assert split_source("hf:/data/clip") == ("hf", "/data/clip")
    assert split_source("ViT-L/14@336px") == ("clip", "ViT-L/14@336px")
    assert "open_clip:ViT-B-16" in list_backbones(source="open_clip")
    assert list_backbones() == list_backbones(source="clip")
    with pytest.raises(ConfigError):
        list_backbones(source="timm")
    with pytest.raises(ConfigError, match="fixes its weights"):
        load_backbone("tiny-vit", pretrained="laion400m_e32")
    with pytest.raises(ConfigError, match="which weights"):
        load_backbone("open_clip:ViT-B-16", pretrained=True)
