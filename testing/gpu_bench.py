"""`liveavatar bench gpu`: the LiveAvatar generator at its real size on one GPU, in one run of a few minutes.

    liveavatar bench gpu [--device cuda] [--scale full] [--budget-s 420] [--repeats 5]
    liveavatar bench gpu --device cpu --scale small        (the same code path on reduced shapes, for CI)

One JSON object per line, every figure measured in this run (GPU time is scarce: nothing is downloaded, every
model is built from its configuration with random weights directly on the device, each part frees its memory
before the next, a part that fails prints its error and the run goes on, and parts that would start after
`--budget-s` are reported as skipped):

- gpu_conditions: the device, its memory, torch/CUDA versions, the date;
- gpu_tiny_fp32_vs_cpu / gpu_tiny_bf16_vs_cpu: the tiny TEST config streamed for 6 blocks (past the sink swap) on
  the device in fp32 (TF32 off) and in bf16, against the CPU fp32 result: max abs error of the clean latents
  and of the decoded video, next to the stated tolerance;
- gpu_dit_step (precision bf16, fp8 weight storage, then fp8_scaled = the reference's `--fp8`, weights and
  activations in e4m3 through torch._scaled_mm): the full-size DiT (Wan2.2-S2V-14B shape: 40 layers,
  dim 5120, the audio encoder and injectors, FramePack) timed for one denoising step of a 704×384 block (3
  latent frames = 3,168 query tokens) against a full KV ring (12 latent frames = 12,672 tokens) and the sink
  (2,640 tokens), plus the sink prefill and the DiT's audio encoder; peak memory;
- gpu_dit_step_profile: where one bf16 step's time goes (torch.profiler: the operators with the most device
  time, and their share);
- gpu_vae_decode: the real-size Wan2.1 VAE (base width 96), streaming decode of one block (3 latents -> 12
  frames of 704×384), plus the frame conversion to uint8;
- gpu_wav2vec2 / gpu_umt5: the real-size wav2vec2-large features of one block (with its audio context) and the
  umT5-XXL encoding of a 512-token prompt (once per prompt);
- gpu_schedule: frames/s, time to first frame and speech-onset latency that the schedule model predicts from
  these measured costs for 1, 2, 4 GPUs and the reference's 5-GPU layout (4 DiT + 1 decode), bf16 and fp8;
- gpu_summary: wall time, budget, parts that failed or were skipped.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

FIGURES = ("gpu_conditions", "gpu_tiny_fp32_vs_cpu", "gpu_tiny_bf16_vs_cpu", "gpu_dit_step", "gpu_dit_step_profile",
           "gpu_vae_decode", "gpu_wav2vec2", "gpu_umt5", "gpu_schedule", "gpu_summary")
PRECISIONS = ("bfloat16", "fp8", "fp8_scaled")  # the DiT step is timed in each; the first one is also profiled
PROFILE_TOP = 12  # operators listed in gpu_dit_step_profile
TINY_BLOCKS = 6
FP32_TOLERANCE = 1e-3  # max abs error, device fp32 vs CPU fp32 (summation order, SDPA kernels; TF32 off)
BF16_TOLERANCE = 0.02  # max abs error over max |CPU value|, device bf16 vs CPU fp32 (bf16 weights and activations)


@dataclass(frozen=True)
class Scale:
    """The shapes one run uses: `full` is the real model, `small` the same code path at toy size (CI)."""

    name: str
    dit: object  # DiTConfig
    pixels: tuple[int, int]  # (height, width) of the generated video
    vae_dim: int
    wav2vec: dict
    umt5: dict
    prompt_tokens: int


def _scales() -> dict[str, Scale]:
    from liveavatar.avatar.liveavatar.config import DiTConfig

    wav2vec_large = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                         conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                         num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, feat_extract_norm="layer",
                         do_stable_layer_norm=True, vocab_size=33)
    umt5_xxl = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                    relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    small_dit = DiTConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=4, text_dim=64, audio_dim=32,
                          audio_inject_layers=(0, 2))
    return {
        "full": Scale("full", DiTConfig(), (704, 384), 96, wav2vec_large, umt5_xxl, 512),
        "small": Scale("small", small_dit, (64, 64), 4,
                       dict(wav2vec_large, hidden_size=32, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2),
                       dict(umt5_xxl, vocab_size=300, d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2), 16),
    }


class _Run:
    """Output, deadline and bookkeeping of one benchmark run."""

    def __init__(self, out: IO[str], device: str, budget_s: float) -> None:
        self.out, self.device, self.budget_s = out, device, budget_s
        self.t0 = time.perf_counter()
        self.failed: list[str] = []
        self.skipped: list[str] = []
        self.costs: dict[str, dict] = {}

    def emit(self, name: str, value: float | None, unit: str, **context: object) -> None:
        self.out.write(json.dumps({"name": name, "value": None if value is None else round(value, 6), "unit": unit,
                                   **context}) + "\n")
        self.out.flush()

    def part(self, name: str, fn: Callable[[], None]) -> None:
        """Run one part unless the budget is spent; its failure is printed, not raised."""
        elapsed = time.perf_counter() - self.t0
        if elapsed > self.budget_s:
            self.skipped.append(name)
            self.emit(name, None, "skipped", reason=f"time budget of {self.budget_s:g} s spent ({elapsed:.0f} s)")
            return
        try:
            self.guarded(name, fn)
        finally:
            _free(self.device)

    def guarded(self, name: str, fn: Callable[[], None]) -> None:
        """Run `fn`; a failure is printed as `name`'s error line (traceback on stderr), not raised."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failed part must not waste the rest of the GPU time
            self.failed.append(name)
            self.emit(name, None, "error", error=f"{type(exc).__name__}: {exc}"[:2000])
            traceback.print_exc(file=sys.stderr)  # where it broke, for the next (scarce) GPU run


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    import torch

    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return None


