"""Replay of the reference's golden vectors (../shared/fixtures/liveavatar-tiny) and the errors against them.

    python -m liveavatar.testing.parity [--fixtures DIR]

prints one JSON line per tensor family with the largest absolute error over all its tensors. The DiT replay
reads every size from the fixture's config.json (`FixtureConfig`: the model from `constructor`, the latent grid,
block, clip, ring, cond and text lengths from `derived`, the block count, steps, scheduler and sink swap from
`run`), builds the model, loads its weights by the reference's key names (strict), and streams every recorded
block exactly as the fixture README's loop does (sink prefill, per-step rings that wrap, the Adaptive-Attention-
Sink re-prefill at the start of clip 1, Rolling RoPE fed the recorded d values), capturing the intermediates that
forward_single.safetensors holds. `write_fixture` writes a fixture of the same layout for another configuration
(from this implementation: a check that the replay depends on nothing but the files).

The golden vectors were computed with AVX2 kernels. On a CPU with AVX-512, torch and oneDNN pick wider kernels whose
float sums round differently (the VAE's convolutions then differ by about 3e-6), so bit-for-bit checks run with the
reference's kernels (`REFERENCE_KERNELS`, e.g. `vae_errors_with_reference_kernels`); set them to compare by hand:
`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m liveavatar.testing.parity`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from liveavatar.avatar.liveavatar.config import DiTConfig, StreamConfig
from liveavatar.avatar.liveavatar.dit import CausalS2VDiT
from liveavatar.avatar.liveavatar.stream import BlockStreamer, StepRecord, replay_relative_dist

FIXTURES_ENV = "LIVEAVATAR_FIXTURES"
REFERENCE_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
"""Environment that makes torch (its own kernels) and oneDNN (convolutions) use the AVX2 code the golden vectors were
computed with; both are read once per process, before the first kernel runs."""
_FIXTURE_PATH = Path("shared") / "fixtures" / "liveavatar-tiny"


def default_fixtures() -> Path:
    """$LIVEAVATAR_FIXTURES, else the first `shared/fixtures/liveavatar-tiny` beside the repository or above it.

    The repository's checkout sits next to `shared/` (../shared from the repository root); a worktree one level
    deeper still finds it. When none exists, the path beside the repository is returned (callers report it).
    """
    if os.environ.get(FIXTURES_ENV):
        return Path(os.environ[FIXTURES_ENV])
    root = Path(__file__).resolve().parent.parent
    for folder in root.parents:
        if (folder / _FIXTURE_PATH).is_dir():
            return folder / _FIXTURE_PATH
    return root.parent / _FIXTURE_PATH


DEFAULT_FIXTURES = default_fixtures()


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file as a dict."""
    from safetensors.torch import load_file

    return load_file(path)


class FixtureError(ValueError):
    """A fixture's config.json lacks a size or contradicts itself; the message names the key."""


def _get(section: dict, where: str, key: str) -> Any:
    if key not in section:
        raise FixtureError(f"config.json: {where}.{key} is missing")
    return section[key]


