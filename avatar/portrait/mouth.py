"""Paints the inside of an opening mouth (dark cavity, upper teeth, tongue) between the parted lips."""

from __future__ import annotations

import cv2
import numpy as np

from liveavatar.avatar.portrait.layout import Mouth

CAVITY_RGB = np.array([46, 14, 18], np.float32)
TONGUE_RGB = np.array([150, 62, 66], np.float32)
TEETH_RGB = np.array([222, 214, 200], np.float32)
SUBPIXEL_BITS = 3


class MouthPainter:
    """Draws the cavity for a given lower-lip drop, matching the rig's lip displacement exactly."""

    def __init__(self, mouth: Mouth, max_drop: float, lift_ratio: float) -> None:
        self.mouth = mouth
        self.lift_ratio = lift_ratio
        self._cx, _ = mouth.centre
        hw = mouth.width / 2
        self._lat = np.sqrt(np.clip(1.0 - ((mouth.inner_x - self._cx) / hw) ** 2, 0.0, 1.0))

    def paint(self, frame: np.ndarray, drop: float, spread_gain: float, shift: tuple[int, int]) -> None:
        """Composite the cavity into `frame` (RGB uint8, in place) for a lower-lip drop of `drop` pixels."""
        m = self.mouth
        sx, sy = shift
        xs = self._cx + (m.inner_x - self._cx) / (1.0 - spread_gain) + sx
        upper = m.upper_inner_y - self.lift_ratio * drop * self._lat + sy
        lower = m.lower_inner_y + drop * self._lat + sy
        x0, x1 = max(0, int(xs.min()) - 1), min(frame.shape[1], int(xs.max()) + 3)
        y0, y1 = max(0, int(upper.min()) - 1), min(frame.shape[0], int(lower.max()) + 3)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        poly = np.concatenate([np.stack([xs, upper], 1), np.stack([xs[::-1], lower[::-1]], 1)])
        poly = np.round((poly - [x0, y0]) * (1 << SUBPIXEL_BITS)).astype(np.int32)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA, SUBPIXEL_BITS)
        alpha = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32) * (1.0 / 255.0)

        cols = np.arange(x0, x1, dtype=np.float32)
        top = np.interp(cols, xs, upper).astype(np.float32)
        gap = np.maximum(np.interp(cols, xs, lower).astype(np.float32) - top, 1e-3)
        lat = np.interp(cols, xs, self._lat).astype(np.float32)
        rows = np.arange(y0, y1, dtype=np.float32)[:, None]
        depth = np.clip((rows - top) / gap, 0.0, 1.0)  # 0 at the upper lip, 1 at the lower lip
        shade = 0.75 + 0.5 * np.abs(depth - 0.5)
        tongue = np.clip((depth - 0.62) * (1 / 0.3), 0.0, 1.0) * (0.8 * lat * min(1.0, drop / (0.15 * m.width)))
        teeth_h = np.minimum(0.11 * m.width * np.sqrt(lat), 0.45 * gap)
        teeth = np.clip((top + teeth_h - rows) * (1 / 1.5), 0.0, 1.0) * (lat > 0.25)
        inside = (CAVITY_RGB * (shade * (1.0 - tongue))[..., None] + TONGUE_RGB * tongue[..., None]) * (1.0 - teeth)[..., None]
        enamel = teeth * (0.68 + 0.32 * lat) * (1.0 - 0.25 * np.clip((rows - top) / np.maximum(teeth_h, 1.0), 0.0, 1.0))
        inside += TEETH_RGB * enamel[..., None]
        roi = frame[y0:y1, x0:x1]
        a = alpha[..., None]
        roi[...] = (roi * (1.0 - a) + inside * a).astype(np.uint8)
