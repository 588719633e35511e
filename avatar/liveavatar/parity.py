"""Replay of the reference's golden vectors (../shared/fixtures/liveavatar-tiny) and the errors against them.

    python -m avatar.liveavatar.parity [--fixtures DIR]

prints one JSON line per tensor family with the largest absolute error over all its tensors. The DiT replay
builds the tiny model from the fixture's config, loads its weights by the reference's key names (strict), and
streams 12 blocks × 4 steps exactly as the fixture README's loop does (sink prefill, per-step rings that wrap
from block 4 on, the Adaptive-Attention-Sink re-prefill at block 4, Rolling RoPE fed the recorded d values),
capturing the intermediates that forward_single.safetensors holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from avatar.liveavatar.config import DiTConfig, StreamConfig
from avatar.liveavatar.dit import CausalS2VDiT
from avatar.liveavatar.stream import BlockStreamer, StepRecord, replay_relative_dist

DEFAULT_FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "liveavatar-tiny"


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file as a dict."""
    from safetensors.torch import load_file

    return load_file(path)


def fixture_model(dit_dir: Path) -> CausalS2VDiT:
    """The tiny DiT of the fixture, weights loaded strictly by the reference's key names."""
    constructor = json.loads((dit_dir / "config.json").read_text())["constructor"]
    model = CausalS2VDiT(DiTConfig.from_reference(constructor)).eval()
    model.load_state_dict(load_tensors(dit_dir / "weights.safetensors"), strict=True)
    return model


@dataclass
class GoldenRun:
    """What the replay produced."""

    records: dict[tuple[int, int], StepRecord] = field(default_factory=dict)
    finals: list[torch.Tensor] = field(default_factory=list)
    sinks: list[tuple[torch.Tensor, object]] = field(default_factory=list)  # (sink latent, CondCache) per prefill
    captures: dict[str, torch.Tensor] = field(default_factory=dict)
    streamer: BlockStreamer | None = None


class _Capture:
    """Forward hooks filing outputs under the fixture's call prefixes (sink_clip0, b00s0, ...)."""

    def __init__(self, model: CausalS2VDiT, store: dict[str, torch.Tensor]) -> None:
        self.prefix = ""
        self.store = store
        parts = {"time_embedding": model.time_embedding, "time_projection": model.time_projection,
                 "text_embedding": model.text_embedding, "patch_embedding": model.patch_embedding,
                 "cond_encoder": model.cond_encoder, "frame_packer.0.0": model.frame_packer, "head": model.head}
        for i, block in enumerate(model.blocks):
            parts.update({f"block{i}.out": block, f"block{i}.self_attn": block.self_attn.o,
                          f"block{i}.cross_attn": block.cross_attn.o, f"block{i}.ffn": block.ffn})
        for k in range(len(model.audio_injector.injector)):
            parts[f"audio_injector{k}.adain"] = model.audio_injector.injector_adain_layers[k]
            parts[f"audio_injector{k}.cross_attn"] = model.audio_injector.injector[k].o
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in parts.items()]
        self.handles.append(model.casual_audio_encoder.register_forward_hook(self._audio_hook))

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            self.store.setdefault(f"{self.prefix}.{name}", output.detach().clone())  # first call under a prefix
        return hook

    def _audio_hook(self, _module, _inputs, output):
        self.store.setdefault(f"{self.prefix}.audio_encoder.0", output[0].detach().clone())
        self.store.setdefault(f"{self.prefix}.audio_encoder.1", output[1].detach().clone())


def replay_dit(dit_dir: Path) -> GoldenRun:
    """Stream the fixture's 12 blocks; intermediates are captured per call."""
    io = load_tensors(dit_dir / "io.safetensors")
    model = fixture_model(dit_dir)
    run = GoldenRun()
    capture = _Capture(model, run.captures)
    calls = defaultdict(int)
    prefill, forward_block, encode_audio = model.prefill, model.forward_block, model.encode_audio

    def traced_prefill(*args, **kwargs):
        capture.prefix = f"sink_clip{calls['prefill']}"
        calls["prefill"] += 1
        cond = prefill(*args, **kwargs)
        run.sinks.append((args[0].clone(), cond))
        return cond

    def traced_forward_block(*args, **kwargs):
        n = calls["stream"]
        capture.prefix = f"b{n // 4:02d}s{n % 4}"
        calls["stream"] += 1
        return forward_block(*args, **kwargs)

    def traced_encode_audio(*args, **kwargs):
        capture.prefix = f"audio{calls['audio']:02d}"  # once per block here; the reference recomputes it per call
        calls["audio"] += 1
        return encode_audio(*args, **kwargs)

    model.prefill, model.forward_block, model.encode_audio = traced_prefill, traced_forward_block, traced_encode_audio
    capture.prefix = "prompt"  # the text embedding runs once per prompt here, not once per call
    text = model.encode_text(io["inputs.text_context"])
    run.streamer = BlockStreamer(
        model, StreamConfig(), text, io["inputs.ref_latent"], io["inputs.motion_latents"],
        replay_relative_dist(io["rolling_rope.relative_dist"].flatten().tolist()),
        noise=lambda b: io[f"block{b:02d}.noise"], on_step=lambda r: run.records.__setitem__((r.block, r.step), r))
    audio = io["inputs.audio_features"]
    run.finals = [run.streamer.next_block(audio[..., 12 * b:12 * b + 12]) for b in range(12)]
    for handle in capture.handles:
        handle.remove()
    return run