def _timed(fn: Callable[[], object], device: str, repeats: int, warm: int = 2) -> list[float]:
    """Wall seconds of `repeats` calls after `warm` untimed ones (synchronised around each call)."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _stats(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 6), "min_s": round(min(times), 6),
            "times_s": [round(t, 6) for t in times]}


# ---- conditions -----------------------------------------------------------------------------------------
def conditions(run: _Run, scale: Scale) -> None:
    import torch

    context: dict = {"torch": torch.__version__, "python": platform.python_version(), "scale": scale.name,
                     "date": datetime.date.today().isoformat()}
    if run.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(run.device)
        context |= {"gpu": props.name, "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                    "total_gib": round(props.total_memory / 2**30, 2), "count": torch.cuda.device_count()}
        run.emit("gpu_conditions", props.total_memory / 2**30, "GiB", **context)
    else:
        run.emit("gpu_conditions", 0.0, "GiB", gpu=None, note="CPU run: the same code path on reduced shapes", **context)


# ---- tiny config: device vs CPU ---------------------------------------------------------------------------
def _tiny_stream(parts, device: str, precision: str, inputs: dict):
    """Clean latents [blocks, C, F, H, W] of TINY_BLOCKS blocks of the tiny model on `device` at `precision` (on the CPU)."""
    import copy

    import torch

    from liveavatar.avatar.liveavatar.precision import apply_precision
    from liveavatar.avatar.liveavatar.stream import BlockStreamer, fixed_relative_dist

    dit = apply_precision(copy.deepcopy(parts.dit), precision).to(device)
    with torch.no_grad():
        text = dit.encode_text(inputs["text"].to(device))
        streamer = BlockStreamer(dit, parts.stream, text, inputs["ref"].to(device), inputs["motion"].to(device),
                                 fixed_relative_dist(10), lambda b: inputs["noise"][b])
        latents = [streamer.next_block(inputs["features"][b].to(device)).float().cpu() for b in range(TINY_BLOCKS)]
    return torch.stack(latents)


def _tiny_decode(parts, device: str, latents, inputs: dict):
    """The tiny VAE's streaming decode on `device` of latents [blocks, C, F, H, W] -> video [1, 3, T, H, W] (on the CPU)."""
    import copy

    import torch

    from liveavatar.avatar.liveavatar.vae import WanVAE

    vae = WanVAE(copy.deepcopy(parts.vae.vae).to(device), parts.vae.cfg)
    with torch.no_grad():
        decoder = vae.streaming_decoder()
        decoder.decode(inputs["motion"][:, :, :7].to(device))
        return torch.cat([decoder.decode(latent[None].to(device)).cpu() for latent in latents], dim=2)


