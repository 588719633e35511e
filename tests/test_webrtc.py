"""The WebRTC media path without a browser: time stamps from the frame index, barge-in flushes, ICE settings, and a
Python peer (aiortc) standing in for the page."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci
from websockets.asyncio.client import connect

from browser_harness import scripted_server
from liveavatar.devices.browser.webrtc import (OPUS_PACKET, AvatarVideoTrack, AvatarVoiceTrack, IceServer, SendSchedule, WebRTCMedia,
                                               _without_mdns_candidates, parse_ice_server)  # fmt: skip
from liveavatar.media import AVFrame, samples_in_frame
from test_browser_server import LINES, next_event, ws_url


def frame(index: int, fps: float = 25.0, rate: int = 24000, level: float = 0.3) -> AVFrame:
    n = samples_in_frame(index, rate, fps)
    tone = level * np.sin(2 * np.pi * 220 * (np.arange(n) + index * n) / rate).astype(np.float32)
    return AVFrame(np.full((64, 64, 3), index % 256, np.uint8), tone, index, 1, fps, rate)


def test_time_stamps_come_from_the_frame_index() -> None:
    async def scenario():
        schedule = SendSchedule()
        video, voice = AvatarVideoTrack(schedule), AvatarVoiceTrack(schedule)
        frames, packets = [], []

        async def read_voice() -> None:
            while True:
                packets.append((await voice.recv(), time.monotonic()))

        reader = asyncio.create_task(read_voice())
        start = time.monotonic()
        for i in [10, 11, 12, 13, 20, 21, 22]:  # a gap: the stream goes on at frame 20's own time
            await asyncio.sleep(max(0.0, start + (i - 10) / 25 - time.monotonic()))  # written at real time, as a conversation does
            video.put(frame(i).image, i, 25.0)
            voice.put(frame(i))
            frames.append(await video.recv())
        await asyncio.sleep(0.1)
        reader.cancel()
        return frames, packets, start

    frames, packets, start = asyncio.run(scenario())
    assert [f.pts for f in frames] == [3600 * i for i in (10, 11, 12, 13, 20, 21, 22)]  # 90 kHz clock, 25 fps
    vp8 = av.CodecContext.create("libvpx", "r")
    pictures = [p for f in frames for p in vp8.decode(f)]
    assert all(p.width == 64 and abs(int(p.to_ndarray(format="rgb24")[32, 32, 0]) - i) <= 2 for p, i in zip(pictures, (10, 11, 12, 13, 20, 21, 22)))
    assert len(pictures) == 7
    pts = [p.pts for p, _ in packets]
    assert pts[0] == 10 * 1920 and 20 * 1920 in pts  # 48 kHz: frame i starts at sample 1920·i
    steps = np.diff(pts)
    assert set(steps[: pts.index(20 * 1920) - 1]) == {OPUS_PACKET} and 20 * 1920 - pts[pts.index(20 * 1920) - 1] > OPUS_PACKET
    assert all(0 < p.size < 200 for p, _ in packets)  # 20 ms Opus packets at 32 kbit/s
    sent = np.array([at - start for _, at in packets])  # each packet leaves at its own time, not with its frame
    assert np.median(np.diff(sent)[: pts.index(20 * 1920) - 1]) == pytest.approx(0.02, abs=0.005)
    assert np.abs(sent - (np.array(pts) / 48000 - 10 / 25)).max() < 0.1


def test_late_media_is_dropped_not_sent_in_a_burst() -> None:
    async def scenario():
        schedule = SendSchedule()
        video = AvatarVideoTrack(schedule)
        start = time.monotonic()
        video.put(frame(0).image, 0, 25.0)
        sent = [await video.recv()]
        await asyncio.sleep(0.5)  # the server stalls for half a second, then writes the frames it owes at once
        for i in range(1, 14):
            video.put(frame(i).image, i, 25.0)
        while video._queue:
            sent.append(await video.recv())
        dropped = video.dropped
        await asyncio.sleep(max(0.0, start + 0.8 + 0.3 - time.monotonic()))  # frame 20 comes 0.3 s late, alone
        video.put(frame(20).image, 20, 25.0)
        sent.append(await video.recv())
        await asyncio.sleep(max(0.0, start + 0.84 + 0.3 - time.monotonic()))  # and the next one 40 ms after it
        video.put(frame(21).image, 21, 25.0)
        sent.append(await video.recv())
        return [f.pts // 3600 for f in sent], dropped, video.dropped, schedule.slips

    sent, dropped_after_stall, dropped, slips = asyncio.run(scenario())
    assert sent == [0, 11, 12, 13, 20, 21]  # the frames more than 100 ms late never left; 11-13 were still in time
    assert dropped_after_stall == dropped == 10
    assert slips == 1  # frame 20 had nothing newer behind it: the stream moved by 0.3 s, and 21 was on time again


def test_a_flush_silences_what_is_queued_and_counts_what_the_page_holds() -> None:
    async def scenario():
        media = WebRTCMedia(on_microphone=lambda pcm: None)
        for i in range(10):  # 0.4 s written, nothing sent yet (nobody is reading)
            media.write(frame(i))
        media.report(0.07)
        unsent, until_rtp = media.flush()
        levels = [np.abs(item[0]).max() for item in media.voice._queue]
        packets = [await media.voice.recv() for _ in range(4)]  # 80 ms go out (silenced); the older 0.3 s was too late
        media.write(frame(10))
        still_here = len(media.voice._queue) * OPUS_PACKET / 48000
        sent_since, _ = media.flush()  # the page holds its 70 ms of what went out, and the rest is still here
        await media.aclose()
        return unsent, until_rtp, levels, packets, still_here, sent_since, media.voice.dropped

    unsent, until_rtp, levels, packets, still_here, sent_since, dropped = asyncio.run(scenario())
    assert unsent == pytest.approx(0.4, abs=1e-6)  # everything written: none of it had been sent
    assert until_rtp is None  # no packet out yet: the page falls back to muting for its playout delay
    decoder = av.CodecContext.create("libopus", "r")
    heard = np.concatenate([f.to_ndarray().reshape(-1) for p in packets for f in decoder.decode(p)])
    assert max(levels) == 0 and len(heard) >= 3 * 960 and np.abs(heard).max() < 50  # what was queued goes out silent
    # 20 packets written, those more than 100 ms behind the newest too late (14, or 15 if the clock ticked), 4 sent, 2 more
    assert dropped in (14, 15) and still_here == pytest.approx((20 - dropped - 4 + 2) * 0.02)
    assert sent_since == pytest.approx(still_here + 0.07, abs=1e-6)


def test_ice_server_urls() -> None:
    assert parse_ice_server("stun:stun.example.com:3478") == IceServer("stun:stun.example.com:3478")
    turn = parse_ice_server("turn:alice:s%40cret@turn.example.com:3478?transport=tcp")
    assert turn == IceServer("turn:turn.example.com:3478?transport=tcp", "alice", "s@cret")
    assert turn.as_page_config() == {"urls": "turn:turn.example.com:3478?transport=tcp", "username": "alice", "credential": "s@cret"}
    for bad, message in [("http://x", "expected a stun:"), ("turn:turn.example.com", "needs user:password@"),
                         ("stun:u:p@host", "takes no user name"), ("stun:", "expected host")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_ice_server(bad)


def test_mdns_candidates_are_not_resolved() -> None:
    sdp = ("v=0\r\na=candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host\r\n"
           "a=candidate:2 1 udp 2122260223 0b4f1c2e-1111-2222-3333-444455556666.local 50001 typ host\r\n")  # fmt: skip
    assert _without_mdns_candidates(sdp) == "v=0\r\na=candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host\r\n"


def test_a_peer_gets_the_avatar_over_webrtc(examples: Path) -> None:
    async def scenario():
        async with scripted_server(examples, LINES, video_bitrate=600_000) as (server, *_):
            async with connect(ws_url(server)) as ws:
                config = await next_event(ws, "config")
                page = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                page.addTransceiver(AudioStreamTrack(), "sendrecv")  # silence for a microphone
                page.addTransceiver(VideoStreamTrack(), "sendrecv")  # a green camera
                tracks: dict = {}
                page.on("track", lambda track: tracks.setdefault(track.kind, track))
                await page.setLocalDescription(await page.createOffer())
                await ws.send(json.dumps({"type": "offer", "sdp": page.localDescription.sdp}))
                answer = await next_event(ws, "answer")
                await page.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
                video = [await asyncio.wait_for(tracks["video"].recv(), 10) for _ in range(20)]
                voice = [await asyncio.wait_for(tracks["audio"].recv(), 10) for _ in range(20)]
                session = server.sessions[0]
                # The page's RTCP, through aiortc's own handling: a picture loss, then a bandwidth estimate under the ceiling
                encoder, sender = session.rtc.video.encoder, session.rtc._pc.getTransceivers()[1].sender
                asked_before = encoder.keyframes - len(encoder.starts)  # keyframes beyond those that start an encoder
                await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))
                video += [await asyncio.wait_for(tracks["video"].recv(), 10) for _ in range(3)]
                asked = encoder.keyframes - len(encoder.starts) - asked_before
                await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(300_000, [sender._ssrc])))
                video += [await asyncio.wait_for(tracks["video"].recv(), 10) for _ in range(3)]
                starts = list(encoder.starts)
                ice = session.rtc._pc.getTransceivers()[0].sender.transport.transport.iceGatherer._connection
                pc_servers = [server for server in (ice.stun_server, ice.turn_server) if server]
                await ws.send(json.dumps({"type": "offer", "sdp": page.localDescription.sdp}))
                again = await next_event(ws, "error")
                await page.close()
            return config, answer["sdp"], video, voice, pc_servers, again, asked, starts

    config, sdp, video, voice, pc_servers, again, asked, starts = asyncio.run(scenario())
    assert config["transport"] == "webrtc" and config["ice_servers"] == [] and pc_servers == []
    assert "VP8/90000" in sdp and "opus/48000" in sdp and "H264" not in sdp
    assert "typ srflx" not in sdp and "typ relay" not in sdp  # no STUN or TURN server was asked
    assert {(f.width, f.height) for f in video} == {(256, 256)}
    assert set(np.diff([f.pts for f in video[5:]]) % 3600) == {0}  # each frame 1/25 s on the 90 kHz clock
    steps = np.diff([f.pts for f in voice[5:]])  # 20 ms apart, or a multiple where a late packet was dropped
    assert {f.sample_rate for f in voice} == {48000} and set(steps % 960) == {0} and np.median(steps) == 960
    assert "already has a media connection" in again["message"]
    assert asked == 1 and starts[0] == 600_000 and 300_000 in starts  # the keyframe asked for; the ceiling; the estimate followed


def test_a_configured_stun_server_is_the_one_asked(examples: Path) -> None:
    class Listener(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.requests: list[bytes] = []

        def datagram_received(self, data: bytes, addr) -> None:  # noqa: ANN001
            self.requests.append(data)

    async def scenario():
        loop = asyncio.get_running_loop()
        transport, stun = await loop.create_datagram_endpoint(Listener, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            async with scripted_server(examples, LINES, ice_servers=(parse_ice_server(f"stun:127.0.0.1:{port}"),)) as (server, *_):
                async with connect(ws_url(server)) as ws:
                    config = await next_event(ws, "config")
                    page = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                    page.addTransceiver(AudioStreamTrack(), "sendrecv")
                    page.addTransceiver(VideoStreamTrack(), "sendrecv")
                    await page.setLocalDescription(await page.createOffer())
                    await ws.send(json.dumps({"type": "offer", "sdp": page.localDescription.sdp}))
                    await next_event(ws, "answer", timeout=20)
                    await page.close()
        finally:
            transport.close()
        return config, stun.requests, port

    config, requests, port = asyncio.run(scenario())
    assert config["ice_servers"] == [{"urls": f"stun:127.0.0.1:{port}"}]  # the page is told to use it too
    assert requests and requests[0][:2] == b"\x00\x01"  # a STUN binding request


def test_a_bad_offer_gets_an_error_and_the_page_stays(examples: Path) -> None:
    async def scenario():
        async with scripted_server(examples, LINES) as (server, *_):
            async with connect(ws_url(server)) as ws:
                await next_event(ws, "config")
                await ws.send(json.dumps({"type": "offer", "sdp": "v=0\r\n"}))
                bad = await next_event(ws, "error")
                await ws.send(json.dumps({"type": "offer"}))
                missing = await next_event(ws, "error")
                page = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # a good offer after the bad ones is answered
                page.addTransceiver(AudioStreamTrack(), "sendrecv")
                page.addTransceiver(VideoStreamTrack(), "sendrecv")
                await page.setLocalDescription(await page.createOffer())
                await ws.send(json.dumps({"type": "offer", "sdp": page.localDescription.sdp}))
                await next_event(ws, "answer")
                await page.close()
                return bad, missing

    bad, missing = asyncio.run(scenario())
    assert bad["message"].startswith("bad message: cannot accept this WebRTC offer:")
    assert 'an offer needs an "sdp" string' in missing["message"]


def test_an_offer_to_a_websocket_server_is_refused(examples: Path) -> None:
    async def scenario():
        async with scripted_server(examples, LINES, transport="websocket") as (server, *_):
            async with connect(ws_url(server)) as ws:
                assert (await next_event(ws, "config"))["transport"] == "websocket"
                await ws.send(json.dumps({"type": "offer", "sdp": "v=0"}))
                return await next_event(ws, "error")

    assert "--transport websocket" in asyncio.run(scenario())["message"]


def test_the_emulated_far_link_checks_its_settings_and_leaves_aiortc_as_it_was() -> None:
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    from liveavatar.testing.lossy_link import Link, lossy_link

    for bad in ({"loss": 1.0}, {"loss": -0.1}, {"delay_s": -1.0}, {"delay_s": 0.01, "jitter_s": 0.02}):
        with pytest.raises(ValueError, match="expected 0 <= loss < 1"):
            Link(**bad)
    send = RTCDtlsTransport._send_rtp
    with lossy_link(Link()):
        assert RTCDtlsTransport._send_rtp is not send
    assert RTCDtlsTransport._send_rtp is send