def captured_for(run: GoldenRun, name: str) -> torch.Tensor | None:
    """The replay's tensor for a forward_single name (text and audio tokens are shared across calls here)."""
    prefix, rest = name.split(".", 1)
    if rest == "text_embedding":
        return run.captures.get("prompt.text_embedding")
    if rest.startswith("audio_encoder.") and prefix.startswith("b"):
        return run.captures.get(f"audio{prefix[1:3]}.{rest}")
    if rest == "model_out" and prefix.startswith("b"):
        return run.records[(int(prefix[1:3]), int(prefix[4]))].model_out
    return run.captures.get(name)


def dit_errors(dit_dir: Path, run: GoldenRun) -> dict[str, float]:
    """Largest absolute error per tensor family."""
    io = load_tensors(dit_dir / "io.safetensors")
    single = load_tensors(dit_dir / "forward_single.safetensors")
    errs: dict[str, float] = defaultdict(float)

    def note(family: str, a: torch.Tensor, b: torch.Tensor) -> None:
        errs[family] = max(errs[family], (a.float() - b.float()).abs().max().item())

    for (b, i), rec in run.records.items():
        note("model_out", rec.model_out, io[f"block{b:02d}.step{i}.model_out"])
        note("latent_out", rec.latent_out, io[f"block{b:02d}.step{i}.latent_out"])
    for b, final in enumerate(run.finals):
        note("final", final, io[f"block{b:02d}.final"])
    for clip, (latent, cond) in enumerate(run.sinks):
        for layer in range(len(cond.k)):
            note("prefill_cond_k", cond.k[layer], io[f"prefill.clip{clip}.cond_k.layer{layer}"])
            note("prefill_cond_v", cond.v[layer], io[f"prefill.clip{clip}.cond_v.layer{layer}"])
    note("aas_ref_latent", run.sinks[1][0], io["aas.ref_latent"])
    for name, ref in single.items():
        if ".meta." in name or ".rope." in name or name.endswith("frame_packer.1.0"):
            continue
        got = captured_for(run, name)
        if got is not None:
            note("single." + name.split(".", 1)[1].split(".")[0].rstrip("0123456789"), got, ref)
    return dict(errs)


def vae_errors(vae_dir: Path) -> dict[str, float]:
    """Largest absolute error of diffusers' AutoencoderKLWan (reference weights) on the VAE fixtures."""
    from avatar.liveavatar.vae import VAEConfig, WanVAE, reference_to_diffusers

    cfg_json = json.loads((vae_dir / "config.json").read_text())
    k = cfg_json["constructor"]
    cfg = VAEConfig(dim=k["dim"], z_dim=k["z_dim"], dim_mult=tuple(k["dim_mult"]), num_res_blocks=k["num_res_blocks"],
                    temperal_downsample=tuple(k["temperal_downsample"]), latent_mean=tuple(cfg_json["latent_mean"]),
                    latent_std=tuple(cfg_json["latent_std"]))
    vae = cfg.build()
    vae.load_state_dict(reference_to_diffusers(load_tensors(vae_dir / "decoder_weights.safetensors"), vae), strict=False)
    wan = WanVAE(vae, cfg)
    io = load_tensors(vae_dir / "io.safetensors")
    z = io["latent"]
    errs = {"decode_oneshot": (wan.decode_oneshot(z) - io["decode_oneshot"]).abs().max().item()}
    for name, chunks in (("streamA", cfg_json["stream_chunks_A"]), ("streamB", cfg_json["stream_chunks_B"])):
        decoder, start, worst = wan.streaming_decoder(), 0, 0.0
        for i, n in enumerate(chunks):
            worst = max(worst, (decoder.decode(z[:, :, start:start + n]) - io[f"{name}.call{i}"]).abs().max().item())
            start += n
        errs[name] = worst
    return errs


def main(argv: list[str] | None = None) -> int:
    """Print the parity errors as JSON lines."""
    parser = argparse.ArgumentParser(prog="python -m avatar.liveavatar.parity", description="errors against the golden vectors")
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES, help=f"fixture folder (default {DEFAULT_FIXTURES})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not (args.fixtures / "dit").is_dir():
        print(f"no fixtures at {args.fixtures}", file=sys.stderr)
        return 2
    run = replay_dit(args.fixtures / "dit")
    for family, err in sorted(dit_errors(args.fixtures / "dit", run).items()):
        print(json.dumps({"name": f"dit_parity.{family}", "value": err, "unit": "max abs error"}))
    for family, err in sorted(vae_errors(args.fixtures / "vae").items()):
        print(json.dumps({"name": f"vae_parity.{family}", "value": err, "unit": "max abs error"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
