"""Where the parts of a face are in the output frame: from the 468-point mesh or from four hand-given points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MediaPipe Face Mesh indices (subject's right = viewer's left).
UPPER_INNER_LIP = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER_LIP = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
EYES = {  # outer corner, inner corner, upper lid, lower lid
    "right": (33, 133, 159, 145),
    "left": (263, 362, 386, 374),
}
EYE_UPPER_LIDS = {"right": [33, 246, 161, 160, 159, 158, 157, 173, 133], "left": [263, 466, 388, 387, 386, 385, 384, 398, 362]}
EYE_LOWER_LIDS = {"right": [33, 7, 163, 144, 145, 153, 154, 155, 133], "left": [263, 249, 390, 373, 374, 380, 381, 382, 362]}
MOUTH_CORNERS = (61, 291)
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 0, 17
NOSE_BOTTOM, CHIN = 2, 152


@dataclass(frozen=True)
class Eye:
    """One eye: centre (x, y), half-width, and its lid lines: y of each lid sampled at `lid_x`."""

    centre: tuple[float, float]
    half_width: float
    lid_x: np.ndarray  # x samples from corner to corner
    upper_lid_y: np.ndarray
    lower_lid_y: np.ndarray

    @property
    def upper_lid(self) -> float:
        """Upper lid y at the middle of the eye."""
        return float(self.upper_lid_y[len(self.lid_x) // 2])

    @property
    def lower_lid(self) -> float:
        """Lower lid y at the middle of the eye."""
        return float(self.lower_lid_y[len(self.lid_x) // 2])

    @property
    def opening(self) -> float:
        """Vertical lid gap in pixels (never below 1)."""
        return max(1.0, self.lower_lid - self.upper_lid)


@dataclass(frozen=True)
class Mouth:
    """The mouth: corners (viewer's left, right), inner lip lines sampled across x, outer lip extent."""

    left: tuple[float, float]
    right: tuple[float, float]
    inner_x: np.ndarray  # x samples from left to right corner
    upper_inner_y: np.ndarray  # y of the upper lip's inner edge at inner_x
    lower_inner_y: np.ndarray  # y of the lower lip's inner edge at inner_x
    upper_outer_y: float  # top of the upper lip at the centre
    lower_outer_y: float  # bottom of the lower lip at the centre

    @property
    def centre(self) -> tuple[float, float]:
        """Midpoint of the lip line."""
        mid = len(self.inner_x) // 2
        return (float(self.inner_x[mid]), float((self.upper_inner_y[mid] + self.lower_inner_y[mid]) / 2))

    @property
    def width(self) -> float:
        """Corner-to-corner distance in pixels."""
        return float(np.hypot(self.right[0] - self.left[0], self.right[1] - self.left[1]))


@dataclass(frozen=True)
class FaceLayout:
    """Everything the rig needs, in output-frame pixels."""

    eyes: tuple[Eye, Eye]
    mouth: Mouth
    nose_bottom: tuple[float, float]
    chin: tuple[float, float]
    face_centre: tuple[float, float]
    face_half_size: tuple[float, float]  # half width, half height of the face oval

    def transformed(self, scale: float, offset: tuple[float, float]) -> "FaceLayout":
        """The same layout after p -> p·scale + offset (used when the portrait is cropped and resized)."""
        ox, oy = offset

        def pt(p: tuple[float, float]) -> tuple[float, float]:
            return (p[0] * scale + ox, p[1] * scale + oy)

        eyes = tuple(
            Eye(pt(e.centre), e.half_width * scale, e.lid_x * scale + ox, e.upper_lid_y * scale + oy, e.lower_lid_y * scale + oy)
            for e in self.eyes
        )
        m = self.mouth
        mouth = Mouth(pt(m.left), pt(m.right), m.inner_x * scale + ox, m.upper_inner_y * scale + oy,
                      m.lower_inner_y * scale + oy, m.upper_outer_y * scale + oy, m.lower_outer_y * scale + oy)
        hw, hh = self.face_half_size
        return FaceLayout(eyes, mouth, pt(self.nose_bottom), pt(self.chin), pt(self.face_centre), (hw * scale, hh * scale))  # type: ignore[arg-type]


def _lip_line(points: np.ndarray, indices: list[int], xs: np.ndarray) -> np.ndarray:
    p = points[indices]
    order = np.argsort(p[:, 0])
    return np.interp(xs, p[order, 0], p[order, 1])


def layout_from_mesh(points: np.ndarray) -> FaceLayout:
    """A layout from 468 Face Mesh points (x, y) in image pixels."""
    p = points.astype(np.float64)
    eyes = []
    for side in ("right", "left"):
        outer, inner, _, _ = EYES[side]
        centre = (p[outer] + p[inner]) / 2
        xs = np.linspace(min(p[outer, 0], p[inner, 0]), max(p[outer, 0], p[inner, 0]), 17)
        upper = _lip_line(p, EYE_UPPER_LIDS[side], xs)
        lower = np.maximum(_lip_line(p, EYE_LOWER_LIDS[side], xs), upper)
        eyes.append(Eye(tuple(centre), float(np.linalg.norm(p[outer] - p[inner]) / 2), xs, upper, lower))
    eyes.sort(key=lambda e: e.centre[0])
    left, right = sorted((tuple(p[i]) for i in MOUTH_CORNERS), key=lambda c: c[0])
    xs = np.linspace(left[0], right[0], 33)
    upper = _lip_line(p, UPPER_INNER_LIP, xs)
    lower = np.maximum(_lip_line(p, LOWER_INNER_LIP, xs), upper)
    oval = p[FACE_OVAL]
    lo, hi = oval.min(0), oval.max(0)
    return FaceLayout(
        eyes=(eyes[0], eyes[1]),
        mouth=Mouth(left, right, xs, upper, lower, float(p[UPPER_LIP_TOP, 1]), float(p[LOWER_LIP_BOTTOM, 1])),
        nose_bottom=tuple(p[NOSE_BOTTOM]),
        chin=tuple(p[CHIN]),
        face_centre=tuple((lo + hi) / 2),
        face_half_size=tuple((hi - lo) / 2),
    )  # type: ignore[arg-type]


def layout_from_points(eyes: list[tuple[float, float]], mouth_corners: list[tuple[float, float]]) -> FaceLayout:
    """A layout estimated from eye centres and mouth corners given by hand (typical face proportions)."""
    e = sorted((np.array(q, float) for q in eyes), key=lambda q: q[0])
    m = sorted((np.array(q, float) for q in mouth_corners), key=lambda q: q[0])
    eye_dist = float(np.linalg.norm(e[1] - e[0]))
    eye_mid, mouth_mid = (e[0] + e[1]) / 2, (m[0] + m[1]) / 2
    down = mouth_mid - eye_mid
    drop = float(np.linalg.norm(down))
    if eye_dist < 4 or drop < 4:
        raise ValueError("eyes and mouth corners are too close together to describe a face")
    half_w = 0.24 * eye_dist
    lid_gap = 0.3 * half_w * 2
    eye_objs = tuple(_ellipse_eye((float(q[0]), float(q[1])), half_w, lid_gap) for q in e)
    width = float(np.linalg.norm(m[1] - m[0]))
    xs = np.linspace(m[0][0], m[1][0], 33)
    line = np.interp(xs, [m[0][0], m[1][0]], [m[0][1], m[1][1]])
    unit = down / drop
    chin = mouth_mid + unit * 0.7 * drop
    face_centre = eye_mid + unit * 0.35 * drop
    return FaceLayout(
        eyes=eye_objs,  # type: ignore[arg-type]
        mouth=Mouth(tuple(m[0]), tuple(m[1]), xs, line, line.copy(), float(mouth_mid[1] - 0.14 * width), float(mouth_mid[1] + 0.2 * width)),  # type: ignore[arg-type]
        nose_bottom=tuple(eye_mid + unit * 0.62 * drop),  # type: ignore[arg-type]
        chin=tuple(chin),  # type: ignore[arg-type]
        face_centre=tuple(face_centre),  # type: ignore[arg-type]
        face_half_size=(1.0 * eye_dist, 1.35 * drop),
    )


def _ellipse_eye(centre: tuple[float, float], half_width: float, opening: float) -> Eye:
    """An almond-shaped eye of the given size, for layouts given by hand."""
    xs = np.linspace(centre[0] - half_width, centre[0] + half_width, 17)
    arc = np.sqrt(np.clip(1.0 - ((xs - centre[0]) / half_width) ** 2, 0.0, 1.0)) * opening / 2
    return Eye(centre, half_width, xs, centre[1] - arc, centre[1] + arc)
