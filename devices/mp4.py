"""MP4 files through PyAV: H.264 video + AAC audio, each frame carrying exactly its own audio."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from liveavatar.devices.sink import FrameSink
from liveavatar.media import AVFrame

AAC_FRAME = 1024  # samples per AAC packet


class MP4Writer:
    """Blocking writer: `write(image, audio)` appends one video frame and the audio that plays during it."""

    def __init__(self, path: Path | str, size: tuple[int, int], fps: float, audio_rate: int,
                 crf: int = 23, preset: str = "veryfast", threads: int = 0, audio_bitrate: int = 96_000) -> None:  # fmt: skip
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        width, height = size
        if width % 2 or height % 2:
            raise ValueError(f"H.264 needs even frame sizes, got {width}×{height}")
        self.fps, self.audio_rate, self.size = fps, audio_rate, size
        self._container = av.open(str(self.path), mode="w")
        self._video = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": preset}
        self._video.codec_context.thread_count = threads
        self._audio = self._container.add_stream("aac", rate=audio_rate)
        self._audio.layout = "mono"
        self._audio.bit_rate = audio_bitrate
        self._pending = np.zeros(0, np.float32)
        self.frames_written = 0
        self.samples_written = 0
        self._closed = False

    def write(self, image: np.ndarray, audio: np.ndarray) -> None:
        """Append one RGB uint8 frame of the writer's size and its audio (float32 mono)."""
        if image.shape[1::-1] != self.size:
            raise ValueError(f"frame is {image.shape[1]}×{image.shape[0]}, the file is {self.size[0]}×{self.size[1]}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames_written
        self._container.mux(self._video.encode(frame))
        self.frames_written += 1
        self._pending = np.concatenate([self._pending, np.asarray(audio, np.float32)])
        while len(self._pending) >= AAC_FRAME:
            self._encode_audio(self._pending[:AAC_FRAME])
            self._pending = self._pending[AAC_FRAME:]

    def _encode_audio(self, samples: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.clip(samples, -1.0, 1.0)[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = self.audio_rate
        frame.pts = self.samples_written
        self.samples_written += len(samples)
        self._container.mux(self._audio.encode(frame))

    def close(self) -> None:
        """Flush both encoders and finish the file."""
        if self._closed:
            return
        self._closed = True
        if len(self._pending):
            self._encode_audio(self._pending)
            self._pending = np.zeros(0, np.float32)
        self._container.mux(self._video.encode(None))
        self._container.mux(self._audio.encode(None))
        self._container.close()


class MP4Sink(FrameSink):
    """Async sink that encodes in its own thread, so rendering and encoding overlap."""

    def __init__(self, path: Path | str, size: tuple[int, int], fps: float, audio_rate: int, queue_frames: int = 8, **options: object) -> None:
        self.writer = MP4Writer(path, size, fps, audio_rate, **options)  # type: ignore[arg-type]
        self._queue: asyncio.Queue[AVFrame | None] = asyncio.Queue(maxsize=queue_frames)
        self._thread_error: BaseException | None = None
        self._reported = False  # the encoder's error was raised to a caller already
        self._task: asyncio.Task[None] | None = None

    async def write(self, frame: AVFrame) -> None:
        """Queue a frame for encoding (waits when the encoder is behind); raises the encoder's error, if it had one."""
        if self._thread_error is not None:
            self._reported = True
            raise self._thread_error
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        await self._queue.put(frame)

    async def _drain(self) -> None:
        """Encode queued frames in a thread; after a failure, keep taking frames (dropped) so no writer waits forever."""
        while (frame := await self._queue.get()) is not None:
            if self._thread_error is None:
                try:
                    await asyncio.to_thread(self.writer.write, frame.image, frame.audio)
                except Exception as exc:  # noqa: BLE001 - handed to the next write() and to aclose()
                    self._thread_error = exc

    async def aclose(self) -> None:
        """Encode everything queued, then finish the file (even after an encoder error, which is then raised)."""
        if self._task is not None and not self._task.done():
            await self._queue.put(None)
            await self._task
        await asyncio.to_thread(self.writer.close)
        if self._thread_error is not None and not self._reported:
            self._reported = True
            raise self._thread_error