def tiny_vs_cpu(run: _Run) -> None:
    import torch

    from liveavatar.avatar.liveavatar.tiny import build_tiny_parts

    parts = build_tiny_parts(seed=0)
    cfg, dc = parts.stream, parts.dit.cfg
    gen = torch.Generator().manual_seed(3)
    lat_h, lat_w = parts.pixel_size[0] // 8, parts.pixel_size[1] // 8
    inputs = {
        "text": torch.randn(7, dc.text_dim, generator=gen),
        "ref": torch.randn(1, dc.in_dim, 1, lat_h, lat_w, generator=gen),
        "motion": torch.randn(1, dc.in_dim, cfg.motion_latent_frames, lat_h, lat_w, generator=gen),
        "noise": [torch.randn(dc.in_dim, cfg.frames_per_block, lat_h, lat_w, generator=gen) for _ in range(TINY_BLOCKS)],
        "features": [torch.randn(1, dc.audio_layers, dc.audio_dim, cfg.video_frames_per_block, generator=gen)
                     for _ in range(TINY_BLOCKS)],
    }
    ref_latents = _tiny_stream(parts, "cpu", "float32", inputs)
    ref_video = _tiny_decode(parts, "cpu", ref_latents, inputs)
    scale = ref_latents.abs().max().item()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        t0 = time.perf_counter()
        latents = _tiny_stream(parts, run.device, "float32", inputs)
        video = _tiny_decode(parts, run.device, latents, inputs)
        wall = time.perf_counter() - t0
        vae_alone = _tiny_decode(parts, run.device, ref_latents, inputs)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    err = (latents - ref_latents).abs().max().item()
    # the tiny VAE's random weights magnify its input's differences (1e-6 of latent noise -> ~5e-3 of video on the
    # CPU), so the VAE is also compared alone, decoding the CPU's own latents
    run.emit("gpu_tiny_fp32_vs_cpu", err, "max abs error (latents)", tolerance=FP32_TOLERANCE, within=err <= FP32_TOLERANCE,
             video_max_abs_error=round((video - ref_video).abs().max().item(), 6),
             vae_alone_max_abs_error=round((vae_alone - ref_video).abs().max().item(), 6),
             max_abs_video=round(ref_video.abs().max().item(), 4), max_abs_latent=round(scale, 4),
             blocks=TINY_BLOCKS, wall_s=round(wall, 3), finite=bool(torch.isfinite(latents).all()))
    latents = _tiny_stream(parts, run.device, "bfloat16", inputs)
    err = (latents - ref_latents).abs().max().item()
    run.emit("gpu_tiny_bf16_vs_cpu", err, "max abs error (latents)", relative=round(err / scale, 5),
             tolerance_relative=BF16_TOLERANCE, within=err / scale <= BF16_TOLERANCE, max_abs_latent=round(scale, 4),
             blocks=TINY_BLOCKS, finite=bool(torch.isfinite(latents).all()))


# ---- full-size DiT ---------------------------------------------------------------------------------------
def _poison_(model) -> None:
    """Fill every tensor with NaN, so that one an initialiser missed is caught (to_empty leaves garbage)."""
    import torch

    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.fill_(float("nan"))


def _check_initialised(model, what: str) -> None:
    import torch

    bad = [name for name, t in [*model.named_parameters(), *model.named_buffers()]
           if t.is_floating_point() and not bool(torch.isfinite(t.float() if t.element_size() == 1 else t).all())]
    if bad:
        raise RuntimeError(f"{what}: {len(bad)} tensors were left uninitialised, e.g. {bad[:5]}")


