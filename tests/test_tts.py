"""Offline speech: sentence streaming, phoneme timings for visemes, and personas that sound different."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from liveavatar.agent.config import load_persona
from liveavatar.dialogue.speech import shaping
from liveavatar.dialogue.speech.piper_tts import (FIRST_PART_S, PART_SEEK_S, SOUND_LEAD_S, PiperTTS, VoiceNotFound, first_sound, load_voice,
                                                  voice_files)  # fmt: skip
from liveavatar.dialogue.speech.shaping import CROSSFADE_S, PART_MARGIN_S, pyworld, shape_voice, shape_voice_parts
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


def test_without_variation_a_text_is_the_same_samples_every_time_and_with_it_not() -> None:
    text = "I like to read science fiction before bed."
    still, varied = PiperTTS(VoiceOptions(variation=False, pitch_semitones=2.0)), PiperTTS(VoiceOptions())
    first, second = ([c.pcm for c in still.synthesize(text)] for _ in range(2))
    assert len(first) == 1 and np.array_equal(first[0], second[0]), "the mean rendering, shaped, is the same every time"
    takes = [np.concatenate([c.pcm for c in varied.synthesize(text)]) for _ in range(2)]
    assert len(takes[0]) != len(takes[1]) or not np.array_equal(*takes), "Piper's own variation is kept by default"


def test_first_sound_is_found_after_silence_and_a_little_before_the_sound() -> None:
    rate = 22050
    tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(rate // 2) / rate)
    for lead_s in (0.0, 0.005, 0.06, 0.3):
        hiss = np.random.default_rng(1).normal(0, 0.5 * 10 ** (-50 / 20), int(lead_s * rate))  # 50 dB below the voice
        start = first_sound(np.concatenate([hiss, tone]).astype(np.float32), rate)
        assert max(0.0, lead_s - SOUND_LEAD_S) - 0.006 <= start / rate <= max(0.0, lead_s - SOUND_LEAD_S) + 1e-9, lead_s
    assert first_sound(np.zeros(1000, np.float32), rate) == 0 and first_sound(np.zeros(0, np.float32), rate) == 0


def test_a_reply_can_start_at_its_first_sound_with_its_phonemes_moved_to_match() -> None:
    tts = PiperTTS(VoiceOptions(pitch_semitones=7, formant_shift=1.16, variation=False))
    text = "Oh, I love it. And the stars too."
    plain = list(tts.synthesize(text))
    assert len(plain) == 2 and all(first_sound(c.pcm, c.rate) / c.rate >= 0.015 for c in plain), "Piper puts silence before each sentence"
    trimmed = list(tts.synthesize(text, from_first_sound=True))
    assert first_sound(trimmed[0].pcm, trimmed[0].rate) == 0, "the first sentence should start at its sound"
    assert first_sound(trimmed[-1].pcm, trimmed[-1].rate) / trimmed[-1].rate >= 0.015, "later sentences keep their lead-in"
    assert len(trimmed) == 3, "the shaped first sentence comes in two parts (0.3 s of sound, then the rest)"
    assert sum(c.duration for c in trimmed[:2]) == pytest.approx(plain[0].duration - first_sound(plain[0].pcm, tts.rate) / tts.rate, abs=0.012)
    for chunk in trimmed:
        assert sum(span.length for span in chunk.phonemes) == len(chunk.pcm)
        assert [s.start for s in chunk.phonemes] == list(np.cumsum([0] + [s.length for s in chunk.phonemes[:-1]]))
    assert [c.pts for c in trimmed] == pytest.approx(list(np.cumsum([0.0] + [c.duration for c in trimmed[:-1]])))
    assert 0.7 <= max(np.abs(np.concatenate([c.pcm for c in trimmed]))) <= 0.8  # the voice's volume, later parts bent down to it


def test_a_long_first_sentence_comes_in_parts_each_twice_as_long_joined_without_a_click(monkeypatch: pytest.MonkeyPatch) -> None:
    tts = PiperTTS(VoiceOptions(pitch_semitones=5, formant_shift=1.1, variation=False))
    text = "Well, the rings of Saturn are mostly made of ice and a little rock, and they are very thin."
    whole = next(tts.synthesize(text, from_first_sound=False))
    shaped = []  # lengths of the audio the vocoder was given, in order
    vocoder = shaping.shape_voice
    monkeypatch.setattr(shaping, "shape_voice", lambda pcm, *args: (shaped.append(len(pcm)), vocoder(pcm, *args))[1])
    chunks = tts.synthesize(text, from_first_sound=True)
    parts = [next(chunks)]
    assert len(shaped) == 1 and shaped[0] < 0.5 * len(whole.pcm), "the first part waited for more than its own share"
    parts += list(chunks)
    assert len(shaped) == len(parts)
    assert len(parts) >= 3, [round(c.duration, 2) for c in parts]
    lengths = [c.duration for c in parts]
    assert FIRST_PART_S - PART_SEEK_S <= lengths[0] - SOUND_LEAD_S <= FIRST_PART_S + PART_SEEK_S + 0.005, lengths
    for before, after in zip(lengths[:-2], lengths[1:-1]):  # each next part about twice as long (its cut may move)
        assert 2 * before - 2 * PART_SEEK_S - 0.02 <= after <= 2 * before + 2 * PART_SEEK_S + 0.02, lengths
    joined = np.concatenate([c.pcm for c in parts])
    assert len(joined) == len(whole.pcm) - first_sound(whole.pcm, tts.rate)  # every sample kept (the lead-in aside)
    jumps = np.abs(np.diff(joined))  # sample to sample: a click is a jump larger than the voice itself makes
    seams = np.cumsum([len(c.pcm) for c in parts[:-1]])
    away = np.ones(len(jumps), bool)
    for seam in seams:
        away[max(0, seam - 300) : seam + 300] = False
    near = jumps[~away]
    assert near.max() <= jumps[away].max(), f"a click where parts meet: {near.max():.3f} against {jumps[away].max():.3f} elsewhere"
    f0_whole, f0_parts = median_f0(whole.pcm, tts.rate), median_f0(joined, tts.rate)
    assert abs(12 * np.log2(f0_parts / f0_whole)) < 0.3, (f0_whole, f0_parts)


def test_shaping_in_parts_keeps_the_length_and_the_first_part_needs_only_its_own_audio() -> None:
    rate = 22050
    t = np.arange(rate) / rate
    voice = (sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 30)) * 0.1).astype(np.float32)
    cuts = [4000, 9000]
    parts = list(shape_voice_parts(voice, rate, 7.0, 1.0, cuts))
    fade = int(CROSSFADE_S * rate)
    assert [len(p) for p in parts] == [4000 - fade, 5000, len(voice) - 9000 + fade]
    changed = voice.copy()
    changed[4000 + int(PART_MARGIN_S * rate) + 1 :] = 0.0  # what the first part's analysis never sees
    assert np.array_equal(next(shape_voice_parts(changed, rate, 7.0, 1.0, cuts)), parts[0])
    assert 12 * np.log2(median_f0(np.concatenate(parts), rate) / median_f0(voice, rate)) == pytest.approx(7.0, abs=0.1)
    assert [len(p) for p in shape_voice_parts(voice, rate, 7.0, 1.0, [10, len(voice) - 10])] == [len(voice)]  # cuts at the ends


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


def test_the_voice_speaks_as_piper_loads_it_on_a_runtime_that_does_not_spin() -> None:
    from piper import PiperVoice, SynthesisConfig

    model, config = voice_files(VoiceOptions().model)
    ours, piper_own = load_voice(model, config), PiperVoice.load(model, config, include_alignments=True)
    still = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    said = [list(voice.synthesize("Hello there. How are you?", syn_config=still, include_alignments=True)) for voice in (ours, piper_own)]
    assert [len(s) for s in said] == [2, 2]
    for a, b in zip(*said):
        assert np.array_equal(a.audio_float_array, b.audio_float_array)
        assert [(p.phoneme, p.num_samples) for p in a.phoneme_alignments] == [(p.phoneme, p.num_samples) for p in b.phoneme_alignments]
        assert len(a.phoneme_alignments) > 5
    # Its worker sleeps between operators: spinning cost 12 % more CPU per sentence and kept a core busy after each one
    assert ours.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_unknown_voice_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(VoiceNotFound, match="not found: .*nobody.onnx"):
        voice_files("nobody.onnx", tmp_path)
