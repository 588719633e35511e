"""A schedule model of TPP: frames/s and time-to-first-frame from per-block stage costs, for any layout.

Stages, in block order: DiT worker 0 (wav2vec2 features + its k = steps/D forwards), DiT workers 1..D-1
(one hop in + k forwards), the decoder (one hop in + VAE decode + frame conversion), or the decode folded
into the last DiT worker when there is no decode worker. The model replays the schedule the workers
actually follow, as a discrete-event simulation:

- a stage works on one block at a time, in order; a send is asynchronous but a stage waits for its
  previous send to be received before it issues the next (one message in flight per hop);
- at most `stages + 1` blocks are in flight (the generator's credit limit);
- all busy stages share `cores` processors equally (processor sharing; None = a device per stage, as on
  GPUs); a stage never uses more than one core (one thread per worker).

Steady-state period = time between consecutive blocks leaving the decoder; fps = frames per block / period.
TTFF = when block 0 leaves the decoder, counted from its submission into an idle pipeline.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class StageCosts:
    """Seconds per block of each kind of work, measured on the target hardware (one thread per process)."""

    forward_s: float  # one denoising step of one block: DiT forward + Euler update
    features_s: float = 0.0  # wav2vec2 features + the DiT's audio encoder + the block's noise (first DiT worker)
    decode_s: float = 0.0  # streaming VAE decode of one block
    frames_s: float = 0.0  # latent video -> uint8 frames at the output size, handed to the orchestrator
    transfer_s: float = 0.0  # one hop of a block (latent + audio tokens) between two processes
    steps: int = 4


@dataclass(frozen=True)
class Prediction:
    """What the model predicts for one layout."""

    dit_workers: int  # 0 = in-process (one sequential process)
    decode_worker: bool
    cores: float | None
    fps: float
    blocks_per_s: float
    period_s: float
    ttff_s: float
    stage_work_s: dict[str, float] = field(default_factory=dict)  # work per block of each stage
    bottleneck: str = ""  # the stage with the most work, or "cpu" when the cores are the limit

    def as_dict(self) -> dict:
        """Rounded, JSON-ready."""
        out = asdict(self)
        for key in ("fps", "blocks_per_s", "period_s", "ttff_s"):
            out[key] = round(out[key], 4)
        out["stage_work_s"] = {k: round(v, 5) for k, v in self.stage_work_s.items()}
        return out


def stage_work(costs: StageCosts, dit_workers: int, decode_worker: bool = True) -> dict[str, float]:
    """Work per block of each stage (seconds), in pipeline order; dit_workers = 0 is one sequential process."""
    if dit_workers == 0:
        return {"in-process": costs.features_s + costs.steps * costs.forward_s + costs.decode_s + costs.frames_s}
    if costs.steps % dit_workers:
        raise ValueError(f"dit_workers={dit_workers} must divide the {costs.steps} steps")
    k = costs.steps // dit_workers
    work: dict[str, float] = {}
    for r in range(dit_workers):
        w = k * costs.forward_s + (costs.features_s if r == 0 else costs.transfer_s)
        if r == dit_workers - 1 and not decode_worker:
            w += costs.decode_s + costs.frames_s
        work[f"dit{r}"] = w
    if decode_worker:
        work["decode"] = costs.transfer_s + costs.decode_s + costs.frames_s
    return work


def simulate(work: list[float], cores: float | None, blocks: int = 48, in_flight: int | None = None) -> list[float]:
    """Times at which the first `blocks` blocks leave the last stage, for stages with `work` seconds per block each.

    More blocks keep coming behind them (an endless stream), so the last ones do not finish early as the
    pipeline drains.
    """
    wanted = blocks
    n = len(work)
    limit = in_flight if in_flight is not None else n + 1
    blocks = wanted + n + limit
    next_block = [0] * n  # next block each stage will take
    remaining: list[float | None] = [None] * n  # work left on the current block, None = idle
    holding: list[int | None] = [None] * n  # block computed but not yet sent (waiting for the previous send)
    sent = [-1] * n  # last block each stage handed on
    received = [-1] * n  # last block each stage took from its predecessor (for stage 0: from the orchestrator)
    done: list[float] = []
    now = 0.0

    def try_issue(s: int) -> None:
        b = holding[s]
        if b is not None and (s == n - 1 or received[s + 1] >= b - 1):
            holding[s] = None
            sent[s] = b
            if s == n - 1:
                done.append(now)

    def try_start(s: int) -> bool:
        b = next_block[s]
        if remaining[s] is not None or holding[s] is not None or b >= blocks:
            return False
        available = (b < len(done) + limit) if s == 0 else (sent[s - 1] >= b)
        if not available:
            return False
        remaining[s] = work[s]
        received[s] = b
        next_block[s] = b + 1
        return True

    while len(done) < wanted:
        changed = True
        while changed:  # start and hand on whatever can move at this instant
            changed = False
            for s in range(n):
                before = (holding[s], sent[s])
                try_issue(s)
                changed |= (holding[s], sent[s]) != before
                changed |= try_start(s)
        if len(done) >= wanted:
            break
        busy = [s for s in range(n) if remaining[s] is not None]
        if not busy:
            raise RuntimeError("the schedule deadlocked")  # cannot happen with limit >= 1; kept as a guard
        rate = 1.0 if cores is None else min(1.0, cores / len(busy))
        step = min(remaining[s] for s in busy) / rate  # type: ignore[type-var]
        now += step
        for s in busy:
            remaining[s] -= step * rate  # type: ignore[operator]
            if remaining[s] <= 1e-12:  # type: ignore[operator]
                remaining[s] = None
                holding[s] = next_block[s] - 1
    return done[:wanted]


def predict(costs: StageCosts, dit_workers: int, decode_worker: bool = True, cores: float | None = None,
            frames_per_block: int = 12, blocks: int = 48) -> Prediction:
    """Frames/s and TTFF of a layout (dit_workers = 0: the in-process generator) on `cores` processors."""
    work = stage_work(costs, dit_workers, decode_worker)
    times = simulate(list(work.values()), cores, blocks)
    tail = times[blocks // 2:]
    period = (tail[-1] - tail[0]) / (len(tail) - 1)
    stage_max = max(work.values())
    # slower than its slowest stage: busy stages outnumber the cores and share them
    bottleneck = "cpu" if period > stage_max * 1.01 else max(work, key=work.get)
    return Prediction(dit_workers, decode_worker and dit_workers > 0, cores, frames_per_block / period, 1 / period,
                      period, times[0], work, bottleneck)


def forward_cost_for_fps(fps: float, frames_per_block: int = 12) -> float:
    """The per-forward cost a TPP throughput implies when the DiT stages (one forward per block each) set the pace."""
    return frames_per_block / fps


def reference_layout(fps_claim: float, decode_s: float, features_s: float = 0.0, frames_s: float = 0.0,
                     transfer_s: float = 0.0) -> Prediction:
    """The reference's 5-GPU layout (4 DiT ranks, one step each, + 1 VAE rank) at the forward cost `fps_claim` implies."""
    costs = StageCosts(forward_cost_for_fps(fps_claim), features_s, decode_s, frames_s, transfer_s)
    return predict(costs, dit_workers=4, decode_worker=True, cores=None)


def speedup(a: Prediction, b: Prediction) -> float:
    """Throughput of b over a."""
    return b.blocks_per_s / a.blocks_per_s if a.blocks_per_s else math.inf
