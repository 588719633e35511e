"""The wire format in isolation: SSE framing, every chunk shape, audio decoding, error bodies, request messages."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
from pydantic import ValidationError

from liveavatar.dialogue.base import DialogueError, UserTurn
from liveavatar.dialogue.omni.history import OmniHistory
from liveavatar.dialogue.omni.wire import (
    AudioDecoder,
    AudioPayload,
    chat_messages,
    error_message,
    parse_chunk,
    request_body,
)
from liveavatar.dialogue.sse import SseDecoder
from liveavatar.dialogue.wav import decode_wav, encode_wav
from liveavatar.media import AudioChunk
from omni_helpers import as_pcm16


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pcm16_bytes(pcm: np.ndarray) -> bytes:
    return (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()


# ---------------------------------------------------------------- SSE framing


def test_sse_events_are_whole_whatever_the_network_split() -> None:
    stream = b'data: {"a": 1}\r\n\r\n: keep-alive\n\ndata: line one\ndata: line two\n\nevent: x\rdata: [DONE]\r\r'
    for cut in range(1, len(stream)):
        decoder = SseDecoder()
        events = decoder.feed(stream[:cut], 1.0) + decoder.feed(stream[cut:], 2.0)
        tail = decoder.close(3.0)  # the final CR may be half of a CRLF until the stream ends
        events += [tail] if tail else []
        assert [e.data for e in events] == ['{"a": 1}', "line one\nline two", "[DONE]"], cut


def test_sse_event_is_stamped_with_the_read_that_completed_it() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: hel", 1.0) == []
    (event,) = decoder.feed(b"lo\n\n", 2.5)
    assert (event.data, event.received) == ("hello", 2.5)


def test_sse_close_returns_an_event_missing_its_blank_line() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: [DONE]", 1.0) == []
    tail = decoder.close(2.0)
    assert tail is not None and tail.data == "[DONE]"
    assert SseDecoder().close(1.0) is None


# ---------------------------------------------------------------- chunk shapes


def vllm_chunk(modality: str, content: str, **choice: object) -> str:
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "modality": modality,
                       "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None, **choice}]})


def test_vllm_omni_text_chunk() -> None:
    content = parse_chunk(vllm_chunk("text", "Hello"))
    assert (content.text, content.audio, content.finish_reason) == (["Hello"], [], None)


def test_vllm_omni_audio_chunk_carries_base64_in_content_and_its_rate() -> None:
    raw = pcm16_bytes(np.full(480, 0.5))
    meta = {"format": "pcm", "sample_rate_hz": 16000, "frame_count": 480, "channels": 1}
    content = parse_chunk(vllm_chunk("audio", b64(raw), audio_metadata=meta))
    assert content.text == [] and content.audio == [AudioPayload(raw, 16000)]


def test_empty_role_usage_and_finish_chunks_carry_no_content() -> None:
    assert parse_chunk(vllm_chunk("text", "")).text == []
    assert parse_chunk(vllm_chunk("audio", "")).audio == []
    usage = parse_chunk(json.dumps({"choices": [], "usage": {"total_tokens": 5}}))
    assert (usage.text, usage.audio, usage.finish_reason) == ([], [], None)
    final = parse_chunk(json.dumps({"modality": "audio", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    assert final.finish_reason == "stop" and final.audio == []


def test_dashscope_chunk_has_audio_data_and_transcript() -> None:
    raw = pcm16_bytes(np.zeros(240))
    chunk = json.dumps({"choices": [{"index": 0, "delta": {"audio": {"data": b64(raw), "transcript": "Hi"}}}]})
    content = parse_chunk(chunk)
    assert content.audio == [AudioPayload(raw, None)] and content.transcript == ["Hi"] and content.text == []


def test_malformed_json_names_the_problem() -> None:
    with pytest.raises(DialogueError, match=r"malformed stream event \(not JSON: .*\): \{\"choices\": \[\{\"delta"):
        parse_chunk('{"choices": [{"delta": {"content": "he')


def test_streamed_error_object_becomes_the_message() -> None:
    error = {"error": {"message": "CUDA out of memory", "type": "InternalServerError", "code": 500}}
    with pytest.raises(DialogueError, match="reported an error mid-reply: CUDA out of memory"):
        parse_chunk(json.dumps(error))


def test_bad_base64_audio_is_reported() -> None:
    with pytest.raises(DialogueError, match="not valid base64"):
        parse_chunk(vllm_chunk("audio", "%%%not-base64%%%"))


# ---------------------------------------------------------------- audio decoding


def test_raw_pcm16_uses_the_stated_rate_else_24k_and_time_stamps_run_on() -> None:
    decoder = AudioDecoder()
    first = decoder.decode(AudioPayload(pcm16_bytes(np.full(1600, 0.25)), 16000))
    second = decoder.decode(AudioPayload(pcm16_bytes(np.full(2400, -0.25)), None))
    assert first is not None and second is not None
    assert (len(first.pcm), first.rate, first.pts) == (1600, 16000, 0.0)
    assert (len(second.pcm), second.rate) == (2400, 24000) and second.pts == pytest.approx(0.1)
    assert first.pcm[0] == pytest.approx(0.25, abs=1e-4) and second.pcm[0] == pytest.approx(-0.25, abs=1e-4)


def test_each_wav_chunk_is_decoded_by_its_own_header() -> None:
    pcm = np.linspace(-0.5, 0.5, 2205, dtype=np.float32)
    chunk = AudioDecoder().decode(AudioPayload(encode_wav(pcm, 22050), 24000))
    assert chunk is not None and chunk.rate == 22050
    np.testing.assert_allclose(chunk.pcm, as_pcm16(pcm), atol=1e-6)


def test_odd_byte_of_raw_pcm_waits_for_the_next_chunk() -> None:
    raw = pcm16_bytes(np.array([0.1, 0.2, 0.3]))
    decoder = AudioDecoder()
    a = decoder.decode(AudioPayload(raw[:3], 24000))
    b = decoder.decode(AudioPayload(raw[3:], 24000))
    assert a is not None and b is not None and len(a.pcm) == 1 and len(b.pcm) == 2
    np.testing.assert_allclose(np.concatenate([a.pcm, b.pcm]), [0.1, 0.2, 0.3], atol=1e-4)


def test_empty_payload_gives_no_chunk() -> None:
    assert AudioDecoder().decode(AudioPayload(b"", 24000)) is None


def test_wav_with_streaming_placeholder_size_stereo_and_float() -> None:
    stereo = np.array([[0.5, -0.5], [0.25, 0.75]], dtype="<f4")
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 0xFFFFFFFF, b"WAVE", b"fmt ", 16, 3, 2, 8000, 64000, 8, 32,
                         b"data", 0xFFFFFFFF)
    pcm, rate = decode_wav(header + stereo.tobytes())
    assert rate == 8000
    np.testing.assert_allclose(pcm, [0.0, 0.5])


# ---------------------------------------------------------------- error bodies


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "Invalid speaker \'bob\'", "type": "BadRequestError", "code": 400}}', "Invalid speaker 'bob'"),
        (b'{"object": "error", "message": "old style", "type": "BadRequestError", "code": 400}', "old style"),
        (b'{"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}', "body.messages: field required"),
        (b"upstream connect error", "upstream connect error"),
        (b"", "Bad Gateway"),
    ],
)
def test_error_message_from_any_common_body(body: bytes, expected: str) -> None:
    assert error_message(body, "Bad Gateway") == expected


# ---------------------------------------------------------------- request


def test_request_asks_for_text_and_speech_with_voice_top_level() -> None:
    body = request_body(model="m", messages=[], voice="Chelsie", audio_format="pcm16", max_tokens=64,
                        extra={"temperature": 0.3})
    assert body["stream"] is True and body["modalities"] == ["text", "audio"]
    assert body["voice"] == "Chelsie" and body["audio"] == {"format": "pcm16", "voice": "Chelsie"}
    assert body["max_tokens"] == 64 and body["temperature"] == 0.3


def test_messages_alternate_with_audio_as_16k_wav_and_silent_replies_merged() -> None:
    history = OmniHistory("Be brief.", max_exchanges=8)
    first = history.begin(UserTurn(audio=AudioChunk(np.zeros(24000, np.float32), 24000), text="(transcript)"))
    first.reply_text = "Hi!"
    history.begin(UserTurn(text="What is this?"))  # its reply said nothing (barge-in before any word)
    history.begin(UserTurn(audio=AudioChunk(np.zeros(8000, np.float32), 16000)))
    messages = chat_messages(history)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == [{"type": "text", "text": "Be brief."}]
    assert [p["type"] for p in messages[1]["content"]] == ["input_audio"]  # transcript not sent by default
    audio_part = messages[1]["content"][0]["input_audio"]
    pcm, rate = decode_wav(base64.b64decode(audio_part["data"]))
    assert (audio_part["format"], rate, len(pcm)) == ("wav", 16000, 16000)
    assert messages[2] == {"role": "assistant", "content": "Hi!"}
    assert [p["type"] for p in messages[3]["content"]] == ["text", "input_audio"]
    assert chat_messages(history, send_text_with_audio=True)[1]["content"][1] == {"type": "text", "text": "(transcript)"}


def test_history_is_bounded_and_record_played_replaces_the_last_reply() -> None:
    history = OmniHistory("s", max_exchanges=2)
    for i in range(5):
        history.begin(UserTurn(text=f"turn {i}")).reply_text = f"reply {i}"
    history.record_played("rep")
    assert [(e.user_text, e.reply_text) for e in history.exchanges] == [("turn 3", "reply 3"), ("turn 4", "rep")]


def test_options_reject_unknown_fields_and_bad_urls_and_document_every_field() -> None:
    from liveavatar.dialogue import omni_local, omni_server

    with pytest.raises(ValidationError, match="extra"):
        omni_server.Options(base_url="http://h:1/v1", voise="Ethan")
    with pytest.raises(ValidationError, match="http"):
        omni_server.Options(base_url="127.0.0.1:8091")
    for options in (omni_server.Options, omni_local.Options):
        for name, info in options.model_fields.items():
            assert info.description and ("Default" in info.description or "Required" in info.description), name
