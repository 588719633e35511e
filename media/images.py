"""Images from users (portraits, webcam frames) decoded only once their header says they are a sane size.

A 100 kB PNG can claim 60,000×60,000 pixels and make a decoder allocate 10 GB; the header is read
first (Pillow reads only that much) and the pixels are decoded (OpenCV) only below the limit.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np

MAX_IMAGE_PIXELS = 50_000_000
"""Pixels of a portrait: 50 megapixels is more than any phone photo (8,660×5,770)."""
MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""Bytes of an image file."""


class ImageError(ValueError):
    """Bytes that are not an image this program takes; the message says why (and names any limit)."""


class NotAnImage(ImageError):
    """Bytes whose header is not a PNG or JPEG header at all."""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels; ImageError when it has none."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit follows
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                kind = image.format
    except Image.DecompressionBombError:  # Pillow's own guard: over 2 × its MAX_IMAGE_PIXELS (about 179 megapixels)
        raise ImageError(f"the image has over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; "
                         f"the limit is {MAX_IMAGE_PIXELS / 1e6:g} megapixels: scale it down") from None  # fmt: skip
    except UnidentifiedImageError:
        raise NotAnImage("not a PNG or JPEG image") from None
    except Exception:  # noqa: BLE001 - a damaged header makes Pillow's parsers raise many kinds of error
        raise NotAnImage("not a PNG or JPEG image") from None
    if kind not in ("PNG", "JPEG", "MPO"):  # MPO: a JPEG with extra views, as some cameras write
        raise NotAnImage(f"a {kind} image; expected PNG or JPEG")
    return width, height


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """RGB uint8 pixels of a PNG or JPEG, refused before decoding when over `max_pixels` or MAX_IMAGE_BYTES."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"the file is {len(data) / 2**20:.0f} MiB; the limit for an image is {MAX_IMAGE_BYTES // 2**20} MiB")
    width, height = image_size(data)
    if width * height > max_pixels:
        raise ImageError(f"the image is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); "
                         f"the limit is {max_pixels / 1e6:g} megapixels: scale it down")  # fmt: skip
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageError("the image data is damaged (its header is readable, its pixels are not)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
