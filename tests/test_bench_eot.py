"""The end-of-turn benchmark on two utterances (it measures real answers and names its setting; figures: `liveavatar
bench eot`), and the reply chain's stage timings (`python -m liveavatar.testing.chain_bench`) on one call each."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from liveavatar.dialogue.cpu_share import usable_cores
from liveavatar.testing.eot_bench import SETTINGS, Setting, rounds_order, run_pass
from liveavatar.testing.eot_corpus import Utterance, say, user_voices, voice_span


def test_a_short_eot_pass_answers_each_utterance_and_reports_its_setting(examples: Path, end_of_turn) -> None:  # noqa: ANN001
    from liveavatar.agent.chat import make_agent
    from liveavatar.agent.config import load_persona

    voices = user_voices()
    utterances = []
    for kind, text in (("question", "Do you like music?"), ("statement", "I have never seen the ocean.")):
        pcm, _ = say(voices[len(utterances)], text)
        utterances.append(Utterance(kind, text, pcm, *voice_span(pcm)))
    stop = say(voices[0], "Stop and tell me something else.")[0]
    out = io.StringIO()
    setting = Setting(model=True, words=True, change="turn_taking.prepare_silence_s=0.096")

    async def one_pass():  # noqa: ANN202 - PassResult
        agent = make_agent(load_persona(examples / "nova-live.yaml"), (256, 256))
        try:
            return await run_pass(agent, utterances, [stop], setting, end_of_turn, out, "eot")
        finally:
            await agent.aclose()

    result = asyncio.run(one_pass())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["n"], line["kind"], line["change"], line["model"]) for line in lines] == [
        (1, "question", setting.change, "on"), (2, "statement", setting.change, "on")]  # fmt: skip
    responses = [h.response_s for h in result.heard]
    assert all(r is not None and 0.2 < r < 3.0 for r in responses), responses  # voice end -> first voiced frame
    assert all(line["cut_at"] == [] and not line["cut_off"] for line in lines), lines  # whole sentences, said in one breath
    assert all(line["heard_as"] and line["heard_as"][-1] in ".?!" for line in lines), lines  # the early transcript answered
    assert all(0.0 <= line["heard_sentence_end_p"] <= 1.0 for line in lines), lines  # ... and how sure Whisper was that it ends
    assert all(h.cause in ("model", "question", "words", "silence", "fallback") for h in result.heard), [h.cause for h in result.heard]
    for h in result.heard:  # the answer's chain in the loop: it began after the voice ended, each stage took time, in order
        stages = (h.asr_run_s, h.llm_run_s, h.tts_run_s, h.to_frame_s)
        assert 0.0 < h.answer_started_s < h.response_s and all(s is not None and s > 0.0 for s in stages), (h.answer_started_s, stages)
        assert h.answer_started_s + sum(stages) == pytest.approx(h.response_s), (h.answer_started_s, stages, h.response_s)


def test_settings_take_turns_forwards_then_backwards_so_a_changing_load_weighs_on_all_alike() -> None:
    a, b, c = SETTINGS
    assert rounds_order(SETTINGS, 1) == [(0, a), (0, b), (0, c)]
    assert rounds_order(SETTINGS, 3) == [(0, a), (0, b), (0, c), (1, c), (1, b), (1, a), (2, a), (2, b), (2, c)]


def test_a_setting_can_change_several_persona_options_at_once(examples: Path) -> None:
    from liveavatar.agent.config import load_persona

    persona = load_persona(examples / "nova-live.yaml")
    changed = Setting(model=True, words=True, change="dialogue_options.threads=1; dialogue_options.llm_threads=1").persona(persona)
    assert (changed.dialogue_options.threads, changed.dialogue_options.llm_threads) == (1, 1)
    assert changed.turn_taking == persona.turn_taking and changed.voice == persona.voice
    with pytest.raises(ValueError, match="several joined by ';'"):
        Setting(model=True, words=True, change="dialogue_options.threads=1;llm_threads=1").persona(persona)


def test_the_reply_chain_bench_times_every_stage() -> None:
    from liveavatar.testing.chain_bench import run

    out = io.StringIO()
    run(out, runs=1, load=True)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["name"], line.get("threads"), line.get("shaped", line.get("sentence_end_asked_first"))) for line in lines] == [
        ("chain_asr", 1, None), ("chain_asr", 2, None), ("chain_end_of_turn_model", None, None), ("chain_llm_first_piece", 1, False),
        ("chain_llm_first_piece", 1, True), ("chain_llm_first_piece", 2, False), ("chain_llm_first_piece", 2, True),
        ("chain_llm_first_piece", 2, False), ("chain_llm_first_piece", 2, True),
        ("chain_tts_first_piece", None, False), ("chain_tts_first_piece", None, True)]  # fmt: skip
    assert all(0.0 < line["value"] < 10.0 and line["busy_core"] for line in lines), lines
    pieces = [line for line in lines if line["name"] == "chain_llm_first_piece"]
    assert [line["threads_used"] for line in pieces[:4]] == [1, 1, 2, 2]  # fixed counts, as asked
    fitted = pieces[4:]  # as the cascade runs it: one core of two is busy elsewhere, so one thread (more cores: fewer than all)
    assert all(line["fit_threads"] and line["threads_used"] <= max(1, usable_cores() - 1) for line in fitted), fitted
    assert all(0 < line["new_prompt_tokens"] < 40 for line in lines if line["name"] == "chain_llm_first_piece"), lines
