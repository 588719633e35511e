"""The page ↔ server wire format: small binary messages for media, JSON for everything else.

Page → server (binary): 1 byte kind, then payload.
  MIC     0x01  PCM16 little-endian mono at 16 kHz (any length up to the size cap)
  CAMERA  0x02  one JPEG image
Page → server (text): JSON objects {"type": "hello" | "played" | "stop", ...}.

Server → page (binary): FRAME 0x10, header `<BIIiHH` (kind, frame index, jpeg bytes, generation or -1,
  pcm sample rate / 10, reserved), then the JPEG, then PCM16 mono: one video frame and exactly its audio.
Server → page (text): JSON objects {"type": "config" | "flush" | "state" | "transcript" | "metrics" |
  "interrupted" | "error", ...}. "config" (first, on connect) carries the stream's `fps`, `audio_rate`, `size`,
  `transport`, `ice_servers`, `personas` (names a page may pick) and `camera`: the personas (by name) whose agents
  look at the person's camera; a page talking to one of the others does not ask for the camera at all.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from liveavatar.media import AVFrame, to_int16
from liveavatar.media.images import ImageError, NotAnImage, decode_image

MIC, CAMERA, FRAME = 0x01, 0x02, 0x10
FRAME_HEADER = struct.Struct("<BIIiHH")
MAX_MESSAGE_BYTES = 512 * 1024  # a 640×480 JPEG is ~30-60 kB; 20 ms of mic audio 640 B
MAX_MIC_SAMPLES = 16000  # one message carries at most a second of microphone audio
MAX_CAMERA_PIXELS = 3840 * 2160  # a webcam frame: 4K at most (the page sends 640×480)
JPEG_QUALITY = 82
PLAYBACK_LEAD_S = 0.12  # the page plays each burst of frames this far behind its arrival (sent in "config" as jitter_s)


class ProtocolError(ValueError):
    """A message the page should not have sent; the connection lives on."""


@dataclass(frozen=True)
class MicAudio:
    """16 kHz PCM from the page's microphone, as float32."""

    pcm: np.ndarray


@dataclass(frozen=True)
class CameraImage:
    """One decoded webcam frame (RGB uint8)."""

    image: np.ndarray


def encode_frame(frame: AVFrame) -> bytes:
    """One AVFrame as a FRAME message."""
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    header = FRAME_HEADER.pack(FRAME, frame.index, len(jpeg), -1 if frame.generation is None else frame.generation, frame.audio_rate // 10, 0)
    return header + jpeg.tobytes() + to_int16(frame.audio).tobytes()


def decode_binary(message: bytes) -> MicAudio | CameraImage:
    """A binary page message; raises ProtocolError for anything malformed."""
    if not message:
        raise ProtocolError("empty binary message")
    kind, payload = message[0], message[1:]
    if kind == MIC:
        if len(payload) % 2:
            raise ProtocolError("microphone audio must be whole 16-bit samples")
        if len(payload) // 2 > MAX_MIC_SAMPLES:
            raise ProtocolError(f"microphone message too long: {len(payload) // 2} samples (max {MAX_MIC_SAMPLES})")
        return MicAudio(np.frombuffer(payload, "<i2").astype(np.float32) / 32768.0)
    if kind == CAMERA:
        try:
            return CameraImage(decode_image(payload, MAX_CAMERA_PIXELS))
        except NotAnImage:
            raise ProtocolError("camera message is not a JPEG image") from None
        except ImageError as exc:
            raise ProtocolError(f"camera message: {exc}") from None
    raise ProtocolError(f"unknown binary message kind 0x{kind:02x}")


def decode_text(message: str) -> dict:
    """A JSON page message with a string `type`; raises ProtocolError otherwise."""
    try:
        obj = json.loads(message)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {exc.msg}") from None
    except RecursionError:
        raise ProtocolError("JSON nested too deeply") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError('expected a JSON object with a "type"')
    return obj
