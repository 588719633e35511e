"""Loading the real LiveAvatar from local files: Wan2.2-S2V-14B plus the LiveAvatar LoRA. Nothing downloads.

Files read (paths relative to the Wan2.2-S2V-14B folder, as the Hugging Face repo Wan-AI/Wan2.2-S2V-14B lays them out):

- `config.json`                                   the DiT's constructor arguments (diffusers config)
- `diffusion_pytorch_model.safetensors.index.json` and every shard it names
  (`diffusion_pytorch_model-0000{1..4}-of-00004.safetensors`); without the index, the shards found by
  `diffusion_pytorch_model*.safetensors` are used
- `Wan2.1_VAE.pth`                                 the VAE (reference key names; encoder and decoder)
- `models_t5_umt5-xxl-enc-bf16.pth`                the umT5-XXL encoder (Wan's key names, mapped to transformers')
- `google/umt5-xxl/`                               its tokenizer: `tokenizer_config.json` + `tokenizer.json` or `spiece.model`
- `wav2vec2-large-xlsr-53-english/`                `config.json`, `model.safetensors` or `pytorch_model.bin`, `preprocessor_config.json`

and the LoRA file `liveavatar.safetensors` (Hugging Face Quark-Vision/Live-Avatar), merged into the DiT at load
(rank 128, alpha 64). A missing file raises `CheckpointError` naming every missing file; a state dict that
does not fit raises it naming every missing, unexpected or mis-shaped key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from liveavatar.avatar.liveavatar.config import DiTConfig, StreamConfig
from liveavatar.avatar.liveavatar.dit import CausalS2VDiT
from liveavatar.avatar.liveavatar.features import AudioFeatures, TextEncoder, hf_tokenizer
from liveavatar.avatar.liveavatar.lora import merge_lora
from liveavatar.avatar.liveavatar.pipeline import Parts
from liveavatar.avatar.liveavatar.precision import apply_precision
from liveavatar.avatar.liveavatar.vae import WAN21_LATENT_MEAN, WAN21_LATENT_STD, VAEConfig, WanVAE, reference_to_diffusers

DIT_CONFIG = "config.json"
DIT_INDEX = "diffusion_pytorch_model.safetensors.index.json"
DIT_SHARD_GLOB = "diffusion_pytorch_model*.safetensors"
VAE_FILE = "Wan2.1_VAE.pth"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER_DIR = "google/umt5-xxl"
WAV2VEC_DIR = "wav2vec2-large-xlsr-53-english"
LORA_RANK, LORA_ALPHA = 128, 64.0

# reference constructor defaults that diffusers' config.json leaves out (ignore_for_config)
_REFERENCE_DEFAULTS = {"patch_size": [1, 2, 2], "text_dim": 4096, "qk_norm": True, "cross_attn_norm": True, "window_size": [-1, -1]}


class CheckpointError(FileNotFoundError):
    """Local checkpoint files are missing or do not fit; the message lists each problem."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{what}:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class CheckpointFiles:
    """Every file the loader will read, checked to exist."""

    root: Path
    dit_config: Path
    dit_shards: tuple[Path, ...]
    vae: Path
    t5: Path
    tokenizer: Path
    wav2vec: Path
    lora: Path | None


def _one_of(folder: Path, names: tuple[str, ...]) -> str | None:
    return None if any((folder / n).is_file() for n in names) else f"{folder / names[0]} (or {', '.join(names[1:])})"


