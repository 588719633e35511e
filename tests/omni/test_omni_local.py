"""`omni_local`: the tiny random Qwen3-Omni in-process — text deltas, then its speech; history; cancel; errors."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from liveavatar.dialogue.base import DialogueError, TextDelta, UserTurn
from liveavatar.testing.omni_standin import OmniWireServer
from liveavatar.dialogue.omni_local import OmniLocalBackend, Options, create
from liveavatar.dialogue.omni_server import OmniServerBackend
from liveavatar.dialogue.omni_server import Options as ServerOptions
from liveavatar.dialogue.registry import DialogueSetup, create_dialogue
from omni_helpers import collect, speech_turn
from omni_tiny import expected_samples

GREEDY = {"thinker_do_sample": False, "talker_do_sample": False}


def local_backend(folder: Path, **options: object) -> OmniLocalBackend:
    settings = {"model_dir": folder, "max_new_tokens": 6, "talker_max_new_tokens": 12, "generate_kwargs": GREEDY,
                "torch_threads": 1, **options}
    backend = create_dialogue("omni_local", settings, DialogueSetup(name="ada", system_prompt="You are Ada."))
    assert isinstance(backend, OmniLocalBackend)
    return backend


def test_text_streams_first_then_the_speech(tiny_omni_dir: Path) -> None:
    async def go():
        backend = local_backend(tiny_omni_dir, speech_chunk_s=0.25)
        reply = await collect(backend, speech_turn(2.0))
        await backend.aclose()
        return reply

    reply = asyncio.run(go())
    assert reply.error is None and reply.text
    kinds = ["text" if isinstance(e, TextDelta) else "audio" for e in reply.events]
    assert kinds.index("audio") > 0 and "text" not in kinds[kinds.index("audio"):]
    assert len(reply.pcm) == expected_samples(12)
    assert [len(c.pcm) for c in reply.chunks[:-1]] == [6000] * (len(reply.chunks) - 1)
    assert all(c.rate == 24000 for c in reply.chunks)
    assert [c.pts for c in reply.chunks] == [i * 0.25 for i in range(len(reply.chunks))]


def test_same_words_as_the_same_model_behind_the_server(tiny_omni_dir: Path, tiny_server: OmniWireServer) -> None:
    async def go():
        local = local_backend(tiny_omni_dir)
        remote = OmniServerBackend(ServerOptions(base_url=tiny_server.base_url), "You are Ada.")
        replies = [await collect(local, speech_turn(2.0)), await collect(remote, speech_turn(2.0))]
        await local.aclose()
        await remote.aclose()
        return replies

    local, remote = asyncio.run(go())
    assert local.error is None and remote.error is None
    assert local.text.strip() == remote.text.strip()  # greedy decoding, same prompt layout
    assert len(local.pcm) == len(remote.pcm) == expected_samples(12)


def test_history_and_record_played(tiny_omni_dir: Path) -> None:
    async def go():
        backend = local_backend(tiny_omni_dir)
        first = await collect(backend, speech_turn(1.0))
        backend.record_played("t1 t2")
        second = await collect(backend, UserTurn(text="again"))
        messages = backend._prompt_messages()
        await backend.aclose()
        return first, second, messages, backend.history.exchanges

    first, second, messages, exchanges = asyncio.run(go())
    assert first.error is None and second.error is None
    assert [(m.role, len(m.audio)) for m in messages] == [("system", 0), ("user", 1), ("assistant", 0), ("user", 0), ("assistant", 0)]
    assert messages[2].text == "t1 t2" and messages[3].text == "again"
    assert exchanges[-1].reply_text == second.text


def test_cancel_returns_at_once_and_the_worker_stops_at_its_next_token(tiny_omni_dir: Path) -> None:
    async def go():
        backend = local_backend(tiny_omni_dir, max_new_tokens=4000)  # tens of seconds if left to run
        first_text = asyncio.Event()
        got_audio = []

        async def consume() -> None:
            async for event in backend.reply(speech_turn(1.0)):
                first_text.set() if isinstance(event, TextDelta) else got_audio.append(event)

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first_text.wait(), 60)
        cancelled_at = time.perf_counter()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        task_done = time.perf_counter() - cancelled_at
        while backend.busy and time.perf_counter() - cancelled_at < 10:
            await asyncio.sleep(0.005)
        worker_done = time.perf_counter() - cancelled_at
        await backend.aclose()
        return task_done, worker_done, got_audio

    task_done, worker_done, got_audio = asyncio.run(go())
    assert task_done < 0.050
    assert worker_done < 1.0  # not the tens of seconds 4000 tokens would take
    assert got_audio == []


def test_missing_checkpoint_is_reported_at_setup(tmp_path: Path) -> None:
    with pytest.raises(DialogueError, match=r"omni_local: no Qwen3-Omni checkpoint at .*nowhere \(config.json missing\)"):
        create(Options(model_dir=Path("nowhere")), DialogueSetup(name="ada", system_prompt="", base_dir=tmp_path))


def test_unknown_voice_is_a_dialogue_error_and_the_next_turn_works(tiny_omni_dir: Path) -> None:
    async def go():
        backend = local_backend(tiny_omni_dir, voice="Bob")
        failed = await collect(backend, speech_turn(1.0))
        backend.options = backend.options.model_copy(update={"voice": "Aiden"})
        recovered = await collect(backend, speech_turn(1.0))
        await backend.aclose()
        return failed, recovered

    failed, recovered = asyncio.run(go())
    assert str(failed.error) == "unknown voice 'Bob': this checkpoint speaks as aiden, chelsie, ethan"
    assert recovered.error is None and len(recovered.pcm) == expected_samples(12)


def test_unloadable_checkpoint_is_a_dialogue_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")

    async def go():
        backend = local_backend(tmp_path)
        reply = await collect(backend, UserTurn(text="hi"))
        await backend.aclose()
        return reply

    reply = asyncio.run(go())
    assert reply.error is not None and str(reply.error).startswith(f"cannot load Qwen3-Omni from {tmp_path}: ")
