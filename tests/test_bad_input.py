"""What a user sees when what they type, write or serve is wrong, odd or hostile (issue 11's nine findings).

Each test is named after what the user sees. Every message is one line (no traceback), names the file,
key or flag, and says what was expected; nothing hangs and nothing is lost.
"""

from __future__ import annotations

import asyncio
import base64
import io
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import av
import cv2
import httpx
import numpy as np
import pytest
from rich.console import Console
from websockets.asyncio.client import connect

from liveavatar.agent.cli import _event_printer, main
from liveavatar.devices.browser.server import BrowserServer, PageError
from liveavatar.dialogue.base import DialogueError, UserTurn
from liveavatar.dialogue.omni_server import OmniServerBackend, Options
from liveavatar.dialogue.speech.piper_tts import PiperTTS
from liveavatar.dialogue.speech.voice import VoiceOptions


def persona(folder: Path, file: str, name: str, lines: list[str], portrait: str = "face.jpg", extra: str = "") -> Path:
    """A scripted persona with an unshaped voice (quick to synthesize) next to a copy of Nova's portrait."""
    if not (folder / "face.jpg").exists():
        shutil.copy(Path(__file__).parent.parent / "examples" / "portraits" / "nova.jpg", folder / "face.jpg")
    quoted = ", ".join("'" + line.replace("'", "''") + "'" for line in lines)
    text = f"name: '{name}'\nportrait: {portrait}\ndialogue:\n  backend: scripted\n  options:\n    lines: [{quoted}]\n{extra}"
    path = folder / file
    path.write_text(text, encoding="utf-8")
    return path


def duet_file(folder: Path, agents: list[str], extra: str = "") -> Path:
    path = folder / "duet.yaml"
    path.write_text(f"agents: [{', '.join(agents)}]\nsize: [64, 64]\nlead_in_s: 0.2\ntail_s: 0.2\n{extra}", encoding="utf-8")
    return path


