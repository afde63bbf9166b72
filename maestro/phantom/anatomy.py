"""The static anatomy model: body, organs, vessels and the lesion, painted once on a fine grid."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy import ndimage

from maestro.phantom.breathing import AP_BOUND_MM, SI_BOUND_MM

#: Range the lesion diameter is drawn from when not given, mm.
LESION_DIAMETER_DRAW_MM = (15.0, 35.0)


@dataclass(frozen=True)
class LesionParameters:
    """The lesion of a session.

    Attributes
    ----------
    diameter_mm : float
        Equivalent-circle diameter ``2 sqrt(a b)``, mm.
    semi_axes_mm : tuple of float
        Semi-axes (a, b) of the ellipse, mm, ``a >= b``.
    angle_deg : float
        Angle of the ``a`` axis from the row (inferior) axis toward the column
        (posterior) axis, degrees.
    kind : str
        ``"hypointense"`` or ``"hyperintense"`` relative to liver.
    contrast : float
        Lesion intensity divided by the liver's (noise-free).
    centre0_px : tuple of float
        Centre of the ellipse on frame 0 as fractional (row, col) pixel indices.
    edge_mm : float
        Width parameter of the soft edge (logistic scale), mm.
    """

    diameter_mm: float
    semi_axes_mm: tuple[float, float]
    angle_deg: float
    kind: str
    contrast: float
    centre0_px: tuple[float, float]
    edge_mm: float


# bSSFP-like intensities at 0.35 T, liver = 100: contrast follows T2/T1, so fluid and
# blood are bright, fat is bright, liver intermediate, muscle darker, lung dark. The
# scale is small on purpose: with the noise, frames stay below ~400 and compress well.
_AIR = 0.0
_LUNG = 10.0
_LUNG_VESSEL = 28.0
_MUSCLE = 58.0
_DIAPHRAGM = 50.0
LIVER = 100.0
_VESSEL = 260.0
_FAT = 235.0
_MESENTERY = 165.0
_FLUID = 335.0
_KIDNEY = 155.0
_RENAL_SINUS = 255.0
_MARROW = 165.0
_CORTEX = 22.0
_BOWEL_WALL = 110.0
_BOWEL_CONTENT = 128.0
_GAS = 8.0

# Fine anatomy grid: the same for every geometry (covers the 350 mm field of view plus
# room for the largest displacement and the blur kernel).
PITCH_MM = 0.8
_GRID_N = 540
GRID_ORIGIN_MM = -(_GRID_N - 1) / 2.0 * PITCH_MM  # mm coordinate of index 0
_EDGE_MM = 0.5  # soft-edge scale of organ boundaries before the PSF blur

# Spacing of the candidate centres tried when placing the lesion, mm (2 fine pixels).
_COARSE_MM = 1.6


@dataclass(frozen=True)
class _Body:
    """Static shape parameters of the anatomy (mm; y inferior, x posterior, 0 = centre)."""

    ant_skin_mm: float
    ant_slope: float
    ant_arc_mm: float
    belly_mm: float
    belly_y_mm: float
    post_skin_mm: float
    back_curve_mm: float
    fat_ant_mm: float
    muscle_ant_mm: float
    fat_post_mm: float
    muscle_post_mm: float
    dome_apex_y_mm: float
    dome_apex_x_mm: float
    dome_drop_ant_mm: float
    dome_drop_post_mm: float
    liver_inf_mm: float
    liver_inf_tilt_mm: float
    liver_inf_curve_mm: float
    kidney_centre_mm: tuple[float, float]
    kidney_axes_mm: tuple[float, float]
    kidney_angle_rad: float
    gallbladder: tuple[float, float, float, float, float] | None  # y, x, a, b, angle

    def skin(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anterior and posterior skin x at rows y."""
        # The abdomen bulges anteriorly below the costal margin; the back is flat on the
        # couch with a little lordosis.
        belly = self.belly_mm * np.exp(-(((y - self.belly_y_mm) / 90.0) ** 2))
        arc = self.ant_arc_mm * (y / 175.0) ** 2
        ant = self.ant_skin_mm + self.ant_slope * y + arc - belly
        post = self.post_skin_mm - self.back_curve_mm * (((y - 40.0) / 175.0) ** 2)
        return ant, post

    def cavity(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anterior and posterior inner boundary of the body wall at rows y."""
        ant, post = self.skin(y)
        return (
            ant + self.fat_ant_mm + self.muscle_ant_mm,
            post - self.fat_post_mm - self.muscle_post_mm,
        )

    def dome(self, x: np.ndarray) -> np.ndarray:
        """Diaphragm (lung/liver boundary) y at columns x; higher (smaller y) centrally."""
        ant_in, post_in = self.cavity(np.zeros(1))
        dx = x - self.dome_apex_x_mm
        ant_scale = (self.dome_apex_x_mm - ant_in[0]) ** 2
        post_scale = (post_in[0] - self.dome_apex_x_mm) ** 2
        drop = np.where(
            dx < 0.0,
            self.dome_drop_ant_mm * dx**2 / ant_scale,
            self.dome_drop_post_mm * dx**2 / post_scale,
        )
        return self.dome_apex_y_mm + drop

    def liver_inferior(self, x: np.ndarray) -> np.ndarray:
        """Inferior liver edge y at columns x."""
        xn = x / 80.0
        return self.liver_inf_mm + self.liver_inf_tilt_mm * xn + self.liver_inf_curve_mm * xn**2


def _draw_body(rng: np.random.Generator) -> _Body:
    post_skin = float(rng.uniform(110.0, 122.0))
    fat_post = float(rng.uniform(8.0, 16.0))
    muscle_post = float(rng.uniform(20.0, 30.0))
    kidney_x = post_skin - fat_post - muscle_post - float(rng.uniform(24.0, 32.0))
    body = _Body(
        ant_skin_mm=float(rng.uniform(-120.0, -105.0)),
        ant_slope=float(rng.uniform(0.0, 0.05)),
        ant_arc_mm=float(rng.uniform(5.0, 20.0)),
        belly_mm=float(rng.uniform(0.0, 15.0)),
        belly_y_mm=float(rng.uniform(80.0, 160.0)),
        post_skin_mm=post_skin,
        back_curve_mm=float(rng.uniform(0.0, 12.0)),
        fat_ant_mm=float(rng.uniform(10.0, 22.0)),
        muscle_ant_mm=float(rng.uniform(8.0, 13.0)),
        fat_post_mm=fat_post,
        muscle_post_mm=muscle_post,
        dome_apex_y_mm=float(rng.uniform(-80.0, -55.0)),
        dome_apex_x_mm=float(rng.uniform(-10.0, 20.0)),
        dome_drop_ant_mm=float(rng.uniform(25.0, 45.0)),
        dome_drop_post_mm=float(rng.uniform(50.0, 80.0)),
        liver_inf_mm=float(rng.uniform(60.0, 80.0)),
        # The inferior edge rises posteriorly, where the liver sits on the kidney, and
        # ends in a sharp tip anteriorly.
        liver_inf_tilt_mm=float(rng.uniform(-40.0, -20.0)),
        liver_inf_curve_mm=float(rng.uniform(-10.0, 5.0)),
        kidney_centre_mm=(float(rng.uniform(75.0, 95.0)), kidney_x),
        kidney_axes_mm=(float(rng.uniform(45.0, 55.0)), float(rng.uniform(22.0, 28.0))),
        kidney_angle_rad=math.radians(float(rng.uniform(-15.0, 5.0))),
        gallbladder=None,
    )
    if rng.uniform() < 0.7:
        x_g = float(body.cavity(np.zeros(1))[0][0]) + float(rng.uniform(25.0, 45.0))
        y_g = float(body.liver_inferior(np.array([x_g]))[0]) - float(rng.uniform(0.0, 10.0))
        gall = (
            y_g,
            x_g,
            float(rng.uniform(22.0, 32.0)),
            float(rng.uniform(9.0, 14.0)),
            math.radians(float(rng.uniform(20.0, 50.0))),
        )
        body = dataclasses.replace(body, gallbladder=gall)
    return body


def _smoothstep(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    s = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def _inside(signed_distance_mm: np.ndarray, edge_mm: float = _EDGE_MM) -> np.ndarray:
    """Soft membership from a signed distance (negative inside): 0.5 on the boundary."""
    return 0.5 - 0.5 * np.tanh(signed_distance_mm / edge_mm)


def _ellipse_sd(
    y: np.ndarray, x: np.ndarray, cy: float, cx: float, a: float, b: float, angle: float
) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipse; exact on the boundary to first order.

    ``a`` lies along the direction ``angle`` measured from +y toward +x.
    """
    ca, sa = math.cos(angle), math.sin(angle)
    u = (y - cy) * ca + (x - cx) * sa
    v = -(y - cy) * sa + (x - cx) * ca
    f = (u / a) ** 2 + (v / b) ** 2 - 1.0
    grad = 2.0 * np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
    # Far inside (near the centre) the gradient vanishes: cap the depth at -min axis.
    return np.maximum(f / np.maximum(grad, 1e-9), -min(a, b))


def _mm_to_index(mm: float) -> float:
    return (mm - GRID_ORIGIN_MM) / PITCH_MM


class _Canvas:
    """The fine anatomy grid and painting helpers (windowed to keep painting cheap)."""

    def __init__(self) -> None:
        axis = GRID_ORIGIN_MM + PITCH_MM * np.arange(_GRID_N)
        self.axis_mm = axis
        self.image = np.full((_GRID_N, _GRID_N), _AIR, dtype=np.float64)

    def window(
        self, y0: float, y1: float, x0: float, x1: float
    ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        """Slices and (y, x) mm coordinates of the grid part covering a box in mm."""
        i0 = max(int(math.floor(_mm_to_index(y0))), 0)
        i1 = min(int(math.ceil(_mm_to_index(y1))) + 1, _GRID_N)
        j0 = max(int(math.floor(_mm_to_index(x0))), 0)
        j1 = min(int(math.ceil(_mm_to_index(x1))) + 1, _GRID_N)
        sl = (slice(i0, max(i1, i0)), slice(j0, max(j1, j0)))
        return sl, self.axis_mm[sl[0]][:, None], self.axis_mm[sl[1]][None, :]

    def paint(
        self, sl: tuple[slice, slice], alpha: np.ndarray, value: float | np.ndarray
    ) -> None:
        region = self.image[sl]
        region += alpha * (value - region)


def _capsule_alpha(
    y: np.ndarray, x: np.ndarray, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float
) -> np.ndarray:
    """Soft membership of a tapered tube segment from p0 (radius r0) to p1 (radius r1)."""
    d = p1 - p0
    length2 = float(d @ d)
    t = np.clip(((y - p0[0]) * d[0] + (x - p0[1]) * d[1]) / max(length2, 1e-12), 0.0, 1.0)
    dist = np.hypot(y - (p0[0] + t * d[0]), x - (p0[1] + t * d[1]))
    return _inside(dist - (r0 + t * (r1 - r0)))


def _bezier(p0: np.ndarray, c: np.ndarray, p1: np.ndarray, n: int) -> np.ndarray:
    s = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * c + s**2 * p1


def body_weight(body: _Body, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Share of the liver displacement that each point of the field takes (0.1 .. 1).

    Ramps are long enough that ``d . grad(w) < 1`` (checked numerically: at most ~0.86)
    for every displacement the breathing model can produce, so the warp never folds.
    """
    ant_in, post_in = body.cavity(y)
    depth = np.minimum(x - ant_in, post_in - x)
    w_wall = 0.1 + 0.9 * _smoothstep(depth, -5.0, 20.0)
    top = body.dome_apex_y_mm
    w_lung = 0.35 + 0.65 * _smoothstep(y, top - 80.0, top - 10.0)
    w_low = 1.0 - 0.4 * _smoothstep(y, 125.0, 190.0)
    return w_wall * w_lung * w_low


def _liver_sd(body: _Body, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the liver region (negative inside), mm."""
    ant_in, post_in = body.cavity(y)
    sd = np.maximum.reduce(
        [
            ant_in - x,
            x - post_in,
            body.dome(x) + 3.0 - y,  # 3 mm diaphragm between lung and liver
            y - body.liver_inferior(x),
        ]
    )
    ky, kx = body.kidney_centre_mm
    ka, kb = body.kidney_axes_mm
    kidney = _ellipse_sd(y, x, ky, kx, ka + 5.0, kb + 5.0, body.kidney_angle_rad)
    sd = np.maximum(sd, -kidney)
    if body.gallbladder is not None:
        gy, gx, ga, gb, gang = body.gallbladder
        sd = np.maximum(sd, -_ellipse_sd(y, x, gy, gx, ga + 1.5, gb + 1.5, gang))
    return sd


def _place_lesion(
    body: _Body,
    rng: np.random.Generator,
    diameter_mm: float | None,
    liver_sd: np.ndarray,
    liver_vessels: np.ndarray,
) -> tuple[tuple[float, float], LesionParameters, float]:
    """Draw the lesion and put it deep in the liver where the weight field is 1.

    ``liver_sd`` and ``liver_vessels`` are on the fine grid. The lesion goes where it
    stays inside the liver, where ``w`` is 1 over every position it can reach during a
    session, and preferably clear of the vessels (if nowhere is clear, as far from them
    as the anatomy allows).
    """
    drawn_d = float(rng.uniform(*LESION_DIAMETER_DRAW_MM))
    d = drawn_d if diameter_mm is None else float(diameter_mm)
    aspect = float(rng.uniform(1.0, 1.35))
    a, b = 0.5 * d * math.sqrt(aspect), 0.5 * d / math.sqrt(aspect)
    angle = float(rng.uniform(-math.pi / 2, math.pi / 2))
    hyper = bool(rng.uniform() < 0.5)
    contrast = float(rng.uniform(1.5, 2.0)) if hyper else float(rng.uniform(0.45, 0.65))
    # Candidate centres on a coarse subsample of the fine grid.
    step = int(round(_COARSE_MM / PITCH_MM))
    axis = (GRID_ORIGIN_MM + PITCH_MM * np.arange(_GRID_N))[::step]
    # (cast: the stubs allow None, for out=...)
    liver_depth = cast(np.ndarray, ndimage.distance_transform_edt(liver_sd < 0.0))[::step, ::step] * PITCH_MM
    vessel_clear = cast(np.ndarray, ndimage.distance_transform_edt(liver_vessels < 0.5))[::step, ::step]
    vessel_clear = vessel_clear * PITCH_MM - a
    rigid = body_weight(body, axis[:, None], axis[None, :]) >= 1.0 - 1e-12
    spacing = PITCH_MM * step
    reach = (
        2 * int(math.ceil((a + SI_BOUND_MM + 2.0) / spacing)) + 1,
        2 * int(math.ceil((a + AP_BOUND_MM + 2.0) / spacing)) + 1,
    )
    rigid_all = ndimage.minimum_filter(rigid.astype(np.uint8), size=reach, mode="constant")
    valid = (liver_depth >= a + 10.0) & (rigid_all > 0)
    if not valid.any():  # cannot happen within the drawn anatomy ranges
        raise RuntimeError(f"no room for a {d:.1f} mm lesion in this anatomy")
    clear_mm = min(8.0, float(np.percentile(vessel_clear[valid], 90)))
    candidates = np.flatnonzero(valid & (vessel_clear >= clear_mm))
    k = int(candidates[rng.integers(candidates.size)])
    jitter = rng.uniform(-0.5, 0.5, size=2) * spacing
    cy = float(axis[k // axis.size] + jitter[0])
    cx = float(axis[k % axis.size] + jitter[1])
    lesion = LesionParameters(
        diameter_mm=d,
        semi_axes_mm=(a, b),
        angle_deg=math.degrees(angle),
        kind="hyperintense" if hyper else "hypointense",
        contrast=contrast,
        centre0_px=(math.nan, math.nan),
        edge_mm=1.0,
    )
    return (cy, cx), lesion, angle


def _texture(rng: np.random.Generator, sigma_mm: float) -> np.ndarray:
    field = ndimage.gaussian_filter(
        rng.standard_normal((_GRID_N, _GRID_N)), sigma_mm / PITCH_MM, mode="wrap"
    )
    return field / field.std()


def _paint_anatomy(
    body: _Body,
    anatomy_rng: np.random.Generator,
    canvas: _Canvas,
    liver_sd: np.ndarray,
    lung_vessels: np.ndarray,
    liver_vessels: np.ndarray,
    lesion_centre: tuple[float, float],
    lesion: LesionParameters,
    lesion_angle: float,
) -> np.ndarray:
    y_all = canvas.axis_mm[:, None]
    x_all = canvas.axis_mm[None, :]
    full = (slice(None), slice(None))
    tex_fine = _texture(anatomy_rng, 1.5)
    tex_coarse = _texture(anatomy_rng, 6.0)

    # Body: fat inside the skin, then the muscle layer, then the abdominal cavity.
    ant_skin, post_skin = body.skin(y_all)
    canvas.paint(full, _inside(np.maximum(ant_skin - x_all, x_all - post_skin)), _FAT)
    ant_mus = ant_skin + body.fat_ant_mm
    post_mus = post_skin - body.fat_post_mm
    canvas.paint(full, _inside(np.maximum(ant_mus - x_all, x_all - post_mus)), _MUSCLE)
    ant_in, post_in = body.cavity(y_all)
    cavity = _inside(np.maximum(ant_in - x_all, x_all - post_in))
    canvas.paint(full, cavity, _MESENTERY * (1.0 + 0.08 * tex_coarse))

    # Ribs cut across in the chest wall: dark cortex around fatty marrow.
    for side in (-1, 1):
        y_rib = -190.0 + anatomy_rng.uniform(0.0, 20.0)
        while y_rib < 30.0:
            if side < 0:
                x_rib = float(body.skin(np.array([y_rib]))[0][0]) + body.fat_ant_mm + 4.0
            else:
                x_rib = body.post_skin_mm - body.fat_post_mm - 6.0
            ra, rb = anatomy_rng.uniform(5.0, 7.0), anatomy_rng.uniform(3.0, 4.5)
            sl, y, x = canvas.window(y_rib - 10, y_rib + 10, x_rib - 10, x_rib + 10)
            canvas.paint(sl, _inside(_ellipse_sd(y, x, y_rib, x_rib, ra, rb, 0.3)), _CORTEX)
            inner = _ellipse_sd(y, x, y_rib, x_rib, ra - 1.5, rb - 1.5, 0.3)
            canvas.paint(sl, _inside(inner), _MARROW)
            y_rib += anatomy_rng.uniform(24.0, 32.0)

    # Bowel loops below the liver: walls, contents of fluid, chyme or gas.
    for _ in range(90):
        cy = anatomy_rng.uniform(30.0, 215.0)
        cx = anatomy_rng.uniform(-110.0, 70.0)
        ra, rb = anatomy_rng.uniform(6.0, 16.0), anatomy_rng.uniform(4.5, 10.0)
        ang = anatomy_rng.uniform(0.0, math.pi)
        content = (_FLUID, _BOWEL_CONTENT, _GAS)[int(anatomy_rng.choice(3, p=[0.4, 0.4, 0.2]))]
        sl, y, x = canvas.window(cy - ra - 3, cy + ra + 3, cx - ra - 3, cx + ra + 3)
        clip = cavity[sl]
        canvas.paint(sl, clip * _inside(_ellipse_sd(y, x, cy, cx, ra, rb, ang)), _BOWEL_WALL)
        inner = _ellipse_sd(y, x, cy, cx, ra - 2.0, rb - 2.0, ang)
        canvas.paint(sl, clip * _inside(inner), content)

    # Kidney in its fat, with a bright renal sinus.
    ky, kx = body.kidney_centre_mm
    ka, kb = body.kidney_axes_mm
    kang = body.kidney_angle_rad
    sl, y, x = canvas.window(ky - ka - 10, ky + ka + 10, kx - ka - 10, kx + ka + 10)
    canvas.paint(sl, _inside(_ellipse_sd(y, x, ky, kx, ka + 5.0, kb + 5.0, kang)), _FAT)
    canvas.paint(sl, _inside(_ellipse_sd(y, x, ky, kx, ka, kb, kang)), _KIDNEY)
    sinus = _ellipse_sd(y, x, ky, kx + 0.25 * kb, 0.5 * ka, 0.3 * kb, kang)
    canvas.paint(sl, _inside(sinus, 1.5), _RENAL_SINUS)

    # Liver with mottled texture; the lung above the dome; the diaphragm between them.
    liver = _inside(liver_sd)
    liver_value = LIVER * (1.0 + 0.03 * tex_fine + 0.04 * tex_coarse)
    canvas.paint(full, liver, liver_value)
    dome = body.dome(x_all)
    canvas.paint(full, cavity * _inside(np.abs(y_all - dome - 1.5) - 1.5), _DIAPHRAGM)
    lung = cavity * _inside(y_all - dome)
    canvas.paint(full, lung, _LUNG * (1.0 + 0.3 * tex_coarse))
    if body.gallbladder is not None:
        gy, gx, ga, gb, gang = body.gallbladder
        sl, y, x = canvas.window(gy - ga - 3, gy + ga + 3, gx - ga - 3, gx + ga + 3)
        canvas.paint(sl, cavity[sl] * _inside(_ellipse_sd(y, x, gy, gx, ga, gb, gang)), _FLUID)

    canvas.paint(full, lung_vessels * lung, _LUNG_VESSEL)

    # Liver vessels fade out next to the lesion (only when it had to be placed near
    # them), so that the lesion's outline is its own.
    la, lb = lesion.semi_axes_mm
    keep_out = _smoothstep(
        _ellipse_sd(y_all, x_all, *lesion_centre, la, lb, lesion_angle), 3.0, 6.0
    )
    canvas.paint(full, liver_vessels * liver * keep_out, _VESSEL)

    # The lesion: its own value (slightly textured) with a soft edge.
    cy, cx = lesion_centre
    sl, y, x = canvas.window(cy - la - 8, cy + la + 8, cx - la - 8, cx + la + 8)
    sd = _ellipse_sd(y, x, cy, cx, la, lb, lesion_angle)
    alpha = 1.0 / (1.0 + np.exp(np.clip(sd / lesion.edge_mm, -50.0, 50.0)))
    canvas.paint(sl, alpha, LIVER * lesion.contrast * (1.0 + 0.05 * tex_fine[sl]))

    # Every tissue has a little texture (no structure is perfectly flat in vivo).
    canvas.image *= 1.0 + 0.02 * tex_fine
    return canvas.image


def _vessel_maps(
    body: _Body, vessel_rng: np.random.Generator, canvas: _Canvas, liver_sd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Soft membership maps (fine grid) of the lung vessels and of the liver vessels."""
    # Faint lung vessels fanning down from the hilum.
    hilum = np.array([-175.0, 30.0])
    lung_vessels = np.zeros_like(canvas.image)
    for _ in range(9):
        start = hilum + vessel_rng.uniform(-20.0, 20.0, size=2)
        end_y = body.dome_apex_y_mm + vessel_rng.uniform(-30.0, 10.0)
        end = np.array([end_y, vessel_rng.uniform(-80.0, 60.0)])
        ctrl = 0.5 * (start + end) + vessel_rng.uniform(-25.0, 25.0, size=2)
        _union_tube(canvas, lung_vessels, _bezier(start, ctrl, end, 10), 1.5, 0.5)

    # Liver vessels: tapering trunks with side branches, and vessels cut across.
    vessels = np.zeros_like(canvas.image)
    inside_idx = np.flatnonzero(liver_sd < -8.0)
    # Hepatic veins fan out anteriorly and inferiorly from near the IVC (posterior,
    # under the dome); portal branches fan superiorly and anteriorly from the hilum
    # (inferior, central). Directions: angle from +y (inferior) toward +x (posterior).
    _, post_in0 = body.cavity(np.zeros(1))
    hv_x = float(post_in0[0]) - float(vessel_rng.uniform(15.0, 30.0))
    hv_root = np.array([float(body.dome(np.array([hv_x]))[0]) + 12.0, hv_x])
    pv_x = float(vessel_rng.uniform(-10.0, 25.0))
    pv_root = np.array([float(body.liver_inferior(np.array([pv_x]))[0]) - 15.0, pv_x])
    for root, fan_deg, radius in (
        (hv_root, (-120.0, -30.0), float(vessel_rng.uniform(4.0, 5.5))),
        (pv_root, (-200.0, -110.0), float(vessel_rng.uniform(4.5, 6.0))),
    ):
        for _ in range(int(vessel_rng.integers(2, 4))):
            phi = math.radians(float(vessel_rng.uniform(*fan_deg)))
            direction = np.array([math.cos(phi), math.sin(phi)])
            length = float(vessel_rng.uniform(50.0, 110.0))
            start = root + vessel_rng.uniform(-4.0, 4.0, size=2)
            end = start + length * direction
            bend = np.array([-direction[1], direction[0]]) * vessel_rng.uniform(-15.0, 15.0)
            path = _bezier(start, 0.5 * (start + end) + bend, end, 14)
            r0 = radius * float(vessel_rng.uniform(0.7, 1.0))
            _union_tube(canvas, vessels, path, r0, 1.0)
            for _ in range(int(vessel_rng.integers(1, 4))):
                i = int(vessel_rng.integers(3, 11))
                tangent = path[i + 1] - path[i]
                turn = math.radians(float(vessel_rng.uniform(25.0, 55.0))) * vessel_rng.choice(
                    [-1.0, 1.0]
                )
                c, s_ = math.cos(turn), math.sin(turn)
                b_dir = np.array(
                    [c * tangent[0] - s_ * tangent[1], s_ * tangent[0] + c * tangent[1]]
                ) / max(float(np.hypot(*tangent)), 1e-9)
                b_end = path[i] + float(vessel_rng.uniform(20.0, 45.0)) * b_dir
                b_ctrl = 0.5 * (path[i] + b_end) + vessel_rng.uniform(-5.0, 5.0, size=2)
                r_branch = r0 * (1.0 - i / 14.0) * 0.7 + 0.5
                _union_tube(canvas, vessels, _bezier(path[i], b_ctrl, b_end, 8), r_branch, 0.8)
    for _ in range(int(vessel_rng.integers(8, 15))):
        c = _random_point(vessel_rng, inside_idx, canvas.axis_mm)
        r = float(vessel_rng.uniform(1.2, 3.5))
        sl, y, x = canvas.window(c[0] - r - 3, c[0] + r + 3, c[1] - r - 3, c[1] + r + 3)
        dot = _inside(_ellipse_sd(y, x, c[0], c[1], 1.3 * r, r, vessel_rng.uniform(0, np.pi)))
        np.maximum(vessels[sl], dot, out=vessels[sl])
    return lung_vessels, vessels


def _random_point(
    rng: np.random.Generator, flat_indices: np.ndarray, axis_mm: np.ndarray
) -> np.ndarray:
    k = int(flat_indices[rng.integers(flat_indices.size)])
    return np.array([axis_mm[k // axis_mm.size], axis_mm[k % axis_mm.size]])


def _union_tube(
    canvas: _Canvas, target: np.ndarray, path: np.ndarray, r_start: float, r_end: float
) -> None:
    """Max-combine a tapered tube along ``path`` into ``target`` (soft membership)."""
    radii = np.linspace(r_start, r_end, len(path))
    for p0, p1, r0, r1 in zip(path[:-1], path[1:], radii[:-1], radii[1:]):
        pad = max(r0, r1) + 3.0
        sl, y, x = canvas.window(
            min(p0[0], p1[0]) - pad, max(p0[0], p1[0]) + pad,
            min(p0[1], p1[1]) - pad, max(p0[1], p1[1]) + pad,
        )
        np.maximum(target[sl], _capsule_alpha(y, x, p0, p1, r0, r1), out=target[sl])


@dataclass(frozen=True, eq=False)
class Anatomy:
    """The static model of one seed, with the random streams its frames still draw from."""

    body: _Body
    lesion_centre: tuple[float, float]
    lesion: LesionParameters
    lesion_angle: float
    fine: np.ndarray  # the painted anatomy on the fine grid
    motion_rng: np.random.Generator  # breathing (generate_session) or drift (TracePhantom)
    noise_rng: np.random.Generator


def build_anatomy(seed: int, lesion_diameter_mm: float | None, painted_lesion_contrast: float | None = None) -> Anatomy:
    """Body, vessels, lesion and the painted fine-grid image of a seed.

    ``default_rng(seed)`` is spawned into five streams used in this order: anatomy,
    lesion, vessels, motion, noise. The order is part of every phantom's identity:
    changing it changes every session, the bundled one included (CI regenerates that
    bit for bit). ``painted_lesion_contrast`` overrides the contrast the lesion is
    painted with (the trace phantom paints liver there and composites the lesion later).
    """
    anatomy_rng, lesion_rng, vessel_rng, motion_rng, noise_rng = np.random.default_rng(seed).spawn(5)
    body = _draw_body(anatomy_rng)
    canvas = _Canvas()
    liver_sd = _liver_sd(body, canvas.axis_mm[:, None], canvas.axis_mm[None, :])
    lung_vessels, liver_vessels = _vessel_maps(body, vessel_rng, canvas, liver_sd)
    lesion_centre, lesion, lesion_angle = _place_lesion(
        body, lesion_rng, lesion_diameter_mm, liver_sd, liver_vessels
    )
    painted = lesion if painted_lesion_contrast is None else dataclasses.replace(lesion, contrast=painted_lesion_contrast)
    fine = _paint_anatomy(
        body, anatomy_rng, canvas, liver_sd, lung_vessels, liver_vessels, lesion_centre, painted, lesion_angle,
    )
    return Anatomy(body, lesion_centre, lesion, lesion_angle, fine, motion_rng, noise_rng)
