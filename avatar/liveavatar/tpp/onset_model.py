"""A schedule model of speech onset: when does the first frame carrying new speech reach a real-time sink?

It replays, as a discrete-event simulation, what the generator does with its blocks while the avatar idles
and the moment speech arrives, for any stage layout (`schedule_model.stage_work`: the in-process generator
is one stage, TPP is D DiT stages and a decoder), with one of two planning policies:

- "queued" (the generator before issue 15): speech is planned behind every block already planned, and a
  block is shown only after all blocks before it; idle blocks finished early wait for the sink.
- "preempt" (now): idle blocks not yet started are skipped when speech is waiting behind them, finished
  idle blocks do not hold the planning window while speech waits, and the first speech block to come out
  cuts the idle block on screen at the next frame.

The sink pulls one frame every 1/fps s (after a stall its clock restarts from the late frame). The planning
window adapts as in the generator: it grows when the sink had to wait for a block and shrinks when a
finished block was already waiting behind the one taken. Stages work one block at a time, in order, with
one message in flight per hop; `cores` = None gives every stage its own device (GPUs), a number makes busy
stages share that many processors.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from liveavatar.avatar.liveavatar.tpp.schedule_model import StageCosts, stage_work

POLICIES = ("queued", "preempt")


@dataclass
class _Block:
    seq: int
    speech: bool
    skipped: bool = False


@dataclass(frozen=True)
class OnsetPrediction:
    """Speech onset -> first frame carrying it, over onsets spread evenly across two blocks of idle video."""

    policy: str
    dit_workers: int
    decode_worker: bool
    latencies_s: list[float] = field(default_factory=list)

    @property
    def mean_s(self) -> float:
        """Mean over the onsets."""
        return statistics.mean(self.latencies_s)

    @property
    def median_s(self) -> float:
        """Median over the onsets."""
        return statistics.median(self.latencies_s)

    @property
    def max_s(self) -> float:
        """Worst onset."""
        return max(self.latencies_s)

    def as_dict(self) -> dict:
        """Rounded, JSON-ready."""
        return {"policy": self.policy, "dit_workers": self.dit_workers, "decode_worker": self.decode_worker,
                "mean_s": round(self.mean_s, 4), "median_s": round(self.median_s, 4), "max_s": round(self.max_s, 4),
                "min_s": round(min(self.latencies_s), 4), "onsets": len(self.latencies_s)}


class _Sim:
    """One run: idle stream, speech from `onset` on (for `speech_blocks` blocks), until its first frame is shown."""

    def __init__(self, work: list[float], cores: float | None, policy: str, onset: float, max_window: int,
                 fps: float, frames_per_block: int, speech_blocks: int) -> None:
        self.work, self.cores, self.policy, self.onset = work, cores, policy, onset
        self.max_window, self.period, self.fpb = max_window, 1.0 / fps, frames_per_block
        self.speech_left = speech_blocks
        n = len(work)
        self.n = n
        self.now = 0.0
        self.window = 1
        self.seq = 0
        self.blocks: dict[int, _Block] = {}
        self.waiting: list[int] = []  # submitted, not yet taken by stage 0
        self.remaining: list[float | None] = [None] * n  # work left on the current block, None = idle
        self.current: list[int | None] = [None] * n
        self.holding: list[int | None] = [None] * n  # computed, not yet handed on
        self.inbox: list[list[int]] = [[] for _ in range(n)]  # handed on, not yet taken (one in flight per hop)
        self.in_flight: set[int] = set()
        self.ready: list[int] = []  # finished, waiting for the sink
        self.showing: int | None = None
        self.shown = 0  # frames of `showing` already pulled
        self.due = 0.0  # when the sink pulls its next frame
        self.started = False
        self.result: float | None = None

    # ---- generator -------------------------------------------------------------------------------------
    def _speech_pending(self) -> bool:
        return self.now >= self.onset and self.speech_left > 0

    def _outstanding(self) -> int:
        blocks = list(self.in_flight) + self.ready
        if self.policy == "preempt" and self._speech_pending():
            blocks = [b for b in blocks if self.blocks[b].speech]  # idle blocks do not hold speech back
        return len(blocks)

    def _submit(self) -> bool:
        if self._outstanding() >= self.window:
            return False
        self.seq += 1
        speech = self._speech_pending()
        if speech:
            self.speech_left -= 1
        self.blocks[self.seq] = _Block(self.seq, speech)
        self.waiting.append(self.seq)
        self.in_flight.add(self.seq)
        return True

    # ---- stages ----------------------------------------------------------------------------------------
    def _start(self, s: int) -> bool:
        if self.remaining[s] is not None or self.holding[s] is not None:
            return False
        source = self.waiting if s == 0 else self.inbox[s]
        while source:
            b = source.pop(0)
            block = self.blocks[b]
            if s == 0 and self.policy == "preempt" and not block.speech and any(self.blocks[x].speech for x in source):
                block.skipped = True  # an idle block not yet started gives way to the speech behind it
                self.in_flight.discard(b)
                continue
            self.current[s], self.remaining[s] = b, self.work[s]
            return True
        return False

    def _issue(self, s: int) -> bool:
        b = self.holding[s]
        if b is None:
            return False
        if s == self.n - 1:
            self.holding[s] = None
            self.in_flight.discard(b)
            self.ready.append(b)
            return True
        if self.inbox[s + 1]:  # the previous message on this hop has not been received yet
            return False
        self.holding[s] = None
        self.inbox[s + 1].append(b)
        return True

    # ---- sink ------------------------------------------------------------------------------------------
    def _pull(self) -> bool:
        if not self.started or self.now < self.due - 1e-12:
            return False
        if self.showing is not None and self.shown < self.fpb:
            cut = (self.policy == "preempt" and not self.blocks[self.showing].speech
                   and any(self.blocks[b].speech for b in self.ready))
            if not cut:
                return self._emit()
        if not self.ready:
            return False
        waited = self.showing is not None and self.shown >= self.fpb or self.showing is None
        if self.policy == "preempt" and any(self.blocks[b].speech for b in self.ready):
            while not self.blocks[self.ready[0]].speech:
                self.ready.pop(0)  # finished idle blocks are dropped once speech is ready behind them
        self.showing, self.shown = self.ready.pop(0), 0
        if waited and self.now > self.due + 1e-9:
            self.window = min(self.window + 1, self.max_window)
        elif self.ready:
            self.window = max(self.window - 1, 1)
        return self._emit()

    def _emit(self) -> bool:
        if self.blocks[self.showing].speech and self.result is None:
            self.result = self.now - self.onset
        self.shown += 1
        self.due = max(self.due, self.now) + self.period
        return True

    # ---- loop ------------------------------------------------------------------------------------------
    def run(self, limit_s: float = 600.0) -> float:
        while self.result is None:
            if self.now > limit_s:
                raise RuntimeError("the onset simulation did not finish (a stage slower than the stream?)")
            changed = True
            while changed and self.result is None:
                changed = False
                for s in reversed(range(self.n)):
                    changed |= self._issue(s)
                    changed |= self._start(s)
                changed |= self._submit()
                if self.ready and not self.started:
                    self.started, self.due = True, self.now
                changed |= self._pull()
            if self.result is not None:
                break
            events = []
            busy = [s for s in range(self.n) if self.remaining[s] is not None]
            rate = 1.0 if self.cores is None or not busy else min(1.0, self.cores / len(busy))
            if busy:
                events.append(self.now + min(self.remaining[s] for s in busy) / rate)  # type: ignore[type-var]
            if self.started and self.ready or (self.showing is not None and self.shown < self.fpb):
                events.append(max(self.due, self.now))
            if self.now < self.onset:
                events.append(self.onset)
            later = [t for t in events if t > self.now + 1e-12]
            step_to = min(later) if later else self.now
            dt = step_to - self.now
            for s in busy:
                self.remaining[s] -= dt * rate  # type: ignore[operator]
                if self.remaining[s] <= 1e-12:  # type: ignore[operator]
                    self.remaining[s] = None
                    self.holding[s] = self.current[s]
            self.now = step_to
        return self.result


def predict_onset(costs: StageCosts, dit_workers: int, decode_worker: bool = True, policy: str = "preempt",
                  cores: float | None = None, lookahead_blocks: int = 1, fps: float = 25.0, frames_per_block: int = 12,
                  onsets: int = 24, warm_blocks: int = 12) -> OnsetPrediction:
    """Onset latencies for `onsets` onsets spread over two blocks of idle video after `warm_blocks` blocks."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    work = list(stage_work(costs, dit_workers, decode_worker).values())
    max_window = len(work) + lookahead_blocks
    block_s = frames_per_block / fps
    latencies = []
    for k in range(onsets):
        onset = warm_blocks * block_s + 2 * block_s * k / onsets + max(work) * 2
        sim = _Sim(work, cores, policy, onset, max_window, fps, frames_per_block, speech_blocks=4)
        latencies.append(sim.run())
    return OnsetPrediction(policy, dit_workers, decode_worker and dit_workers > 0, latencies)