def find_checkpoint_files(root: Path | str, lora: Path | str | None) -> CheckpointFiles:
    """Check that every needed file exists; raise CheckpointError listing all that are missing."""
    root = Path(root)
    missing: list[str] = []
    if not root.is_dir():
        raise CheckpointError("Wan2.2-S2V-14B checkpoint folder not found", [str(root)])
    for name in (DIT_CONFIG, VAE_FILE, T5_FILE):
        if not (root / name).is_file():
            missing.append(str(root / name))
    shards: list[Path] = []
    index = root / DIT_INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        for name in sorted(set(weight_map.values())):
            (shards.append(root / name) if (root / name).is_file() else missing.append(str(root / name)))
    else:
        shards = sorted(root.glob(DIT_SHARD_GLOB))
        if not shards:
            missing.append(f"{index} (or the shards {root / DIT_SHARD_GLOB})")
    tok, wav = root / TOKENIZER_DIR, root / WAV2VEC_DIR
    for problem in (
        None if (tok / "tokenizer_config.json").is_file() else str(tok / "tokenizer_config.json"),
        _one_of(tok, ("tokenizer.json", "spiece.model")),
        None if (wav / "config.json").is_file() else str(wav / "config.json"),
        _one_of(wav, ("model.safetensors", "pytorch_model.bin")),
        None if (wav / "preprocessor_config.json").is_file() else str(wav / "preprocessor_config.json"),
    ):
        if problem:
            missing.append(problem)
    lora_path = Path(lora) if lora is not None else None
    if lora_path is not None and not lora_path.is_file():
        missing.append(str(lora_path))
    if missing:
        raise CheckpointError("missing checkpoint files", missing)
    return CheckpointFiles(root, root / DIT_CONFIG, tuple(shards), root / VAE_FILE, root / T5_FILE, tok, wav, lora_path)


def _check_state(what: str, expected: dict[str, torch.Size], state: dict[str, torch.Tensor]) -> None:
    problems = [f"missing key {k}" for k in sorted(set(expected) - set(state))]
    problems += [f"unexpected key {k}" for k in sorted(set(state) - set(expected))]
    problems += [f"{k}: shape {tuple(state[k].shape)}, expected {tuple(expected[k])}"
                 for k in sorted(set(expected) & set(state)) if state[k].shape != expected[k]]
    if problems:
        raise CheckpointError(f"{what} does not fit the model", problems)


def dit_config_from_file(path: Path) -> DiTConfig:
    """DiTConfig from a reference/diffusers config.json (constructor defaults filled in)."""
    constructor = {**_REFERENCE_DEFAULTS, **json.loads(Path(path).read_text())}
    return DiTConfig.from_reference(constructor)


def load_dit(files: CheckpointFiles, dtype: str = "bfloat16", device: str = "cpu") -> CausalS2VDiT:
    """The DiT from its shards (checked key by key), the LoRA merged in, converted to `dtype`, on `device`."""
    from safetensors.torch import load_file

    cfg = dit_config_from_file(files.dit_config)
    with torch.device("meta"):
        model = CausalS2VDiT(cfg)
    state: dict[str, torch.Tensor] = {}
    for shard in files.dit_shards:
        state.update(load_file(shard))
    _check_state(f"DiT weights in {files.root}", {k: v.shape for k, v in model.state_dict().items()}, state)
    model.load_state_dict(state, assign=True)
    del state
    if files.lora is not None:
        merge_lora(model, load_file(files.lora), alpha=LORA_ALPHA, expected_rank=LORA_RANK)
    return apply_precision(model.eval().requires_grad_(False), dtype).to(device)


