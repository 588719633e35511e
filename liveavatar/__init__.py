"""Live Avatar agents: real-time conversations with talking avatars (`liveavatar.agent`, `.avatar`, `.dialogue`, `.devices`, `.media`)."""

__version__ = "0.2.0"