def init_random_(model, seed: int = 0) -> None:
    """Random weights in place, on whatever device the (empty) tensors live: layers' own initialisers, unit norms."""
    import torch

    from liveavatar.avatar.liveavatar.precision import FP8, FP8_MAX, Fp8Linear

    torch.manual_seed(seed)
    _poison_(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Fp8Linear):
                bound = module.in_features ** -0.5
                weight = torch.empty(module.out_features, module.in_features, device=module.weight_fp8.device,
                                     dtype=torch.bfloat16).uniform_(-bound, bound)
                module.scale.fill_(bound / FP8_MAX)
                module.weight_fp8.copy_((weight.float() / module.scale).to(FP8))
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound)
            elif hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for name, p in model.named_parameters():
            if name.endswith(("norm_q.weight", "norm_k.weight")):
                p.fill_(1.0)
            elif name.endswith("modulation"):
                p.normal_(0.0, p.shape[-1] ** -0.5)
            elif name == "casual_audio_encoder.weights":
                p.fill_(0.01)
            elif name.endswith("padding_tokens"):
                p.zero_()
    _check_initialised(model, "DiT")


def build_dit(scale: Scale, precision: str, device: str):
    """The DiT of `scale` with random weights at `precision`, allocated directly on `device` (no CPU copy)."""
    import torch

    from liveavatar.avatar.liveavatar.dit import CausalS2VDiT
    from liveavatar.avatar.liveavatar.precision import apply_precision

    with torch.device("meta"):
        model = apply_precision(CausalS2VDiT(scale.dit), precision)
    model.to_empty(device=device)
    init_random_(model)
    return model.eval().requires_grad_(False)


