"""Local speech synthesis: Piper voices, voice shaping, sentence-by-sentence streaming."""

from liveavatar.dialogue.speech.voice import VoiceOptions

__all__ = ["VoiceOptions"]
