"""Avatar generators: speech chunks in, an endless stream of audio-carrying video frames out."""

from liveavatar.avatar.base import AvatarGenerator, Underrun

__all__ = ["AvatarGenerator", "Underrun"]
