"""WebRTC media for the browser page (aiortc): the avatar's video (VP8) and voice (Opus) out, the person's microphone
and camera in, over one peer connection negotiated on the page's websocket.

Time stamps come from the frame index, never from a wall clock: video frame i is stamped round(i·90000/fps) on the
90 kHz RTP clock and its audio starts at sample round(i·48000/fps) of the 48 kHz Opus clock (an AVFrame carries
exactly its frame's samples, so the two streams can never drift). aiortc puts both tracks in one media stream, so
the browser plays them in sync from the RTCP sender reports. The voice is encoded here (20 ms Opus packets whose
time stamps we set) and handed to aiortc already encoded; so is the video (VP8 under a bitrate ceiling, see vp8.py),
which follows the browser's bandwidth estimates below that ceiling and its keyframe requests.

Frames are written at real time by the conversation; each track sends its media when its time stamp says (one
schedule for both, see SendSchedule). Media that missed its time by more than STALE_S (the connection was not up
yet, or the server stalled) is dropped rather than sent in a burst: a burst would make the browser's jitter buffer
grow and stay deep, delaying everything after it. Real time wins over completeness, and the stamps keep the gap exact.

No address is contacted unless configured: aiortc would otherwise add a public STUN server, and it resolves
`.local` (mDNS) candidates by multicast; both are switched off (`ice_servers` is empty unless given, and mDNS
candidates are removed from the page's offer; the page then reaches our host candidates and we learn its address
from its connectivity checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass
from urllib.parse import unquote

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from liveavatar.devices.browser.vp8 import DEFAULT_VIDEO_BITRATE, Vp8Stream
from liveavatar.media import AVFrame, StreamResampler
from liveavatar.media.framing import samples_before_frame

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
OPUS_RATE = 48000
OPUS_TIME_BASE = fractions.Fraction(1, OPUS_RATE)
OPUS_PACKET = 960  # 20 ms on the 48 kHz RTP clock
OPUS_INPUT_RATES = (8000, 12000, 16000, 24000, 48000)  # what libopus encodes without resampling
OPUS_BITRATE = 32000  # mono speech: clear at 32 kbit/s
STALE_S = 0.1  # media later than this is dropped while newer media waits
EARLY_S = 0.1  # media earlier than this (the server caught up after falling behind) moves the schedule back
PACE_STEP_S = 0.02  # a track waiting for its next item's time looks at its queue again this often
MAX_QUEUED = 25  # per track: beyond this the oldest is dropped (nobody is reading: the connection is not up)
MIC_RATE = 16000
DEFAULT_PLAYOUT_S = 0.08  # the page's playout delay assumed before its first report (a LAN's jitter buffer)
ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server, as both aiortc and the page's RTCPeerConnection take it."""

    url: str
    username: str | None = None
    credential: str | None = None

    def as_page_config(self) -> dict[str, str]:
        """The RTCIceServer dictionary for the page."""
        entry = {"urls": self.url}
        if self.username is not None:
            entry |= {"username": self.username, "credential": self.credential or ""}
        return entry


def parse_ice_server(text: str) -> IceServer:
    """`stun:host[:port]` or `turn[s]:[user:password@]host[:port][?transport=udp|tcp]`; ValueError says what is wrong."""
    if not text.startswith(ICE_SCHEMES):
        raise ValueError(f"ICE server {text!r}: expected a stun:, stuns:, turn: or turns: URL, e.g. turn:user:secret@turn.example.com:3478")
    scheme, rest = text.split(":", 1)
    username = credential = None
    if "@" in rest:
        if scheme.startswith("stun"):
            raise ValueError(f"ICE server {text!r}: a STUN server takes no user name or password")
        userinfo, rest = rest.rsplit("@", 1)
        username, _, credential = userinfo.partition(":")
        username, credential = unquote(username), unquote(credential)
    host = rest.split("?", 1)[0]
    if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?", host):
        raise ValueError(f"ICE server {text!r}: expected host[:port] after {scheme}:")
    if scheme.startswith("turn") and not username:
        raise ValueError(f"ICE server {text!r}: a TURN server needs user:password@ before the host")
    return IceServer(f"{scheme}:{rest}", username, credential)


