"""A still portrait made to move: precomputed warp fields for jaw, lips, eyelids and head, one remap per frame.

Every field is a backward map (output pixel p samples the portrait at p + field(p)), so a frame costs one
`cv2.remap` plus small additions in a few regions, and a mouth cavity painted where the lips part.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from liveavatar.avatar.portrait.eyes import EyelidPainter
from liveavatar.avatar.portrait.layout import FaceLayout
from liveavatar.avatar.portrait.mouth import MouthPainter

MAX_JAW_DROP = 0.27  # lower-lip drop at full opening, as a fraction of mouth width
UPPER_LIP_LIFT = 0.18  # upper-lip lift as a fraction of the lower-lip drop
LIP_SPREAD = 0.14  # horizontal scaling of the mouth at spread ±1
MAX_TILT_DEG = 6.0
HEAD_GRID_PX = 8  # spacing of the coarse grid the head motion is computed on


@dataclass(frozen=True)
class FacePose:
    """One frame's expression: mouth opening and shape, eyelid closure and head placement."""

    jaw: float = 0.0  # mouth opening, 0 = closed .. 1 = widest
    spread: float = 0.0  # lip shape, -1 = rounded (o, u) .. 0 = neutral .. 1 = spread (i, e)
    blink: float = 0.0  # eyelids, 0 = open .. 1 = closed
    tilt_deg: float = 0.0  # head roll about the neck, degrees (positive = clockwise on screen)
    shift_px: tuple[float, float] = (0.0, 0.0)  # head translation in output pixels (x, y)
    scale: float = 1.0  # head scale about the neck (breathing, leaning in)


