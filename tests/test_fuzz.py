"""Fuzz tests: generated inputs for every way data gets in — persona and duet YAML, command-line flags, WAV
files, the page's websocket messages, an Omni server's SSE stream. Seeded and bounded in cases and
time (see fuzzing.py); each case must end in success or one clear message, never a traceback or a hang.
The session summary prints how many cases each ran and how long it took.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import math
import random
import shutil
import struct
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import soundfile
import yaml

from fuzzing import Fuzz, deadline, nasty_value
from liveavatar.agent import cli

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- persona and duet YAML

FIELD_VALUES = {
    "portrait": ["face.jpg", "missing.png", "folder", "text.png", "huge.png", "persona.yaml", "/dev/zero", "", "face.JPG"],
    "backend": ["scripted", "cascade", "omni_server", "omni_local", "portrait", "liveavatar", "hologram", ""],
    "model": ["joe", "nobody", "voice.onnx", "", "/dev/zero"],
    "lines": [["Hello."], [], ["   "], ["[/]"], ["..."], ["x" * 3000], ["Hi.", None], "Hello.", [["nested"]]],
    "eyes": [[[110, 120], [190, 120]], [[float("nan"), 1], [2, 3]], [[-5, 10], [190, 120]], [[4000, 1], [2, 3]], [[1, 2]], [[1, 2], [1, 2]]],
    "mouth": [[[120, 200], [180, 200]], [[float("inf"), 1], [2, 3]], [[120, 200]], "smile"],
    "size": [[512, 512], [129, 64], [64, 64], [2048, 2050], [0, 0], [64], "big", [64.5, 64]],
    "fps": [25, 0, -1, 61, 1e-9, float("nan"), "fast", 24],
    "base_url": ["http://127.0.0.1:9/v1", "ftp://x", "", "http://", "https://[::1]:99999/v1"],
    "name": ["Nova", "", "   ", "R2 [/d2]", "x" * 500, None, 5],
    "agents": None,  # filled per case with file names
}  # fmt: skip


def _paths_in(doc: object, at: tuple = ()) -> list[tuple]:
    out = [at]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths_in(value, at + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths_in(value, at + (i,))
    return out


def _set(doc: object, at: tuple, value: object) -> object:
    if not at:
        return value
    parent = doc
    for part in at[:-1]:
        parent = parent[part]  # type: ignore[index]
    parent[at[-1]] = value  # type: ignore[index]
    return doc


def mutate_tree(doc: dict, rng: random.Random, agents: list[str]) -> object:
    """Structure-aware changes: values swapped for values a field may not expect, keys dropped, added or renamed."""
    for _ in range(rng.randint(1, 3)):
        paths = _paths_in(doc)
        at = rng.choice(paths)
        key = at[-1] if at else None
        op = rng.random()
        if op < 0.55:
            pool = agents if key == "agents" else FIELD_VALUES.get(key) if isinstance(key, str) else None
            value = rng.choice(pool) if pool and rng.random() < 0.7 else nasty_value(rng)
            if key == "agents" and pool:
                value = [rng.choice(agents) for _ in range(rng.choice([2, 2, 2, 1, 3]))]
            doc = _set(doc, at, value)  # type: ignore[assignment]
        elif op < 0.7 and at:
            parent = doc
            for part in at[:-1]:
                parent = parent[part]
            del parent[at[-1]]
        elif op < 0.85:
            target = doc
            for part in at:
                target = target[part]
            if isinstance(target, dict):
                target[rng.choice(["extra", "nmae", "options", "face", "<<", "agents", "1"])] = nasty_value(rng)
        else:
            doc = _set(doc, at, [doc if not at else None, nasty_value(rng)]) if at else doc  # type: ignore[assignment]
    return doc


TEXT_ATTACKS = [
    lambda t, r: t[: r.randint(0, len(t))],
    lambda t, r: t + "\nbomb: &a [x, x, x, x, x, x, x, x]\nb2: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nb3: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
                     "b4: &d [*c, *c, *c, *c, *c, *c, *c, *c]\nb5: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nb6: [*e, *e, *e, *e, *e, *e, *e, *e]\n",
    lambda t, r: t + "\ndeep: " + "[" * 200 + "]" * 200 + "\n",
    lambda t, r: t + "\nself: &s [*s]\n",
    lambda t, r: t + "\nevil: !!python/object/apply:os.system ['true']\n",
    lambda t, r: t.replace("\n", "\n\t", 1),
    lambda t, r: t + "\nname: again\n",
    lambda t, r: "\ufeff" + t,
    lambda t, r: t + "\n? [a, b]\n: complex key\n",
    lambda t, r: t + "\nwhen: 2024-13-45\n",
    lambda t, r: t + "\n" + "x" * 3000 + "\n",
    lambda t, r: t.replace(": ", ": &x ", 1) + "\nmerged:\n  <<: *x\n",
]  # fmt: skip
BYTE_ATTACKS = [
    lambda b, r: b[:i] + bytes([r.randrange(256)]) + b[i + 1 :] if (i := r.randrange(max(len(b), 1))) < len(b) else b,
    lambda b, r: b + b"\nname: Caf\xe9\n",
    lambda b, r: b.replace(b"\n", b"\x00\n", 1),
    lambda b, r: b + b"\r\n\r\n\x85\xe2\x80\xa8",
]


def write_yaml(path: Path, doc: object, rng: random.Random) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    if rng.random() < 0.35:
        text = rng.choice(TEXT_ATTACKS)(text, rng)
    data = text.encode("utf-8")
    if rng.random() < 0.15:
        data = rng.choice(BYTE_ATTACKS)(data, rng)
    path.write_bytes(data)


@pytest.fixture()
def yaml_folder(tmp_path: Path) -> Path:
    """A folder with the files persona mutations point at: portraits good and bad, a folder, a claimed-huge PNG."""
    from test_bad_input import png_header_only

    shutil.copy(ROOT / "examples" / "portraits" / "nova.jpg", tmp_path / "face.jpg")
    (tmp_path / "folder").mkdir()
    (tmp_path / "text.png").write_text("not an image")
    png_header_only(tmp_path / "huge.png", 10000, 9000)
    return tmp_path


def base_documents() -> tuple[list[dict], list[dict]]:
    """The example personas (portrait replaced by a local copy, eyes and mouth given) and duets."""
    personas, duets = [], []
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if "agents" in doc:
            duets.append(doc)
        else:
            doc["portrait"] = "face.jpg"
            doc.setdefault("avatar", {"backend": "portrait"}).setdefault("options", {})["face"] = {
                "eyes": [[150, 170], [250, 170]], "mouth": [[165, 265], [235, 265]]}  # fmt: skip
            personas.append(doc)
    return personas, duets


def check_says_ok_or_one_clear_error(argv: list[str], capsys: pytest.CaptureFixture, shown: str) -> str:
    """Run `liveavatar check`; returns "ok" or "error" after checking what the user read."""
    with deadline(15, f"liveavatar check on\n{shown}"):
        try:
            code = cli.main(argv)
        except BaseException as exc:  # noqa: BLE001 - any escape is the defect this test looks for
            pytest.fail(f"{type(exc).__name__}: {exc} escaped `liveavatar check` on\n{shown}")
    err = capsys.readouterr().err
    assert "Traceback" not in err, f"{err}\non\n{shown}"
    if code == 0:
        assert err.startswith("ok "), err
        return "ok"
    assert code == 2, (code, err, shown)
    assert err.startswith("error: ") and len(err.strip()) > len("error: "), f"{err!r}\non\n{shown}"
    return "error"


def test_fuzz_persona_and_duet_yaml(yaml_folder: Path, capsys: pytest.CaptureFixture) -> None:
    personas, duets = base_documents()
    agents = ["good.yaml", "persona.yaml", "persona.yaml", "duet.yaml", "other-duet.yaml", "missing.yaml", "folder", "../face.jpg"]
    good = dict(personas[0])
    (yaml_folder / "good.yaml").write_text(yaml.safe_dump(good))
    (yaml_folder / "other-duet.yaml").write_text("agents: [good.yaml, good.yaml]\n")
    with Fuzz("persona and duet YAML (liveavatar check)", seed=11, max_cases=600, budget_s=4.0, min_cases=20) as fuzz:
        for rng in fuzz:
            persona = mutate_tree(json.loads(json.dumps(rng.choice(personas))), rng, agents)
            write_yaml(yaml_folder / "persona.yaml", persona, rng)
            target = yaml_folder / "persona.yaml"
            if rng.random() < 0.4:
                duet = mutate_tree(json.loads(json.dumps(rng.choice(duets))), rng, agents) if rng.random() < 0.8 else rng.choice(duets)
                if isinstance(duet, dict) and rng.random() < 0.6:
                    duet["agents"] = [rng.choice(agents), rng.choice(agents)]
                write_yaml(yaml_folder / "duet.yaml", duet, rng)
                target = yaml_folder / "duet.yaml"
            shown = target.read_bytes().decode("utf-8", "replace")[:3000]
            fuzz.saw(check_says_ok_or_one_clear_error(["check", str(target)], capsys, shown))


# ---------------------------------------------------------------- duet runs: the MP4 is always finished

RUN_LINES = ["Hello there.", "[/] Beep [red]boop.", "Zwölf Boxkämpfer jagen Viktor. 😀", "1, 2, 3 and 4.5%", "a",
             " ".join(["on and on"] * 20), "Well… yes! No? Maybe; perhaps: who knows — really.", "x" * 40]  # fmt: skip


def test_fuzz_duet_runs_always_finish_their_mp4(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.copy(ROOT / "examples" / "portraits" / "nova.jpg", tmp_path / "face.jpg")
    with Fuzz("duet runs (liveavatar duet, MP4 finished)", seed=12, max_cases=6, budget_s=6.0, min_cases=1, max_rss_growth_mb=800) as fuzz:
        for rng in fuzz:
            for name in ("a", "b"):
                voice = {"pitch_semitones": rng.choice([0, 0, 3]), "speaking_rate": rng.choice([0.8, 1.0, 2.0])}
                persona = {"name": rng.choice(["A", "R2 [/d2]", "Ünïcødé", "x" * 80]), "portrait": "face.jpg", "voice": voice,
                           "dialogue": {"backend": "scripted", "options": {"lines": rng.sample(RUN_LINES, 2)}},
                           "avatar": {"backend": "portrait", "options": {"face": {"eyes": [[150, 170], [250, 170]], "mouth": [[165, 265], [235, 265]]}}}}  # fmt: skip
                (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(persona, allow_unicode=True))
            duet = {"agents": ["a.yaml", rng.choice(["a.yaml", "b.yaml"])], "size": [rng.choice([64, 66, 96]), rng.choice([64, 80])],
                    "fps": rng.choice([10, 24, 25, 30]), "audio_rate": rng.choice([16000, 24000, 44100]), "layout": rng.choice(["side_by_side", "stacked"]),
                    "turn_gap_s": rng.choice([0, 0.4, 5]), "lead_in_s": rng.choice([0, 0.3]), "tail_s": rng.choice([0, 0.2]),
                    "opening": rng.choice([None, "Hi!", "[/]"]), "captions": rng.random() < 0.5}  # fmt: skip
            (tmp_path / "duet.yaml").write_text(yaml.safe_dump(duet, allow_unicode=True))
            out = tmp_path / f"run{fuzz.report.cases}.mp4"
            seconds = rng.choice(["0.04", "0.5", "1.2"])
            with deadline(120, f"duet run {duet}"):
                code = cli.main(["duet", str(tmp_path / "duet.yaml"), "--out", str(out), "--max-seconds", seconds, "--max-turns", "2"])
            err = capsys.readouterr().err
            assert code == 0 and "Traceback" not in err, err
            printed = float(err.replace("\n", "").split(f"wrote {out}: ")[1].split(" s")[0])
            assert out.is_file(), (err, duet, seconds)
            with av.open(str(out)) as container:
                frames = sum(1 for _ in container.decode(video=0))
            assert frames / duet["fps"] == pytest.approx(printed, abs=0.06) and 0 < printed <= max(float(seconds), 1 / duet["fps"]) + 0.05, err
            fuzz.saw("finished")


# ---------------------------------------------------------------- command-line flags

FLAG_VALUES = ["nan", "inf", "-inf", "-5", "0", "1", "2.5", "64", "65", "512", "4096", "65536", "-1", "", " ", "soon", "1e400",
               "0x10", "--", "-", "😀", "[/]", "127.0.0.1", "0.0.0.0", "::1", "localhost", "10.255.255.1", "a+b/c"]  # fmt: skip
FLAGS = {
    "duet": ["--out", "--max-seconds", "--max-turns", "--seed", "--dit-workers", "--browser", "--wav", "--host", "--port", "--token", "--no-open"],
    "chat": ["--browser", "--wav", "--host", "--port", "--token", "--no-open", "--out", "--headphones", "--size", "--metrics", "--dit-workers"],
    "bench": ["--frames"],
}
SWITCHES = {"--browser", "--no-open", "--headphones"}


def test_fuzz_cli_flags(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every generated command line is either refused with one usage line, or reaches its command with values that work."""
    paths = [str(tmp_path), str(tmp_path / "v.mp4"), str(tmp_path / "v.avi"), str(tmp_path / "no" / "v.mp4"), str(tmp_path / "x.wav"),
             str(tmp_path / "bad.wav"), str(tmp_path / "missing.wav"), str(ROOT / "examples" / "nova.yaml"), "/dev/zero", "/", "v.MP4"]  # fmt: skip
    soundfile.write(str(tmp_path / "x.wav"), np.zeros(1600, np.float32), 16000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    reached: list[argparse.Namespace] = []
    for command in ("_run_duet", "_run_chat", "_run_bench"):
        monkeypatch.setattr(cli, command, lambda args, console: reached.append(args) or 0)
    with Fuzz("command-line flags", seed=13, max_cases=3000, budget_s=3.0, min_cases=30) as fuzz:
        for rng in fuzz:
            command = rng.choice(["duet", "chat", "bench", "check"])
            argv = [command]
            if command in ("duet", "chat"):
                argv.append(rng.choice([str(ROOT / "examples" / "duet.yaml"), str(tmp_path / "none.yaml"), "[/]"]))
            for _ in range(rng.randint(0, 5)):
                flag = rng.choice(FLAGS.get(command, ["--frames"]) + ["--bogus", "-x"])
                argv.append(flag)
                if flag not in SWITCHES and rng.random() < 0.95:
                    argv.append(rng.choice(paths if flag in ("--out", "--wav", "--metrics") and rng.random() < 0.8 else FLAG_VALUES))
            if command == "check":
                argv += rng.sample(paths, rng.randint(0, 2))
            reached.clear()
            with deadline(10, f"liveavatar {argv}"):
                code = cli.main(argv)
            err = capsys.readouterr().err
            assert "Traceback" not in err, (argv, err)
            if code == 2 and not reached and command != "check" or err.startswith("usage:"):
                assert err.startswith("usage: liveavatar") and err.strip().splitlines()[-1].startswith("liveavatar"), (argv, err)
                assert ": error: " in err.strip().splitlines()[-1], (argv, err)
                fuzz.saw("usage error")
                continue
            if command == "check":
                assert code in (0, 2) and err.startswith(("ok ", "error: ")), (argv, err)
                fuzz.saw("check")
                continue
            assert code == 0 and len(reached) == 1, (argv, code, err)
            args = reached[0]
            assert args.max_seconds is None or (math.isfinite(args.max_seconds) and args.max_seconds > 0) if command == "duet" else True
            assert getattr(args, "size", 64) % 2 == 0 and 64 <= getattr(args, "size", 64) <= 2048
            out = getattr(args, "out", None)
            assert out is None or (out.suffix.lower() == ".mp4" and not out.is_dir()), argv
            if getattr(args, "browser", False):
                assert args.host in ("127.0.0.1", "localhost", "::1") or args.token, argv
            fuzz.saw("accepted")


# ---------------------------------------------------------------- WAV files (the microphone file, a server's chunks)


@functools.lru_cache(maxsize=1)
def wav_bases() -> list[bytes]:
    from liveavatar.dialogue.wav import encode_wav

    bases = [encode_wav(np.sin(np.arange(1600) / 5).astype(np.float32) * 0.3, 16000)]
    for subtype, rate, channels in (("PCM_24", 44100, 2), ("FLOAT", 24000, 1), ("PCM_U8", 8000, 1), ("PCM_32", 48000, 3)):
        buffer = __import__("io").BytesIO()
        soundfile.write(buffer, np.random.default_rng(0).uniform(-0.5, 0.5, (800, channels)), rate, subtype=subtype, format="WAV")
        bases.append(buffer.getvalue())
    return bases


WAV_FIELDS = [(4, "<I"), (16, "<I"), (20, "<H"), (22, "<H"), (24, "<I"), (28, "<I"), (32, "<H"), (34, "<H"), (40, "<I")]
WAV_NUMBERS = [0, 1, 2, 7, 8, 3, 0xFFFE, 65535, 2**31, 2**32 - 1, 100, 44100, 192001, 4000]


def mutate_wav(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.6:
            offset, fmt = rng.choice(WAV_FIELDS)
            if offset + struct.calcsize(fmt) <= len(out):
                struct.pack_into(fmt, out, offset, min(rng.choice(WAV_NUMBERS), 2 ** (8 * struct.calcsize(fmt)) - 1))
        elif op < 0.75:
            del out[rng.randint(0, len(out)) :]
        elif op < 0.9 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        else:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(out)


def test_fuzz_wav_files(tmp_path: Path) -> None:
    from liveavatar.agent.arguments import audio_file
    from liveavatar.devices.sources import read_wav
    from liveavatar.dialogue.base import DialogueError
    from liveavatar.dialogue.omni.wire import AudioDecoder, AudioPayload

    bases = wav_bases()
    path = tmp_path / "mic.wav"
    with Fuzz("WAV files (--wav and server audio chunks)", seed=14, max_cases=1500, budget_s=3.0, min_cases=30) as fuzz:
        for rng in fuzz:
            data = mutate_wav(rng.choice(bases), rng) if rng.random() < 0.9 else bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))
            path.write_bytes(data)
            with deadline(10, f"WAV {data[:64]!r}"):
                try:
                    audio_file(str(path))
                    pcm = read_wav(path)
                    assert pcm.dtype == np.float32 and np.all(np.isfinite(pcm)) and np.abs(pcm).max(initial=0) <= 1.0
                    fuzz.saw("microphone file read")
                except (argparse.ArgumentTypeError, ValueError) as exc:
                    assert str(path) in str(exc) and "\n" not in str(exc), exc
                    fuzz.saw("microphone file refused")
                try:
                    chunk = AudioDecoder().decode(AudioPayload(data, 24000))
                    assert chunk is None or (8000 <= chunk.rate <= 192000 and np.all(np.isfinite(chunk.pcm)))
                    fuzz.saw("server chunk decoded")
                except DialogueError as exc:
                    assert "\n" not in str(exc)
                    fuzz.saw("server chunk refused")