def load_vae(files: CheckpointFiles, device: str = "cpu") -> WanVAE:
    """The Wan2.1 VAE (base width read from the weights: 96 for the real file)."""
    state = torch.load(files.vae, map_location="cpu", weights_only=True)
    if "decoder.conv1.weight" not in state:
        raise CheckpointError(f"{files.vae} is not a Wan2.1 VAE state dict", ["missing key decoder.conv1.weight"])
    cfg = VAEConfig(dim=state["decoder.conv1.weight"].shape[0] // 4, latent_mean=WAN21_LATENT_MEAN, latent_std=WAN21_LATENT_STD)
    vae = cfg.build()
    mapped = reference_to_diffusers(state, vae)
    _check_state(f"VAE weights {files.vae}", {k: v.shape for k, v in vae.state_dict().items()}, mapped)
    vae.load_state_dict(mapped)
    return WanVAE(vae.to(device), cfg)


def wan_t5_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Wan's umT5 encoder state dict (models_t5_umt5-xxl-enc-bf16.pth) to transformers' UMT5EncoderModel."""
    parts = {"norm1.weight": "layer.0.layer_norm.weight", "attn.q.weight": "layer.0.SelfAttention.q.weight",
             "attn.k.weight": "layer.0.SelfAttention.k.weight", "attn.v.weight": "layer.0.SelfAttention.v.weight",
             "attn.o.weight": "layer.0.SelfAttention.o.weight",
             "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
             "norm2.weight": "layer.1.layer_norm.weight", "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
             "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight", "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight"}
    out = {}
    for key, value in state.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = value
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        elif key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            out[f"encoder.block.{i}.{parts.get(rest, rest)}"] = value
        else:
            out[key] = value
    return out


def load_text_encoder(files: CheckpointFiles, text_len: int, device: str = "cpu") -> TextEncoder:
    """umT5 encoder through transformers (shape read from the weights) with its local tokenizer."""
    from transformers import UMT5Config, UMT5EncoderModel

    state = wan_t5_to_transformers(torch.load(files.t5, map_location="cpu", weights_only=True))
    if "shared.weight" not in state or "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight" not in state:
        raise CheckpointError(f"{files.t5} is not a Wan umT5 encoder state dict", ["missing token_embedding / blocks.0.pos_embedding"])
    vocab, d_model = state["shared.weight"].shape
    buckets, heads = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape
    layers = len({k.split(".")[2] for k in state if k.startswith("encoder.block.")})
    d_ff = state["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0]
    d_kv = state["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0] // heads
    config = UMT5Config(vocab_size=vocab, d_model=d_model, d_kv=d_kv, d_ff=d_ff, num_layers=layers, num_heads=heads,
                        relative_attention_num_buckets=buckets, feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    state["encoder.embed_tokens.weight"] = state["shared.weight"]
    _check_state(f"umT5 weights {files.t5}", {k: v.shape for k, v in model.state_dict().items()}, state)
    model.load_state_dict(state, assign=True)
    model.tie_weights()
    return TextEncoder(model.to(device), hf_tokenizer(str(files.tokenizer)), text_len=text_len)


def load_audio_features(files: CheckpointFiles, stream: StreamConfig, context_s: float, device: str = "cpu") -> AudioFeatures:
    """wav2vec2 from its local folder; all hidden states, normalised input as its preprocessor says."""
    from transformers import Wav2Vec2Model

    model = Wav2Vec2Model.from_pretrained(str(files.wav2vec), local_files_only=True).to(device)
    pre = json.loads((files.wav2vec / "preprocessor_config.json").read_text())
    return AudioFeatures(model, fps=25.0, frames_per_block=stream.video_frames_per_block, context_s=context_s,
                         normalize=bool(pre.get("do_normalize", True)))


def load_parts(checkpoint_dir: Path | str, lora_path: Path | str | None, dtype: str = "bfloat16", device: str = "cpu",
               pixel_size: tuple[int, int] = (704, 384), audio_context_s: float = 2.0) -> Parts:
    """Everything the generator needs, from local files only."""
    if pixel_size[0] % 16 or pixel_size[1] % 16:
        raise ValueError(f"pixel size {pixel_size} must be multiples of 16 (8× VAE, 2× patch)")
    files = find_checkpoint_files(checkpoint_dir, lora_path)
    dit = load_dit(files, dtype, device)
    stream = StreamConfig()
    return Parts(
        dit=dit,
        vae=load_vae(files, device),
        audio=load_audio_features(files, stream, audio_context_s, device),
        text=load_text_encoder(files, dit.cfg.text_len, device),
        stream=stream,
        pixel_size=pixel_size,
        label=f"checkpoint {files.root}" + (f" + {files.lora.name}" if files.lora else ""),
    )
