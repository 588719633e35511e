"""Checkpoint loading from a local folder laid out like Wan2.2-S2V-14B (tiny sizes), the LoRA merge, and errors."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from liveavatar.avatar.liveavatar.loader import CheckpointError, find_checkpoint_files, load_parts, wan_t5_to_transformers
from liveavatar.avatar.liveavatar.vae import VAEConfig, diffusers_to_reference

T5_LAYERS = 2


def wan_t5_state(seed: int) -> dict[str, torch.Tensor]:
    """A tiny umT5 encoder under Wan's own key names (token_embedding, blocks.N.attn.q, ffn.gate.0, ...)."""
    gen = torch.Generator().manual_seed(seed)
    d, heads, ff, vocab = 64, 2, 96, 300
    state = {"token_embedding.weight": torch.randn(vocab, d, generator=gen), "norm.weight": torch.ones(d)}
    for i in range(T5_LAYERS):
        for name, shape in (("norm1.weight", (d,)), ("attn.q.weight", (d, d)), ("attn.k.weight", (d, d)), ("attn.v.weight", (d, d)),
                            ("attn.o.weight", (d, d)), ("pos_embedding.embedding.weight", (32, heads)), ("norm2.weight", (d,)),
                            ("ffn.gate.0.weight", (ff, d)), ("ffn.fc1.weight", (ff, d)), ("ffn.fc2.weight", (d, ff))):
            state[f"blocks.{i}.{name}"] = torch.randn(*shape, generator=gen) * 0.1
    return state