# ---------------------------------------------------------------- an Omni server's SSE stream


def _event(choices: list, modality: str | None = None, **extra: object) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "modality": modality, "choices": choices, **extra}


def omni_stream() -> list[object]:
    """A healthy vLLM-Omni reply: text deltas, speech chunks, one finish_reason, [DONE]."""
    pcm = base64.b64encode((np.sin(np.arange(2400) / 3) * 8000).astype("<i2").tobytes()).decode()
    events: list[object] = [_event([{"index": 0, "delta": {"content": word}}], "text") for word in ("Hello ", "there.")]
    events += [_event([{"index": 0, "delta": {"content": pcm}, "audio_metadata": {"sample_rate_hz": 24000}}], "audio") for _ in range(3)]
    events += [_event([{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}], "audio"), _event([], usage={"total_tokens": 9}), "[DONE]"]
    return events


def mutate_stream(rng: random.Random) -> bytes:
    events = omni_stream()
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        i = rng.randrange(len(events))
        if op < 0.45 and isinstance(events[i], dict):
            paths = [p for p in _paths_in(events[i]) if p]
            events[i] = _set(events[i], rng.choice(paths), nasty_value(rng))
        elif op < 0.55:
            del events[i]
        elif op < 0.65:
            events.insert(i, rng.choice(["garbage", "{", "[]", "null", '{"error": "boom [/]\\nline two"}', '{"object": "error"}',
                                         '{"choices": [{"delta": {"audio": {"data": "!!!", "transcript": 5}}}]}', "[" * 5000]))  # fmt: skip
        elif op < 0.75:
            events.insert(i, events[i])
        else:
            wav = bytearray(mutate_wav(wav_bases()[0], rng))
            events.insert(i, _event([{"index": 0, "delta": {"content": base64.b64encode(wav).decode()}}], "audio"))
    newline = rng.choice(["\n", "\r\n", "\r"])
    lines = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        lines.append(f"data: {data}{newline}{newline}")
        if rng.random() < 0.1:
            lines.append(rng.choice([f": keep-alive{newline}", f"event: x{newline}", f"id: 7{newline}", f"data{newline}", newline]))
    return "".join(lines).encode()


