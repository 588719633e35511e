"""Crop and scale a portrait photo to the output frame, placing the face the way a video call does."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Framing = Literal["auto", "full"]


def frame_portrait(
    image: np.ndarray,
    face_box: tuple[float, float, float, float],
    size: tuple[int, int],
    face_width: float = 0.4,
    mode: Framing = "auto",
) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Return (framed RGB image of `size`, scale, offset): image point p lands at p·scale + offset.

    "auto" crops around the face so it spans `face_width` of the frame (never beyond the photo's
    edges: a small photo is scaled up rather than padded); "full" fits the whole photo, letterboxed.
    """
    out_w, out_h = size
    img_h, img_w = image.shape[:2]
    if mode == "full":
        scale = min(out_w / img_w, out_h / img_h)
        offset = ((out_w - img_w * scale) / 2, (out_h - img_h * scale) / 2)
    else:
        x0, y0, x1, y1 = face_box
        aspect = out_w / out_h
        crop_w = (x1 - x0) / face_width
        crop_w = min(crop_w, img_w, img_h * aspect)
        crop_h = crop_w / aspect
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left = float(np.clip(cx - crop_w / 2, 0, img_w - crop_w))
        top = float(np.clip(cy - 0.46 * crop_h, 0, img_h - crop_h))  # eyes a little above the middle
        scale = out_w / crop_w
        offset = (-left * scale, -top * scale)
    matrix = np.array([[scale, 0, offset[0]], [0, scale, offset[1]]], np.float32)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    framed = cv2.warpAffine(image, matrix, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    return framed, scale, offset
