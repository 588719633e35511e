"""PortraitAvatar: the embedded CPU avatar — queued speech drives a warped portrait, frame by frame."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from liveavatar.avatar.base import AvatarGenerator, Underrun
from liveavatar.avatar.portrait.drive import MouthDriver
from liveavatar.avatar.portrait.motion import Blinker, HeadSway
from liveavatar.avatar.portrait.rig import FacePose, PortraitRig
from liveavatar.avatar.speech_queue import SpeechQueue
from liveavatar.media import AudioChunk, AVFrame, samples_in_frame


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
        self._speech = SpeechQueue(audio_rate, underrun)
        self._index = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portrait-render")

    # ------------------------------------------------------------------------------ contract

    def push(self, chunk: AudioChunk, generation: int) -> None:
        """Queue speech of reply `generation`; generations must increase over the avatar's life."""
        self._speech.push(chunk, generation)

    def end(self, generation: int) -> None:
        """No more speech for `generation`; its buffered speech still plays."""
        self._speech.end(generation)

    def clear(self) -> None:
        """Drop every queued reply; their later pushes are ignored."""
        self._speech.clear()

    def reset(self) -> None:
        """A new conversation: nothing queued, not paused, every generation number usable again."""
        self._speech.reset()

    def pause(self) -> None:
        """Hold queued speech; frames show the avatar listening until resume()."""
        self._speech.pause()

    def resume(self, replay_s: float = 0.0) -> None:
        """Play held speech from where it stopped, the last `replay_s` seconds before the pause (≤ 1 s) once more."""
        self._speech.resume(replay_s)

    @property
    def queued_seconds(self) -> float:
        """Speech waiting to be played, in seconds."""
        return self._speech.queued_seconds

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

    async def _plan_next(self) -> tuple[FacePose, np.ndarray, int | None]:
        """Decide the next frame's pose, audio and generation (waiting for speech under "wait")."""
        n = samples_in_frame(self._index, self.audio_rate, self.fps)
        take = await self._speech.take(n, phoneme_ahead=self.audio_rate // 10)  # visemes anticipate the sound a little
        frame = self._index
        self._index += 1
        if take.speech == 0:  # idle, listening, or an open reply whose speech is late ("silence"): lips at rest
            mouth = self._mouth.rest()
            return self._pose(frame, mouth.jaw, mouth.spread, 0.0), take.pcm, take.generation
        mouth = self._mouth.step(take.pcm, list(take.phonemes), take.start)
        return self._pose(frame, mouth.jaw, mouth.spread, min(1.0, mouth.jaw * 1.4)), take.pcm, take.generation

    def _pose(self, frame: int, jaw: float, spread: float, energy: float) -> FacePose:
        head = self._sway.pose(frame, energy)
        return FacePose(jaw=jaw, spread=spread, blink=self._blinker.closure(frame), tilt_deg=head.tilt_deg,
                        shift_px=head.shift_px, scale=head.scale)