def dit_step(run: _Run, scale: Scale, precision: str, repeats: int) -> None:
    import torch

    from liveavatar.avatar.liveavatar.config import StreamConfig
    from liveavatar.avatar.liveavatar.schedule import FlowMatchSchedule
    from liveavatar.avatar.liveavatar.stream import denoise_step, step_ring

    device = run.device
    _reset_peak(device)
    t0 = time.perf_counter()
    model = build_dit(scale, precision, device)
    _sync(device)
    build_s = time.perf_counter() - t0
    weight_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    cfg, dc = StreamConfig(), model.cfg
    lat_h, lat_w = scale.pixels[0] // 8, scale.pixels[1] // 8
    gen = torch.Generator(device=device).manual_seed(1)
    ref = torch.randn(1, dc.in_dim, 1, lat_h, lat_w, device=device, generator=gen)
    motion = torch.randn(1, dc.in_dim, cfg.motion_latent_frames, lat_h, lat_w, device=device, generator=gen)
    features = torch.randn(1, dc.audio_layers, dc.audio_dim, cfg.video_frames_per_block, device=device, generator=gen)
    x = torch.randn(dc.in_dim, cfg.frames_per_block, lat_h, lat_w, device=device, generator=gen)
    schedule = FlowMatchSchedule.build(cfg.num_steps, cfg.shift, cfg.num_train_timesteps)
    with torch.no_grad():
        text = model.encode_text(torch.randn(scale.prompt_tokens, dc.text_dim, device=device, generator=gen))
        prefill_s = _timed(lambda: model.prefill(ref, motion, text, cfg.frames_per_block), device, 1, warm=1)[0]
        cond = model.prefill(ref, motion, text, cfg.frames_per_block)
        audio_s = _timed(lambda: model.encode_audio(features, cfg.motion_frames, cfg.motion_latent_frames), device, repeats)
        audio = model.encode_audio(features, cfg.motion_frames, cfg.motion_latent_frames)
        ring = step_ring(model, cfg, ref)
        start = cfg.ring_frames  # the ring has wrapped: attention sees all of it
        out: list = []

        def step() -> None:
            out[:] = denoise_step(model, schedule, 1, x, text, audio, ring, cond, start, 10)

        times = _timed(step, device, repeats)
    tpf = (lat_h // dc.patch_size[1]) * (lat_w // dc.patch_size[2])
    finite = bool(torch.isfinite(out[1]).all())
    run.costs[precision] = {"forward_s": statistics.median(times), "audio_encoder_s": statistics.median(audio_s),
                            "weight_bytes": weight_bytes, "ring_bytes": ring.nbytes(), "peak_gib": _peak_gib(device)}
    run.emit("gpu_dit_step", statistics.median(times), "s per denoising step", precision=precision, **_stats(times),
             query_tokens=cfg.frames_per_block * tpf, ring_tokens=ring.capacity, sink_tokens=cond.length,
             text_tokens=dc.text_len, pixels=list(scale.pixels), layers=dc.num_layers, dim=dc.dim,
             params=sum(p.numel() for p in model.parameters()) + sum(
                 b.numel() for n, b in model.named_buffers() if n.endswith("weight_fp8")),
             weight_gib=round(weight_bytes / 2**30, 3), ring_gib=round(ring.nbytes() / 2**30, 3),
             prefill_s=round(prefill_s, 5), audio_encoder_s=round(statistics.median(audio_s), 6),
             build_s=round(build_s, 2), peak_gib=_peak_gib(device), finite=finite,
             weights="random (TEST: timing only)")
    if precision == PRECISIONS[0]:
        with torch.no_grad():
            run.guarded("gpu_dit_step_profile", lambda: profile_step(run, step, precision))


def profile_step(run: _Run, step: Callable[[], None], precision: str) -> None:
    """One step under torch.profiler: the operators that take the most device (or CPU) time, with their share."""
    from torch.profiler import ProfilerActivity, profile

    cuda = run.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step()
        _sync(run.device)
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
    total_us = sum(getattr(e, attr) for e in events)
    top = sorted(events, key=lambda e: getattr(e, attr), reverse=True)[:PROFILE_TOP]
    run.emit("gpu_dit_step_profile", total_us / 1e6, "s of " + ("device" if cuda else "CPU") + " time in one step",
             precision=precision, top=[{"op": e.key[:120], "ms": round(getattr(e, attr) / 1e3, 3), "calls": e.count,
                                        "share": round(getattr(e, attr) / total_us, 4)} for e in top])


# ---- VAE, wav2vec2, umT5 ------------------------------------------------------------------------------
def vae_decode(run: _Run, scale: Scale, repeats: int) -> None:
    import torch

    from liveavatar.avatar.liveavatar.pipeline import VAE_WARMUP_LATENTS, to_uint8_frames
    from liveavatar.avatar.liveavatar.vae import VAEConfig, WanVAE

    device = run.device
    _reset_peak(device)
    cfg = VAEConfig(dim=scale.vae_dim)
    with torch.device("meta"):
        vae = cfg.build()
    vae.to_empty(device=device)
    torch.manual_seed(0)
    _poison_(vae)
    with torch.no_grad():
        for module in vae.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
            elif not bool(torch.isfinite(p).all()):
                p.zero_()  # the RMS norms' biases
    _check_initialised(vae, "VAE")
    wan = WanVAE(vae, cfg)
    lat_h, lat_w = scale.pixels[0] // 8, scale.pixels[1] // 8
    decoder = wan.streaming_decoder()
    z = torch.randn(1, cfg.z_dim, 3, lat_h, lat_w, device=device)
    video: list = []
    with torch.no_grad():
        decoder.decode(torch.randn(1, cfg.z_dim, VAE_WARMUP_LATENTS, lat_h, lat_w, device=device))
        times = _timed(lambda: video.__setitem__(slice(None), [decoder.decode(z)]), device, repeats)
        frames_s = _timed(lambda: to_uint8_frames(video[0]), device, repeats)
    run.costs["vae"] = {"decode_s": statistics.median(times), "frames_s": statistics.median(frames_s)}
    run.emit("gpu_vae_decode", statistics.median(times), "s per block (3 latents -> 12 frames)", **_stats(times),
             frames_s=round(statistics.median(frames_s), 6), frames=int(video[0].shape[2]),
             pixels=list(video[0].shape[-2:]), base_dim=cfg.dim, dtype="float32", peak_gib=_peak_gib(device),
             weights="random (TEST: timing only)")


def wav2vec2(run: _Run, scale: Scale, repeats: int) -> None:
    import numpy as np
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from liveavatar.avatar.liveavatar.features import AudioFeatures

    device = run.device
    _reset_peak(device)
    torch.manual_seed(0)
    model = Wav2Vec2Model(Wav2Vec2Config(**scale.wav2vec)).to(device)
    features = AudioFeatures(model, fps=25.0, frames_per_block=12, context_s=2.0)
    window = np.random.default_rng(0).uniform(-0.3, 0.3, features.context_samples + features.block_samples).astype(np.float32)
    times = _timed(lambda: features.window_features(window), device, repeats)
    run.costs["wav2vec2"] = {"features_s": statistics.median(times)}
    run.emit("gpu_wav2vec2", statistics.median(times), "s per block", **_stats(times),
             window_s=round(len(window) / 16000, 3), layers=scale.wav2vec["num_hidden_layers"],
             hidden=scale.wav2vec["hidden_size"], dtype="float32", peak_gib=_peak_gib(device),
             weights="random (TEST: timing only)")


def umt5(run: _Run, scale: Scale, repeats: int) -> None:
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    device = run.device
    _reset_peak(device)
    config = UMT5Config(**scale.umt5)
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    model = model.to(torch.bfloat16).to_empty(device=device)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02) if p.dim() > 1 else p.fill_(1.0)
    model.tie_weights()
    ids = torch.randint(2, config.vocab_size, (1, scale.prompt_tokens), device=device)
    with torch.no_grad():
        times = _timed(lambda: model(input_ids=ids, attention_mask=torch.ones_like(ids)), device, repeats)
    run.emit("gpu_umt5", statistics.median(times), "s per prompt", **_stats(times), tokens=scale.prompt_tokens,
             layers=config.num_layers, d_model=config.d_model, dtype="bfloat16", peak_gib=_peak_gib(device),
             params=sum(p.numel() for p in model.parameters()), note="once per prompt, not per block",
             weights="random (TEST: timing only)")


