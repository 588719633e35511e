"""Paints the inside of an opening mouth (dark cavity, upper teeth, tongue) between the parted lips."""

from __future__ import annotations

import cv2
import numpy as np

from avatar.portrait.layout import Mouth

CAVITY_RGB = np.array([46, 14, 18], np.float32)
TONGUE_RGB = np.array([150, 62, 66], np.float32)
TEETH_RGB = np.array([232, 226, 214], np.float32)
SUBPIXEL_BITS = 3


class MouthPainter:
    """Draws the cavity for a given lower-lip drop, matching the rig's lip displacement exactly."""

    def __init__(self, mouth: Mouth, max_drop: float, lift_ratio: float) -> None:
        self.mouth = mouth
        self.lift_ratio = lift_ratio
        cx, _ = mouth.centre
        self._cx = cx
        hw = mouth.width / 2
        self._lat = np.sqrt(np.clip(1.0 - ((mouth.inner_x - cx) / hw) ** 2, 0.0, 1.0))
        margin = 4 + 0.25 * hw
        self._x0 = int(np.floor(mouth.inner_x.min() - margin))
        self._x1 = int(np.ceil(mouth.inner_x.max() + margin))
        self._y0 = int(np.floor(mouth.upper_inner_y.min() - lift_ratio * max_drop - margin))
        self._y1 = int(np.ceil(mouth.lower_inner_y.max() + max_drop + margin))

    def paint(self, frame: np.ndarray, drop: float, spread_gain: float, shift: tuple[int, int]) -> None:
        """Composite the cavity into `frame` (RGB uint8, in place) for a lower-lip drop of `drop` pixels."""
        m = self.mouth
        sx, sy = shift
        x0, x1 = max(0, self._x0 + sx), min(frame.shape[1], self._x1 + sx)
        y0, y1 = max(0, self._y0 + sy), min(frame.shape[0], self._y1 + sy)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        xs = self._cx + (m.inner_x - self._cx) / (1.0 - spread_gain) + sx
        upper = m.upper_inner_y - self.lift_ratio * drop * self._lat + sy
        lower = m.lower_inner_y + drop * self._lat + sy
        poly = np.concatenate([np.stack([xs, upper], 1), np.stack([xs[::-1], lower[::-1]], 1)])
        poly = np.round((poly - [x0, y0]) * (1 << SUBPIXEL_BITS)).astype(np.int32)
        roi = frame[y0:y1, x0:x1]
        mask = np.zeros(roi.shape[:2], np.uint8)
        cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA, SUBPIXEL_BITS)
        mask = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32) / 255.0

        cols = np.arange(x0, x1, dtype=np.float32)
        top = np.interp(cols, xs, upper)[None, :]
        bottom = np.interp(cols, xs, lower)[None, :]
        lat = np.interp(cols, xs, self._lat)[None, :]
        rows = np.arange(y0, y1, dtype=np.float32)[:, None]
        gap = np.maximum(bottom - top, 1e-3)
        depth = np.clip((rows - top) / gap, 0.0, 1.0)  # 0 at the upper lip, 1 at the lower lip
        inside = CAVITY_RGB * (0.75 + 0.5 * np.abs(depth - 0.5))[..., None]
        tongue = np.clip((depth - 0.62) / 0.3, 0.0, 1.0) * lat * min(1.0, drop / (0.15 * m.width))
        inside = inside + (TONGUE_RGB - inside) * (0.8 * tongue)[..., None]
        teeth_h = np.minimum(0.085 * m.width * lat, 0.42 * gap)
        teeth = np.clip((top + teeth_h - rows) / 1.5, 0.0, 1.0) * (lat > 0.25)
        shade = (0.7 + 0.3 * lat)[..., None]
        inside = inside + (TEETH_RGB * shade - inside) * teeth[..., None]
        a = mask[..., None]
        roi[...] = (roi.astype(np.float32) * (1.0 - a) + inside * a).astype(np.uint8)