def test_fuzz_omni_sse_stream() -> None:
    from liveavatar.dialogue.base import DialogueError, TextDelta, UserTurn
    from liveavatar.dialogue.omni_server import OmniServerBackend, Options
    from liveavatar.media import AudioChunk

    pieces: list[bytes] = []

    async def stream():  # noqa: ANN202 - the current case's body, arriving in pieces
        for piece in pieces:
            yield piece

    async def one(backend: OmniServerBackend, body: bytes, rng: random.Random) -> str:
        cuts = sorted(rng.sample(range(len(body)), min(len(body), rng.randint(0, 8))))
        pieces[:] = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
        backend.reset()
        try:
            async with asyncio.timeout(10):
                async for event in backend.reply(UserTurn(text="Hi")):
                    assert isinstance(event, (TextDelta, AudioChunk))
                    if isinstance(event, AudioChunk):
                        assert 8000 <= event.rate <= 192000 and event.pcm.dtype == np.float32 and np.all(np.isfinite(event.pcm))
            return "reply"
        except DialogueError as exc:
            message = str(exc)
            assert message and "\n" not in message and len(message) < 600, message
            return "one-line error"
        except TimeoutError:
            pytest.fail(f"an Omni stream hung the reply: {body[:300]!r}")

    async def run_all() -> None:
        backend = OmniServerBackend(Options(base_url="http://omni.test/v1", chunk_timeout_s=2), "You are Ada.")
        transport = httpx.MockTransport(lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream()))
        backend._client = httpx.AsyncClient(transport=transport)
        with Fuzz("Omni SSE stream", seed=15, max_cases=800, budget_s=3.0, min_cases=30) as fuzz:
            for rng in fuzz:
                body = mutate_stream(rng)
                try:
                    fuzz.saw(await one(backend, body, rng))
                except AssertionError:
                    raise
                except Exception as exc:  # noqa: BLE001 - anything but a DialogueError is the defect looked for
                    pytest.fail(f"{type(exc).__name__}: {exc} from the stream {body[:400]!r}")
        await backend.aclose()

    asyncio.run(run_all())


