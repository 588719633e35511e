"""Turn-taking and barge-in parameters: the `turn_taking:` section of a persona YAML.

Defaults follow the best frameworks (see ../shared/docs/conversation-anchors.md): speech must last 0.2 s to
open a user turn (pipecat `start_secs`), 0.6 s of silence ends it (pipecat's speech timeout, within
livekit's 0.5–3.0 s endpointing window), and barge-in pauses the avatar after 0.2 s of user speech,
resuming if no real turn follows within 2.0 s (livekit `false_interruption_timeout`). LiveKit waits
0.5 s before pausing; we pause sooner because a pause is undone by resuming, and users of avatar
frameworks complain most about avatars that keep talking over them.

With the end-of-turn model on (Smart Turn v3.2, as pipecat combines it with the VAD), a short silence
only proposes an end and the model decides; the silence rule stays as the bound on a late verdict, and
a longer fallback silence ends a turn the model keeps calling incomplete. The defaults of the model's
options were chosen with `liveavatar bench eot` (README, "Knowing when a person is done").
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TurnOptions(BaseModel):
    """When a user turn starts and ends, and how the avatar yields the floor."""

    model_config = ConfigDict(extra="forbid")
    vad_threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    """Speech probability (silero VAD) above which a 32 ms window counts as speech."""
    speech_start_s: Annotated[float, Field(ge=0.0, le=2.0)] = 0.2
    """Seconds of continuous speech before a user turn starts."""
    end_of_turn_silence_s: Annotated[float, Field(ge=0.1, le=5.0)] = 0.6
    """Seconds of silence after speech that end the user's turn. With the end-of-turn model on, only when the model
    has not answered by then (a slow model never makes a turn wait longer than the silence rule would)."""
    prepare_silence_s: Annotated[float, Field(ge=0.0, le=2.0)] = 0.064
    """Seconds of silence after speech at which the answer starts being prepared (heard, written, spoken, held back)
    while the person may still go on; it is thrown away if they do. Shorter: the answer is ready sooner, and more
    prepared answers are thrown away (silero's 32 ms windows: 0.064 s is two of them). Must be below
    end_of_turn_silence_s."""
    end_of_speech_quiet_db: Annotated[float, Field(gt=0.0, le=90.0)] | None = 30.0
    """Decibels below the turn's loudest 32 ms window at which the voice counts as fallen quiet. Silero's probability
    stays above the threshold for about 0.1 s after a voice fades out, so once it hears silence, the silence is counted
    from the first of the quiet windows just before (at most 0.25 s back, QUIET_TAIL_MAX_S in turns.py): every rule
    below (prepare, proposal, question, end of turn) acts that much sooner, as pipecat's VAD does with its volume gate.
    A room whose noise is within this many dB of the voice changes nothing. None: silence starts where the VAD's does."""
    prepare_when_quiet: bool = True
    """With end_of_speech_quiet_db: start preparing the answer once the voice has been that quiet for prepare_silence_s,
    without waiting for the VAD to hear silence (silero's lag after a fading voice, about 0.1 s, comes off the reply).
    It is thrown away if the voice comes back up, or the quiet sound goes on being heard as speech for longer than
    0.25 s (QUIET_TAIL_MAX_S). Off: the answer waits for the VAD's silence."""
    end_of_turn_model: bool = True
    """Let the end-of-turn model (Smart Turn v3.2: hears the user's voice, any dialogue backend) decide whether a
    pause ends the turn. Off: silence alone decides."""
    end_of_turn_proposal_silence_s: Annotated[float, Field(ge=0.05, le=2.0)] = 0.2
    """With the model: seconds of silence after which the model is asked whether the turn is over."""
    end_of_turn_ask_ahead: bool = True
    """With the model: ask it as soon as the answer starts being prepared (prepare_silence_s), on the voice so far with
    its last 32 ms of silence repeated up to end_of_turn_proposal_silence_s, instead of when that silence has passed.
    Its verdict still acts only once the silence has really lasted that long (speech before then throws it away), but
    it is ready by then, and the model runs beside speech recognition instead of beside the LLM's first words: 0.10 s
    sooner replies on a quiet 2-core machine, 0.07 s slower in one run with one core kept busy (README)."""
    end_of_turn_threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    """With the model: its probability of "complete" at or above which the pause ends the turn."""
    end_of_turn_fallback_silence_s: Annotated[float, Field(ge=0.1, le=10.0)] = 1.0
    """Seconds of silence that end the turn even though the model called it incomplete, or its words end mid-sentence
    (never sooner than end_of_turn_silence_s)."""
    end_of_turn_words: bool = True
    """Let the person's words so far count (when the dialogue backend transcribes them before it answers, as the
    cascade does): words that end mid-sentence ("um", "and", "the", "about", a trailing comma) keep the turn open
    until end_of_turn_fallback_silence_s whatever the model said, and a "complete" verdict waits for the words (at
    most until end_of_turn_silence_s; the answer needs them anyway, so this costs no reply time)."""
    end_of_turn_words_first: bool = True
    """With end_of_turn_words and the model, when the dialogue backend transcribes the person before it answers: ask the
    model about a pause only once its early transcript leaves the end open (not mid-sentence, not a question, not a
    sentence the language model is sure of), instead of beside speech recognition on the same cores. Those words
    decide the other pauses without it; until they, and then its verdict, have come, only the fallback silence ends the
    turn (the reply needs the words anyway). Quiet, side by side, two runs: median 0.64 and 0.70 s against 0.74 and
    0.82 s, no hesitation cut against 1 of 12; one core busy: 0.83 and 0.86 s against 0.87 and 0.88 s (README). Off: the model is asked on every pause, as
    ask_ahead says."""
    sentence_end_min_probability: Annotated[float, Field(gt=0.0, lt=1.0)] | None = 0.8
    """With end_of_turn_words: the probability (0-1) the recognizer must have given to closing the sentence where the
    words so far end (".", "?" or "!"; the cascade's Whisper says it) for them to count as a possible end; below it
    they count as ending mid-sentence. A voice that pauses mid-sentence often gets a full stop anyway, but an unsure
    one ("Yesterday I watched." 0.18). Offline, over 398 fragments of 30 sentences in two voices, 0.8 let 18 % of them
    end a turn where the mark alone let 65 %, and held one of 60 whole sentences; live, it cut no hesitation of 12
    where 0.7 cut one and the mark alone two, and sent 3 of 12 statements to the fallback silence (README). None: the
    mark alone counts."""
    language_end_min_probability: Annotated[float, Field(ge=0.0, lt=1.0)] | None = 0.05
    """With end_of_turn_words: the probability (0-1) the dialogue's language model must give to a sentence ending where the
    words so far end, read from the words alone with their closing marks left out (the cascade's local LLM says it; a
    chat server does not), for them to count as a possible end; below it they count as ending mid-sentence, a question
    mark included. Whisper writes "I have been learning." or "What?" on many pauses inside a sentence; the model's
    probability there is near 0, and 0.3-0.8 on most whole sentences. Offline, over 194 word-boundary fragments of 30
    new sentences, 0.05 let 6 % of them end a turn instead of 13 %, and held no whole sentence more (README). None:
    not used."""
    language_end_sure_probability: Annotated[float, Field(gt=0.0, lt=1.0)] | None = 0.3
    """With end_of_turn_words: at or above this probability from the language model, words that count as a possible end
    end the turn once the proposal silence has passed even if the end-of-turn model called it incomplete (Smart Turn hears
    some plain statements as unfinished: they waited for the fallback silence), and the recognizer's mark needs only
    sentence_end_min_probability_if_sure. Offline, with that at 0.7, no whole sentence of 30 was held to the fallback silence
    instead of 4, and one fragment of 194 more could end a turn; live, 1 turn of 36 waited for the fallback instead of 8
    and the p90 went from 1.11 to 0.88 s (README). None: the end-of-turn model decides."""
    sentence_end_min_probability_if_sure: Annotated[float, Field(gt=0.0, lt=1.0)] | None = 0.7
    """With language_end_sure_probability: the recognizer's closing-mark probability that is enough when the language
    model is that sure of the sentence's end (Whisper gave "Tell me about the rings of Saturn." 0.75; the language model
    0.91). Never more than sentence_end_min_probability. None: sentence_end_min_probability always."""
    question_end_silence_s: Annotated[float, Field(ge=0.1, le=5.0)] = 0.3
    """Seconds of silence that end a turn whose words so far end in a question mark (when the dialogue backend
    transcribes the user early, as the cascade does): questions are complete turns, so the reply comes sooner."""
    interruptions: bool = True
    """Whether the user may barge in while the avatar speaks."""
    interruption_min_speech_s: Annotated[float, Field(ge=0.0, le=3.0)] = 0.2
    """Seconds of user speech over the avatar before the avatar pauses."""
    false_interruption_timeout_s: Annotated[float, Field(ge=0.0, le=10.0)] = 2.0
    """After a pause: seconds to wait for a real user turn before the avatar resumes where it stopped."""
    resume_false_interruption: bool = True
    """Resume the paused reply after a false interruption (otherwise it is dropped)."""
    echo_guard_s: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    """With local speakers and no echo cancellation: ignore user speech this long after the avatar starts talking."""

    @model_validator(mode="after")
    def _silences_in_order(self) -> "TurnOptions":
        if self.prepare_silence_s >= self.end_of_turn_silence_s:
            raise ValueError(
                f"expected prepare_silence_s < end_of_turn_silence_s (an answer is prepared before the turn ends), got "
                f"{self.prepare_silence_s} s and {self.end_of_turn_silence_s} s"
            )
        least, sure = self.language_end_min_probability, self.language_end_sure_probability
        if least is not None and sure is not None and sure < least:
            raise ValueError(f"expected language_end_sure_probability >= language_end_min_probability, got {sure} and {least}")
        if self.end_of_turn_model and not (
            self.end_of_turn_proposal_silence_s < self.end_of_turn_silence_s <= self.end_of_turn_fallback_silence_s
        ):
            raise ValueError(
                "with end_of_turn_model on, expected end_of_turn_proposal_silence_s < end_of_turn_silence_s <= "
                f"end_of_turn_fallback_silence_s, got {self.end_of_turn_proposal_silence_s} s, {self.end_of_turn_silence_s} s, "
                f"{self.end_of_turn_fallback_silence_s} s"
            )
        return self
