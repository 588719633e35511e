"""Local speech synthesis: Piper voices, voice shaping, sentence-by-sentence streaming."""

from dialogue.speech.voice import VoiceOptions

__all__ = ["VoiceOptions"]