# ---------------------------------------------------------------- the page's websocket messages


def page_message(rng: random.Random, jpeg: bytes) -> tuple[bytes | str, str]:
    """A message and what it should get: "quiet" (accepted), "error" (an error event), "either" (a damaged JPEG may decode)."""
    from test_bad_input import png_header_only  # noqa: F401 - same helpers module

    kind = rng.random()
    if kind < 0.25:
        n = rng.choice([0, 1, 2, 320, 640, 641, 32000, 32002, 40000])
        payload = bytes(rng.randrange(256) for _ in range(min(n, 64))) * (n // 64 + 1)
        payload = payload[:n]
        ok = n % 2 == 0 and n // 2 <= 16000
        return b"\x01" + payload, "quiet" if ok else "error"
    if kind < 0.4:
        data = bytearray(jpeg)
        for _ in range(rng.randint(0, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randint(0, len(data)) :]
        return b"\x02" + bytes(data), "either"
    if kind < 0.5:
        return bytes([rng.choice([0, 3, 0x10, 0xFF])]) + bytes(rng.randint(0, 20)), "error"
    if kind < 0.55:
        return b"", "error"
    if kind < 0.9:
        value = nasty_value(rng)
        if rng.random() < 0.6:
            value = {"type": rng.choice(["hello", "played", "stop", "dance", "", 5, None]), "x": nasty_value(rng)}
        text = json.dumps(value, allow_nan=True)
        ok = isinstance(value, dict) and value.get("type") in ("hello", "played", "stop")
        return text, "quiet" if ok else "error"
    return rng.choice(["{not json", "[" * 100000, '{"type": "played"', "NaN", "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace")]), "error"


def test_fuzz_page_messages(examples: Path, caplog: pytest.LogCaptureFixture) -> None:
    import cv2
    from websockets.asyncio.client import connect

    from browser_harness import scripted_server

    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))
    jpeg = jpeg.tobytes()

    async def scenario() -> None:
        async with scripted_server(examples, ["Hello."], size=(64, 64), transport="websocket") as (server, *_):
            async with connect(f"ws://127.0.0.1:{server.port}/ws", max_size=None) as ws:
                errors = 0

                async def read_until(marker: str) -> None:
                    nonlocal errors
                    async with asyncio.timeout(20):
                        while True:
                            message = await ws.recv()
                            if isinstance(message, str):
                                event = json.loads(message)
                                if event["type"] == "error":
                                    if marker in event["message"]:
                                        return
                                    assert event["message"].startswith("bad message: ") and "\n" not in event["message"], event
                                    errors += 1

                with Fuzz("page messages (binary and JSON)", seed=16, max_cases=600, budget_s=3.0, min_cases=50) as fuzz:
                    sure = either = 0
                    for rng in fuzz:
                        message, expected = page_message(rng, jpeg)
                        await ws.send(message)
                        sure += expected == "error"
                        either += expected == "either"
                        fuzz.saw(expected)
                        if fuzz.report.cases % 50 == 0:  # let the server keep up (its queue is bounded, as a real page's)
                            await ws.send('{"type": "sentinel-%d"}' % fuzz.report.cases)
                            await read_until("sentinel-%d" % fuzz.report.cases)
                    await ws.send('{"type": "sentinel-end"}')
                    await read_until("sentinel-end")
                assert sure <= errors <= sure + either, (sure, either, errors)
                assert server.sessions  # the page is still in its conversation
                frame = await asyncio.wait_for(ws.recv(), 10)  # and frames keep coming
                while isinstance(frame, str):
                    frame = await asyncio.wait_for(ws.recv(), 10)

    with caplog.at_level("ERROR"):
        asyncio.run(scenario())
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]