def transfer(run: _Run, scale: Scale, repeats: int) -> None:
    """One block message through host memory and back (an upper bound for a hop between GPUs of one node)."""
    import torch

    dc = scale.dit
    lat_h, lat_w = scale.pixels[0] // 8, scale.pixels[1] // 8
    numel = dc.in_dim * 3 * lat_h * lat_w + 3 * dc.dim * (1 + dc.num_audio_token + 1)
    buf = torch.zeros(numel, device=run.device)
    times = _timed(lambda: buf.cpu().to(run.device), run.device, repeats)
    run.costs["transfer"] = {"transfer_s": statistics.median(times), "bytes": numel * 4}


# ---- schedule ---------------------------------------------------------------------------------------------
LAYOUTS = (  # (GPUs, DiT workers, decode worker): 0 DiT workers = the in-process generator
    (1, 0, False), (2, 1, True), (2, 2, False), (4, 4, False), (5, 4, True))


def schedule(run: _Run) -> None:
    from liveavatar.avatar.liveavatar.tpp.onset_model import predict_onset
    from liveavatar.avatar.liveavatar.tpp.schedule_model import StageCosts, predict

    vae, w2v, hop = run.costs.get("vae"), run.costs.get("wav2vec2"), run.costs.get("transfer", {"transfer_s": 0.0})
    total = None
    if run.device.startswith("cuda"):
        import torch

        total = torch.cuda.get_device_properties(run.device).total_memory
    for precision in PRECISIONS:
        dit = run.costs.get(precision)
        if dit is None or vae is None or w2v is None:
            run.emit("gpu_schedule", None, "frames/s", precision=precision, error="a measured cost is missing")
            continue
        costs = StageCosts(forward_s=dit["forward_s"], features_s=w2v["features_s"] + dit["audio_encoder_s"],
                           decode_s=vae["decode_s"], frames_s=vae["frames_s"], transfer_s=hop["transfer_s"])
        activations = max(0.0, (dit["peak_gib"] or 0.0) * 2**30 - dit["weight_bytes"] - dit["ring_bytes"])
        for gpus, d, dec in LAYOUTS:
            pred = predict(costs, d, dec, cores=None)
            onset = predict_onset(costs, d, dec, policy="preempt")
            steps_per_process = 4 if d == 0 else 4 // d
            per_process = dit["weight_bytes"] + steps_per_process * dit["ring_bytes"] + activations
            run.emit("gpu_schedule", pred.fps, "frames/s", precision=precision, gpus=gpus, dit_workers=d,
                     decode_worker=dec, ttff_s=round(pred.ttff_s, 4), real_time=pred.fps >= 25.0,
                     bottleneck=pred.bottleneck, onset_mean_s=round(onset.mean_s, 4), onset_max_s=round(onset.max_s, 4),
                     dit_process_gib=round(per_process / 2**30, 2),
                     fits=None if total is None else per_process < 0.95 * total,
                     layout="reference (4 DiT + 1 VAE)" if (d, dec) == (4, True) else
                     ("in-process" if d == 0 else f"{d} DiT" + (" + 1 decode" if dec else ", decode in the last")),
                     costs={k: round(v, 6) for k, v in vars(costs).items()})


