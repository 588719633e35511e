"""The offline voice cascade on its real models: Whisper tiny.en hears, SmolLM2 answers, Piper speaks."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from liveavatar.agent.config import load_persona
from liveavatar.agent.turn_options import TurnOptions
from liveavatar.agent.unfinished import ends_mid_sentence
from liveavatar.dialogue.base import DialogueError, TextDelta, Transcript, UserTurn
from liveavatar.dialogue.cascade import CascadeDialogue, Options
from liveavatar.dialogue.llm import RemoteLLM
from liveavatar.dialogue.registry import DialogueSetup, create_dialogue
from liveavatar.dialogue.speech.piper_tts import PiperTTS, first_sound
from liveavatar.dialogue.speech.voice import VoiceOptions
from liveavatar.media import AudioChunk, resample
from liveavatar.testing.eot_corpus import say, user_voices
from helpers import seconds_to_cancel_at_first_audio

PROMPT = "You are Nova, a cheerful astronaut. Answer in one short sentence."


@pytest.fixture(scope="module")
def cascade() -> CascadeDialogue:
    return create_dialogue("cascade", {}, DialogueSetup("Nova", PROMPT, VoiceOptions(pitch_semitones=7)))  # type: ignore[return-value]


def spoken(text: str, voice: VoiceOptions = VoiceOptions(pitch_semitones=-2, formant_shift=0.95)) -> AudioChunk:
    tts = PiperTTS(voice)
    pcm = np.concatenate([c.pcm for c in tts.synthesize(text)])
    return AudioChunk(resample(pcm, tts.rate, 16000), 16000)


def words_heard(said: str, heard: str) -> float:
    """The share of the words said that the recognizer heard (Piper's voice varies a little each time)."""
    norm = lambda text: [w.strip(".,?!'").lower() for w in text.split()]  # noqa: E731
    said_words, heard_words = norm(said), set(norm(heard))
    return sum(w in heard_words for w in said_words) / len(said_words)


async def collect(backend, turn: UserTurn) -> list[tuple[float, object]]:  # noqa: ANN001
    start, events = time.perf_counter(), []
    async for event in backend.reply(turn):
        events.append((time.perf_counter() - start, event))
    return events


def test_a_spoken_question_is_heard_answered_and_spoken_piece_by_piece(cascade: CascadeDialogue) -> None:
    turn = UserTurn(audio=spoken("What is the tallest mountain in the world?"))
    events = asyncio.run(collect(cascade, turn))
    kinds = [type(e).__name__ for _, e in events]
    assert kinds[0] == "Transcript" and words_heard("What is the tallest mountain in the world?", events[0][1].text) >= 0.75
    assert events[0][1].sentence_end_probability > TurnOptions().sentence_end_min_probability  # Whisper is sure it is a question
    assert kinds[1] == "TextDelta" and "AudioChunk" in kinds
    audio = [(t, e) for t, e in events if isinstance(e, AudioChunk)]
    assert audio[0][0] < events[-1][0], "the first piece was not ready before the whole reply"
    text = "".join(e.text for _, e in events if isinstance(e, TextDelta))
    assert cascade.history[-1] == (events[0][1].text, cascade.history[-1][1]) and text.strip()
    assert all(e.rate == 22050 and len(e.phonemes) for _, e in audio)
    assert first_sound(audio[0][1].pcm, audio[0][1].rate) == 0, "the answer's first sound should come without Piper's lead-in"


def test_the_shaped_persona_voices_stay_intelligible(cascade: CascadeDialogue, examples: Path) -> None:
    for name in ("nova", "iris"):
        voice = load_persona(examples / f"{name}.yaml").voice
        said = "Good morning, the weather is lovely today, and the sea is calm."
        heard = cascade.asr.transcribe(spoken(said, voice).pcm)
        assert words_heard(said, heard) >= 0.75, f"{name}: Whisper heard {heard!r}"


@pytest.mark.parametrize("said", ["My grandmother used to grow | tomatoes in her garden.", "I started | running every evening after work.",
                                  "I think I | would like to learn how to play the piano."])  # fmt: skip
def test_whisper_and_the_language_model_are_sure_a_whole_sentence_ends_and_unsure_where_a_voice_stops_mid_sentence(
        cascade: CascadeDialogue, said: str) -> None:  # fmt: skip
    options, pause = TurnOptions(), np.zeros(int(0.15 * 16000), np.float32)  # as the early transcript hears it
    least, least_language = options.sentence_end_min_probability, options.language_end_min_probability
    for voice in user_voices():
        whole, _ = say(voice, said)
        with_pause, (stop, _) = say(voice, said, 0.0)
        sentence = heard_early(cascade, np.concatenate([whole, pause]))
        fragment = heard_early(cascade, np.concatenate([with_pause[: int(stop * 16000)], pause]))
        assert not ends_mid_sentence(sentence.text) and sentence.sentence_end_probability >= least, sentence
        assert ends_mid_sentence(fragment.text) or fragment.sentence_end_probability < least, fragment
        assert fragment.sentence_end_probability < sentence.sentence_end_probability, (fragment, sentence)
        # Piper's voice varies from run to run, and Whisper sometimes mishears a fragment as a sentence ("I started with
        # it."): the LLM never holds the whole sentence, and keeps the fragment below the whole's probability.
        assert sentence.language_end_probability >= least_language, sentence
        assert fragment.language_end_probability < sentence.language_end_probability, (fragment, sentence)


def heard_early(backend: CascadeDialogue, pcm: np.ndarray) -> Transcript:
    """What the cascade's early transcript of speech `pcm` (16 kHz) says: Whisper's words and mark, and the LLM's
    probability of a sentence's end after those words (as `reply` asks it, after the system prompt)."""
    heard = backend.asr.hear(pcm)
    messages = [{"role": "system", "content": backend.system_prompt}, {"role": "user", "content": heard.text}]
    return Transcript(heard.text, heard.sentence_end_probability, asyncio.run(backend.llm.end_probability(messages)))


def test_whisper_saying_its_words_again_in_a_loop_is_heard_once(cascade: CascadeDialogue) -> None:
    tokenizer, asr = cascade.asr._tokenizer, cascade.asr
    stamp = lambda s: tokenizer.timestamp_begin + round(s / 0.02)  # noqa: E731
    said, again = tokenizer.encode(" I started running every evening after work."), tokenizer.encode(" I started running every")
    looped = [stamp(0.0), *said, stamp(1.5), stamp(1.5), *said, stamp(2.0), stamp(2.0), *again, stamp(2.5)]
    assert asr._segments(looped, 3.0) == (["I started running every evening after work."], len(said))  # its last word's step
    two = [stamp(0.0), *tokenizer.encode(" No."), stamp(0.5), stamp(0.6), *tokenizer.encode(" I said no, thanks."), stamp(1.5)]
    assert asr._segments(two, 3.0)[0] == ["No.", "I said no, thanks."]  # a sentence that only shares words is kept


def test_fillers_and_silence_get_no_answer(cascade: CascadeDialogue) -> None:
    for turn in (UserTurn(text="Mm-hmm."), UserTurn(audio=AudioChunk(np.zeros(16000, np.float32), 16000))):
        events = asyncio.run(collect(cascade, turn))
        assert [type(e).__name__ for _, e in events] == ["Transcript"]


def test_cancelling_a_reply_stops_it_at_once(cascade: CascadeDialogue) -> None:
    assert asyncio.run(seconds_to_cancel_at_first_audio(cascade.reply(UserTurn(text="Tell me a long story about the moon.")), 30)) < 0.05


def test_history_keeps_what_was_heard_and_forgets_discarded_turns(cascade: CascadeDialogue) -> None:
    first, second = UserTurn(text="Hello there."), UserTurn(text="How is the view?")
    asyncio.run(collect(cascade, first))
    asyncio.run(collect(cascade, second))
    cascade.record_played("Hi!", first)
    assert ("Hello there.", "Hi!") in cascade.history
    cascade.discard_turn(second)
    assert cascade.history[-1] == ("Hello there.", "Hi!")


def test_after_a_barge_in_the_next_reply_reads_only_its_own_words(cascade: CascadeDialogue) -> None:
    """The history rewritten by a barge-in (and a trimmed one) is read by the LLM while the avatar talks, not on the next turn."""
    cut_short, barge_in = UserTurn(text="Tell me about the moon."), UserTurn(text="Wait, what about the sun?")
    asyncio.run(collect(cascade, cut_short))
    asyncio.run(collect(cascade, barge_in))  # the reply to the person who barged in
    cascade.record_played("The moon", cut_short)  # all they heard of the first reply
    assert len(cascade.history[-1][1].split()) >= 3, "the reply to the barge-in is long enough to make re-reading it measurable"
    history = [m for user, reply in cascade.history for m in ({"role": "user", "content": user}, {"role": "assistant", "content": reply})]
    new_words = {"role": "user", "content": "And what about the stars tonight?"}
    uncached = cascade.llm.uncached_tokens([{"role": "system", "content": cascade.system_prompt}, *history, new_words])
    # The new turn's own block, "<|im_start|>user\nAnd what about the stars tonight?<|im_end|>\n<|im_start|>assistant\n",
    # is 13 tokens; re-reading the history from the cut would be about 60 (0.2 s on two cores).
    assert uncached <= 16, f"the next reply must re-read {uncached} prompt tokens, not just its own words"


class _FakeOpenAI(http.server.BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible streaming server (the `llm_url` path); unknown models get a 404."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["model"] != "tiny-chat":
            payload = json.dumps({"error": {"message": f"model {body['model']!r} not found"}}).encode()
            self.send_response(404)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for word in ["Sure, ", "the moon ", "is bright ", "tonight."]:
            chunk = {"choices": [{"index": 0, "delta": {"content": word}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args: object) -> None:
        pass


def test_any_openai_compatible_text_server_can_be_the_brain(cascade: CascadeDialogue) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        remote = CascadeDialogue(Options(llm_url=url, llm_model="tiny-chat", first_clause_words=0), cascade.asr, RemoteLLM(url, "tiny-chat"), cascade.tts, PROMPT)
        events = asyncio.run(collect(remote, UserTurn(text="How is the moon?")))
        assert "".join(e.text for _, e in events if isinstance(e, TextDelta)) == "Sure, the moon is bright tonight."
        wrong = CascadeDialogue(Options(), cascade.asr, RemoteLLM(url, "other"), cascade.tts, PROMPT)
        with pytest.raises(DialogueError, match=r"HTTP 404: model 'other' not found"):
            asyncio.run(collect(wrong, UserTurn(text="Hi?")))
    finally:
        server.shutdown()
        server.server_close()
    gone = CascadeDialogue(Options(), cascade.asr, RemoteLLM(url, "tiny-chat"), cascade.tts, PROMPT)
    with pytest.raises(DialogueError, match="cannot reach the LLM server at .*: connection refused"):
        asyncio.run(collect(gone, UserTurn(text="Hi?")))


def test_backchannels_are_fillers_however_whisper_spells_them() -> None:
    from liveavatar.dialogue.cascade import is_filler

    for heard in ("", "Mm-hmm.", "mm-huh.", "Mm1.", "Mm-m-m-m.", "Uh-huh.", "Um...", "Hmm?", "Mhm.", "Oh.", "Erm,"):
        assert is_filler(heard), heard
    for heard in ("Stop. Mm1.", "Wait, stop.", "um, what?", "Hello there.", "home", "mom", "hum"):
        assert not is_filler(heard), heard
