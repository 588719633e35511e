"""Where frames go and audio comes from: files, local devices, the browser."""

from liveavatar.devices.sink import FrameSink

__all__ = ["FrameSink"]
