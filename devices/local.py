"""Local devices: microphone and speaker (sounddevice / PortAudio), camera and window (OpenCV).

Every failure to open a device becomes a DeviceError naming the device and what to use instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from liveavatar.devices.sink import FrameSink
from liveavatar.devices.sources import CHUNK_S, AudioSource, Pacer
from liveavatar.media import AudioChunk, AVFrame, SampleFIFO

ALTERNATIVES = "use --browser (the page uses the browser's microphone, camera and speaker) or --wav FILE"


class DeviceError(RuntimeError):
    """A device that cannot be opened; the message names it and the alternatives."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError:
        raise DeviceError(f"no audio backend: the sounddevice package is not installed (pip install sounddevice); {ALTERNATIVES}") from None
    except OSError as exc:  # PortAudio itself is missing
        raise DeviceError(f"no audio backend: {exc} (on Debian/Ubuntu: apt-get install libportaudio2); {ALTERNATIVES}") from None
    return sounddevice


def _check_device(sd: Any, device: int | str | None, kind: str) -> None:
    what = "microphone" if kind == "input" else "speaker"
    try:
        found = [d for d in sd.query_devices() if d[f"max_{kind}_channels"] > 0]
    except Exception:  # PortAudio could not even list devices
        found = []
    if not found:
        raise DeviceError(f"no {what} found: the sound system lists no {kind} devices; {ALTERNATIVES}")
    try:
        sd.check_input_settings(device=device, channels=1, samplerate=16000) if kind == "input" else sd.check_output_settings(device=device, channels=1)
    except Exception as exc:  # PortAudio raises several types here
        name = "the default" if device is None else repr(device)
        raise DeviceError(f"cannot open {name} {what}: {exc}; {ALTERNATIVES}") from None


class MicrophoneSource(AudioSource):
    """The default (or named) microphone at 16 kHz mono, in 20 ms chunks stamped on `clock`."""

    rate = 16000

    def __init__(self, clock: Pacer, device: int | str | None = None) -> None:
        self.clock = clock
        self._sd = _sounddevice()
        _check_device(self._sd, device, "input")
        self.device = device
        self._stream: Any = None

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """Microphone audio as the sound card delivers it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=500)

        def on_audio(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            loop.call_soon_threadsafe(_put_latest, queue, indata[:, 0].copy())

        self._stream = self._sd.InputStream(samplerate=self.rate, channels=1, dtype="float32", blocksize=int(CHUNK_S * self.rate),
                                            device=self.device, callback=on_audio)  # fmt: skip
        self._stream.start()
        try:
            while True:
                pcm = await queue.get()
                yield AudioChunk(pcm, self.rate, pts=self.clock.now() - len(pcm) / self.rate)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the input stream."""
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


def _put_latest(queue: asyncio.Queue, item: Any) -> None:
    if queue.full():
        queue.get_nowait()  # the consumer stalled: keep the newest audio
    queue.put_nowait(item)


class SpeakerSink(FrameSink):
    """Plays each frame's audio on the default (or named) speaker; `flush()` silences it at once."""

    def __init__(self, rate: int, device: int | str | None = None) -> None:
        self._sd = _sounddevice()
        _check_device(self._sd, device, "output")
        self.rate = rate
        self._lock = threading.Lock()
        self._queue = SampleFIFO()
        self._stream = self._sd.OutputStream(samplerate=rate, channels=1, dtype="float32", device=device, callback=self._play, latency="low")
        self._stream.start()

    def _play(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        with self._lock:
            outdata[:, 0] = self._queue.take(frames)

    async def write(self, frame: AVFrame) -> None:
        """Queue the frame's audio."""
        with self._lock:
            self._queue.push(frame.audio)

    async def flush(self) -> float:
        """Drop everything not yet played; returns its length in seconds."""
        with self._lock:
            dropped = len(self._queue)
            self._queue.clear()
        return dropped / self.rate

    async def aclose(self) -> None:
        """Stop the output stream."""
        self._stream.stop()
        self._stream.close()


class WindowSink(FrameSink):
    """Shows frames in an OpenCV window (needs a GUI build of OpenCV, not opencv-python-headless)."""

    def __init__(self, title: str = "Live Avatar") -> None:
        import cv2

        self._cv2 = cv2
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        except cv2.error:
            raise DeviceError("no window: this OpenCV build has no GUI (opencv-python-headless); install opencv-python in its place, or " + ALTERNATIVES) from None

    async def write(self, frame: AVFrame) -> None:
        """Show the frame."""
        self._cv2.imshow(self.title, self._cv2.cvtColor(frame.image, self._cv2.COLOR_RGB2BGR))
        self._cv2.waitKey(1)

    async def aclose(self) -> None:
        """Close the window."""
        self._cv2.destroyWindow(self.title)


class CameraSource:
    """The webcam's latest frame (RGB) for backends that take video; opened lazily, optional."""

    def __init__(self, index: int = 0) -> None:
        import cv2

        self._cv2 = cv2
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            raise DeviceError(f"no camera at index {index}; run without --camera, or " + ALTERNATIVES)

    def latest(self) -> np.ndarray | None:
        """Grab one frame now (None if the camera stopped delivering)."""
        ok, image = self._capture.read()
        return self._cv2.cvtColor(image, self._cv2.COLOR_BGR2RGB) if ok else None

    def close(self) -> None:
        """Release the camera."""
        self._capture.release()
