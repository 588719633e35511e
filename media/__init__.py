"""Shared media vocabulary: audio chunks, audio-carrying video frames, resampling, frame bookkeeping."""

from liveavatar.media.audio import AudioChunk, PhonemeSpan, to_float32, to_int16
from liveavatar.media.fifo import SampleFIFO
from liveavatar.media.frames import AVFrame
from liveavatar.media.framing import FrameAudioSplitter, samples_in_frame, samples_before_frame
from liveavatar.media.resample import StreamResampler, resample

__all__ = [
    "AudioChunk",
    "AVFrame",
    "FrameAudioSplitter",
    "PhonemeSpan",
    "SampleFIFO",
    "StreamResampler",
    "resample",
    "samples_before_frame",
    "samples_in_frame",
    "to_float32",
    "to_int16",
]