# ---- main -------------------------------------------------------------------------------------------------
def run_all(out: IO[str], device: str, scale_name: str, budget_s: float, repeats: int) -> int:
    """Every part in order (cheap, decisive ones first); returns 0, or 1 when a part failed."""
    import torch

    scale = _scales()[scale_name]
    run = _Run(out, device, budget_s)
    torch.set_grad_enabled(False)
    run.part("gpu_conditions", lambda: conditions(run, scale))
    run.part("gpu_tiny_fp32_vs_cpu", lambda: tiny_vs_cpu(run))
    for precision in PRECISIONS:
        run.part("gpu_dit_step", lambda precision=precision: dit_step(run, scale, precision, repeats))
    run.part("gpu_vae_decode", lambda: vae_decode(run, scale, repeats))
    run.part("gpu_wav2vec2", lambda: wav2vec2(run, scale, repeats))
    run.part("gpu_transfer", lambda: transfer(run, scale, repeats))
    run.part("gpu_schedule", lambda: schedule(run))
    run.part("gpu_umt5", lambda: umt5(run, scale, max(2, repeats // 2)))
    wall = time.perf_counter() - run.t0
    run.emit("gpu_summary", wall, "s", budget_s=budget_s, device=device, scale=scale_name, failed=run.failed,
             skipped=run.skipped)
    return 1 if run.failed else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the options, check the device, run; prints JSON lines to stdout."""
    parser = argparse.ArgumentParser(prog="liveavatar bench gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    parser.add_argument("--scale", choices=("full", "small"), default=None,
                        help="full = the real model's shapes (default on CUDA); small = reduced shapes (default on CPU)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no part after this many seconds (default 420)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per figure (default 5; 2 at --scale small)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on CPU, torch's own on CUDA)")
    args = parser.parse_args(argv)
    import torch

    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit(f"liveavatar bench gpu: no CUDA device here (torch {torch.__version__}, "
                             f"torch.cuda.is_available() is False); run it on a GPU machine, or check the code path "
                             f"with --device cpu --scale small")
        index = int(args.device.split(":")[1]) if ":" in args.device else 0
        if index >= torch.cuda.device_count():
            raise SystemExit(f"liveavatar bench gpu: {args.device} does not exist ({torch.cuda.device_count()} CUDA devices)")
        args.device = f"cuda:{index}"
        torch.cuda.set_device(index)
    elif args.device != "cpu":
        raise SystemExit(f"liveavatar bench gpu: unknown device {args.device!r}; expected cuda, cuda:N or cpu")
    scale = args.scale or ("full" if args.device.startswith("cuda") else "small")
    repeats = args.repeats or (5 if scale == "full" else 2)
    return run_all(sys.stdout, args.device, scale, args.budget_s, repeats)


if __name__ == "__main__":
    sys.exit(main())
