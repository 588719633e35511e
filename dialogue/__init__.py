"""Dialogue backends: a user turn in, a stream of text deltas and speech chunks out."""

from liveavatar.dialogue.base import DialogueBackend, DialogueError, ReplyEvent, TextDelta, Transcript, UserTurn

__all__ = ["DialogueBackend", "DialogueError", "ReplyEvent", "TextDelta", "Transcript", "UserTurn"]
