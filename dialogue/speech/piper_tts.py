"""Piper TTS streamed sentence by sentence, with phoneme timings kept for the avatar's visemes."""

from __future__ import annotations

import asyncio
import functools
import importlib
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from liveavatar.dialogue.speech.sentences import bounded_pieces
from liveavatar.dialogue.speech.shaping import shape_voice
from liveavatar.dialogue.speech.voice import BUNDLED_VOICES, VoiceOptions
from liveavatar.media import AudioChunk, PhonemeSpan


SILENT_DB = -40.0  # below a piece's peak, 5 ms of it count as silence (where the first sound starts)
SOUND_LEAD_S = 0.01  # silence kept before the first sound when a piece starts at it (the onset's own rise)


def first_sound(pcm: np.ndarray, rate: int) -> int:
    """The sample `SOUND_LEAD_S` before the first 5 ms of `pcm` louder than `SILENT_DB` below its peak (0 when silent)."""
    frame = max(1, rate // 200)
    peak = float(np.max(np.abs(pcm))) if len(pcm) else 0.0
    if peak == 0.0:
        return 0
    usable = len(pcm) // frame * frame
    rms = np.sqrt(np.mean(np.square(pcm[:usable].reshape(-1, frame), dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms > peak * 10 ** (SILENT_DB / 20))
    return 0 if not len(loud) else max(0, int(loud[0]) * frame - int(SOUND_LEAD_S * rate))


class VoiceNotFound(FileNotFoundError):
    """The voice named in a persona is neither bundled nor a readable file."""


def voice_files(model: str, base_dir: Path | None = None) -> tuple[Path, Path]:
    """The (.onnx, .onnx.json) pair for a bundled voice name or a path (relative to `base_dir`)."""
    if model in BUNDLED_VOICES:
        package = BUNDLED_VOICES[model]
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise VoiceNotFound(f"bundled voice {model!r} needs the package {package.replace('_', '-')}") from exc
        return Path(module.model_path()), Path(module.config_path())
    path = Path(model)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    config = path.with_name(path.name + ".json")
    if not path.is_file() or not config.is_file():
        raise VoiceNotFound(
            f"voice {model!r}: expected a bundled voice ({', '.join(BUNDLED_VOICES)}) or a Piper .onnx file "
            f"with its .onnx.json beside it; not found: {path if not path.is_file() else config}"
        )
    return path, config


@functools.lru_cache(maxsize=4)
def load_voice(model: Path, config: Path):  # noqa: ANN202 - piper's own type
    """Load a Piper voice once per process (read-only, shared by every persona that uses it)."""
    from piper import PiperVoice

    return PiperVoice.load(model, config, include_alignments=True)


class PiperTTS:
    """Synthesizes text with a persona's voice; `stream()` yields one AudioChunk per sentence."""

    def __init__(self, options: VoiceOptions, base_dir: Path | None = None, executor: Executor | None = None) -> None:
        self.options = options
        self.executor = executor  # where synthesis runs (None: the event loop's default executor)
        self._voice = load_voice(*voice_files(options.model, base_dir))
        self.rate: int = self._voice.config.sample_rate

    def synthesize(self, text: str, stop: threading.Event | None = None, from_first_sound: bool = False) -> Iterator[AudioChunk]:
        """Blocking: sentence chunks of `text` (pts from 0), stopping early when `stop` is set; text too long for
        one synthesis is spoken in pieces of at most MAX_PIECE_CHARS. `from_first_sound`: the first chunk starts
        SOUND_LEAD_S before its first sound as heard (Piper puts 35-65 ms of silence before it), its phonemes moved to match."""
        from piper import SynthesisConfig

        still = {} if self.options.variation else {"noise_scale": 0.0, "noise_w_scale": 0.0}
        cfg = SynthesisConfig(length_scale=1.0 / self.options.speaking_rate, normalize_audio=True, **still)
        pts = 0.0
        sentences = (s for piece in bounded_pieces(text) for s in self._voice.synthesize(piece, syn_config=cfg, include_alignments=True))
        for index, sentence in enumerate(sentences):
            if stop is not None and stop.is_set():
                return
            pcm = sentence.audio_float_array.astype(np.float32)
            if self.options.shaped:
                pcm = shape_voice(pcm, self.rate, self.options.pitch_semitones, self.options.formant_shift)
            cut = first_sound(pcm, self.rate) if from_first_sound and index == 0 else 0  # on the sound as it will be heard
            pcm = pcm[cut:]
            peak = float(np.max(np.abs(pcm))) if len(pcm) else 0.0
            if peak > 0:
                pcm *= self.options.volume / peak
            spans, at = [], -cut
            for align in sentence.phoneme_alignments or []:
                n = int(align.num_samples)
                if at + n > 0:  # what the cut left of it
                    spans.append(PhonemeSpan(align.phoneme, max(at, 0), at + n - max(at, 0)))
                at += n
            chunk = AudioChunk(pcm, self.rate, pts, tuple(spans))
            pts = chunk.end_pts
            yield chunk

    async def stream(self, text: str, from_first_sound: bool = False) -> AsyncIterator[AudioChunk]:
        """Sentence chunks as each is ready; the first sentence plays while later ones are synthesized (from its first
        sound with `from_first_sound`, as in `synthesize`)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[AudioChunk | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                for chunk in self.synthesize(text, stop, from_first_sound):
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        worker = loop.run_in_executor(self.executor, work)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            if not worker.done():
                worker.cancel()
