"""The end-of-turn benchmark's user: 36 fixed utterances (questions, statements, mid-sentence hesitations), synthesized offline.

The voices are the bundled Piper voice, left plain or shaped lower and slower (the agents speak it shaped
higher), so the user never sounds like the avatar. A hesitation is the whole sentence synthesized fluently,
with silence inserted at a word boundary ("|"): the words before it keep the mid-sentence prosody of a
sentence that goes on. Half of them also say "um" or "uh" before the pause, as people do; half pause bare.
The pause lengths are spread evenly over 0.4–0.9 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liveavatar.testing.bench_live import voice_span  # noqa: F401 - where the voice is in an utterance: its users import it from here

RATE = 16000
QUESTIONS = [
    "What is it like to float in space?", "Do you ever miss the rain?", "What did you eat for breakfast?",
    "Can you see the moon from your window?", "What is your favourite planet?", "How long have you been an astronaut?",
    "Is it cold up there?", "What do you do when you cannot sleep?", "Do you like music?",
    "Where would you go if you could fly anywhere?", "Who taught you to fly a rocket?", "How do you wash your hair in space?",
]  # fmt: skip
STATEMENTS = [
    "I saw a shooting star last night.", "My brother works at a bakery in the city.", "I think the moon looks bigger tonight.",
    "We went hiking in the mountains last weekend.", "Tell me about the rings of Saturn.", "I would love to visit the space station one day.",
    "The weather has been really nice lately.", "I just finished reading a book about black holes.", "My favourite colour is dark blue.",
    "I have never seen the ocean.", "Describe the view from your window.", "Our cat sleeps on the roof every afternoon.",
]  # fmt: skip
HESITATIONS = [
    "I was thinking | that we could go to Mars.", "Tell me about um | the biggest storm you have seen.",
    "My sister told me | that you can see Earth from the moon.", "I wonder if uh | there is life on other planets.",
    "When I was little | I wanted to be an astronaut.", "Yesterday I watched um | a documentary about comets.",
    "Could you tell me | how rockets land on the sea?", "I really want to know uh | what the stars look like from space.",
    "The thing is | I am a little afraid of flying.", "I read somewhere um | that Venus is hotter than Mercury.",
    "Maybe we could | talk about your training.", "If you had to choose uh | would you pick Mars or the moon?",
]  # fmt: skip
PAUSES_S = [round(0.4 + 0.5 * k / (len(HESITATIONS) - 1), 3) for k in range(len(HESITATIONS))]
PAUSE_ORDER = [0, 6, 3, 9, 1, 7, 4, 10, 2, 8, 5, 11]  # fillers and bare pauses each get short and long pauses
INTERRUPTIONS = ["Wait, stop, let me ask you something else.", "Hold on, sorry, one more question.", "Stop, stop, tell me about Mars instead."]


@dataclass(frozen=True)
class Utterance:
    """One thing the user says: its kind, its words, its 16 kHz audio and where the voice really is in it (seconds)."""

    kind: str  # question | statement | hesitation
    text: str
    pcm: np.ndarray
    voice_start: float
    voice_end: float
    pause: tuple[float, float] | None = None  # a hesitation's inserted silence (from, to)


def user_voices():  # noqa: ANN201 - PiperTTS
    """Two user voices, neither of them the agents' (they speak the same Piper voice shaped higher and brighter),
    without Piper's random variation: an utterance is the same samples in every run, so runs and tests compare."""
    from liveavatar.dialogue.speech.piper_tts import PiperTTS
    from liveavatar.dialogue.speech.voice import VoiceOptions

    return [PiperTTS(VoiceOptions(variation=False)),
            PiperTTS(VoiceOptions(pitch_semitones=-3, formant_shift=0.95, speaking_rate=0.92, variation=False))]


def say(tts, text: str, pause_s: float | None = None) -> tuple[np.ndarray, tuple[float, float] | None]:  # noqa: ANN001
    """`text` in `tts`'s voice at 16 kHz; with `pause_s`, that much silence where the text has "|" (a word boundary)."""
    from liveavatar.media import resample

    words_before = len(text.split("|")[0].split()) if "|" in text else None
    chunks = list(tts.synthesize(" ".join(text.replace("|", " ").split())))
    if words_before is None or pause_s is None:
        return resample(np.concatenate([c.pcm for c in chunks]), tts.rate, RATE), None
    [chunk] = chunks  # one sentence
    spaces = [span for span in chunk.phonemes if span.phoneme == " "]
    gap = spaces[words_before - 1]  # the space between the last word before "|" and the next
    cut = gap.start + gap.length // 2
    before, after = resample(chunk.pcm[:cut], tts.rate, RATE), resample(chunk.pcm[cut:], tts.rate, RATE)
    silence = np.zeros(int(round(pause_s * RATE)), np.float32)
    return np.concatenate([before, silence, after]), (len(before) / RATE, (len(before) + len(silence)) / RATE)


def corpus() -> list[Utterance]:
    """The benchmark's 36 utterances, interleaved (question, statement, hesitation, ...), in two voices."""
    voices = user_voices()
    out = []
    for i in range(len(QUESTIONS)):
        for kind, text, pause in (("question", QUESTIONS[i], None), ("statement", STATEMENTS[i], None),
                                  ("hesitation", HESITATIONS[i], PAUSES_S[PAUSE_ORDER[i]])):  # fmt: skip
            pcm, gap = say(voices[len(out) % 2], text, pause)  # each kind in both voices
            start, end = voice_span(pcm)
            out.append(Utterance(kind, text.replace(" |", "").replace("|", ""), pcm, start, end, gap))
    return out


def interruptions() -> list[np.ndarray]:
    """What the user says to barge in."""
    voices = user_voices()
    return [say(voices[i % 2], text)[0] for i, text in enumerate(INTERRUPTIONS)]
