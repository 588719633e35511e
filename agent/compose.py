"""Lays several avatars' frames out in one picture (side by side or stacked) and mixes their audio."""

from __future__ import annotations

import cv2
import numpy as np

from liveavatar.agent.duet_plan import Layout
from liveavatar.media import AVFrame

CAPTION_HEIGHT = 0.075  # of the tile's height
ACTIVE_RGB = (255, 196, 64)


def canvas_size(tile_size: tuple[int, int], count: int, layout: Layout = "side_by_side") -> tuple[int, int]:
    """(width, height) of `count` tiles of `tile_size` laid out side by side or stacked."""
    width, height = tile_size
    return (width * count, height) if layout == "side_by_side" else (width, height * count)


class Compositor:
    """Combines one frame per avatar (same index) into one frame; captions name each tile."""

    def __init__(self, tile_size: tuple[int, int], count: int, layout: Layout = "side_by_side", names: list[str] | None = None) -> None:
        self.tile_w, self.tile_h = tile_size
        self.count = count
        self.layout = layout
        self.size = canvas_size(tile_size, count, layout)
        self._origins = [(i * self.tile_w, 0) if layout == "side_by_side" else (0, i * self.tile_h) for i in range(count)]
        self._captions = [self._caption(n) for n in names] if names else None
        self._canvas = np.zeros((self.size[1], self.size[0], 3), np.uint8)

    def _caption(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pre-rendered caption: (band alpha, text image, text alpha), drawn over the tile's bottom."""
        h = max(18, int(self.tile_h * CAPTION_HEIGHT))
        band = np.zeros((h, self.tile_w), np.float32)
        band[:] = np.linspace(0.0, 0.55, h)[:, None]
        text = np.zeros((h, self.tile_w, 3), np.uint8)
        scale = h / 40.0
        (tw, th), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_DUPLEX, scale, 1)
        cv2.putText(text, name, ((self.tile_w - tw) // 2, h - (h - th) // 2), cv2.FONT_HERSHEY_DUPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return band, text, text.max(axis=2).astype(np.float32) / 255.0

    def compose(self, frames: list[AVFrame]) -> AVFrame:
        """One frame holding every tile; audio is the clipped sum; generation of the first speaker, if any."""
        canvas = self._canvas.copy()
        for i, (frame, (x, y)) in enumerate(zip(frames, self._origins)):
            canvas[y : y + self.tile_h, x : x + self.tile_w] = frame.image
            if self._captions is not None:
                band, text, alpha = self._captions[i]
                h = band.shape[0]
                tile = canvas[y + self.tile_h - h : y + self.tile_h, x : x + self.tile_w].astype(np.float32)
                tile *= 1.0 - band[..., None]
                color = np.array(ACTIVE_RGB if frame.is_speech else (255, 255, 255), np.float32)
                tile += (color * (text.astype(np.float32) / 255.0) - tile) * alpha[..., None]
                canvas[y + self.tile_h - h : y + self.tile_h, x : x + self.tile_w] = tile.astype(np.uint8)
        audio = np.clip(np.sum([f.audio for f in frames], axis=0), -1.0, 1.0).astype(np.float32)
        generation = next((f.generation for f in frames if f.generation is not None), None)
        first = frames[0]
        return AVFrame(canvas, audio, first.index, generation, first.fps, first.audio_rate)