def save_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>", "a", "person", "is", "talking", "calmly"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(folder)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, dit_fixture):
    """A complete local checkpoint folder at tiny size, plus a LoRA file."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    root = tmp_path_factory.mktemp("Wan2.2-S2V-14B")
    (root / "config.json").write_text(json.dumps({"_class_name": "WanModel_S2V", **dit_fixture["config"]["constructor"]}))
    weights = dit_fixture["weights"]
    names = sorted(weights)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": names[: len(names) // 2],
              "diffusion_pytorch_model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({k: weights[k].contiguous() for k in keys}, root / shard)
    (root / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        vae = VAEConfig(dim=4).build()
        wav = Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=24, num_attention_heads=2, intermediate_size=64,
                                           conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                           feat_extract_norm="layer", do_stable_layer_norm=True, vocab_size=32))
    torch.save(diffusers_to_reference(vae.state_dict(), vae), root / "Wan2.1_VAE.pth")
    torch.save(wan_t5_state(6), root / "models_t5_umt5-xxl-enc-bf16.pth")
    save_tokenizer(root / "google" / "umt5-xxl")
    wav.save_pretrained(root / "wav2vec2-large-xlsr-53-english")
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(root / "wav2vec2-large-xlsr-53-english")
    gen = torch.Generator().manual_seed(7)
    lora = {}
    for module, (out_f, in_f) in {"blocks.0.self_attn.q": (256, 256), "blocks.2.ffn.0": (512, 256), "audio_injector.injector.1.o": (256, 256)}.items():
        lora[f"base_model.model.{module}.lora_A.default.weight"] = torch.randn(128, in_f, generator=gen) * 0.01
        lora[f"base_model.model.{module}.lora_B.default.weight"] = torch.randn(out_f, 128, generator=gen) * 0.01
    save_file(lora, root / "liveavatar.safetensors")
    return root, root / "liveavatar.safetensors", lora, vae.state_dict()


def test_loads_every_part_merges_the_lora_and_generates(checkpoint, dit_fixture):
    from liveavatar.avatar.liveavatar.pipeline import AvatarPipeline
    from liveavatar.avatar.liveavatar.stream import random_relative_dist

    root, lora_path, lora, vae_state = checkpoint
    parts = load_parts(root, lora_path, dtype="float32", pixel_size=(64, 64), audio_context_s=0.5)
    dit_state = parts.dit.state_dict()
    merged = {"blocks.0.self_attn.q", "blocks.2.ffn.0", "audio_injector.injector.1.o"}
    for key, ref in dit_fixture["weights"].items():
        module = key.rsplit(".", 1)[0]
        if module in merged and key.endswith(".weight"):
            a, b = lora[f"base_model.model.{module}.lora_A.default.weight"], lora[f"base_model.model.{module}.lora_B.default.weight"]
            assert torch.allclose(dit_state[key], ref + 0.5 * b @ a, atol=1e-6), key
        else:
            assert torch.equal(dit_state[key], ref), key
    assert all(torch.equal(parts.vae.vae.state_dict()[k], v) for k, v in vae_state.items())
    t5 = parts.text.model.state_dict()
    for key, value in wan_t5_to_transformers(wan_t5_state(6)).items():
        assert torch.equal(t5[key], value), key
    text = parts.text("a person is talking")
    assert text.shape == (5, 64), "4 words + EOS, trimmed (no padding) as the reference's T5EncoderModel returns"
    assert parts.text("a  person is   talking ") is text, "cached per prompt (whitespace-normalised)"
    portrait = (np.random.default_rng(0).random((70, 50, 3)) * 255).astype(np.uint8)
    pipe = AvatarPipeline(parts, portrait, "a person is talking", seed=0, relative_dist=random_relative_dist(random.Random(0)))
    frames = pipe.block(np.zeros(7680, np.float32))
    assert frames.shape == (12, 64, 64, 3) and frames.dtype == np.uint8


def copy_without(src: Path, dst: Path, *relative: str) -> Path:
    shutil.copytree(src, dst)
    for rel in relative:
        path = dst / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return dst


def test_missing_files_are_all_listed(checkpoint, tmp_path):
    root, lora_path, _, _ = checkpoint
    broken = copy_without(root, tmp_path / "ckpt", "Wan2.1_VAE.pth", "diffusion_pytorch_model-00002-of-00002.safetensors",
                          "google/umt5-xxl/tokenizer.json", "wav2vec2-large-xlsr-53-english/preprocessor_config.json")
    with pytest.raises(CheckpointError) as err:
        find_checkpoint_files(broken, tmp_path / "nowhere" / "liveavatar.safetensors")
    assert sorted(err.value.problems) == sorted([
        str(broken / "Wan2.1_VAE.pth"),
        str(broken / "diffusion_pytorch_model-00002-of-00002.safetensors"),
        f"{broken / 'google/umt5-xxl/tokenizer.json'} (or spiece.model)",
        str(broken / "wav2vec2-large-xlsr-53-english/preprocessor_config.json"),
        str(tmp_path / "nowhere" / "liveavatar.safetensors"),
    ])
    with pytest.raises(CheckpointError, match="folder not found"):
        find_checkpoint_files(tmp_path / "absent", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError) as err:
        find_checkpoint_files(empty, None)
    assert len(err.value.problems) == 9 and str(empty / "config.json") in err.value.problems


def test_mismatched_weights_are_listed_by_key(checkpoint, tmp_path, dit_fixture):
    from safetensors.torch import load_file

    root, _, _, _ = checkpoint
    broken = copy_without(root, tmp_path / "ckpt")
    shard = broken / "diffusion_pytorch_model-00001-of-00002.safetensors"
    state = load_file(shard)
    dropped = sorted(state)[0]
    del state[dropped]
    state["blocks.0.extra.weight"] = torch.zeros(2)
    reshaped = sorted(state)[1]
    state[reshaped] = torch.zeros(3, 3)
    save_file(state, shard)
    index = json.loads((broken / "diffusion_pytorch_model.safetensors.index.json").read_text())
    with pytest.raises(CheckpointError) as err:
        load_parts(broken, None, dtype="float32", pixel_size=(64, 64))
    problems = err.value.problems
    assert f"missing key {dropped}" in problems and "unexpected key blocks.0.extra.weight" in problems
    assert any(p.startswith(f"{reshaped}: shape (3, 3), expected") for p in problems)
    assert len(problems) == 3 and len(index["weight_map"]) == len(dit_fixture["weights"])


def test_pixel_size_must_fit_the_latent_grid(checkpoint):
    root, _, _, _ = checkpoint
    with pytest.raises(ValueError, match="multiples of 16"):
        load_parts(root, None, pixel_size=(100, 64))