# ---------------------------------------------------------------- the Omni realtime WebSocket events


def realtime_event(rng: random.Random) -> str | bytes:
    """One server frame of vLLM-Omni's /v1/realtime, well-formed or damaged in the ways a server or a proxy could."""
    from liveavatar.dialogue.omni.realtime_wire import AUDIO_DELTAS, AUDIO_DONES, TEXT_DELTAS

    kinds = sorted(TEXT_DELTAS | AUDIO_DELTAS | AUDIO_DONES) + ["transcription.done", "error", "session.updated", "", "x" * 5000]
    pcm = np.clip(np.random.default_rng(rng.randrange(1 << 30)).normal(0, 0.3, rng.choice([0, 1, 2, 479, 960])), -1, 1)
    audio = base64.b64encode((pcm * 32767).astype("<i2").tobytes()).decode()
    event: dict = {"type": rng.choice(kinds)}
    for key, good in (("delta", rng.choice(["Hi", audio])), ("audio", audio), ("text", "Hello."), ("sample_rate_hz", 24000),
                      ("has_audio", True), ("usage", {"prompt_tokens": 12}), ("error", {"message": "bad [/] thing", "code": "x"})):  # fmt: skip
        if rng.random() < 0.5:
            event[key] = good if rng.random() < 0.6 else nasty_value(rng)
    if rng.random() < 0.15:
        event["sample_rate_hz"] = rng.choice([0, -1, 1e12, float("nan"), float("inf"), True, "24000", 999, 384001])
    if rng.random() < 0.1:
        event["delta"] = rng.choice(["!!notbase64", audio[:-3], "", "A" * 7, "=" * 8])
    text = json.dumps(event, allow_nan=True)
    roll = rng.random()
    if roll < 0.05:
        return rng.choice(["[" * 100000, "{" * 50000, '"just a string"', "null", "[]", "NaN", "", " "])
    if roll < 0.1:
        return text[: rng.randrange(len(text))]
    if roll < 0.15:
        return text.encode("utf-8") if rng.random() < 0.5 else b"\xff\xfe" + text.encode("utf-8")
    return text


def test_fuzz_omni_realtime_events() -> None:
    """Each frame the realtime server could send is a typed event or one clear dialogue error, never a traceback."""
    from liveavatar.dialogue.base import DialogueError
    from liveavatar.dialogue.omni.realtime_wire import AudioEvent, AudioDone, Other, TextDone, TextEvent, parse_event

    with Fuzz("Omni realtime events", seed=16, max_cases=3000, budget_s=3.0, min_cases=200) as fuzz:
        for rng in fuzz:
            message = realtime_event(rng)
            try:
                event = parse_event(message)
            except DialogueError as exc:
                text = str(exc)
                assert text and "\n" not in text and len(text) < 600, text
                fuzz.saw("one-line error")
                continue
            except Exception as exc:  # noqa: BLE001 - anything but a DialogueError is the defect looked for
                pytest.fail(f"{type(exc).__name__}: {exc} from the event {str(message)[:300]!r}")
            assert isinstance(event, (TextEvent, AudioEvent, AudioDone, TextDone, Other))
            if isinstance(event, AudioEvent):
                assert 1000 <= event.rate <= 384000 and event.pcm.dtype == np.float32 and np.all(np.isfinite(event.pcm))
            fuzz.saw(type(event).__name__)