def _without_mdns_candidates(sdp: str) -> str:
    """The offer minus `.local` host candidates (resolving them would send multicast queries on the LAN)."""
    return "".join(line for line in sdp.splitlines(keepends=True) if not (line.startswith("a=candidate:") and ".local " in line))


class SendSchedule:
    """When media leaves: at its time stamp, on one clock for video and voice (media time 0 at `anchor`).

    The newest media written sets the pace: when it is more than STALE_S late (the server fell behind) or EARLY_S
    early (it caught up in a burst), the schedule moves so that it is due now, and queued media that is then more
    than STALE_S late is dropped. So a stall followed by a burst of catching up reaches the page as one step and a gap
    in the stream, never as a burst (which would make the browser's jitter buffer deepen and stay deep).
    """

    def __init__(self) -> None:
        self.anchor: float | None = None
        self.slips = 0

    def lateness(self, media_s: float) -> float:
        """Seconds past the moment media time `media_s` is due (negative: early); the first call sets the anchor."""
        now = time.monotonic()
        if self.anchor is None:
            self.anchor = now - media_s
        return now - (self.anchor + media_s)

    def settle(self, queue: deque, media_s: Callable[[Any], float]) -> int:
        """Follow the newest queued item (see above); drop queued items too late to send; returns how many went."""
        late = self.lateness(media_s(queue[-1]))
        if late > STALE_S or late < -EARLY_S:
            self.anchor = (self.anchor or 0.0) + late
            self.slips += 1
        dropped = 0
        while len(queue) > 1 and self.lateness(media_s(queue[0])) > STALE_S:
            queue.popleft()
            dropped += 1
        return dropped

    async def next_due(self, queue: deque, media_s: Callable[[Any], float], ready: asyncio.Event,
                       live: Callable[[], bool]) -> tuple[Any, int]:  # fmt: skip
        """Wait for the oldest queued item's time and take it; returns (item, items dropped as too late)."""
        dropped = 0
        while True:
            if not live():
                raise MediaStreamError
            if not queue:
                ready.clear()
                await ready.wait()
                continue
            dropped += self.settle(queue, media_s)
            wait = -self.lateness(media_s(queue[0]))
            if wait > 0:
                await asyncio.sleep(min(wait, PACE_STEP_S))  # look again soon: newer media may change the pace
                continue
            return queue.popleft(), dropped


class AvatarVideoTrack(MediaStreamTrack):
    """The avatar's frames as VP8 packets (encoded here, see vp8.py), stamped from their index."""

    kind = "video"

    def __init__(self, schedule: SendSchedule, max_bitrate: int = DEFAULT_VIDEO_BITRATE) -> None:
        super().__init__()
        self.schedule = schedule
        self.encoder = Vp8Stream(max_bitrate, VIDEO_TIME_BASE)
        self._queue: deque[tuple[np.ndarray, int, float]] = deque()  # (RGB image, pts, fps)
        self._ready = asyncio.Event()
        self._sender: RTCRtpSender | None = None
        self.on_sent: Callable[[int], None] | None = None  # told each frame's pts as it goes to aiortc (benchmarks)
        self.sent = 0
        self.dropped = 0

    def bind(self, sender: RTCRtpSender) -> None:
        """The sender that reads this track (its keyframe requests and bandwidth estimate steer the encoder)."""
        self._sender = sender

    def put(self, image: np.ndarray, index: int, fps: float) -> None:
        """Queue frame `index`; the oldest queued frame goes when nobody reads."""
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((image, samples_before_frame(index, VIDEO_CLOCK, fps), fps))
        self._ready.set()

    async def recv(self) -> av.Packet:
        """The next frame, encoded on the loop's default executor (frames too late to show are skipped while newer
        ones wait)."""
        (image, pts, fps), dropped = await self.schedule.next_due(self._queue, lambda item: item[1] / VIDEO_CLOCK, self._ready,
                                                                  lambda: self.readyState == "live")  # fmt: skip
        self.dropped += dropped
        keyframe, target = self._receiver_wishes()
        packet = await asyncio.get_running_loop().run_in_executor(None, self.encoder.encode, image, pts, fps, target, keyframe)
        self.sent += 1
        if self.on_sent is not None:
            self.on_sent(pts)
        return packet

    def _receiver_wishes(self) -> tuple[bool, int | None]:
        """(a keyframe was asked for, the receiver's bandwidth estimate in bit/s or None), as the sender heard them.

        aiortc acts on the page's RTCP for its own encoder: a picture loss or full-frame request sets a flag that it
        would pass to the encoder, a bandwidth estimate sets the target of the encoder object it packetizes our
        packets with. Both live in private attributes; we take the flag (clearing it, as aiortc does) and read the
        target. tests/test_webrtc.py checks both against aiortc's own RTCP handling."""
        sender = self._sender
        if sender is None:
            return False, None
        keyframe = bool(getattr(sender, "_RTCRtpSender__force_keyframe", False))
        if keyframe:
            sender._RTCRtpSender__force_keyframe = False  # type: ignore[attr-defined]
        packer = getattr(sender, "_RTCRtpSender__encoder", None)
        return keyframe, getattr(packer, "target_bitrate", None)

    def stop(self) -> None:
        """End the track (the connection closed)."""
        super().stop()
        self._ready.set()


