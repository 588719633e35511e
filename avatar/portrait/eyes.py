"""Paints a closing upper eyelid: skin from under the eye slides over it, led by a dark lash line."""

from __future__ import annotations

import cv2
import numpy as np

from liveavatar.avatar.portrait.layout import Eye

LASH_RGB = np.array([38, 28, 28], np.float32)
LID_SHADE = 0.94  # the lid is a little darker than the skin below the eye


class EyelidPainter:
    """Draws one eye's lid at any closure in [0, 1], from texture taken once from the portrait."""

    def __init__(self, image: np.ndarray, eye: Eye) -> None:
        self.eye = eye
        h, w = image.shape[:2]
        self._x0 = int(max(0, np.floor(eye.lid_x.min()) - 2))
        self._x1 = int(min(w, np.ceil(eye.lid_x.max()) + 3))
        self._y0 = int(max(0, np.floor(eye.upper_lid_y.min()) - 2))
        self._y1 = int(min(h, np.ceil(eye.lower_lid_y.max()) + 3))
        cols = np.arange(self._x0, self._x1, dtype=np.float32)
        rows = np.arange(self._y0, self._y1, dtype=np.float32)[:, None]
        self._upper = np.interp(cols, eye.lid_x, eye.upper_lid_y, left=np.nan, right=np.nan)[None, :]
        self._lower = np.interp(cols, eye.lid_x, eye.lower_lid_y, left=np.nan, right=np.nan)[None, :]
        inside = ~np.isnan(self._upper)
        self._upper = np.where(inside, self._upper, 0.0).astype(np.float32)
        self._lower = np.where(inside, self._lower, 0.0).astype(np.float32)
        self._inside = inside.astype(np.float32)
        self._rows = rows
        # Skin for the lid: the rows below the lower lid, mirrored upward about it (skipping its lashes).
        src_y = (2.0 * self._lower + 3.0 - rows).astype(np.float32)
        src_x = np.broadcast_to(cols[None, :], src_y.shape).astype(np.float32)
        skin = cv2.remap(image, src_x, np.ascontiguousarray(src_y), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        self._skin = cv2.GaussianBlur(skin, (3, 3), 0).astype(np.float32) * LID_SHADE
        opening = float(np.nanmax(eye.lower_lid_y - eye.upper_lid_y))
        self._lash_px = max(0.8, 0.1 * opening)

    def paint(self, frame: np.ndarray, closure: float, shift: tuple[int, int]) -> None:
        """Composite the lid into `frame` (RGB uint8, in place) at `closure` (0 open .. 1 closed)."""
        sx, sy = shift
        y0, y1, x0, x1 = self._y0 + sy, self._y1 + sy, self._x0 + sx, self._x1 + sx
        if y0 < 0 or x0 < 0 or y1 > frame.shape[0] or x1 > frame.shape[1]:
            return
        edge = self._upper + closure * (self._lower - self._upper)
        rows = self._rows
        cover = np.clip(edge - rows + 0.5, 0.0, 1.0) * np.clip(rows - self._upper + 1.5, 0.0, 1.0) * self._inside
        lash = np.exp(-(((rows - edge) / self._lash_px) ** 2)) * self._inside * min(1.0, 3.0 * closure) * 0.65
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        roi += (self._skin - roi) * cover[..., None]
        roi += (LASH_RGB - roi) * lash[..., None]
        frame[y0:y1, x0:x1] = roi.astype(np.uint8)
