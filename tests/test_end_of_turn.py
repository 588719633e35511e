"""The end-of-turn model (Smart Turn v3.2) for real: our features against transformers', and its verdicts in the TurnTaker.

The turn-taking test runs the real silero VAD and the real model over synthesized speech on a simulated
timeline (each verdict handed back a fixed 0.1 s after its proposal), so what it checks does not depend on
how busy the machine is.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from liveavatar.agent.turn_options import TurnOptions
from liveavatar.agent.turns import QUIET_TAIL_MAX_S, UserPaused, UserResumed, UserTurnEnded
from liveavatar.devices.end_of_turn import EndOfTurnModelMissing, SmartTurn, as_if_silent_for, model_path
from liveavatar.devices.log_mel import log_mel
from liveavatar.devices.vad import SAMPLE_RATE, WINDOW, level_db
from liveavatar.testing.eot_bench import simulate_turns
from liveavatar.testing.eot_corpus import say, user_voices, voice_span

ANSWER_S = 0.1  # simulated inference time


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    smart_turn = SmartTurn()
    yield smart_turn
    smart_turn.close()


@pytest.mark.parametrize("seconds", [3.0, 8.0, 11.5])
def test_our_features_are_whisper_log_mel_as_transformers_computes_them(seconds: float) -> None:
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(int(seconds * 10))
    n = int(seconds * SAMPLE_RATE)
    audio = (0.1 * rng.standard_normal(n) * np.sin(np.arange(n) / 900.0)).astype(np.float32)
    ours = log_mel(audio, 800)
    last = audio[-8 * SAMPLE_RATE :]
    padded = np.concatenate([np.zeros(8 * SAMPLE_RATE - len(last), np.float32), last])  # zero-padded at the front
    reference = WhisperFeatureExtractor(chunk_length=8)(padded, sampling_rate=SAMPLE_RATE, padding="max_length", max_length=8 * SAMPLE_RATE,
                                                        truncation=True, do_normalize=True, return_tensors="np").input_features[0]  # fmt: skip
    assert ours.shape == reference.shape == (80, 800) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_a_missing_model_is_named_with_the_command_that_installs_it(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    assert model_path().name == "smart-turn-v3.2-cpu.onnx"
    monkeypatch.setenv("LIVEAVATAR_MODELS", str(tmp_path))
    with pytest.raises(EndOfTurnModelMissing, match=r"pipecat-ai wheel\) is not installed; run: pip install --no-deps --target"):
        model_path()


def test_the_model_runs_off_the_event_loop(model: SmartTurn) -> None:
    audio = np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE).astype(np.float32) * 0.1

    async def judge_while_ticking() -> tuple[int, float, str]:
        ticks = 0
        thread = {}

        def probability(pcm: np.ndarray) -> float:
            thread["name"] = threading.current_thread().name
            time.sleep(0.05)  # make sure the loop has time to tick, however fast the model is
            return SmartTurn.probability(model, pcm)

        model.probability = probability  # type: ignore[method-assign]
        try:
            task = asyncio.create_task(model.judge(audio))
            while not task.done():
                ticks += 1
                await asyncio.sleep(0.005)
            verdict = await task
        finally:
            del model.probability
        return ticks, verdict.probability, thread["name"]

    ticks, probability, name = asyncio.run(judge_while_ticking())
    assert ticks >= 5 and 0.0 <= probability <= 1.0 and name.startswith("end-of-turn")
    assert asyncio.run(model.judge(audio, still_wanted=lambda: False)) is None  # a moot question is not computed


def simulate(audio: np.ndarray, options: TurnOptions, model: SmartTurn) -> list[UserTurnEnded]:
    """Real VAD and real verdicts on a simulated clock (the benchmark's `simulate_turns`), each verdict ANSWER_S after its proposal."""
    return simulate_turns(audio, options, model.probability, ANSWER_S, lead_s=0.5)


def test_with_the_model_a_statement_ends_sooner_and_a_hesitation_is_not_cut(model: SmartTurn) -> None:
    voice = user_voices()[0]
    statement, _ = say(voice, "My brother works at a bakery in the city.")
    hesitation, pause = say(voice, "If you had to choose uh | would you pick Mars or the moon?", pause_s=0.8)
    with_model, silence_only = TurnOptions(), TurnOptions(end_of_turn_model=False)
    lead = 0.5  # simulate() puts this much silence first

    [quick] = simulate(statement, with_model, model)
    [slow] = simulate(statement, silence_only, model)
    assert quick.cause == "model" and slow.cause == "silence"
    assert quick.speech_end == pytest.approx(slow.speech_end)
    # The verdict on the first proposal ended it: the model is asked after 0.2 s of silence as the VAD hears it, which
    # begins up to QUIET_TAIL_MAX_S after the speech's end (where the voice fell quiet).
    bound = QUIET_TAIL_MAX_S + with_model.end_of_turn_proposal_silence_s + WINDOW / SAMPLE_RATE + ANSWER_S
    assert quick.t - quick.speech_end <= bound + 1e-6
    # 0.6 s of silence against 0.2 s heard + the verdict: sooner by the difference less the quiet tail the VAD still heard
    assert slow.t - quick.t > 0.15, "the model did not end the statement sooner than the silence rule"

    true_end = lead + voice_span(hesitation)[1]
    kept = simulate(hesitation, with_model, model)
    assert len(kept) == 1 and kept[0].speech_end == pytest.approx(true_end, abs=0.15), "the hesitation was cut"
    cut = simulate(hesitation, silence_only, model)
    assert cut[0].speech_end == pytest.approx(lead + pause[0], abs=0.15), "without the model the 0.8 s pause should end the turn"


def test_asked_ahead_the_same_verdicts_end_the_statement_sooner_and_still_keep_the_hesitation(model: SmartTurn) -> None:
    voice = user_voices()[1]
    statement, _ = say(voice, "My brother works at a bakery in the city.")
    hesitation, _ = say(voice, "If you had to choose uh | would you pick Mars or the moon?", pause_s=0.8)
    ahead, asked_late = TurnOptions(), TurnOptions(end_of_turn_ask_ahead=False)
    [quick] = simulate(statement, ahead, model)
    [late] = simulate(statement, asked_late, model)
    assert quick.cause == late.cause == "model" and quick.speech_end == pytest.approx(late.speech_end)
    # the verdict was ready when the proposal silence had passed: the turn ended then, not ANSWER_S after it
    assert late.t - quick.t == pytest.approx(ANSWER_S, abs=WINDOW / SAMPLE_RATE + 1e-6)
    true_end = 0.5 + voice_span(hesitation)[1]
    kept = simulate(hesitation, ahead, model)
    assert len(kept) == 1 and kept[0].speech_end == pytest.approx(true_end, abs=0.15), "asked ahead, the hesitation was cut"


def test_the_pause_asked_about_ahead_goes_on_as_the_room_sounds() -> None:
    rng = np.random.default_rng(3)
    audio = np.concatenate([rng.normal(0, 0.1, SAMPLE_RATE), rng.normal(0, 0.001, SAMPLE_RATE // 10)]).astype(np.float32)
    longer = as_if_silent_for(audio, 0.15)
    assert len(longer) == len(audio) + round(0.15 * SAMPLE_RATE) and np.array_equal(longer[: len(audio)], audio)
    tail = longer[len(audio) :]
    assert np.array_equal(tail[:512], audio[-512:]) and np.abs(tail).max() <= np.abs(audio[-512:]).max()  # the room, not the voice
    assert as_if_silent_for(audio, 0.0) is audio


def test_silence_counts_from_where_a_real_voice_fades_and_a_noisy_room_changes_nothing(model: SmartTurn) -> None:
    voices = user_voices()
    sentences = ["I have never seen the ocean.", "Do you like music?", "My favourite colour is dark blue.", "Is it cold up there?"]
    silence_only = TurnOptions(end_of_turn_model=False)
    as_before = TurnOptions(end_of_turn_model=False, end_of_speech_quiet_db=None)
    lead = 0.5
    gated_lags, plain_lags = [], []
    for i, text in enumerate(sentences):
        audio, _ = say(voices[i % 2], text)
        true_end = lead + voice_span(audio)[1]
        [gated], [plain] = simulate(audio, silence_only, model), simulate(audio, as_before, model)
        assert gated.t <= plain.t and gated.speech_end <= plain.speech_end
        gated_lags.append(gated.speech_end - true_end)
        plain_lags.append(plain.speech_end - true_end)
        loudest = max(level_db(audio[k : k + WINDOW]) for k in range(0, len(audio) - WINDOW, WINDOW))
        hiss_db = loudest - 20.0  # a noisy room: its hiss 20 dB below the voice's loudest window, so nothing is 30 dB quieter
        noise = np.random.default_rng(i).normal(0.0, 10 ** (hiss_db / 20), len(audio)).astype(np.float32)
        [noisy], [noisy_before] = simulate(audio + noise, silence_only, model), simulate(audio + noise, as_before, model)
        assert noisy.speech_end == pytest.approx(noisy_before.speech_end), f"hiss at {hiss_db:.1f} dBFS"
    assert np.median(plain_lags) > 0.07, f"silero should hear the fading voice for a while: {plain_lags}"
    assert np.median(gated_lags) < 0.05, f"the speech should end where the voice falls quiet: {gated_lags}"
    assert np.median(np.subtract(plain_lags, gated_lags)) >= 0.05


def test_the_answer_is_prepared_as_a_real_voice_fades_before_silero_hears_silence(model: SmartTurn) -> None:
    voices = user_voices()
    sentences = ["I have never seen the ocean.", "Do you like music?", "My favourite colour is dark blue.", "Is it cold up there?"]
    when_quiet, on_silence = TurnOptions(end_of_turn_model=False), TurnOptions(end_of_turn_model=False, prepare_when_quiet=False)
    pauses = (UserPaused, UserResumed, UserTurnEnded)
    sooner = []
    for i, text in enumerate(sentences):
        audio, _ = say(voices[i % 2], text)
        true_end = 0.5 + voice_span(audio)[1]
        quick, waited = (simulate_turns(audio, options, model.probability, ANSWER_S, keep=pauses) for options in (when_quiet, on_silence))
        for events in (quick, waited):
            last_paused, ended = [e for e in events if isinstance(e, UserPaused)][-1], events[-1]
            assert isinstance(ended, UserTurnEnded) and not any(isinstance(e, UserResumed) and e.t > last_paused.t for e in events)
            assert (last_paused.onset, last_paused.speech_end) == (ended.onset, ended.speech_end), "the prepared answer is the one released"
            assert last_paused.t >= true_end
        assert quick[-1].speech_end == waited[-1].speech_end and quick[-1].t == waited[-1].t, "only the preparation moves"
        sooner.append(waited[-2].t - quick[-2].t)
        loudest = max(level_db(audio[k : k + WINDOW]) for k in range(0, len(audio) - WINDOW, WINDOW))
        noise = np.random.default_rng(i).normal(0.0, 10 ** ((loudest - 20.0) / 20), len(audio)).astype(np.float32)  # a noisy room
        noisy, noisy_before = (simulate_turns(audio + noise, options, model.probability, ANSWER_S, keep=pauses) for options in (when_quiet, on_silence))
        assert [(type(e), e.t) for e in noisy] == [(type(e), e.t) for e in noisy_before], "nothing is 30 dB quieter in a noisy room"
    assert min(sooner) >= 0.0 and np.median(sooner) >= 0.03, f"the answer should start sooner: {sooner}"


@pytest.fixture(scope="module")
def hear():  # noqa: ANN201 - the cascade's early transcript: (text, Whisper's and the LLM's sentence-end probabilities)
    from liveavatar.dialogue.asr import WhisperASR
    from liveavatar.dialogue.llm import LocalLLM

    asr, llm = WhisperASR(threads=1), LocalLLM(threads=1)
    system = {"role": "system", "content": "You are Kai, a friendly guide at a science museum. Answer briefly."}

    def early_transcript(pcm: np.ndarray) -> tuple[str, float | None, float | None]:
        heard = asr.hear(pcm)
        return heard.text, heard.sentence_end_probability, asyncio.run(llm.end_probability([system, {"role": "user", "content": heard.text}]))

    yield early_transcript
    llm.close()


def test_words_the_llm_is_sure_of_end_a_statement_the_model_hears_as_unfinished_and_a_hesitation_is_still_kept(model: SmartTurn, hear) -> None:  # noqa: ANN001
    """Real VAD, Smart Turn, Whisper and SmolLM2 on a simulated clock (the words 0.25 s after the pause, as on a quiet 2-core machine)."""
    statement, _ = say(user_voices()[1], "I like to read science fiction before bed.")
    simulate = lambda audio, options: simulate_turns(audio, options, model.probability, ANSWER_S, hear=hear)  # noqa: E731
    [sure] = simulate(statement, TurnOptions())
    [held] = simulate(statement, TurnOptions(language_end_sure_probability=None))  # the model decides, as before
    assert held.cause == "fallback", "Smart Turn no longer hears this statement as unfinished: pick another for this test"
    assert sure.cause == "words" and sure.speech_end == pytest.approx(held.speech_end)
    assert held.t - sure.t > 0.5, "the words did not end the statement sooner than the fallback silence"
    assert sure.t - sure.speech_end <= QUIET_TAIL_MAX_S + TurnOptions().end_of_turn_proposal_silence_s + 2 * WINDOW / SAMPLE_RATE
    for voice in user_voices():  # a hesitation whose first words Whisper may close with a mark: the LLM keeps it open
        hesitation, (pause, _) = say(voice, "I was hoping um | that you could show me the dinosaurs.", pause_s=0.8)
        kept = simulate(hesitation, TurnOptions())
        assert len(kept) == 1 and kept[0].speech_end > 0.5 + pause + 0.5, f"the hesitation was cut at {kept[0].speech_end - 0.5:.2f} s"