class AvatarVoiceTrack(MediaStreamTrack):
    """The avatar's voice as 20 ms Opus packets, stamped from the frame index (48 kHz RTP clock) and sent at their pace.

    Opus takes 8, 12, 16, 24 or 48 kHz as it is, so the avatar's audio (24 kHz by default) goes in unchanged: no
    resampler holds samples back, and each frame's audio makes whole packets at once. Other rates are resampled to
    48 kHz first."""

    kind = "audio"

    def __init__(self, schedule: SendSchedule) -> None:
        super().__init__()
        self.schedule = schedule
        self._queue: deque[list] = deque()  # [pcm int16 mono, pts]
        self._ready = asyncio.Event()
        self._rate = OPUS_RATE  # what the encoder takes
        self._resampler: StreamResampler | None = None  # only for rates Opus does not take
        self._resampled = np.zeros(2, np.int64)
        self._pending = np.zeros(0, np.float32)  # at self._rate
        self._position: int | None = None  # the RTP time (48 kHz) the pending audio starts at
        self._next_index: int | None = None
        self._encoder: av.AudioCodecContext | None = None
        self._sender: RTCRtpSender | None = None
        self._last_pts: int | None = None
        self._origin: int | None = None  # RTP time stamp = origin + pts (mod 2³²); aiortc picks the origin at random
        self._sent_s = 0.0
        self.sent = 0
        self.dropped = 0

    def bind(self, sender: RTCRtpSender) -> None:
        """The sender that reads this track (to learn the RTP time stamps it puts on our packets)."""
        self._sender = sender

    def _start(self, audio_rate: int) -> None:
        """A new stream at `audio_rate`: an encoder for it (and a resampler when Opus does not take it)."""
        self._rate = audio_rate if audio_rate in OPUS_INPUT_RATES else OPUS_RATE
        self._resampler = None
        if self._rate != audio_rate:
            self._restart_resampler(audio_rate)
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate, codec.format, codec.layout = self._rate, "s16", "mono"
        codec.bit_rate, codec.time_base = OPUS_BITRATE, fractions.Fraction(1, self._rate)
        codec.options = {"application": "voip", "frame_duration": "20"}
        self._encoder = codec

    def put(self, frame: AVFrame) -> None:
        """Queue a frame's audio, cut into 20 ms packets (each due at its time stamp)."""
        if self._encoder is None or frame.audio_rate not in (self._rate, getattr(self._resampler, "rate_in", None)):
            self._start(frame.audio_rate)
            self._next_index = None
        if frame.index != self._next_index:  # the first frame (or one after a gap): the stream goes on at the frame's time
            if self._resampler is not None:
                self._restart_resampler(frame.audio_rate)
            self._pending = np.zeros(0, np.float32)
            self._position = samples_before_frame(frame.index, OPUS_RATE, frame.fps)
        self._next_index = frame.index + 1
        audio = frame.audio
        if self._resampler is not None:
            audio = self._resampler.process(frame.audio)
            self._resampled += (len(frame.audio), len(audio))
        self._pending = np.concatenate([self._pending, audio])
        size = self._rate // 50
        while len(self._pending) >= size:
            pcm, self._pending = self._pending[:size], self._pending[size:]
            if len(self._queue) >= MAX_QUEUED:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append([(np.clip(pcm, -1.0, 1.0) * 32767).astype(np.int16), self._position])
            self._position += OPUS_PACKET
        self._ready.set()

    def _restart_resampler(self, rate: int) -> None:
        self._resampler = StreamResampler(rate, OPUS_RATE)
        self._resampled = np.zeros(2, np.int64)  # samples in, samples out since the resampler started

    def silence_queued(self) -> float:
        """Silence all audio not sent yet (barge-in), including what the resampler holds; returns its seconds."""
        for item in self._queue:
            item[0] = np.zeros_like(item[0])
        owed = 0
        if self._resampler is not None:  # what it still owes becomes silence, so later audio keeps its time
            owed = max(0, round(int(self._resampled[0]) * OPUS_RATE / self._resampler.rate_in) - int(self._resampled[1]))
            self._restart_resampler(self._resampler.rate_in)
        self._pending = np.zeros(len(self._pending) + owed, np.float32)
        return len(self._queue) * OPUS_PACKET / OPUS_RATE + len(self._pending) / self._rate

    def take_sent_seconds(self) -> float:
        """Seconds of audio sent since the last call."""
        sent, self._sent_s = self._sent_s, 0.0
        return sent

    def next_rtp_timestamp(self) -> int | None:
        """The RTP time stamp the next packet will carry (None until the first packets have gone out)."""
        if self._origin is None:
            return None
        pts = self._queue[0][1] if self._queue else self._position
        return None if pts is None else (self._origin + pts) & 0xFFFFFFFF

    def _learn_origin(self) -> None:
        # aiortc keeps the time stamp of the last packet it sent in a private attribute; the packet it sent last is
        # the one we returned last (it reads the next one only after sending). Without it, pages fall back to a
        # timed mute on barge-in (see WebRTCMedia.flush).
        if self._origin is None and self._last_pts is not None and self._sender is not None:
            sent = getattr(self._sender, "_RTCRtpSender__rtp_timestamp", 0)
            if sent:
                self._origin = (sent - self._last_pts) & 0xFFFFFFFF

    async def recv(self) -> av.Packet:
        """The next Opus packet, at its due time (late ones are skipped while newer ones wait)."""
        self._learn_origin()
        (pcm, pts), dropped = await self.schedule.next_due(self._queue, lambda item: item[1] / OPUS_RATE, self._ready,
                                                           lambda: self.readyState == "live")  # fmt: skip
        self.dropped += dropped
        return self._encode(pcm, pts)

    def _encode(self, pcm: np.ndarray, pts: int) -> av.Packet:
        assert self._encoder is not None
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = self._rate
        packets = self._encoder.encode(frame)
        packet = packets[0] if packets else av.Packet(b"\xf8\xff\xfe")  # (an Opus silence frame, never expected)
        packet.pts, packet.time_base = pts, OPUS_TIME_BASE
        self.sent += 1
        self._sent_s += OPUS_PACKET / OPUS_RATE
        self._last_pts = pts
        return packet

    def stop(self) -> None:
        """End the track (the connection closed)."""
        super().stop()
        self._ready.set()


