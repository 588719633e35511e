"""PortraitAvatar: the embedded CPU avatar — queued speech drives a warped portrait, frame by frame."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from avatar.base import AvatarGenerator, Underrun
from avatar.portrait.drive import MouthDriver
from avatar.portrait.motion import Blinker, HeadSway
from avatar.portrait.rig import FacePose, PortraitRig
from media import AudioChunk, AVFrame, PhonemeSpan, SampleFIFO, StreamResampler, samples_in_frame

MAX_REPLAY_S = 1.0  # speech kept after it was placed on frames, to replay after a pause (sinks buffer far less)


@dataclass
class _Reply:
    """Speech of one generation, resampled to the output rate, waiting to be cut into frames."""

    generation: int
    resampler: StreamResampler | None = None
    pcm: SampleFIFO = field(default_factory=SampleFIFO)
    consumed: int = 0  # samples already placed on frames
    speech_s: float = 0.0  # seconds of speech pushed so far, at the input's own rate
    phonemes: list[PhonemeSpan] = field(default_factory=list)  # positions relative to the reply's first sample
    ended: bool = False
    emitted: deque[np.ndarray] = field(default_factory=deque)  # the speech of the last frames placed, newest last

    @property
    def buffered(self) -> int:
        """Samples not yet placed on a frame."""
        return len(self.pcm)

    def take(self, n: int, keep: int) -> np.ndarray:
        """The next `n` samples, zero-padded if fewer are buffered; the last `keep` samples taken stay replayable."""
        self.consumed += n
        pcm = self.pcm.take(n)
        self.emitted.append(pcm)
        while sum(len(p) for p in self.emitted) - len(self.emitted[0]) >= keep:
            self.emitted.popleft()
        return pcm

    def replay(self, samples: int) -> None:
        """Put back the last `samples` samples taken (at most what was kept), to be placed on frames again."""
        while samples > 0 and self.emitted:
            last = self.emitted.pop()
            back = last[-samples:] if samples < len(last) else last
            if len(back) < len(last):
                self.emitted.append(last[: len(last) - len(back)])
            self.pcm.unread(back)
            self.consumed -= len(back)
            samples -= len(back)


class PortraitAvatar(AvatarGenerator):
    """Animates one portrait: lips from speech, blinks and head motion always. See AvatarGenerator."""

    can_pause = True

    def __init__(
        self,
        rig: PortraitRig,
        fps: float = 25.0,
        audio_rate: int = 24000,
        underrun: Underrun = "silence",
        seed: int = 0,
        head_motion: float = 1.0,
        mouth_gain: float = 1.0,
        blink_interval_s: tuple[float, float] = (2.0, 5.0),
    ) -> None:
        self.rig = rig
        self.fps = fps
        self.size = rig.size
        self.audio_rate = audio_rate
        self.underrun = underrun
        rng = random.Random(seed)
        self._blinker = Blinker(fps, rng, blink_interval_s)
        self._sway = HeadSway(fps, rng, head_motion, rig.layout.mouth.width * 3.6)
        self._mouth = MouthDriver(audio_rate, mouth_gain)
        self._replies: deque[_Reply] = deque()
        self._dead_below = -1  # generations <= this were cleared: their speech is dropped
        self._paused = False
        self._wake = asyncio.Event()
        self._index = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portrait-render")

    # ------------------------------------------------------------------------------ contract

    def push(self, chunk: AudioChunk, generation: int) -> None:
        """Queue speech of reply `generation`; generations must increase over the avatar's life."""
        if generation <= self._dead_below:
            return
        reply = self._reply(generation)
        if reply.ended:
            raise ValueError(f"generation {generation} already ended; speech pushed after end()")
        if reply.resampler is None or reply.resampler.rate_in != chunk.rate:
            if reply.resampler is not None:
                reply.pcm.push(reply.resampler.flush())
            reply.resampler = StreamResampler(chunk.rate, self.audio_rate)
        # soxr's stream output is delay-compensated, so input time t lands at output sample t·rate.
        offset = round(reply.speech_s * self.audio_rate)
        ratio = self.audio_rate / chunk.rate
        for span in chunk.phonemes:
            reply.phonemes.append(PhonemeSpan(span.phoneme, offset + int(span.start * ratio), int(span.length * ratio)))
        reply.speech_s += len(chunk.pcm) / chunk.rate
        reply.pcm.push(reply.resampler.process(chunk.pcm))
        self._wake.set()

    def end(self, generation: int) -> None:
        """No more speech for `generation`; its buffered speech still plays."""
        if generation <= self._dead_below:
            return
        reply = self._reply(generation)
        if not reply.ended:
            if reply.resampler is not None:
                reply.pcm.push(reply.resampler.flush())
            reply.ended = True
        self._wake.set()

    def clear(self) -> None:
        """Drop every queued reply; their later pushes are ignored."""
        if self._replies:
            self._dead_below = max(self._dead_below, max(r.generation for r in self._replies))
        self._replies.clear()
        self._wake.set()

    def pause(self) -> None:
        """Hold queued speech; frames show the avatar listening until resume()."""
        self._paused = True
        self._wake.set()

    def resume(self, replay_s: float = 0.0) -> None:
        """Play held speech from where it stopped, the last `replay_s` seconds before the pause (≤ 1 s) once more."""
        if self._paused and replay_s > 0 and self._replies:
            self._replies[0].replay(round(min(replay_s, MAX_REPLAY_S) * self.audio_rate))
        self._paused = False
        self._wake.set()

    @property
    def queued_seconds(self) -> float:
        """Speech waiting to be played, in seconds."""
        return sum(r.buffered for r in self._replies) / self.audio_rate

    async def frames(self) -> AsyncIterator[AVFrame]:
        """Endless frames; idle when nothing is queued."""
        loop = asyncio.get_running_loop()
        while True:
            plan = await self._plan_next()
            image = await loop.run_in_executor(self._executor, self.rig.render, plan[0])
            yield AVFrame(image, plan[1], self._index - 1, plan[2], self.fps, self.audio_rate)

    async def aclose(self) -> None:
        """Stop the render thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------ internals

    def _reply(self, generation: int) -> _Reply:
        for reply in self._replies:
            if reply.generation == generation:
                return reply
        if self._replies and generation < self._replies[-1].generation:
            raise ValueError(f"generation {generation} pushed after generation {self._replies[-1].generation}")
        reply = _Reply(generation)
        self._replies.append(reply)
        return reply

    async def _plan_next(self) -> tuple[FacePose, np.ndarray, int | None]:
        """Decide the next frame's pose, audio and generation (waiting for speech when asked to)."""
        n = samples_in_frame(self._index, self.audio_rate, self.fps)
        while True:
            while self._replies and self._replies[0].ended and self._replies[0].buffered == 0:
                self._replies.popleft()
            reply = self._replies[0] if self._replies and not self._paused else None
            if reply is None or reply.buffered >= n or reply.ended or self.underrun == "silence":
                break
            self._wake.clear()
            await self._wake.wait()
        frame = self._index
        self._index += 1
        if reply is None:
            mouth = self._mouth.rest()
            return self._pose(frame, mouth.jaw, mouth.spread, 0.0), np.zeros(n, np.float32), None
        if reply.buffered < n and not reply.ended:  # underrun == "silence": hold the speech, play a gap
            mouth = self._mouth.rest()
            return self._pose(frame, mouth.jaw, mouth.spread, 0.0), np.zeros(n, np.float32), reply.generation
        start = reply.consumed
        keep = round(MAX_REPLAY_S * self.audio_rate)
        pcm = reply.take(n, keep)
        spans = [s for s in reply.phonemes if s.start + s.length > start and s.start < start + n + self.audio_rate // 10]
        reply.phonemes = [s for s in reply.phonemes if s.start + s.length > start - keep]  # replayable speech keeps its visemes
        mouth = self._mouth.step(pcm, spans, start)
        return self._pose(frame, mouth.jaw, mouth.spread, min(1.0, mouth.jaw * 1.4)), pcm, reply.generation

    def _pose(self, frame: int, jaw: float, spread: float, energy: float) -> FacePose:
        head = self._sway.pose(frame, energy)
        return FacePose(jaw=jaw, spread=spread, blink=self._blinker.closure(frame), tilt_deg=head.tilt_deg,
                        shift_px=head.shift_px, scale=head.scale)
