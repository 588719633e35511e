"""Offline speech: sentence streaming, phoneme timings for visemes, and personas that sound different."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from liveavatar.agent.config import load_persona
from liveavatar.dialogue.speech.piper_tts import PiperTTS, VoiceNotFound, voice_files
from liveavatar.dialogue.speech.shaping import pyworld, shape_voice
from liveavatar.dialogue.speech.voice import VoiceOptions

TEXT = "The first sentence plays at once. Meanwhile the second one is still being made. And then a third!"


def median_f0(pcm: np.ndarray, rate: int) -> float:
    f0, _ = pyworld.dio(pcm.astype(np.float64), rate)
    return float(np.median(f0[f0 > 0]))


def test_one_chunk_per_sentence_with_phonemes_covering_every_sample() -> None:
    chunks = list(PiperTTS(VoiceOptions()).synthesize(TEXT))
    assert len(chunks) == 3
    for chunk in chunks:
        assert chunk.rate == 22050 and 0.5 < chunk.duration < 4.0
        assert sum(span.length for span in chunk.phonemes) == len(chunk.pcm)
        assert [s.start for s in chunk.phonemes] == list(np.cumsum([0] + [s.length for s in chunk.phonemes[:-1]]))
        assert {"ɪ", "t"} <= {s.phoneme for s in chunk.phonemes} or len(chunk.phonemes) > 5
    assert [c.pts for c in chunks] == pytest.approx([0.0, chunks[0].duration, chunks[0].duration + chunks[1].duration])
    assert 0.7 <= max(np.abs(np.concatenate([c.pcm for c in chunks]))) <= 0.8  # normalised to the voice's volume


def test_first_sentence_is_ready_before_the_rest_is_synthesized() -> None:
    tts = PiperTTS(VoiceOptions(pitch_semitones=4))

    async def timeline() -> list[float]:
        start, arrivals = time.perf_counter(), []
        async for _chunk in tts.stream(f"{TEXT} {TEXT}"):
            arrivals.append(time.perf_counter() - start)
        return arrivals

    arrivals = asyncio.run(timeline())
    assert len(arrivals) == 6
    assert arrivals[0] < 0.4 * arrivals[-1]


def test_the_example_personas_sound_clearly_different(examples: Path) -> None:
    voices = {name: load_persona(examples / f"{name}.yaml").voice for name in ("nova", "iris")}
    text = "This is how I sound when I talk for a while. I like to talk about the weather, the stars and the sea."
    pitches = {}
    for name, voice in voices.items():
        tts = PiperTTS(voice)  # Piper samples noise: the median over three sentences keeps the estimate steady
        pcm = np.concatenate([c.pcm for c in tts.synthesize(text)])
        pitches[name] = median_f0(pcm, tts.rate)
    semitones = 12 * np.log2(pitches["nova"] / pitches["iris"])
    assert semitones > 2.5, f"median pitch nova {pitches['nova']:.0f} Hz, iris {pitches['iris']:.0f} Hz"  # configured 4.5


def test_shaping_moves_pitch_exactly_and_keeps_timing() -> None:
    rate = 22050
    t = np.arange(rate) / rate
    voice = (sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 30)) * 0.1).astype(np.float32)  # a 140 Hz buzz
    shifted = shape_voice(voice, rate, 7.0, 1.0)
    assert len(shifted) == len(voice)
    assert 12 * np.log2(median_f0(shifted, rate) / median_f0(voice, rate)) == pytest.approx(7.0, abs=0.1)
    tts = PiperTTS(VoiceOptions())
    speech = np.concatenate([c.pcm for c in tts.synthesize("Keep every phoneme where it was.")])
    assert 5.0 < 12 * np.log2(median_f0(shape_voice(speech, tts.rate, 7.0, 1.0), tts.rate) / median_f0(speech, tts.rate)) < 8.0


def test_unknown_voice_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(VoiceNotFound, match="not found: .*nobody.onnx"):
        voice_files("nobody.onnx", tmp_path)