@dataclass(frozen=True)
class FixtureConfig:
    """Every size of a DiT fixture, read from its config.json (`constructor`, `derived` and `run` sections)."""

    dit: DiTConfig
    stream: StreamConfig
    num_blocks: int
    num_clips: int
    latent_hw: tuple[int, int]
    tokens_per_frame: int  # tokens per latent frame
    ring_tokens: int
    cond_len: int
    text_tokens: int
    aas: bool
    relative_dist: list[list[int]]  # [block][step]
    current_start: list[int]  # in tokens, per block
    captured: dict[str, str]  # forward_single prefix of each captured call, e.g. "block05.step2" -> "b05s2"

    @property
    def video_frames_per_block(self) -> int:
        """Video frames (= wav2vec2 feature frames) per block."""
        return self.stream.video_frames_per_block

    @property
    def noisy_tokens_per_block(self) -> int:
        """Query tokens of one block."""
        return self.stream.frames_per_block * self.tokens_per_frame

    @property
    def steps(self) -> int:
        """Denoising steps per block."""
        return self.stream.num_steps

    @classmethod
    def read(cls, dit_dir: Path) -> "FixtureConfig":
        """Parse and cross-check `dit_dir/config.json` (raises FixtureError naming the key that is wrong)."""
        config = json.loads((Path(dit_dir) / "config.json").read_text())
        k, d, r = (_get(config, "config", name) for name in ("constructor", "derived", "run"))
        scheduler = _get(r, "run", "scheduler")
        dit = replace(DiTConfig.from_reference(k), audio_layers=_get(d, "derived", "audio_wav2vec_layers"),
                      ref_rope_t=_get(d, "derived", "ref_rope_t"), rope_theta=float(_get(d, "derived", "rope_theta")),
                      framepack_buckets=tuple(_get(d, "derived", "framepack_buckets_latent_frames")))
        frames_per_block = _get(d, "derived", "latent_frames_per_block")
        blocks_per_clip = _get(d, "derived", "blocks_per_clip")
        stream = StreamConfig(
            frames_per_block=frames_per_block, ring_frames=_get(d, "derived", "kv_ring_latent_frames"),
            blocks_per_clip=blocks_per_clip, motion_frames=_get(r, "run", "motion_frames"), num_steps=_get(r, "run", "steps"),
            shift=float(_get(scheduler, "run.scheduler", "shift")),
            num_train_timesteps=_get(scheduler, "run.scheduler", "num_train_timesteps"),
            sink_refresh_block=blocks_per_clip if _get(r, "run", "aas") else None,
            video_frames_per_latent=_get(d, "derived", "video_frames_per_block") // frames_per_block)
        latent_hw = (_get(d, "derived", "latent_h"), _get(d, "derived", "latent_w"))
        fx = cls(dit=dit, stream=stream, num_blocks=_get(r, "run", "num_blocks"), num_clips=_get(r, "run", "num_clips"),
                 latent_hw=latent_hw, tokens_per_frame=_get(d, "derived", "tokens_per_latent_frame"),
                 ring_tokens=_get(d, "derived", "kv_ring_tokens"), cond_len=_get(d, "derived", "cond_len"),
                 text_tokens=_get(r, "run", "text_tokens"), aas=bool(r["aas"]),
                 relative_dist=[list(map(int, row)) for row in _get(r, "run", "relative_dist_per_block_step")],
                 current_start=list(map(int, _get(r, "run", "current_start_tokens_per_block"))),
                 captured=dict(_get(r, "run", "captured_calls_in_forward_single")))
        fx._check(d, r, scheduler)
        return fx

    def _check(self, d: dict, r: dict, scheduler: dict) -> None:
        """The sections must agree with each other and with what the model derives from them."""
        expected = derived_sizes(self.dit, self.stream, self.latent_hw)
        wrong = [f"derived.{key} = {d[key]!r}, expected {value!r}" for key, value in expected.items()
                 if key in d and d[key] != value]
        checks = {
            "run.num_blocks": (self.num_blocks, self.num_clips * self.stream.blocks_per_clip),
            "run.motion_latent_frames": (r.get("motion_latent_frames"), self.stream.motion_latent_frames),
            "run.scheduler.num_inference_steps": (scheduler.get("num_inference_steps"), self.steps),
            "run.relative_dist_per_block_step": ([len(row) for row in self.relative_dist], [self.steps] * self.num_blocks),
            "run.current_start_tokens_per_block": (self.current_start,
                                                   [b * self.noisy_tokens_per_block for b in range(self.num_blocks)]),
        }
        wrong += [f"{key} = {got!r}, expected {want!r}" for key, (got, want) in checks.items() if got != want]
        if wrong:
            raise FixtureError("config.json contradicts itself:\n  " + "\n  ".join(wrong))


def derived_sizes(dit: DiTConfig, stream: StreamConfig, latent_hw: tuple[int, int]) -> dict[str, Any]:
    """The `derived` section's sizes as this implementation computes them from the model, stream and latent grid."""
    lat_h, lat_w = latent_hw
    gh, gw = lat_h // dit.patch_size[1], lat_w // dit.patch_size[2]
    tokens = gh * gw
    post, mid, far = dit.framepack_buckets
    packed = tokens * post + (gh // 2) * (gw // 2) * mid // 2 + (gh // 4) * (gw // 4) * far // 4
    return {
        "head_dim": dit.head_dim, "latent_h": lat_h, "latent_w": lat_w, "patch_grid_h": gh, "patch_grid_w": gw,
        "tokens_per_latent_frame": tokens, "latent_frames_per_block": stream.frames_per_block,
        "video_frames_per_block": stream.video_frames_per_block, "blocks_per_clip": stream.blocks_per_clip,
        "latent_frames_per_clip": stream.frames_per_block * stream.blocks_per_clip,
        "video_frames_per_clip": stream.video_frames_per_block * stream.blocks_per_clip,
        "kv_ring_latent_frames": stream.ring_frames, "kv_ring_tokens": stream.ring_frames * tokens,
        "noisy_tokens_per_block": stream.frames_per_block * tokens, "cond_len": tokens + packed,
        "ref_rope_t": dit.ref_rope_t, "motion_frames": stream.motion_frames,
        "motion_latent_frames": stream.motion_latent_frames, "audio_wav2vec_layers": dit.audio_layers,
        "audio_tokens_per_latent_frame": dit.num_audio_token + 1, "audio_prepend_copies": stream.motion_frames,
        "audio_keep_from_latent_frame": stream.motion_latent_frames, "text_len_padded": dit.text_len,
    }


def fixture_model(dit_dir: Path, config: FixtureConfig | None = None) -> CausalS2VDiT:
    """The DiT of the fixture, weights loaded strictly by the reference's key names."""
    config = config or FixtureConfig.read(dit_dir)
    model = CausalS2VDiT(config.dit).eval()
    model.load_state_dict(load_tensors(dit_dir / "weights.safetensors"), strict=True)
    return model


@dataclass
class GoldenRun:
    """What the replay produced."""

    config: FixtureConfig | None = None
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
    """Stream every block the fixture recorded; intermediates are captured per call."""
    config = FixtureConfig.read(dit_dir)
    io = load_tensors(dit_dir / "io.safetensors")
    return run_dit(fixture_model(dit_dir, config), config, io)


def run_dit(model: CausalS2VDiT, config: FixtureConfig, io: dict[str, torch.Tensor]) -> GoldenRun:
    """The fixture README's loop over `config.num_blocks` blocks on the inputs in `io`, traced call by call."""
    run = GoldenRun(config=config)
    capture = _Capture(model, run.captures)
    calls = defaultdict(int)
    steps = config.steps
    prefill, forward_block, encode_audio = model.prefill, model.forward_block, model.encode_audio

    def traced_prefill(*args, **kwargs):
        capture.prefix = f"sink_clip{calls['prefill']}"
        calls["prefill"] += 1
        cond = prefill(*args, **kwargs)
        run.sinks.append((args[0].clone(), cond))
        return cond

    def traced_forward_block(*args, **kwargs):
        n = calls["stream"]
        capture.prefix = f"b{n // steps:02d}s{n % steps}"
        calls["stream"] += 1
        return forward_block(*args, **kwargs)

    def traced_encode_audio(*args, **kwargs):
        capture.prefix = f"audio{calls['audio']:02d}"  # once per block here; the reference recomputes it per call
        calls["audio"] += 1
        return encode_audio(*args, **kwargs)

    model.prefill, model.forward_block, model.encode_audio = traced_prefill, traced_forward_block, traced_encode_audio
    try:
        capture.prefix = "prompt"  # the text embedding runs once per prompt here, not once per call
        text = model.encode_text(io["inputs.text_context"])
        run.streamer = BlockStreamer(
            model, config.stream, text, io["inputs.ref_latent"], io["inputs.motion_latents"],
            replay_relative_dist(io["rolling_rope.relative_dist"].flatten().tolist()),
            noise=lambda b: io[f"block{b:02d}.noise"], on_step=lambda r: run.records.__setitem__((r.block, r.step), r))
        audio, per_block = io["inputs.audio_features"], config.video_frames_per_block
        if audio.shape[-1] < config.num_blocks * per_block:
            raise FixtureError(f"inputs.audio_features holds {audio.shape[-1]} frames, {config.num_blocks} blocks need "
                               f"{config.num_blocks * per_block}")
        run.finals = [run.streamer.next_block(audio[..., per_block * b:per_block * (b + 1)]) for b in range(config.num_blocks)]
    finally:
        for handle in capture.handles:
            handle.remove()
        del model.prefill, model.forward_block, model.encode_audio
    return run


_STREAM_CALL = re.compile(r"^b(?P<block>\d+)s(?P<step>\d+)$")


def call_of(prefix: str) -> tuple[int, int] | None:
    """(block, step) of a streaming call's prefix ("b05s2"), None for the sink prefills."""
    match = _STREAM_CALL.match(prefix)
    return (int(match["block"]), int(match["step"])) if match else None


def captured_for(run: GoldenRun, name: str) -> torch.Tensor | None:
    """The replay's tensor for a forward_single name (text and audio tokens are shared across calls here)."""
    prefix, rest = name.split(".", 1)
    call = call_of(prefix)
    if rest == "text_embedding":
        return run.captures.get("prompt.text_embedding")
    if rest.startswith("audio_encoder.") and call is not None:
        return run.captures.get(f"audio{call[0]:02d}.{rest}")
    if rest == "model_out" and call is not None:
        return run.records[call].model_out
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
    from liveavatar.avatar.liveavatar.vae import VAEConfig, WanVAE, reference_to_diffusers

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


def vae_errors_with_reference_kernels(vae_dir: Path, timeout_s: float = 600.0) -> dict[str, float]:
    """`vae_errors` in a fresh Python process that runs the reference's kernels (`REFERENCE_KERNELS`)."""
    code = "import json, sys; from pathlib import Path; from liveavatar.testing.parity import vae_errors; print(json.dumps(vae_errors(Path(sys.argv[1]))))"
    done = subprocess.run([sys.executable, "-c", code, str(vae_dir)], env={**os.environ, **REFERENCE_KERNELS}, capture_output=True,
                          text=True, timeout=timeout_s)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the VAE parity run failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


_REFERENCE_FLAGS = {  # the reference constructor's settings LiveAvatar runs with (DiTConfig.from_reference checks them)
    "cross_attn_type": "t2v_cross_attn", "enable_adain": True, "adain_mode": "attn_norm", "zero_init": False,
    "zero_timestep": True, "enable_motioner": False, "add_last_motion": True, "enable_tsm": False,
    "trainable_token_pos_emb": False, "enable_framepack": True, "framepack_drop_mode": "padd", "model_type": "s2v",
    "window_size": [-1, -1], "qk_norm": True, "cross_attn_norm": True, "slide_motion_frames": False, "local_attn_size": -1,
}


def write_fixture(folder: Path, dit: DiTConfig, stream: StreamConfig, latent_hw: tuple[int, int], num_clips: int,
                  seed: int = 0, text_tokens: int = 5) -> Path:
    """A DiT fixture folder in the golden layout for another configuration, computed by this implementation.

    Random weights and inputs; the Adaptive Attention Sink on when `stream.sink_refresh_block` is set. Returns the
    `dit` folder. Its numbers prove nothing about the reference; the replay of it proves that every size comes
    from the files.
    """
    import random

    from safetensors.torch import save_file

    out = Path(folder) / "dit"
    out.mkdir(parents=True, exist_ok=True)
    blocks, steps = num_clips * stream.blocks_per_clip, stream.num_steps
    lat_h, lat_w = latent_hw
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CausalS2VDiT(dit).eval()
    draws = random.Random(seed)
    dists = [[draws.randint(*stream.relative_dist_range) for _ in range(steps)] for _ in range(blocks)]
    io = {
        "inputs.text_context": torch.randn(text_tokens, dit.text_dim, generator=gen),
        "inputs.ref_latent": torch.randn(1, dit.in_dim, 1, lat_h, lat_w, generator=gen),
        "inputs.motion_latents": torch.randn(1, dit.in_dim, stream.motion_latent_frames, lat_h, lat_w, generator=gen),
        "inputs.audio_features": torch.randn(1, dit.audio_layers, dit.audio_dim, stream.video_frames_per_block * blocks,
                                             generator=gen),
        "rolling_rope.relative_dist": torch.tensor(dists, dtype=torch.int64),
        **{f"block{b:02d}.noise": torch.randn(dit.in_dim, stream.frames_per_block, lat_h, lat_w, generator=gen)
           for b in range(blocks)},
    }
    tokens_per_block = stream.frames_per_block * (lat_h // dit.patch_size[1]) * (lat_w // dit.patch_size[2])
    captured = {"prefill.clip0.cache0": "sink_clip0", "block00.step0": "b00s0",
                f"block{blocks - 1:02d}.step{steps - 1}": f"b{blocks - 1:02d}s{steps - 1}"}
    constructor = {**_REFERENCE_FLAGS, "cond_dim": dit.cond_dim, "audio_dim": dit.audio_dim,
                   "num_audio_token": dit.num_audio_token, "audio_inject_layers": list(dit.audio_inject_layers),
                   "patch_size": list(dit.patch_size), "text_len": dit.text_len, "in_dim": dit.in_dim, "dim": dit.dim,
                   "ffn_dim": dit.ffn_dim, "freq_dim": dit.freq_dim, "text_dim": dit.text_dim, "out_dim": dit.out_dim,
                   "num_heads": dit.num_heads, "num_layers": dit.num_layers, "eps": dit.eps}
    derived = {**derived_sizes(dit, stream, latent_hw), "rope_theta": dit.rope_theta,
               "framepack_buckets_latent_frames": list(dit.framepack_buckets)}
    run_section = {
        "num_clips": num_clips, "num_blocks": blocks, "steps": steps, "aas": stream.sink_refresh_block is not None,
        "motion_frames": stream.motion_frames, "motion_latent_frames": stream.motion_latent_frames,
        "text_tokens": text_tokens, "dtype": "float32", "device": "cpu",
        "scheduler": {"class": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": stream.num_train_timesteps,
                      "shift": stream.shift, "num_inference_steps": steps},
        "relative_dist_per_block_step": dists, "current_start_tokens_per_block": [b * tokens_per_block for b in range(blocks)],
        "captured_calls_in_forward_single": captured, "generator": "liveavatar.testing.parity.write_fixture (not the reference)",
    }
    (out / "config.json").write_text(json.dumps({"constructor": constructor, "derived": derived, "run": run_section}, indent=1))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "weights.safetensors")
    config = FixtureConfig.read(out)
    run = run_dit(model, config, io)
    for (b, i), record in run.records.items():
        io[f"block{b:02d}.step{i}.model_out"] = record.model_out
        io[f"block{b:02d}.step{i}.latent_out"] = record.latent_out
    for b, final in enumerate(run.finals):
        io[f"block{b:02d}.final"] = final
    for clip, (latent, cond) in enumerate(run.sinks):
        for layer in range(len(cond.k)):
            io[f"prefill.clip{clip}.cond_k.layer{layer}"] = cond.k[layer]
            io[f"prefill.clip{clip}.cond_v.layer{layer}"] = cond.v[layer]
    if config.aas:
        io["aas.ref_latent"] = run.sinks[1][0]
    single = {}
    for prefix in captured.values():
        call = call_of(prefix)
        single.update({k: v for k, v in run.captures.items() if k.startswith(prefix + ".")})
        if call is not None:
            single[f"{prefix}.model_out"] = run.records[call].model_out
            for part in ("0", "1"):
                single[f"{prefix}.audio_encoder.{part}"] = run.captures[f"audio{call[0]:02d}.audio_encoder.{part}"]
            single[f"{prefix}.meta.relative_dist"] = torch.tensor(dists[call[0]][call[1]])
            single[f"{prefix}.meta.current_start"] = torch.tensor(call[0] * tokens_per_block)
    save_file({k: v.contiguous().clone() for k, v in io.items()}, out / "io.safetensors")
    save_file({k: v.contiguous().clone() for k, v in single.items()}, out / "forward_single.safetensors")
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the parity errors as JSON lines."""
    parser = argparse.ArgumentParser(prog="python -m liveavatar.testing.parity", description="errors against the golden vectors")
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
