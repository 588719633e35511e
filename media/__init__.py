"""Shared media vocabulary: audio chunks, audio-carrying video frames, resampling, frame bookkeeping."""

from media.audio import AudioChunk, PhonemeSpan, to_float32, to_int16
from media.fifo import SampleFIFO
from media.frames import AVFrame
from media.framing import FrameAudioSplitter, samples_in_frame, samples_before_frame
from media.resample import StreamResampler, resample

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