def errors(capsys: pytest.CaptureFixture) -> str:
    """What the command printed on stderr, checked to hold no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err


def usage_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """The one-line usage error argparse prints for `argv` (exit status 2)."""
    assert main(argv) == 2
    err = errors(capsys)
    assert err.startswith("usage: liveavatar"), err
    return err.strip().splitlines()[-1]


def mp4_seconds(path: Path) -> tuple[float, float]:
    """(video, audio) durations of an MP4 as decoded."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        fps = float(video.average_rate)
    with av.open(str(path)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    return frames / fps, samples / rate


# ---------------------------------------------------------------- 2. a recording holds every reply, whole


def test_chat_with_a_wav_records_the_whole_long_reply_and_says_how_long(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    import soundfile

    from user_speech import GREETING, user_says

    line = ("Let me tell you about the sea. The waves roll in from far away, one after another, all day and all night. "
            "Sailors have listened to them for thousands of years, and they still do.")  # fmt: skip
    wav, out, metrics = tmp_path / "question.wav", tmp_path / "reply.mp4", tmp_path / "turns.jsonl"
    soundfile.write(str(wav), user_says(GREETING), 16000)
    path = persona(tmp_path, "p.yaml", "Sailor", [line])
    assert main(["chat", str(path), "--wav", str(wav), "--out", str(out), "--size", "64", "--metrics", str(metrics)]) == 0
    err = errors(capsys).replace("\n", "")
    [turn] = [json.loads(t) for t in metrics.read_text().splitlines()]
    assert turn["heard_text"] == line and not turn["interrupted"]
    speech_s = turn["speech_s"]  # Piper's timing varies run to run: the reply's own speech, not another synthesis of it
    assert speech_s > 8  # longer than the five seconds of silence the WAV source adds after the question
    assert turn["played_s"] >= speech_s - 0.02  # every sample of it on the sink (with gaps where its speech came late)
    printed = float(err.split(f"recorded {out}: ")[1].split(" s")[0])
    video_s, audio_s = mp4_seconds(out)
    assert video_s == pytest.approx(printed, abs=0.05) and audio_s == pytest.approx(video_s, abs=0.05)
    with av.open(str(out)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    windows = audio[: len(audio) // 960 * 960].reshape(-1, 960)  # 40 ms at 24 kHz
    voiced = np.nonzero(np.sqrt(np.mean(windows**2, axis=1)) > 0.01)[0]
    assert (voiced[-1] - voiced[0] + 1) * 0.04 > speech_s - 0.5, "the end of the reply is missing from the recording"


# ---------------------------------------------------------------- 3. text is printed literally, never as markup


def test_a_persona_named_r2_slash_d2_renders_and_its_name_and_lines_print_as_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = persona(tmp_path, "a.yaml", "R2 [/d2]", ["[/] Beep [red]boop."])
    b = persona(tmp_path, "b.yaml", "[bold]C3PO", ["Hello."])
    out = tmp_path / "[red]out.mp4"
    assert main(["duet", str(duet_file(tmp_path, [a.name, b.name], "max_turns: 2\n")), "--out", str(out)]) == 0
    err = errors(capsys).replace("\n", "")
    assert "R2 [/d2]: [/] Beep [red]boop." in err and "[bold]C3PO: Hello." in err
    assert f"wrote {out}" in err
    assert mp4_seconds(out)[0] > 1.0


def test_a_server_error_with_markup_in_it_is_printed_as_written() -> None:
    buffer = io.StringIO()
    show = _event_printer(Console(file=buffer, width=200))
    show({"type": "error", "message": "vLLM-Omni failed: [/] bad [bold]thing"})
    show({"type": "transcript", "role": "agent", "speaker": "R2 [/d2]", "text": "[/]"})
    show({"type": "transcript", "role": "user", "text": "[red]hi"})
    assert buffer.getvalue().splitlines() == ["error: vLLM-Omni failed: [/] bad [bold]thing", "R2 [/d2]: [/]", "you: [red]hi"]


def test_the_no_face_help_shows_the_yaml_to_write_and_paths_print_as_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "[red]team"
    folder.mkdir()
    cv2.imwrite(str(folder / "wall.png"), np.full((300, 300, 3), 128, np.uint8))
    path = persona(folder, "p.yaml", "Wall", ["Hi."], portrait="wall.png")
    assert main(["check", str(path)]) == 2
    err = errors(capsys)
    assert f"error: {path}:2: portrait: no face found in {folder / 'wall.png'}" in err.replace("\n", "")
    assert "eyes: [[x, y], [x, y]]    # centres of the two eyes" in err
    good = persona(folder, "q.yaml", "Nova", ["Hi."])
    assert main(["check", str(good)]) == 0
    assert f"ok {good} (persona)" in errors(capsys).replace("\n", "")


# ---------------------------------------------------------------- 4. YAML bombs are refused before they are built


def test_check_refuses_a_yaml_alias_bomb_at_once_and_names_the_limit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nname: x\nportrait: x.png\n")
    started = time.perf_counter()
    assert main(["check", str(bomb)]) == 2
    assert time.perf_counter() - started < 2.0
    err = errors(capsys).replace("\n", "")
    assert f"error: {bomb}:" in err and "aliases" in err and "limit" in err


def test_check_refuses_deep_nesting_and_huge_yaml_files_naming_the_limit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: x\n" + "# padding\n" * 400_000)
    assert main(["check", str(deep), str(huge)]) == 2
    err = errors(capsys).replace("\n", "")
    assert f"error: {deep}:1: nested more than 64 levels deep (the limit)" in err
    assert f"error: {huge}: the file is 3.8 MiB; the limit for a YAML file is 1 MiB" in err


# ---------------------------------------------------------------- 5. the same persona twice


def test_a_duet_of_one_persona_twice_plays_both_turns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = persona(tmp_path, "a.yaml", "Echo", ["One.", "Two."])
    out = tmp_path / "twice.mp4"
    assert main(["duet", str(duet_file(tmp_path, [a.name, a.name], "max_turns: 2\n")), "--out", str(out)]) == 0
    err = errors(capsys)
    assert err.count("Echo: One.") == 2  # each agent has its own script, and both were heard


# ---------------------------------------------------------------- 6. check refuses what the run cannot do


def test_check_refuses_odd_frame_sizes_h264_cannot_encode(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = persona(tmp_path, "a.yaml", "A", ["Hi."])
    duet = duet_file(tmp_path, [a.name, a.name]).read_text().replace("size: [64, 64]", "size: [129, 64]")
    (tmp_path / "duet.yaml").write_text(duet)
    assert main(["check", str(tmp_path / "duet.yaml")]) == 2
    assert f"{tmp_path / 'duet.yaml'}:2: size[0]: expected an even number of pixels (H.264 video needs one), got 129" in errors(capsys).replace("\n", "")


@pytest.mark.parametrize(("point", "expected"), [
    ("[.nan, 120]", "avatar.options.face.eyes[0][0]: expected a finite number, got nan"),
    ("[110, -5]", "avatar.options.face.eyes[0]: the point (110, -5) is outside the 400×400 portrait"),
    ("[4000, 120]", "avatar.options.face.eyes[0]: the point (4000, 120) is outside the 400×400 portrait"),
])  # fmt: skip
def test_check_refuses_face_points_that_are_not_numbers_or_outside_the_portrait(tmp_path: Path, capsys: pytest.CaptureFixture, point: str, expected: str) -> None:
    face = f"avatar:\n  backend: portrait\n  options:\n    face:\n      eyes: [{point}, [190, 120]]\n      mouth: [[120, 200], [180, 200]]\n"
    path = persona(tmp_path, "p.yaml", "P", ["Hi."], extra=face)
    assert main(["check", str(path)]) == 2
    assert f"error: {path}:11: {expected}" in errors(capsys).replace("\n", "")


def test_check_refuses_blank_scripted_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = persona(tmp_path, "p.yaml", "P", ["Hi.", "   ", "Bye."])
    assert main(["check", str(path)]) == 2
    assert f"error: {path}:6: dialogue.options.lines[1]: a line must say something; got only spaces" in errors(capsys).replace("\n", "")


def test_a_5000_word_line_without_punctuation_is_spoken_in_pieces() -> None:
    words = " ".join(["yes", "and", "then", "we", "walked", "along", "the", "river"] * 625)

    async def first_piece() -> float:
        async for chunk in PiperTTS(VoiceOptions()).stream(words):
            return chunk.duration  # before the fix: onnxruntime failed to allocate 74 GB
        return 0.0

    assert 3 < asyncio.run(first_piece()) < 20  # seconds of speech in the first piece


# ---------------------------------------------------------------- 7. command-line values


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0", "soon"])
def test_max_seconds_that_is_not_a_positive_number_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture, value: str) -> None:
    line = usage_error(capsys, ["duet", str(tmp_path / "not-read-yet.yaml"), f"--max-seconds={value}"])
    assert line == f"liveavatar duet: error: argument --max-seconds: expected a positive number of seconds, got {value!r}"


def test_out_that_is_a_folder_not_mp4_or_not_writable_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    unread = str(tmp_path / "not-read-yet.yaml")
    assert usage_error(capsys, ["duet", unread, "--out", str(tmp_path)]) == (
        f"liveavatar duet: error: argument --out: {tmp_path} is a folder; expected an .mp4 file name")
    assert usage_error(capsys, ["duet", unread, "--out", str(tmp_path / "video.avi")]) == (
        f"liveavatar duet: error: argument --out: expected a file name ending in .mp4, got {tmp_path / 'video.avi'}")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    assert usage_error(capsys, ["duet", unread, "--out", str(tmp_path / "notes.txt" / "v.mp4")]) == (
        f"liveavatar duet: error: argument --out: cannot write in {tmp_path / 'notes.txt'}: it is a file, not a folder")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not __import__("os").access(locked, __import__("os").W_OK):  # root may write anywhere
        assert usage_error(capsys, ["duet", unread, "--out", str(locked / "v.mp4")]) == (
            f"liveavatar duet: error: argument --out: cannot write in {locked}")
    assert usage_error(capsys, ["chat", unread, "--out", str(tmp_path / "x.txt")]).endswith("expected a file name ending in .mp4, got " + str(tmp_path / "x.txt"))
    assert usage_error(capsys, ["chat", unread, "--browser", "--out", str(tmp_path / "x.mp4")]) == (
        "liveavatar chat: error: argument --out: records only with --wav")
    assert not list(tmp_path.glob("*.mp4"))


@pytest.mark.parametrize(("argv", "expected"), [
    (["chat", "P", "--size", "129"], "argument --size: expected an even number of pixels from 64 to 2048, got '129'"),
    (["chat", "P", "--size", "16"], "argument --size: expected an even number of pixels from 64 to 2048, got '16'"),
    (["chat", "P", "--port", "70000"], "argument --port: expected a port number from 0 to 65535, got '70000'"),
    (["duet", "P", "--max-turns", "0"], "argument --max-turns: expected a whole number of at least 1, got '0'"),
    (["bench", "--frames", "-1"], "argument --frames: expected a whole number of at least 1, got '-1'"),
])  # fmt: skip
def test_other_numbers_out_of_range_are_usage_errors(capsys: pytest.CaptureFixture, argv: list[str], expected: str) -> None:
    assert usage_error(capsys, argv).endswith(f"error: {expected}")


# ---------------------------------------------------------------- 8. what an Omni server says is checked


def omni_reply(body: bytes) -> DialogueError | None:
    """One omni_server reply whose HTTP stream is exactly `body`; the DialogueError it ended with, if any."""

    async def go() -> DialogueError | None:
        backend = OmniServerBackend(Options(base_url="http://omni.test/v1"), "You are Ada.")
        transport = httpx.MockTransport(lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body))
        backend._client = httpx.AsyncClient(transport=transport)
        try:
            async for _ in backend.reply(UserTurn(text="Hi")):
                pass
        except DialogueError as exc:
            return exc
        finally:
            await backend.aclose()
        return None

    return asyncio.run(go())


@pytest.mark.parametrize(("metadata", "shown"), [("1e12", "1000000000000.0"), ("3", "3"), ("true", "true"), ('"fast"', '"fast"')])
def test_an_omni_server_stating_an_absurd_sample_rate_gives_one_line_error(metadata: str, shown: str) -> None:
    chunk = ('{"modality": "audio", "choices": [{"index": 0, "delta": {"content": "AAAAAA=="}, '
             f'"audio_metadata": {{"sample_rate_hz": {metadata}}}}}]}}')
    error = omni_reply(f"data: {chunk}\n\ndata: [DONE]\n\n".encode())
    assert str(error) == f"vLLM-Omni sent a malformed stream event (choices[0].audio_metadata.sample_rate_hz: expected a whole number of Hz from 8000 to 192000, got {shown})"


@pytest.mark.parametrize(("chunk", "problem"), [
    ('{"choices": [{"delta": "text"}]}', "choices[0].delta: expected an object, got \"text\""),
    ('{"choices": 5}', "choices: expected a list, got 5"),
    ('{"choices": [{"delta": {"content": 7}}]}', "choices[0].delta.content: expected text, got 7"),
    ('{"modality": "audio", "choices": [{"delta": {"content": "UklGRgAAAABXQVZFZm10IBAAAAABAAEAAQAAAAIAAAACABAAZGF0YQAAAAA="}}]}',
     "the WAV audio chunk states 1 Hz; expected 8000 to 192000"),
])  # fmt: skip
def test_an_omni_server_sending_wrong_types_gives_one_line_error(chunk: str, problem: str) -> None:
    error = omni_reply(f"data: {chunk}\n\ndata: [DONE]\n\n".encode())
    assert error is not None and problem in str(error) and "\n" not in str(error)


def test_an_omni_stream_with_an_endless_line_is_cut_off_with_a_message() -> None:
    error = omni_reply(b"data: " + b"x" * (20 * 1024 * 1024))
    assert str(error) == "the server sent a stream event over 16 MiB; the reply was cut off"


# ---------------------------------------------------------------- 9. messages that say what is wrong


def test_a_folder_given_as_the_portrait_says_it_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "pictures").mkdir()
    path = persona(tmp_path, "p.yaml", "P", ["Hi."], portrait="pictures")
    assert main(["check", str(path)]) == 2
    assert f"error: {path}:2: portrait: {tmp_path / 'pictures'} is a folder; expected a PNG or JPEG file" in errors(capsys).replace("\n", "")


def test_a_yaml_file_that_is_not_utf8_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"portrait: face.jpg\nname: Caf\xe9\n")
    assert main(["check", str(path)]) == 2
    assert f"error: {path}:2: not UTF-8 text (byte 0xe9 in column 10); save the file as UTF-8" in errors(capsys)


def test_a_duet_that_lists_itself_or_another_duet_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = persona(tmp_path, "a.yaml", "A", ["Hi."])
    duet = duet_file(tmp_path, ["duet.yaml", a.name])
    assert main(["check", str(duet)]) == 2
    err = errors(capsys).replace("\n", "")
    assert f"error: {duet}:1: agents[0]: duet.yaml is this duet file; expected a persona file" in err
    assert "unknown key" not in err
    other = tmp_path / "other.yaml"
    other.write_text(f"agents: [{a.name}, {a.name}]\n")
    duet.write_text(f"agents: [{a.name}, other.yaml]\n")
    assert main(["check", str(duet)]) == 2
    assert f"error: {duet}:1: agents[1]: {other} is a duet file; expected a persona file" in errors(capsys).replace("\n", "")


def test_serving_off_this_machine_without_a_token_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert usage_error(capsys, ["chat", str(tmp_path / "unread.yaml"), "--browser", "--host", "0.0.0.0"]) == (
        "liveavatar chat: error: argument --host: 0.0.0.0 makes the page reachable from other machines; give a --token too")


def test_a_port_in_use_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert usage_error(capsys, ["chat", str(tmp_path / "unread.yaml"), "--browser", "--port", str(port)]) == (
            f"liveavatar chat: error: argument --port: 127.0.0.1:{port} is already in use; choose another --port")
        server = BrowserServer(lambda session: asyncio.sleep(0), time.monotonic, port=port)  # taken after the check
        with pytest.raises(PageError, match=f"^cannot serve the page on 127.0.0.1:{port}: the port is already in use$"):
            asyncio.run(server.start())


def test_a_token_with_plus_and_slash_works_when_pasted_from_the_printed_url(examples: Path) -> None:
    from browser_harness import scripted_server

    token = "a+b/c&d=e f"

    async def scenario() -> None:
        async with scripted_server(examples, ["Hi."], host="0.0.0.0", token=token) as (server, *_):
            pasted = parse_qs(urlsplit(server.url).query)["token"][0]  # what the page reads from location.search
            assert pasted == token
            async with connect(f"ws://127.0.0.1:{server.port}/ws?token={quote(pasted)}") as ws:
                assert '"config"' in await asyncio.wait_for(ws.recv(), 10)

    asyncio.run(scenario())


# ---------------------------------------------------------------- images and YAML are size-checked before decoding


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A small PNG file whose header claims `width`×`height` pixels (decoding it would allocate them all)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(("width", "height", "expected"), [
    (10000, 9000, "the image is 10000×9000 pixels (90 megapixels); the limit is 50 megapixels: scale it down"),
    (60000, 60000, "the image has over 179 megapixels; the limit is 50 megapixels: scale it down"),
])  # fmt: skip
def test_a_portrait_claiming_too_many_pixels_is_refused_before_decoding(tmp_path: Path, capsys: pytest.CaptureFixture, width: int, height: int, expected: str) -> None:
    image = png_header_only(tmp_path / "huge.png", width, height)
    path = persona(tmp_path, "p.yaml", "P", ["Hi."], portrait="huge.png")
    assert main(["check", str(path)]) == 2
    assert errors(capsys).strip() == f"error: {path}:2: portrait: {image}: {expected}"


# ---------------------------------------------------------------- more mistakes, each one line that says what to do


def test_check_refuses_a_voice_file_that_is_not_a_voice(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "fake.onnx").write_bytes(b"garbage")
    (tmp_path / "fake.onnx.json").write_text("{}")
    path = persona(tmp_path, "p.yaml", "P", ["Hi."], extra="voice:\n  model: fake.onnx\n")
    assert main(["check", str(path)]) == 2
    assert f"error: {path}:8: voice.model: cannot load fake.onnx as a Piper voice: " in errors(capsys)


def test_a_persona_given_to_duet_or_a_duet_given_to_chat_says_which_command_to_use(tmp_path: Path, capsys: pytest.CaptureFixture, examples: Path) -> None:
    assert main(["duet", str(examples / "nova.yaml"), "--out", str(tmp_path / "x.mp4")]) == 2
    assert errors(capsys).strip() == (f"error: {examples / 'nova.yaml'}: a persona file; expected a duet file with `agents: [first.yaml, "
                                      f"second.yaml]` — talk with one persona using `liveavatar chat {examples / 'nova.yaml'}`")
    wav = tmp_path / "q.wav"
    __import__("soundfile").write(str(wav), np.zeros(1600, np.float32), 16000)
    assert main(["chat", str(examples / "duet.yaml"), "--wav", str(wav)]) == 2
    assert errors(capsys).strip() == (f"error: {examples / 'duet.yaml'}: a duet file (it lists agents:); expected a persona file here — "
                                      f"play a duet with `liveavatar duet {examples / 'duet.yaml'}`")


def test_an_omni_server_that_never_stops_talking_is_cut_off() -> None:
    speech = base64.b64encode(bytes(48000 * 2)).decode()  # two seconds of silence at 24 kHz
    chunk = '{"modality": "audio", "choices": [{"delta": {"content": "%s"}}]}' % speech
    error = omni_reply(("".join(f"data: {chunk}\n\n" for _ in range(301)) + "data: [DONE]\n\n").encode())
    assert str(error) == "vLLM-Omni sent over 10 minutes of speech for one reply; the rest was cut off"
