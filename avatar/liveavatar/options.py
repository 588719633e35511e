"""`avatar.options` of a persona using the `liveavatar` backend, validated (no torch needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from liveavatar.avatar.liveavatar.config import StreamConfig


class Options(BaseModel):
    """`avatar.options` of a persona using the `liveavatar` backend."""

    model_config = ConfigDict(extra="forbid")

    config: Literal["tiny", "checkpoint"] = Field("tiny", description="tiny = TEST CONFIG with random weights; checkpoint = real weights")
    checkpoint_dir: Path | None = Field(None, description="local Wan2.2-S2V-14B folder (config=checkpoint)")
    lora_path: Path | None = Field(None, description="local LiveAvatar LoRA file liveavatar.safetensors (config=checkpoint)")
    dtype: Literal["float32", "bfloat16", "fp8", "fp8_scaled"] = Field(
        "float32", description="DiT precision: fp8 stores weights in e4m3; fp8_scaled (the reference's --fp8) also "
                               "multiplies in e4m3 (torch._scaled_mm: Hopper/Ada GPUs)")
    device: str = "cpu"
    prompt: str = "A person is talking naturally, looking at the camera."
    height: int = Field(704, description="generated video height in pixels (config=checkpoint), a multiple of 16")
    width: int = Field(384, description="generated video width in pixels (config=checkpoint), a multiple of 16")
    relative_dist: int | None = Field(None, ge=0, description="fixed Rolling-RoPE distance; None draws d ~ U{4..30} per call")
    lookahead_blocks: int = Field(1, ge=1, le=8, description="finished blocks allowed to wait for the consumer "
                                                             "(TPP: blocks planned ahead beyond one per worker, at most)")
    audio_context_s: float = Field(2.0, ge=0.0, le=10.0, description="past audio wav2vec2 sees before each block")
    # Timestep-forcing Pipeline Parallelism (avatar/liveavatar/tpp): the model in worker processes
    dit_workers: int = Field(0, ge=0, description="TPP DiT worker processes: 1, 2 or 4 (must divide the 4 denoising steps); "
                                                  "0 = the model runs in-process")
    decode_worker: bool = Field(True, description="TPP: decode latents in a separate worker process (the reference layout); "
                                                  "false = the last DiT worker decodes (use when cores/GPUs < dit_workers + 1)")
    master_port: int | None = Field(None, ge=1, le=65535, description="TPP: TCP port on 127.0.0.1 for the workers' "
                                                                     "torch.distributed rendezvous; null = pick a free port")
    worker_threads: int = Field(1, ge=1, le=256, description="TPP: torch threads per worker process")
    start_timeout_s: float = Field(300.0, gt=0, description="TPP: seconds allowed for the workers to load and connect")
    heartbeat_timeout_s: float = Field(3.0, gt=0, description="TPP: seconds without a worker heartbeat before it counts as hung")

    @field_validator("dit_workers")
    @classmethod
    def _divides_steps(cls, value: int) -> int:
        steps = StreamConfig().num_steps
        if value and steps % value:
            raise ValueError(f"dit_workers must divide the {steps} denoising steps "
                             f"({', '.join(str(d) for d in range(1, steps + 1) if steps % d == 0)}) or be 0 (in-process)")
        return value


def with_dit_workers(options: Options, dit_workers: int) -> Options:
    """`options` with `dit_workers` overridden (validated): the hook for a `--dit-workers` command-line flag."""
    return Options.model_validate({**options.model_dump(), "dit_workers": dit_workers})
