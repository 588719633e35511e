"""The avatar's video as VP8, encoded here rather than by aiortc, so its bitrate has a ceiling and its settings suit
rendered frames.

aiortc's own encoder follows the browser's bandwidth estimate up to 1.5 Mbit/s (on a LAN or localhost the estimate
always gets there) and runs libvpx's temporal denoiser, which is meant for cameras: on our frames it blurs motion.
Measured on the portrait avatar's 512² frames (PSNR of the luma against the frames rendered): aiortc's settings
43.3 dB at 1.5 Mbit/s, 2.9 ms a frame to encode, 0.98 ms to decode; these (no denoiser, cpu-used -10) 44.9 dB at
0.5 Mbit/s, 1.54 ms and 0.65 ms, and a third of the packets on both sides. Below the ceiling the browser's estimate
still rules (a congested link gets less), and its keyframe requests are honoured.
"""

from __future__ import annotations

import fractions

import av
import cv2
import numpy as np

DEFAULT_VIDEO_BITRATE = 500_000  # bits per second: the ceiling for one page's avatar video
MIN_VIDEO_BITRATE = 100_000  # below this a 512² talking head falls apart; a lower request is an error
SPEED = "-10"  # libvpx cpu-used in real-time mode: 1.54 ms a 512² frame at 0.5 Mbit/s (-8: 1.75 ms, 47.2 dB at 0.7)
RESTART_CHANGE = 0.2  # libvpx takes its bitrate when it starts: it restarts (with a keyframe) when the target moves this much


class Vp8Stream:
    """Encodes one video stream's frames (RGB uint8) into VP8 packets at `min(ceiling, target)` bits per second."""

    def __init__(self, ceiling: int, time_base: fractions.Fraction) -> None:
        if ceiling < MIN_VIDEO_BITRATE:
            raise ValueError(f"video bitrate {ceiling} bit/s: expected at least {MIN_VIDEO_BITRATE}")
        self.ceiling = ceiling
        self.fps = 0.0
        self.time_base = time_base
        self.keyframes = 0  # packets that were complete pictures
        self.starts: list[int] = []  # the bitrate of each encoder started (the first, then each restart)
        self._codec: av.VideoCodecContext | None = None
        self._yuv: np.ndarray | None = None

    def encode(self, image: np.ndarray, pts: int, fps: float, target: int | None = None, keyframe: bool = False) -> av.Packet:
        """Frame `image` at `pts` (in `time_base`) of a `fps` stream as one VP8 packet; `target`: the receiver's
        bandwidth estimate (bit/s, None when unknown); `keyframe`: a complete picture (the receiver asked for one)."""
        height, width = image.shape[:2]
        bitrate = min(self.ceiling, target) if target else self.ceiling
        codec = self._codec
        if (codec is None or (codec.width, codec.height) != (width, height) or fps != self.fps
                or abs(bitrate - self.starts[-1]) > RESTART_CHANGE * self.starts[-1]):  # fmt: skip
            codec = self._codec = self._open(width, height, fps, bitrate)
        frame = self._frame(image)
        frame.pts, frame.time_base = pts, self.time_base
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        packets = codec.encode(frame)
        packet = packets[0] if packets else av.Packet(b"")
        packet.pts, packet.time_base = pts, self.time_base
        self.keyframes += bool(packet.is_keyframe)
        return packet

    def _open(self, width: int, height: int, fps: float, bitrate: int) -> av.VideoCodecContext:
        """A real-time, constant-bitrate libvpx encoder: no frames held back, one thread (sessions run in parallel)."""
        self.fps = fps
        self.starts.append(bitrate)
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.time_base = self.time_base
        codec.framerate = fractions.Fraction(fps).limit_denominator(1001)
        codec.bit_rate, codec.gop_size, codec.qmin, codec.qmax = bitrate, 3000, 2, 56
        codec.thread_count = 1
        codec.options = {
            "deadline": "realtime", "cpu-used": SPEED, "lag-in-frames": "0", "partitions": "0", "static-thresh": "1",
            "noise-sensitivity": "0", "minrate": str(bitrate), "maxrate": str(bitrate), "bufsize": str(bitrate),
            "undershoot-pct": "100", "overshoot-pct": "15",
        }  # fmt: skip
        return codec

    def _frame(self, image: np.ndarray) -> av.VideoFrame:
        """The encoder's YUV 4:2:0 made by OpenCV (0.2 ms for 512², where FFmpeg's converter takes 2.8 ms), in a buffer
        kept from frame to frame (a fresh one costs page faults: buffers this large are mapped on their own)."""
        height, width = image.shape[:2]
        if width % 2 or height % 2:
            return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        if self._yuv is None or self._yuv.shape != (height * 3 // 2, width):
            self._yuv = np.empty((height * 3 // 2, width), np.uint8)
        return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420, dst=self._yuv), format="yuv420p")