class WebRTCMedia:
    """One page's peer connection: `answer()` its offer, `write()` frames, `flush()` on barge-in, `aclose()` at the end."""

    def __init__(self, on_microphone: Callable[[np.ndarray], None], ice_servers: tuple[IceServer, ...] = (),
                 video_bitrate: int = DEFAULT_VIDEO_BITRATE) -> None:  # fmt: skip
        self.on_microphone = on_microphone
        self.ice_servers = ice_servers
        self.video_bitrate = video_bitrate  # the avatar video's ceiling, bits per second
        self.schedule = SendSchedule()
        self.video = AvatarVideoTrack(self.schedule, video_bitrate)
        self.voice = AvatarVoiceTrack(self.schedule)
        self._pc: RTCPeerConnection | None = None
        self._readers: set[asyncio.Task] = set()
        self._camera: av.VideoFrame | None = None
        self.playout_s = DEFAULT_PLAYOUT_S  # the page's latest report: jitter buffer plus half the round trip
        self.state = "new"

    async def answer(self, offer_sdp: str) -> str:
        """Accept the page's offer (microphone and camera up, a video and an audio track down); returns our answer."""
        if self._pc is not None:
            raise ValueError("this page already has a media connection")
        configuration = RTCConfiguration(iceServers=[RTCIceServer(s.url, s.username, s.credential) for s in self.ice_servers])
        pc = self._pc = RTCPeerConnection(configuration)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)
        # Our two transceivers exist before the offer is read, so its audio and video sections map onto them.
        voice = pc.addTransceiver(self.voice, "sendrecv")
        video = pc.addTransceiver(self.video, "sendrecv")
        # VP8, which the video track encodes itself (2 ms a 512² frame; x264 took 40 ms).
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")])
        self.voice.bind(voice.sender)
        self.video.bind(video.sender)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(_without_mdns_candidates(offer_sdp), "offer"))
            if voice.mid is None or video.mid is None:
                raise ValueError("the offer must have an audio and a video section")
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises several kinds for a description it cannot use; the page may try again
            self._pc = None
            await pc.close()
            self.schedule = SendSchedule()
            self.video, self.voice = AvatarVideoTrack(self.schedule, self.video_bitrate), AvatarVoiceTrack(self.schedule)
            raise ValueError(str(exc) or type(exc).__name__) from None
        return pc.localDescription.sdp

    def _on_state(self) -> None:
        if self._pc is not None:
            self.state = self._pc.connectionState

    def _on_track(self, track: MediaStreamTrack) -> None:
        reader = self._read_microphone(track) if track.kind == "audio" else self._read_camera(track)
        task = asyncio.create_task(reader, name=f"webrtc-{track.kind}-in")
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def _read_microphone(self, track: MediaStreamTrack) -> None:
        resampler: StreamResampler | None = None
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().astype(np.float32) / 32768.0  # s16, channels interleaved
                channels = len(frame.layout.channels)
                mono = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples.reshape(-1)
                if resampler is None or resampler.rate_in != frame.sample_rate:
                    resampler = StreamResampler(frame.sample_rate, MIC_RATE)
                pcm = resampler.process(mono)
                if len(pcm):
                    self.on_microphone(pcm)

    async def _read_camera(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                self._camera = await track.recv()  # kept decoded; converted to RGB only when asked for

    def camera_image(self) -> np.ndarray | None:
        """The webcam's latest frame as RGB uint8, if any."""
        frame = self._camera
        return None if frame is None else frame.to_ndarray(format="rgb24")

    def write(self, frame: AVFrame) -> None:
        """Queue one frame's picture and voice for the page."""
        self.video.put(frame.image, frame.index, frame.fps)
        self.voice.put(frame)

    def flush(self) -> tuple[float, int | None]:
        """Silence the voice not sent yet. Returns the seconds of audio dropped unheard, and the RTP time stamp from
        which the page may be heard again (None before the first packets are out).

        The browser's jitter buffer cannot be emptied from a page. So the page mutes its voice at once and unmutes
        when the packet with that time stamp plays out (it reads what is playing from getSynchronizationSources):
        what it held from before the flush is dropped, exactly, however deep its buffer has grown; without a time
        stamp it mutes for its measured playout delay instead. The seconds returned are what our queue held plus the
        page's playout delay (jitter buffer plus half the round trip, which it reports every 0.5 s), never more than
        was sent since the last flush: an estimate, good to about a packet (20 ms) while that delay holds still.
        """
        until_rtp = self.voice.next_rtp_timestamp()
        queued = self.voice.silence_queued()
        return queued + min(self.playout_s, self.voice.take_sent_seconds()), until_rtp

    def report(self, playout_s: float) -> None:
        """The page's latest playout delay (seconds), from its WebRTC statistics."""
        if 0.0 <= playout_s < 5.0:
            self.playout_s = playout_s

    async def aclose(self) -> None:
        """Close the connection and stop reading the page's tracks."""
        for task in list(self._readers):
            task.cancel()
        for task in list(self._readers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pc is not None:
            await self._pc.close()
        self.video.stop()
        self.voice.stop()
