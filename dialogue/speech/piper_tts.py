"""Piper TTS streamed sentence by sentence, with phoneme timings kept for the avatar's visemes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import itertools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from liveavatar.dialogue.speech.sentences import bounded_pieces
from liveavatar.dialogue.speech.shaping import shape_voice_parts
from liveavatar.dialogue.speech.voice import BUNDLED_VOICES, VoiceOptions
from liveavatar.media import AudioChunk, PhonemeSpan


SILENT_DB = -40.0  # below a piece's peak, 5 ms of it count as silence (where the first sound starts)
SOUND_LEAD_S = 0.01  # silence kept before the first sound when a piece starts at it (the onset's own rise)
FIRST_PART_S = 0.3  # a reply's first sentence, shaped: seconds of sound in its first part (the rest is shaped meanwhile)
LIMIT_KNEE = 0.9  # a part that peaks above the voice's volume is bent down from this fraction of it (soft_limit)
PART_SEEK_S = 0.08  # a part's cut moves by up to this (seconds) to the quietest 10 ms around it


def part_cuts(pcm: np.ndarray, rate: int, sound: int) -> list[int]:
    """Where to cut a reply's first sentence into parts: FIRST_PART_S after its first sound (`sound`, a sample index),
    then each part twice as long as the one before, each cut moved to the quietest 10 ms within PART_SEEK_S of it (a
    pause between words where there is one); none when what would follow the first part is under FIRST_PART_S."""
    cuts, length, at, frame = [], FIRST_PART_S * rate, sound, rate // 100
    while at + 2 * length < len(pcm):
        aim = int(at + length)
        low, high = max(at + frame, aim - int(PART_SEEK_S * rate)), min(len(pcm) - frame, aim + int(PART_SEEK_S * rate))
        starts = np.arange(low, high - frame, frame // 2)
        energy = [float(np.sum(np.square(pcm[i : i + frame], dtype=np.float64))) for i in starts]
        cut = int(starts[int(np.argmin(energy))] + frame // 2) if len(starts) else aim
        cuts.append(cut)
        length, at = 2 * (cut - at), cut
    return cuts


def soft_limit(pcm: np.ndarray, ceiling: float) -> np.ndarray:
    """`pcm` with samples above LIMIT_KNEE of `ceiling` bent smoothly towards it (never past it); the rest untouched."""
    knee = LIMIT_KNEE * ceiling
    loud = np.abs(pcm) > knee
    if not loud.any():
        return pcm
    out = pcm.copy()
    room = ceiling - knee
    out[loud] = np.sign(pcm[loud]) * (knee + room * np.tanh((np.abs(pcm[loud]) - knee) / room))
    return out


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
    """Load a Piper voice once per process (read-only, shared by every persona that uses it), with its phoneme
    alignments, on an onnxruntime session whose worker sleeps between operators instead of spinning: as fast (first
    audio 0.113 against 0.110 s) for 12 % less CPU, and no core kept busy after each sentence (0.05 cores a served
    conversation)."""
    import onnx
    import onnxruntime as ort
    from piper import PiperConfig, PiperVoice
    from piper.patch_voice_with_alignment import add_alignment_output

    graph = onnx.load(str(model))
    with contextlib.suppress(ValueError):  # the file already has the alignment output
        add_alignment_output(graph)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))))


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
        SOUND_LEAD_S before its first sound as heard (Piper puts 35-65 ms of silence before it), its phonemes moved to
        match; and with a shaped voice, that sentence comes in parts (FIRST_PART_S of sound first, each next part twice
        as long as the one before), each shaped alone, so its first sound waits only for its own share of the vocoder."""
        from piper import SynthesisConfig

        still = {} if self.options.variation else {"noise_scale": 0.0, "noise_w_scale": 0.0}
        cfg = SynthesisConfig(length_scale=1.0 / self.options.speaking_rate, normalize_audio=True, **still)
        pts = 0.0
        sentences = (s for piece in bounded_pieces(text) for s in self._voice.synthesize(piece, syn_config=cfg, include_alignments=True))
        for index, sentence in enumerate(sentences):
            if stop is not None and stop.is_set():
                return
            first = from_first_sound and index == 0
            for pcm, spans in self._sentence_parts(sentence.audio_float_array.astype(np.float32), sentence.phoneme_alignments or [], first):
                if stop is not None and stop.is_set():
                    return
                chunk = AudioChunk(pcm, self.rate, pts, spans)
                pts = chunk.end_pts
                yield chunk

    def _sentence_parts(self, raw: np.ndarray, alignments: list, from_first_sound: bool) -> Iterator[tuple[np.ndarray, tuple[PhonemeSpan, ...]]]:
        """One sentence's speech, shaped and scaled to the voice's volume, with its phonemes: whole, or in parts when
        it starts a reply (`from_first_sound`: cut to its first sound as heard, in parts when the voice is shaped)."""
        rate, options = self.rate, self.options
        cuts = part_cuts(raw, rate, first_sound(raw, rate)) if from_first_sound and options.shaped else []
        parts = shape_voice_parts(raw, rate, options.pitch_semitones, options.formant_shift, cuts) if options.shaped else iter([raw])
        head = next(parts)
        cut = first_sound(head, rate) if from_first_sound else 0  # on the sound as it will be heard
        peak = max(float(np.max(np.abs(head))) if len(head) else 0.0, float(np.max(np.abs(raw))) if cuts and len(raw) else 0.0)
        scale = options.volume / peak if peak > 0 else 1.0  # a sentence in parts: its first part and Piper's own peak
        spans, at = [], -cut  # every phoneme, on the samples left after the cut
        for align in alignments:
            n = int(align.num_samples)
            if at + n > 0:  # what the cut left of it
                spans.append(PhonemeSpan(align.phoneme, max(at, 0), at + n - max(at, 0)))
            at += n
        start = 0
        for index, pcm in enumerate(itertools.chain([head[cut:]], parts)):  # each later part shaped only when asked for
            pcm = (pcm * scale).astype(np.float32)
            pcm = pcm if index == 0 else soft_limit(pcm, options.volume)  # later parts may peak a little higher
            end = start + len(pcm)
            inside = (PhonemeSpan(p.phoneme, max(p.start, start) - start, min(p.start + p.length, end) - max(p.start, start))
                      for p in spans if p.start < end and p.start + p.length > start)  # fmt: skip
            yield pcm, tuple(inside)
            start = end

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
