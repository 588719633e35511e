"""A/V bookkeeping: every frame carries exactly its share of audio, however long the stream."""

from __future__ import annotations

import numpy as np
import pytest

from liveavatar.media import AudioChunk, FrameAudioSplitter, StreamResampler, resample, samples_before_frame, samples_in_frame, to_int16


@pytest.mark.parametrize("rate,fps", [(16000, 25), (24000, 25), (22050, 25), (44100, 30), (48000, 29.97), (44100, 29.97)])
def test_samples_per_frame_never_drift_over_a_long_stream(rate: int, fps: float) -> None:
    frames = 25 * 3600 * 10  # ten hours at 25 fps
    counts = np.array([samples_in_frame(i, rate, fps) for i in range(0, 3000)])
    assert counts.min() >= int(rate / fps) and counts.max() <= int(rate / fps) + 1
    exact = frames * rate * 100 // round(fps * 100)  # floor(frames · rate / fps) in exact integers
    assert samples_before_frame(frames, rate, fps) == exact


def test_splitter_cuts_exact_frames_and_pads_only_when_asked() -> None:
    splitter = FrameAudioSplitter(22050, 25)
    rng = np.random.default_rng(1)
    stream = rng.standard_normal(22050 * 3 + 123).astype(np.float32)
    for start in range(0, len(stream), 1000):  # arbitrary chunk sizes
        splitter.feed(stream[start : start + 1000])
    out = []
    while splitter.ready():
        out.append(splitter.take())
    assert all(len(f) == 882 for f in out)
    assert len(out) == 75
    with pytest.raises(ValueError):
        splitter.take()
    tail = splitter.take(pad=True)
    assert len(tail) == 882 and np.all(tail[123:] == 0)
    np.testing.assert_array_equal(np.concatenate(out + [tail[:123]]), stream)


def test_streaming_resampler_matches_one_shot_resampling() -> None:
    x = np.random.default_rng(2).standard_normal(22050 * 2).astype(np.float32)
    stream = StreamResampler(22050, 24000)
    pieces = [stream.process(x[i : i + 777]) for i in range(0, len(x), 777)] + [stream.flush()]
    y = np.concatenate(pieces)
    assert len(y) == 48000
    np.testing.assert_allclose(y, resample(x, 22050, 24000), atol=1e-6)


def test_audio_chunk_rejects_stereo_and_converts_int16() -> None:
    with pytest.raises(ValueError, match="mono"):
        AudioChunk(np.zeros((10, 2), np.float32), 16000)
    chunk = AudioChunk(np.array([0, 16384, -32768], np.int16), 16000, pts=1.0)
    assert chunk.pcm.dtype == np.float32 and chunk.pcm.tolist() == [0.0, 0.5, -1.0]
    assert chunk.end_pts == pytest.approx(1.0 + 3 / 16000)
    assert to_int16(np.array([1.5, -1.5], np.float32)).tolist() == [32767, -32768]
