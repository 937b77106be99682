"""The digital sodium head: analytic shapes in patient coordinates, rasterised with partial volume.

Coordinates are DICOM patient coordinates (LPS, mm): +x left, +y posterior, +z superior, the
head centred at the origin. A :class:`Grid` maps voxel index ``(iz, iy, ix)`` to patient position
``p = position + sum_a (i_a - n_a // 2) * voxel_mm * dir_a`` with ``dir_x, dir_y, dir_z`` the
acquisition's read, phase and slice directions, the convention of the raw data.

Shapes are painted in order (later shapes replace earlier ones where they overlap), each voxel
holding the volume fraction of every tissue. Voxels the shape boundary crosses are supersampled
(``sub^3`` points); voxels whose centre is farther from the boundary than half the voxel diagonal
(a conservative bound) are all in or all out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numba as nb
import numpy as np
from scipy.special import j1

from gadgets.simulator.tissues import Relaxation, Tissue, tissue, tube_tissue

__all__ = [
    "ROI",
    "brain_phantom",
    "Cylinder",
    "default_tubes",
    "Ellipsoid",
    "Grid",
    "Phantom",
    "smooth_indicator",
    "Tube",
    "volume_fraction",
]


@dataclass(frozen=True)
class Grid:
    """A voxel grid in patient space. ``shape`` is (nz, ny, nx); ``dirs`` rows are the unit
    vectors of the x (read), y (phase) and z (slice) axes."""

    shape: tuple[int, int, int]
    voxel_mm: float
    position_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    dirs: tuple[tuple[float, ...], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    def steps(self) -> np.ndarray:
        """(3, 3): patient displacement (mm) per voxel step along array axes z, y, x."""
        d = np.asarray(self.dirs, np.float64)
        return np.stack([d[2], d[1], d[0]]) * self.voxel_mm

    def points(self) -> np.ndarray:
        """Patient coordinates (nz, ny, nx, 3) of all voxel centres."""
        idx = np.meshgrid(*[np.arange(n) - n // 2 for n in self.shape], indexing="ij")
        return np.asarray(self.position_mm) + sum(
            i[..., None] * s for i, s in zip(idx, self.steps(), strict=True)
        )

    def index_of(self, point_mm: np.ndarray) -> np.ndarray:
        """Fractional array index (z, y, x) of patient points (..., 3)."""
        rel = np.asarray(point_mm, np.float64) - np.asarray(self.position_mm)
        d = np.asarray(self.dirs, np.float64)
        r = rel @ d.T / self.voxel_mm  # (x, y, z) in voxels from the centre
        return r[..., ::-1] + np.array([n // 2 for n in self.shape])


@dataclass(frozen=True)
class Ellipsoid:
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]

    def params(self) -> np.ndarray:
        return np.array([0, *self.centre_mm, *self.semi_axes_mm, 0, 0, 0], np.float64)

    def fourier(self, kappa: np.ndarray) -> np.ndarray:
        """Continuous Fourier transform (mm^3) at spatial frequencies (..., 3) cycles/mm."""
        semi = np.asarray(self.semi_axes_mm, np.float64)
        nu = np.linalg.norm(kappa * semi, axis=-1)
        x = 2 * np.pi * np.where(nu > 1e-9, nu, 1.0)
        ball = np.where(
            nu > 1e-9,
            (np.sin(x) - x * np.cos(x)) / (2 * np.pi**2 * (x / (2 * np.pi)) ** 3),
            4 * np.pi / 3,
        )
        small = nu < 1e-3  # series where the closed form cancels
        ball = np.where(small, 4 * np.pi / 3 * (1 - (2 * np.pi * nu) ** 2 / 10), ball)
        return np.prod(semi) * ball * np.exp(-2j * np.pi * kappa @ np.asarray(self.centre_mm))


@dataclass(frozen=True)
class Cylinder:
    centre_mm: tuple[float, float, float]
    radius_mm: float
    length_mm: float
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def params(self) -> np.ndarray:
        a = np.asarray(self.axis, np.float64)
        a = a / np.linalg.norm(a)
        return np.array([1, *self.centre_mm, self.radius_mm, self.length_mm / 2, 0, *a], np.float64)
        # layout shared with _signed_bound: kind, centre (1-3), radius 4, half length 5, -, axis 7-9

    def fourier(self, kappa: np.ndarray) -> np.ndarray:
        """Continuous Fourier transform (mm^3) at spatial frequencies (..., 3) cycles/mm:
        disc ``a J1(2 pi a k_perp) / k_perp`` times rod ``L sinc(L k_par)``."""
        u = np.asarray(self.axis, np.float64)
        u = u / np.linalg.norm(u)
        k_par = kappa @ u
        k_perp = np.sqrt(np.maximum(np.sum(kappa**2, axis=-1) - k_par**2, 0.0))
        a = self.radius_mm
        safe = np.where(k_perp > 1e-12, k_perp, 1.0)
        disc = np.where(k_perp > 1e-12, a * j1(2 * np.pi * a * safe) / safe, np.pi * a**2)
        rod = self.length_mm * np.sinc(self.length_mm * k_par)
        return disc * rod * np.exp(-2j * np.pi * kappa @ np.asarray(self.centre_mm))


@nb.njit(cache=True, inline="always")
def _signed_bound(p, x, y, z):
    """(inside?, lower bound on the distance to the boundary) for shape params ``p``."""
    dx, dy, dz = x - p[1], y - p[2], z - p[3]
    if p[0] == 0.0:  # ellipsoid: |q - 1| * min(semi-axes) bounds the distance
        q = np.sqrt((dx / p[4]) ** 2 + (dy / p[5]) ** 2 + (dz / p[6]) ** 2)
        return q <= 1.0, abs(q - 1.0) * min(p[4], min(p[5], p[6]))
    h = dx * p[7] + dy * p[8] + dz * p[9]  # cylinder: axial and radial distances
    rho = np.sqrt(max(dx * dx + dy * dy + dz * dz - h * h, 0.0))
    inside = rho <= p[4] and abs(h) <= p[5]
    if inside:
        return True, min(p[4] - rho, p[5] - abs(h))
    return False, max(rho - p[4], abs(h) - p[5])


@nb.njit(cache=True, parallel=True)
def _fractions(p, origin, steps, shape, sub, out):
    nz, ny, nx = shape[0], shape[1], shape[2]
    half_diag = 0.5 * np.sqrt((steps[0] ** 2).sum() + (steps[1] ** 2).sum() + (steps[2] ** 2).sum())
    for iz in nb.prange(nz):
        for iy in range(ny):
            for ix in range(nx):
                cz, cy, cx = iz - nz // 2, iy - ny // 2, ix - nx // 2
                x = origin[0] + cz * steps[0, 0] + cy * steps[1, 0] + cx * steps[2, 0]
                y = origin[1] + cz * steps[0, 1] + cy * steps[1, 1] + cx * steps[2, 1]
                z = origin[2] + cz * steps[0, 2] + cy * steps[1, 2] + cx * steps[2, 2]
                inside, dist = _signed_bound(p, x, y, z)
                if dist > half_diag:
                    out[iz, iy, ix] = 1.0 if inside else 0.0
                    continue
                count = 0
                for a in range(sub):
                    fa = (a + 0.5) / sub - 0.5
                    for b in range(sub):
                        fb = (b + 0.5) / sub - 0.5
                        for c in range(sub):
                            fc = (c + 0.5) / sub - 0.5
                            xs = x + fa * steps[0, 0] + fb * steps[1, 0] + fc * steps[2, 0]
                            ys = y + fa * steps[0, 1] + fb * steps[1, 1] + fc * steps[2, 1]
                            zs = z + fa * steps[0, 2] + fb * steps[1, 2] + fc * steps[2, 2]
                            if _signed_bound(p, xs, ys, zs)[0]:
                                count += 1
                out[iz, iy, ix] = count / sub**3


def smooth_indicator(shape_obj: Ellipsoid | Cylinder, grid: Grid, sigma_px: float) -> np.ndarray:
    """The shape's indicator blurred by a Gaussian whose transfer function is
    ``exp(-k^2 / (2 sigma^2))`` (``k`` in cycles per ``grid`` voxel), sampled at the voxel
    centres: computed exactly from the shape's analytic Fourier transform, so a simulation on this
    grid aliases only through the Gaussian's tail (``exp(-(f - 1/2)^2 / (2 sigma^2))``).
    Values lie in [0, 1] up to ~1e-6."""
    n = grid.shape
    freqs = np.meshgrid(*[np.fft.fftfreq(m) for m in n], indexing="ij")  # cycles/voxel, z y x
    k_img = np.stack([freqs[2], freqs[1], freqs[0]], axis=-1)  # (x, y, z)
    kappa = k_img @ np.asarray(grid.dirs, np.float64) / grid.voxel_mm  # patient cycles/mm
    spectrum = shape_obj.fourier(kappa) * np.exp(2j * np.pi * kappa @ np.asarray(grid.position_mm))
    spectrum *= np.exp(-np.sum(k_img**2, axis=-1) / (2 * sigma_px**2)) / grid.voxel_mm**3
    values = np.fft.fftshift(np.fft.ifftn(spectrum)).real  # voxel i sits at r = i - n // 2
    return values.astype(np.float32)


def volume_fraction(shape_obj: Ellipsoid | Cylinder, grid: Grid, sub: int = 8) -> np.ndarray:
    """Fraction (nz, ny, nx) float32 of each voxel of ``grid`` inside the shape."""
    out = np.empty(grid.shape, np.float32)
    _fractions(
        shape_obj.params(),
        np.asarray(grid.position_mm, np.float64),
        grid.steps(),
        np.asarray(grid.shape, np.int64),
        int(sub),
        out,
    )
    return out


@dataclass(frozen=True)
class ROI:
    """A spherical region of interest with its true concentration."""

    name: str
    centre_mm: tuple[float, float, float]
    radius_mm: float
    true_mM: float


@dataclass(frozen=True)
class Tube:
    """A calibration tube: concentration, centre (patient mm), inner radius and length, axis,
    material class and, optionally, its own relaxation (``t1_ms``, ``t2s_ms``, ``fractions``:
    the holder's medium as measured, instead of the class's default)."""

    tsc_mM: float
    centre_mm: tuple[float, float, float]
    radius_mm: float = 10.0
    length_mm: float = 50.0
    tube_class: str = "saline"
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    t1_ms: float | None = None
    t2s_ms: tuple[float, ...] | None = None
    fractions: tuple[float, ...] | None = None


@dataclass
class Phantom:
    """Painted layers (shape, tissue), ROIs, and where the B0 bump (frontal sinus) sits."""

    layers: list[tuple[Ellipsoid | Cylinder, Tissue]]
    rois: list[ROI]
    sinus_mm: tuple[float, float, float] | None
    tubes: list[Tube] = field(default_factory=list)

    @property
    def tissues(self) -> list[Tissue]:
        """Distinct tissues in painting order, air first."""
        seen: dict[str, Tissue] = {}
        for _, t in self.layers:
            seen.setdefault(t.name, t)
        return list(seen.values())

    def composition(
        self, grid: Grid, sub: int = 8, smooth_sigma_px: float | None = None
    ) -> dict[str, np.ndarray]:
        """Volume fraction of every tissue in every voxel (painter's algorithm): exact voxel
        averages (``sub^3`` supersampling at boundaries), or with ``smooth_sigma_px`` the
        Gaussian-blurred indicators of :func:`smooth_indicator` (for the simulator's fine grid)."""
        fractions: dict[str, np.ndarray] = {}
        for shape_obj, t in self.layers:
            if smooth_sigma_px is None:
                f = volume_fraction(shape_obj, grid, sub)
            else:
                f = smooth_indicator(shape_obj, grid, smooth_sigma_px)
            if not np.any(np.abs(f) > 1e-6):
                continue
            for frac in fractions.values():
                frac *= 1.0 - f
            fractions.setdefault(t.name, np.zeros(grid.shape, np.float32))
            fractions[t.name] += f
        return fractions

    def tsc_map(self, fractions: dict[str, np.ndarray]) -> np.ndarray:
        by_name = {t.name: t for t in self.tissues}
        return sum(f * by_name[n].tsc_mM for n, f in fractions.items())  # type: ignore[return-value]

    def labels(self, fractions: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """Dominant tissue per voxel (0 = air) and the label names."""
        names = ["air"] + list(fractions)
        stack = np.stack([np.zeros_like(next(iter(fractions.values())))] + list(fractions.values()))
        air = 1.0 - stack[1:].sum(axis=0)
        stack[0] = air
        return np.argmax(stack, axis=0).astype(np.uint8), names


def default_tubes(
    concentrations_mM: list[float], tube_class: str | list[str] = "saline"
) -> list[Tube]:
    """Tubes beside the head (left and right, along z), inside the spherical field of view."""
    classes = [tube_class] * len(concentrations_mM) if isinstance(tube_class, str) else tube_class
    n = len(concentrations_mM)
    rows = (n + 1) // 2
    ys = np.linspace(-35.0, 35.0, rows) if rows > 1 else np.array([0.0])
    tubes = []
    for i, (c, cls) in enumerate(zip(concentrations_mM, classes, strict=True)):
        side = 1.0 if i % 2 == 0 else -1.0
        tubes.append(Tube(float(c), (side * 88.0, float(ys[i // 2]), 0.0), tube_class=cls))
    return tubes


def brain_phantom(
    field_T: float, tubes: list[Tube], head: bool = True, eyes: dict | None = None
) -> Phantom:
    """The digital head with tubes. Tissue layout (LPS mm), painted in this order: scalp,
    skull, subarachnoid CSF, grey matter, white matter, deep grey nuclei, lateral ventricles,
    oedema with a tumour inside (left frontal, superior: flips are detectable), eyes; then the
    calibration tubes (cylinders, along z unless given an axis). ``eyes``: ``centre_mm`` (of the
    left eye, +x; the right one mirrored) and ``radius_mm``, instead of (32, -76, -30) and 12."""
    eyes = eyes or {}
    ex, ey, ez = (float(v) for v in eyes.get("centre_mm", (32.0, -76.0, -30.0)))
    er = float(eyes.get("radius_mm", 12.0))

    def t(name: str) -> Tissue:
        return tissue(name, field_T)

    layers: list[tuple[Ellipsoid | Cylinder, Tissue]] = []
    rois: list[ROI] = []
    if head:
        layers += [
            (Ellipsoid((0, 0, 0), (76, 96, 92)), t("scalp")),
            (Ellipsoid((0, 0, 0), (72, 92, 88)), t("skull")),
            (Ellipsoid((0, 0, 0), (68, 88, 84)), t("csf")),
            (Ellipsoid((0, 0, 0), (65, 85, 80)), t("grey_matter")),
            (Ellipsoid((0, 0, 0), (52, 72, 64)), t("white_matter")),
            (Ellipsoid((11, 6, -2), (9, 13, 9)), t("grey_matter")),
            (Ellipsoid((-11, 6, -2), (9, 13, 9)), t("grey_matter")),
            (Ellipsoid((13, 2, 14), (8, 26, 11)), t("csf")),
            (Ellipsoid((-13, 2, 14), (8, 26, 11)), t("csf")),
            (Ellipsoid((30, -22, 28), (18, 18, 18)), t("edema")),
            (Ellipsoid((30, -22, 28), (11, 11, 11)), t("tumour")),
            (Ellipsoid((ex, ey, ez), (er, er, er)), t("vitreous")),
            (Ellipsoid((-ex, ey, ez), (er, er, er)), t("vitreous")),
        ]
        rois += [
            ROI("white_matter", (-34, 24, 24), 5.0, t("white_matter").tsc_mM),
            ROI("grey_matter", (-11, 6, -2), 4.0, t("grey_matter").tsc_mM),
            ROI("csf", (-13, 2, 14), 3.0, t("csf").tsc_mM),
            ROI("tumour", (30, -22, 28), 5.0, t("tumour").tsc_mM),
            ROI("vitreous", (-ex, ey, ez), er / 2, t("vitreous").tsc_mM),
        ]
    for i, tube in enumerate(tubes):
        medium = tube_tissue(i, tube.tsc_mM, tube.tube_class, field_T)
        if tube.t1_ms is not None or tube.t2s_ms is not None:
            own = medium.relaxation
            medium = replace(
                medium,
                relaxation=Relaxation(
                    tube.t1_ms if tube.t1_ms is not None else own.t1_ms,
                    tuple(tube.t2s_ms) if tube.t2s_ms is not None else own.t2s_ms,
                    tuple(tube.fractions) if tube.fractions is not None else own.fractions,
                ),
            )
        layers.append((Cylinder(tube.centre_mm, tube.radius_mm, tube.length_mm, tube.axis), medium))
        rois.append(ROI(f"tube{i}", tube.centre_mm, max(tube.radius_mm - 4.0, 2.0), tube.tsc_mM))
    return Phantom(layers, rois, (0.0, -70.0, -5.0) if head else None, list(tubes))