@dataclass
class _Region:
    """A rectangular part of the frame with a displacement field of its own."""

    y0: int
    x0: int
    field: np.ndarray  # H×W float32, added to one map component
    anchor: tuple[float, float]  # the point whose head displacement moves the region


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class PortraitRig:
    """Renders `FacePose`s of one framed portrait (RGB uint8, output size) with its `FaceLayout`."""

    def __init__(self, image: np.ndarray, layout: FaceLayout) -> None:
        self.image = np.ascontiguousarray(image)
        self.layout = layout
        h, w = image.shape[:2]
        self.size = (w, h)
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        self._gx, self._gy = gx, gy
        self._build_head(layout)
        self._jaw = self._build_jaw(layout)
        self._spread = self._build_spread(layout)
        self._eyelids = [(EyelidPainter(self.image, e), e.centre) for e in layout.eyes]
        self._painter = MouthPainter(layout.mouth, MAX_JAW_DROP * layout.mouth.width, UPPER_LIP_LIFT)

    # ----------------------------------------------------------------------------------- build

    def _build_head(self, lay: FaceLayout) -> None:
        """A soft head mask (1 on the head, 0 on background and shoulders), sampled on a coarse grid.

        Only the box where the mask is non-zero is ever remapped; the head's motion field is smooth,
        so it is computed every HEAD_GRID_PX pixels and upsampled bilinearly.
        """
        h, w = self._gx.shape
        (fx, fy), (hw, hh) = lay.face_centre, lay.face_half_size
        cx, cy = fx, fy - 0.15 * hh  # hair sits above the face oval
        ax, ay = 1.45 * hw, 1.45 * hh
        r = np.sqrt(((self._gx - cx) / ax) ** 2 + ((self._gy - cy) / ay) ** 2)
        mask = 1.0 - _smoothstep(0.85, 1.6, r)
        ys, xs = np.nonzero(mask > 1e-3)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        self._head_box = (int(y0), int(y1), int(x0), int(x1))
        bh, bw = y1 - y0, x1 - x0
        lh, lw = max(2, -(-bh // HEAD_GRID_PX)), max(2, -(-bw // HEAD_GRID_PX))
        # Coarse sample positions that cv2.resize(INTER_LINEAR) maps back onto the box's pixels.
        ly = y0 + (np.arange(lh) + 0.5) * bh / lh - 0.5
        lx = x0 + (np.arange(lw) + 0.5) * bw / lw - 0.5
        cgx, cgy = np.meshgrid(lx, ly)
        cr = np.sqrt(((cgx - cx) / ax) ** 2 + ((cgy - cy) / ay) ** 2)
        cm = (1.0 - _smoothstep(0.85, 1.6, cr)).astype(np.float32)
        self._coarse = (cm * cgx.astype(np.float32), cm * cgy.astype(np.float32), cm)
        self._box_gx = np.ascontiguousarray(self._gx[y0:y1, x0:x1])
        self._box_gy = np.ascontiguousarray(self._gy[y0:y1, x0:x1])
        # Every per-frame buffer but the frame itself is kept: a fresh one each frame costs more in page faults (the
        # allocator maps buffers this large on their own and unmaps them when freed) than the remap itself.
        self._map_x = np.empty_like(self._box_gx)
        self._map_y = np.empty_like(self._box_gy)
        self._head_dx = np.empty_like(self._box_gx)
        self._head_dy = np.empty_like(self._box_gy)
        self._fixed_xy = np.empty((*self._box_gx.shape, 2), np.int16)
        self._fixed_frac = np.empty(self._box_gx.shape, np.uint16)
        self.pivot = (lay.chin[0], lay.chin[1] + 0.35 * hh)

    def _build_jaw(self, lay: FaceLayout) -> _Region:
        m = lay.mouth
        cx, cy = m.centre
        hw = m.width / 2
        lip_line = (m.upper_inner_y + m.lower_inner_y) / 2
        chin_y = lay.chin[1]
        below = max(chin_y - cy, 4.0)
        above = max(cy - lay.nose_bottom[1], 4.0)
        lower_lip = max(m.lower_outer_y - cy, 0.12 * m.width)
        y0 = int(max(0, cy - above - 2))
        y1 = int(min(self.size[1], chin_y + 0.8 * below + 2))
        x0 = int(max(0, cx - 2.4 * hw))
        x1 = int(min(self.size[0], cx + 2.4 * hw + 1))
        gy, gx = self._gy[y0:y1, x0:x1], self._gx[y0:y1, x0:x1]
        dx = (gx - cx) / hw
        line = np.interp(gx[0], m.inner_x, lip_line)[None, :]
        lat_lip = np.sqrt(np.clip(1.0 - dx**2, 0.0, 1.0))
        lat_jaw = 1.0 - _smoothstep(0.9, 2.2, np.abs(dx))
        t = np.clip((gy - line) / lower_lip, 0.0, 1.0)
        lateral = lat_lip + (0.92 * lat_jaw - lat_lip) * _smoothstep(0.0, 1.0, t)
        fade_neck = 1.0 - _smoothstep(chin_y, chin_y + 0.8 * below, gy)
        down = -lateral * fade_neck  # src_y = y - drop·lateral: content moves down
        up = UPPER_LIP_LIFT * lat_lip * (1.0 - _smoothstep(0.0, 1.0, (line - gy) / above))
        field = np.where(gy >= line, down, up).astype(np.float32)  # per pixel of lower-lip drop
        return _Region(y0, x0, field, (cx, cy))

    def _build_spread(self, lay: FaceLayout) -> _Region:
        m = lay.mouth
        cx, cy = m.centre
        hw = m.width / 2
        y0, y1 = int(max(0, cy - 1.2 * hw)), int(min(self.size[1], cy + 1.2 * hw))
        x0, x1 = int(max(0, cx - 2.0 * hw)), int(min(self.size[0], cx + 2.0 * hw + 1))
        gy, gx = self._gy[y0:y1, x0:x1], self._gx[y0:y1, x0:x1]
        dx = (gx - cx) / hw
        reach = 1.0 - _smoothstep(1.0, 2.0, np.abs(dx))
        vert = np.exp(-(((gy - cy) / (0.6 * hw)) ** 2))
        field = (-(gx - cx) * reach * vert).astype(np.float32)  # × LIP_SPREAD·spread
        return _Region(y0, x0, field, (cx, cy))

    # ----------------------------------------------------------------------------------- render

    def render(self, pose: FacePose) -> np.ndarray:
        """The portrait in `pose`, as an RGB uint8 image of the output size."""
        lin, off = self._head_transform(pose)
        y0, y1, x0, x1 = self._head_box
        mgx, mgy, m = self._coarse
        size = (x1 - x0, y1 - y0)
        dx = (lin[0, 0] - 1.0) * mgx + lin[0, 1] * mgy + off[0] * m
        dy = lin[1, 0] * mgx + (lin[1, 1] - 1.0) * mgy + off[1] * m
        head_dx = cv2.resize(dx.astype(np.float32), size, dst=self._head_dx, interpolation=cv2.INTER_LINEAR)
        head_dy = cv2.resize(dy.astype(np.float32), size, dst=self._head_dy, interpolation=cv2.INTER_LINEAR)
        mx = cv2.add(self._box_gx, head_dx, dst=self._map_x)
        my = cv2.add(self._box_gy, head_dy, dst=self._map_y)
        drop = float(np.clip(pose.jaw, 0.0, 1.0)) * MAX_JAW_DROP * self.layout.mouth.width
        spread = LIP_SPREAD * float(np.clip(pose.spread, -1.0, 1.0))
        mouth_shift = self._shift_of(self._jaw.anchor, lin, off)
        if drop > 0.05:
            self._add(my, self._jaw, drop, mouth_shift, (y0, x0))
        if spread:
            self._add(mx, self._spread, spread, mouth_shift, (y0, x0))
        fixed_a, fixed_b = cv2.convertMaps(mx, my, cv2.CV_16SC2, dstmap1=self._fixed_xy, dstmap2=self._fixed_frac)  # ~2× faster remap
        frame = self.image.copy()  # outside the head box the portrait is unchanged
        cv2.remap(self.image, fixed_a, fixed_b, cv2.INTER_LINEAR, dst=frame[y0:y1, x0:x1], borderMode=cv2.BORDER_REPLICATE)
        if drop > 0.6:
            self._painter.paint(frame, drop, spread, mouth_shift)
        blink = float(np.clip(pose.blink, 0.0, 1.0))
        if blink > 0.02:
            for painter, centre in self._eyelids:
                painter.paint(frame, blink, self._shift_of(centre, lin, off))
        return frame

    def _head_transform(self, pose: FacePose) -> tuple[np.ndarray, np.ndarray]:
        """Backward head map q = lin·p + off for output pixel p (rotation and scale about the pivot)."""
        theta = np.radians(np.clip(pose.tilt_deg, -MAX_TILT_DEG, MAX_TILT_DEG))
        c, s = np.cos(theta), np.sin(theta)
        inv = np.array([[c, s], [-s, c]]) / pose.scale  # inverse of rotation·scale
        pivot = np.array(self.pivot)
        moved = pivot + np.array(pose.shift_px)
        off = pivot - (inv * moved).sum(axis=1)  # inv·moved, without a BLAS call (see _shift_of)
        return inv, off

    @staticmethod
    def _shift_of(anchor: tuple[float, float], lin: np.ndarray, off: np.ndarray) -> tuple[int, int]:
        """Whole-pixel displacement of a head point on screen (solves lin·p + off = anchor for p).

        Solved by hand: numpy's solver goes through LAPACK, whose worker threads then spin on every frame."""
        (a, b), (c, d) = lin.tolist()
        x, y = anchor[0] - float(off[0]), anchor[1] - float(off[1])
        det = a * d - b * c
        px, py = (d * x - b * y) / det, (a * y - c * x) / det
        return int(round(px - anchor[0])), int(round(py - anchor[1]))

    @staticmethod
    def _add(target: np.ndarray, region: _Region, amount: float, shift: tuple[int, int], origin: tuple[int, int]) -> None:
        """Add amount·field to a map component (whose top-left is frame pixel `origin`), moved by `shift`."""
        sx, sy = shift
        h, w = region.field.shape
        ty0, tx0 = region.y0 + sy - origin[0], region.x0 + sx - origin[1]
        fy0, fx0 = max(0, -ty0), max(0, -tx0)
        ty0, tx0 = max(ty0, 0), max(tx0, 0)
        th = min(h - fy0, target.shape[0] - ty0)
        tw = min(w - fx0, target.shape[1] - tx0)
        if th > 0 and tw > 0:
            target[ty0 : ty0 + th, tx0 : tx0 + tw] += amount * region.field[fy0 : fy0 + th, fx0 : fx0 + tw]
