"""Receive profile of any receive coil, measured once on a uniform bottle: a smooth function of
patient position, stored on a coarse grid of cubic B-spline coefficients.

The chain's coil combination leaves the coil's receive profile in the image: with prewhitened
data and Walsh's adaptive weights the combined image is ``rho(r) |s(r)|`` (``s``: the channels'
sensitivities), and a loop array's ``|s|`` beside its loops is several times its value in
mid-brain, where tubes and tissue sit. A bottle of uniform saline filling the coil shows the same
combination's profile alone: ``m(r) = C |s(r)|``. It is fitted in the log domain, so that a
profile spanning a factor of 10 is fitted with the same relative accuracy everywhere:

    log p(r) = sum_k c_k B((x - x_k) / h) B((y - y_k) / h) B((z - z_k) / h)

(``B``: the cubic B-spline, ``h`` = ``spacing_mm``, nodes ``x_k`` on a patient LPS grid), by
penalised least squares over the bottle's voxels (``h``: 12 mm, or 6 mm where that fits the
bottle better, below):

    min_c  sum_i (log m_i - log b_i - log p(r_i))^2 + lambda * N / M * sum (second diff. of c)^2

(``N`` voxels, ``M`` nodes; ``lambda`` = ``smoothness``, chosen by the extension check below
among 0.002, 0.02 and 0.2). ``b`` is the bottle's own blur. Its wall is blurred by the scan's
point spread (band limit, the gridder's window, T2* during the readout): within ~10 mm of it the
image falls below ``C |s|``, and the tube holder sits just there. With the readout's blur model
(``blur``, as :mod:`gadgets.core.calibration.tube_templates` images a tube) the fit reaches to
the wall: the image over the profile fitted so far is drawn 3x finer, the wall is the level set
of it where the sharp bottle, blurred through the readout, matches it on average over the wall
(the half level sits inside a convex wall), with an edge one fine voxel wide; that blurred
bottle gives ``b``, and voxels are fitted with weights rising from 0 at ``b`` = 0.7 to 1 at 0.9
(``min_blurred`` 0.8 -+ 0.1: ``m / b`` holds within 1% down to ``b`` = 0.7 and fails below,
measured with the true profile of a simulated loop-array bottle). Soft edges and weights, and
the fit's voxels thinned on a fixed lattice, make the profile a continuous function of the
image: a change of 1e-4 moves it by <= 0.03% (a hard edge and cut moved it by up to 4%). On
site B's 8-loop array, whose tubes sit 5-10 mm from the bottle's wall, the fit to the wall moved
the tube fit's R^2 from 0.99977 to 0.99996 and the 150 mM tube in the map from +3.5% to +2.5%.
Without it (``b`` = 1), the voxels more than ``erode_voxels`` inside the edge. The penalty
keeps ``p`` smooth inside and extends it past the bottle's wall linearly in ``log p`` (the
penalty's null space). That extension holds for a few millimetres only where the profile bends
sharply (beside a loop), so it is *checked* on every bottle: the fit is repeated without the
outer ``extend_mm`` shell of the fitted voxels, and its error on that shell (RMS, relative) is
stored as ``extension_rms``. The profile is declared valid only within ``extend_mm`` of the
voxels it was fitted to (``valid_at``): a tube outside that region gets no correction and the
calibration is refused (a larger bottle is the fix, never a guess).

The node spacing follows the coil. Beside a loop the profile bends within 10-15 mm, and a tube
holder sits there: on site B's helmet (loops 15 mm outside its bottle's wall) 12 mm nodes
swing 4-7% about the bottle's own image along a tube 11 mm inside the wall (measured without
noise), and the tube read 2.5% high in the map; 6 mm nodes follow the image within 2%. A
birdcage's gentle profile gains nothing from finer nodes, and under noise finer nodes fit the
noise. So the fit is made at 12 mm, then at 6 mm (never below 1.2 voxels), and the finer grid
is kept when its hold-out misfit (fitted to every other voxel, judged on the others) is at most
0.8 of the coarser one's: site B's helmet 1.50 -> 1.03% and 8-loop array 1.06 -> 0.67% take
6 mm, its birdcage 1.74 -> 1.52% keeps 12 mm.

``log p`` is normalised to 0 (``p`` = 1) at its value mean over the bottle, so a file's profile
has no unit: the tubes calibrate its scale.

Coil file (JSON)::

    {"name": ..., "description": ..., "combination": "adaptive", "block": 5,
     "measured_with": {"channels": 8, "labels": [...], "field_T": 7.0},
     "bottle_whitening": {"real": C x C, "imag": C x C} (the bottle scan's prewhitening),
     "spline_profile": {"origin_mm": [x, y, z], "spacing_mm": h, "shape": [nx, ny, nz],
        "log_coefficients": [...  x fastest ...], "valid": "0011..." (per node),
        "extend_mm": ..., "fit_rms": ..., "extension_rms": ..., "measured_from": ...}}

Limits: the coil must sit where it sat for the bottle (head coils are fixed to the table, and
patient coordinates follow the table); a different combination (block size, method) is a
different profile, and is refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import cg
from scipy.spatial import cKDTree

from gadgets.core.receive.coil_identity import CoilIdentity

__all__ = ["SMOOTHNESS", "SPACINGS_MM", "SplineProfile", "fit_spline_profile", "bottle_mask"]

_UPSAMPLING = 3  # the bottle's wall is drawn on a grid this much finer than the image
_BLURRED_RAMP = 0.1  # fit weights rise from 0 to 1 over min_blurred -+ this (``_to_the_wall``)

#: the smoothness values tried (``fit_spline_profile``)
SMOOTHNESS = (0.002, 0.02, 0.2)
#: the node spacings tried, coarse to fine, and how much a finer one must cut the fit's misfit
SPACINGS_MM = (12.0, 6.0)
_REFINE = 0.8

log = logging.getLogger(__name__)


def _bspline_weights(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First node index (floor(u) - 1) and the 4 cubic B-spline weights of each ``u`` (N,)."""
    i = np.floor(u)
    t = u - i
    w = np.stack(
        [
            (1 - t) ** 3 / 6,
            (3 * t**3 - 6 * t**2 + 4) / 6,
            (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
            t**3 / 6,
        ],
        axis=-1,
    )
    return i.astype(np.int64) - 1, w


def _basis(points_mm: np.ndarray, origin_mm: np.ndarray, spacing_mm: float, shape) -> tuple:
    """Per point: the 64 flat node indices and weights of the tensor B-spline (clipped to the
    grid), and whether the point's whole support lies on the grid."""
    u = (np.asarray(points_mm, np.float64).reshape(-1, 3) - origin_mm) / spacing_mm
    idx, wts = zip(*(_bspline_weights(u[:, a]) for a in range(3)), strict=True)
    inside = np.all(
        [(idx[a] >= 0) & (idx[a] + 3 < shape[a]) for a in range(3)],
        axis=0,
    )
    offs = np.arange(4)
    ix = np.clip(idx[0][:, None] + offs, 0, shape[0] - 1)
    iy = np.clip(idx[1][:, None] + offs, 0, shape[1] - 1)
    iz = np.clip(idx[2][:, None] + offs, 0, shape[2] - 1)
    flat = (iz[:, None, None, :] * shape[1] + iy[:, None, :, None]) * shape[0]
    flat = flat + ix[:, :, None, None]
    w = wts[0][:, :, None, None] * wts[1][:, None, :, None] * wts[2][:, None, None, :]
    return flat.reshape(len(u), 64), w.reshape(len(u), 64), inside


def _second_differences(shape: tuple[int, int, int]) -> sparse.csr_matrix:
    """Stacked second differences of a (nx, ny, nz) grid (x fastest): along each axis, and the
    mixed ones (so that the penalty does not prefer the grid's axes)."""

    def d1(n: int) -> sparse.csr_matrix:
        return sparse.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n))

    def d2(n: int) -> sparse.csr_matrix:
        return d1(n - 1) @ d1(n)

    nx, ny, nz = shape
    ex, ey, ez = (sparse.identity(n, format="csr") for n in shape)

    def kron3(zop, yop, xop):
        return sparse.kron(zop, sparse.kron(yop, xop))

    ops = [
        kron3(ez, ey, d2(nx)),
        kron3(ez, d2(ny), ex),
        kron3(d2(nz), ey, ex),
        np.sqrt(2) * kron3(ez, d1(ny), d1(nx)),
        np.sqrt(2) * kron3(d1(nz), ey, d1(nx)),
        np.sqrt(2) * kron3(d1(nz), d1(ny), ex),
    ]
    return sparse.vstack(ops).tocsr()


@dataclass(frozen=True)
class SplineProfile:
    """A coil's receive profile ``p(r)`` (mean 1 over its bottle) on a B-spline grid."""

    name: str
    origin_mm: np.ndarray  # (3,) patient LPS of node (0, 0, 0)
    spacing_mm: float
    log_coefficients: np.ndarray  # (nx, ny, nz)
    valid: np.ndarray  # (nx, ny, nz) bool: nodes within extend_mm of the bottle
    extend_mm: float = 10.0
    fit_rms: float = float("nan")
    extension_rms: float = float("nan")
    measured_from: str = ""
    combination: str = "adaptive"
    block: int = 5
    measured_with: CoilIdentity | None = None
    description: str = field(default="", compare=False)
    #: (C, C) the bottle scan's prewhitening matrix: patients' channels are rewhitened to it
    #: (:func:`gadgets.core.numerics.noise.rewhitening`), so both carry the same profile
    whitening: np.ndarray | None = field(default=None, compare=False)

    @property
    def channels(self) -> int:
        return self.measured_with.channels if self.measured_with else 0

    def __call__(self, points_mm: np.ndarray) -> np.ndarray:
        """``p`` at patient points (..., 3) mm (past the grid: its edge values)."""
        shape = np.shape(points_mm)[:-1]
        flat, w, _ = _basis(points_mm, self.origin_mm, self.spacing_mm, self.valid.shape)
        coef = self.log_coefficients.ravel(order="F")
        return np.exp(np.einsum("nk,nk->n", coef[flat], w)).reshape(shape)

    def valid_at(self, points_mm: np.ndarray) -> np.ndarray:
        """Whether each point (..., 3) lies where the profile was measured (its nearest node
        is within ``extend_mm`` of the bottle)."""
        shape = np.shape(points_mm)[:-1]
        u = (np.asarray(points_mm, np.float64).reshape(-1, 3) - self.origin_mm) / self.spacing_mm
        node = np.rint(u).astype(np.int64)
        on = np.all((node >= 0) & (node < np.array(self.valid.shape)), axis=1)
        out = np.zeros(len(u), bool)
        n = node[on]
        out[on] = self.valid[n[:, 0], n[:, 1], n[:, 2]]
        return out.reshape(shape)

    def to_json(self, path: str | Path) -> None:
        """The coil file (module docstring)."""
        # only the nodes a valid point's spline reaches (2 around each valid node) matter
        needed = ndimage.binary_dilation(self.valid, np.ones((3, 3, 3), bool), iterations=2)
        coef = np.where(needed, self.log_coefficients, 0.0).ravel(order="F")
        desc = {
            "name": self.name,
            "description": self.description,
            "combination": self.combination,
            "block": self.block,
            "measured_with": self.measured_with.to_dict() if self.measured_with else None,
            "spline_profile": {
                "origin_mm": [round(float(v), 3) for v in self.origin_mm],
                "spacing_mm": self.spacing_mm,
                "shape": list(self.valid.shape),
                "extend_mm": self.extend_mm,
                "fit_rms": round(self.fit_rms, 5),
                "extension_rms": round(self.extension_rms, 5),
                "measured_from": self.measured_from,
                "valid": "".join("1" if v else "0" for v in self.valid.ravel(order="F")),
                "log_coefficients": "@coefficients@",  # written on one line, below
            },
        }
        if desc["measured_with"] is None:
            del desc["measured_with"]
        if self.whitening is not None:
            desc["bottle_whitening"] = {
                part: [[float(f"{v:.7g}") for v in row] for row in values]
                for part, values in (("real", self.whitening.real), ("imag", self.whitening.imag))
            }
        values = json.dumps([round(float(c), 4) for c in coef], separators=(",", ":"))
        text = json.dumps(desc, indent=1).replace('"@coefficients@"', values)
        Path(path).write_text(text + "\n")

    @classmethod
    def from_dict(cls, desc: dict, source: str = "") -> SplineProfile:
        try:
            prof = desc["spline_profile"]
            shape = tuple(int(n) for n in prof["shape"])
            coef = np.asarray(prof["log_coefficients"], np.float64)
            valid = np.frombuffer(str(prof["valid"]).encode(), np.uint8) == ord("1")
            origin = np.asarray(prof["origin_mm"], np.float64)
            spacing = float(prof["spacing_mm"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{source}: a spline profile needs origin_mm, spacing_mm, shape, valid and "
                "log_coefficients"
            ) from exc
        count = int(np.prod(shape)) if len(shape) == 3 else -1
        if (
            origin.shape != (3,)
            or coef.shape != (count,)
            or valid.shape != (count,)
            or not np.all(np.isfinite(coef))
            or not spacing > 0
            or min(shape) < 4
        ):
            raise ValueError(
                f"{source}: spline profile of the wrong size (shape {shape}: one coefficient "
                "and one valid flag per node, at least 4 nodes per axis, spacing_mm > 0)"
            )
        measured_with = CoilIdentity.from_dict(desc, source)
        return cls(
            name=str(desc.get("name", Path(source).stem)),
            origin_mm=origin,
            spacing_mm=spacing,
            log_coefficients=coef.reshape(shape, order="F"),
            valid=valid.reshape(shape, order="F"),
            extend_mm=float(prof.get("extend_mm", 0.0)),
            fit_rms=float(prof.get("fit_rms", "nan")),
            extension_rms=float(prof.get("extension_rms", "nan")),
            measured_from=str(prof.get("measured_from", "")),
            combination=str(desc.get("combination", "adaptive")),
            block=int(desc.get("block", 5)),
            measured_with=measured_with,
            description=str(desc.get("description", "")),
            whitening=_whitening_from(desc.get("bottle_whitening"), measured_with, source),
        )


def _whitening_from(
    desc: dict | None, measured_with: CoilIdentity | None, source: str
) -> np.ndarray | None:
    """The coil file's ``bottle_whitening`` ({"real": C x C, "imag": C x C}), checked."""
    if desc is None:
        return None
    try:
        w = np.asarray(desc["real"], np.float64) + 1j * np.asarray(desc["imag"], np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: bottle_whitening needs real and imag, C x C each") from exc
    channels = measured_with.channels if measured_with else w.shape[0]
    if w.shape != (channels, channels) or not np.all(np.isfinite(w)):
        raise ValueError(
            f"{source}: bottle_whitening must be {channels} x {channels} finite values (one row "
            f"and column per channel), got shape {w.shape}"
        )
    return w


def bottle_mask(
    magnitude: np.ndarray,
    voxel_mm: float,
    erode_voxels: int = 2,
    edge_fraction: float = 0.3,
    window_mm: float = 25.0,
) -> np.ndarray:
    """The bottle's interior: voxels above ``edge_fraction`` of the brightest voxel within
    ``window_mm`` (a loop array's bottle image spans a factor of 5-10, so no global threshold
    separates its dim centre from the ringing outside its bright edge), holes filled, eroded
    by ``erode_voxels`` (its blurred, ringing edge), the largest part."""
    mag = np.asarray(magnitude, np.float64)
    size = 2 * int(round(window_mm / voxel_mm / 2)) + 1
    above = (mag > 0.01 * np.percentile(mag, 99)) & (
        mag > edge_fraction * ndimage.maximum_filter(mag, size)
    )
    mask = ndimage.binary_opening(ndimage.binary_fill_holes(above))
    if erode_voxels > 0:  # (scipy erodes to nothing for iterations 0)
        mask = ndimage.binary_erosion(mask, iterations=erode_voxels)
    if not mask.any():
        raise ValueError("no uniform phantom in the image (nothing left inside its edges)")
    return _largest(mask)


def _solve(
    points: np.ndarray,
    values: np.ndarray,
    origin: np.ndarray,
    spacing_mm: float,
    shape: tuple[int, int, int],
    smoothness: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Penalised (``weights``: weighted) least-squares B-spline coefficients (module docstring),
    (nx, ny, nz)."""
    flat, w, _ = _basis(points, origin, spacing_mm, shape)
    m = int(np.prod(shape))
    rows = np.repeat(np.arange(len(points)), 64)
    a = sparse.csr_matrix((w.ravel(), (rows, flat.ravel())), shape=(len(points), m))
    weights = np.ones(len(points)) if weights is None else np.asarray(weights, np.float64)
    d = _second_differences(shape)
    lam = smoothness * float(weights.sum()) / m
    normal = (a.T @ sparse.diags(weights) @ a + lam * (d.T @ d)).tocsr()
    rhs = a.T @ (weights * values)
    diag = normal.diagonal()
    precondition = sparse.diags(1.0 / np.where(diag > 0, diag, 1.0))
    start = np.full(m, float(np.mean(values)))
    coef, info = cg(normal, rhs, x0=start, M=precondition, rtol=1e-8, maxiter=4000)
    if info != 0:
        log.warning("receive-profile fit: conjugate gradients stopped after %d steps", info)
    return coef.reshape(shape, order="F")


@dataclass(frozen=True)
class _Spline:
    """Log-profile coefficients (nx, ny, nz) on their grid, as a function of points (N, 3)."""

    coef: np.ndarray
    origin_mm: np.ndarray
    spacing_mm: float

    def __call__(self, points_mm: np.ndarray) -> np.ndarray:
        flat, w, _ = _basis(points_mm, self.origin_mm, self.spacing_mm, self.coef.shape)
        return np.einsum("nk,nk->n", self.coef.ravel(order="F")[flat], w)


def _nodes(origin: np.ndarray, spacing_mm: float, shape: tuple[int, ...]) -> np.ndarray:
    """The grid's node positions (nx * ny * nz, 3), x slowest."""
    index = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    return index.reshape(-1, 3) * spacing_mm + origin


def _node_grid(
    pts: np.ndarray, margin_mm: float, spacing_mm: float
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Origin (3,) and shape of a node grid covering ``pts`` (N, 3) and ``margin_mm`` more."""
    origin = pts.min(axis=0) - margin_mm
    shape = tuple(int(n) for n in np.ceil((pts.max(axis=0) + margin_mm - origin) / spacing_mm) + 1)
    return origin, shape


def _thinned(mask: np.ndarray, max_points: int) -> np.ndarray:
    """Which of ``mask``'s voxels (in ``points[mask]`` order) a fit of at most about
    ``max_points`` uses: a fixed lattice of voxels, ``(i + j + k) % step == 0``, so that a voxel
    joining or leaving the mask does not shift which of the others are used."""
    step = max(1, int(np.ceil(mask.sum() / max_points)))
    return (np.indices(mask.shape).sum(axis=0)[mask] % step) == 0


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, ``3x^2 - 2x^3`` between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _to_the_wall(
    mag: np.ndarray,
    points: np.ndarray,
    mask: np.ndarray,
    values: np.ndarray,
    blur: Callable[[np.ndarray, int], np.ndarray],
    spacing_mm: float,
    min_blurred: float,
    rounds: int = 2,
    max_points: int = 30_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fit's voxels, log values and weights out to the bottle's wall: ``log(m / b)``, with
    ``b`` the image the sharp bottle makes through this readout (``blur``), weighted from 0 at
    ``b = min_blurred - _BLURRED_RAMP`` to 1 at ``min_blurred + _BLURRED_RAMP``.

    The wall is a level set of the image over the profile fitted so far (extrapolated from the
    interior ``mask``, ``values``; the level: :func:`_matched_bottle`), drawn on a grid
    ``_UPSAMPLING`` times finer with an edge one fine voxel wide: a fixed fraction of the local
    maximum would cut into the bottle where the profile doubles within the window, beside a
    loop, and a hard edge and a hard cut in ``b`` would make the fit jump when noise moves the
    wall by a fine voxel. Repeated ``rounds`` times, each round fitted to the last round's
    values."""
    vox_mm = float(np.linalg.norm(points[0, 0, 1] - points[0, 0, 0]))
    near = ndimage.binary_dilation(bottle_mask(mag, vox_mm, erode_voxels=0), iterations=1)
    weights = np.ones(len(values))
    for _ in range(rounds):
        pts = points[mask]
        use = _thinned(mask, max_points)
        origin, shape = _node_grid(pts, 2.5 * spacing_mm, spacing_mm)
        coef = _solve(pts[use], values[use], origin, spacing_mm, shape, SMOOTHNESS[1], weights[use])
        fitted = _Spline(coef, origin, spacing_mm)
        filled = np.zeros(mag.shape)  # the image over the profile: the blurred bottle, 0..1
        filled[near] = mag[near] / np.exp(fitted(points[near]))
        blurred = _matched_bottle(filled, blur)
        low = min_blurred - _BLURRED_RAMP
        mask = _largest(ndimage.binary_fill_holes(filled > 0.5)) & (blurred > low)
        values = np.log(np.maximum(mag[mask], 1e-12 * mag.max()) / blurred[mask])
        weights = _smoothstep((blurred[mask] - low) / (2 * _BLURRED_RAMP))
    return mask, values, weights


def _soft_wall(fine: np.ndarray, slope: float, level: float) -> np.ndarray:
    """The sharp bottle on the fine grid of ``fine`` (the image over its profile drawn
    ``_UPSAMPLING`` times finer, ~1 inside, ~0 outside): 1 inside the ``level`` set, 0 outside,
    and across it a ramp one fine voxel wide (``slope``: the image's slope at the wall per fine
    voxel), so that the wall moves continuously with the image."""
    core = _largest(ndimage.binary_fill_holes(fine > level))
    ramp = np.clip((fine - level) / max(slope, 1e-3) + 0.5, 0.0, 1.0)
    inside = ndimage.binary_erosion(core, iterations=2)
    return np.where(inside, 1.0, ramp * ndimage.binary_dilation(core, iterations=2))


def _matched_bottle(
    filled: np.ndarray, blur: Callable[[np.ndarray, int], np.ndarray], steps: int = 4
) -> np.ndarray:
    """The sharp bottle blurred through the readout, ``b``, its wall at the level of ``filled``
    where ``b`` matches ``filled`` on average over the wall's voxels (``0.3 < filled < 0.95``),
    found in ``steps`` secant steps from 0.5 and 0.45. Not simply the half level: a convex
    wall's point spread lies less than half inside it, so the half level sits inside the wall
    (``b`` 1-2% low there on a 100 mm cylinder, a 5 mm voxel, and the profile 5 mm inside the
    wall 1.2% off; matched, 0.3%)."""
    fine = ndimage.zoom(filled, _UPSAMPLING, order=1, grid_mode=True, mode="nearest")
    at_wall = (filled > 0.3) & (filled < 0.7)
    slope = 1.0  # per voxel, a wall without voxels between 0.3 and 0.7 is that steep at least
    if at_wall.any():
        slope = float(np.median(np.linalg.norm(np.gradient(filled), axis=0)[at_wall]))
    slope /= _UPSAMPLING
    wall = (filled > 0.3) & (filled < 0.95)
    if not wall.any():
        return blur(_soft_wall(fine, slope, 0.5), _UPSAMPLING)

    def mismatch(level: float) -> tuple[float, np.ndarray]:
        b = blur(_soft_wall(fine, slope, level), _UPSAMPLING)
        return float(np.mean(filled[wall] - b[wall])), b

    levels = [0.5, 0.45]
    tried = [mismatch(level) for level in levels]
    for _ in range(steps - 2):
        (g0, _), (g1, _) = tried[-2:]
        if g1 == g0:
            break
        levels.append(
            float(np.clip(levels[-1] - g1 * (levels[-1] - levels[-2]) / (g1 - g0), 0.3, 0.7))
        )
        tried.append(mismatch(levels[-1]))
    return min(tried, key=lambda gb: abs(gb[0]))[1]


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of ``mask``."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    return labels == 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, count + 1))))


def fit_spline_profile(
    magnitude: np.ndarray,
    points_mm: np.ndarray,
    name: str,
    spacing_mm: float | Sequence[float] = SPACINGS_MM,
    extend_mm: float = 10.0,
    smoothness: float | Sequence[float] = SMOOTHNESS,
    erode_voxels: int = 2,
    max_points: int = 60_000,
    measured_from: str = "",
    measured_with: CoilIdentity | None = None,
    combination: str = "adaptive",
    block: int = 5,
    description: str = "",
    blur: Callable[[np.ndarray, int], np.ndarray] | None = None,
    min_blurred: float = 0.8,
    whitening: np.ndarray | None = None,
) -> SplineProfile:
    """Fit :class:`SplineProfile` to the combined image ``magnitude`` (nz, ny, nx) of a uniform
    bottle at patient points ``points_mm`` (nz, ny, nx, 3), and check its extension past the
    bottle's edge (module docstring). At most ``max_points`` voxels are used (evenly thinned).
    ``spacing_mm``: one node spacing, or several, of which the finest that each step cut the
    hold-out misfit to ``_REFINE`` of the coarser one's is used (module docstring), none below
    1.2 voxels. ``smoothness``: one value, or several, of which the one whose extension check
    errs least is used (cross-validation on the bottle's outer shell: a volume coil's gentle
    profile extends best with much smoothing, a loop array's steep one with little).
    ``blur(volume, f)``: the image an object drawn ``f`` times finer makes through this scan's
    readout (:func:`~gadgets.core.calibration.tube_templates.readout_blur`), for the fit to the
    wall (module docstring); None: only the voxels ``erode_voxels`` inside the edge.
    ``whitening``: the bottle scan's prewhitening matrix, kept in the coil file for the
    patients' scans."""
    mag = np.asarray(magnitude, np.float64)
    voxel_mm = float(np.linalg.norm(points_mm[0, 0, 1] - points_mm[0, 0, 0]))
    points = np.asarray(points_mm, np.float64)
    spacings = [float(spacing_mm)] if np.isscalar(spacing_mm) else [float(v) for v in spacing_mm]
    spacings = sorted(set(spacings), reverse=True)
    spacings = spacings[:1] + [v for v in spacings[1:] if v >= 1.2 * voxel_mm]
    interior = bottle_mask(mag, voxel_mm, erode_voxels=erode_voxels)
    best, tried = None, []
    compare = len(spacings) > 1  # the hold-out check is only for choosing between grids
    for spacing in spacings:
        mask = interior
        values = np.log(np.maximum(mag[mask], 1e-12 * mag.max()))
        weights = np.ones(len(values))
        if mask.sum() >= 2000 and blur is not None:  # the wall is found through this grid's fit
            mask, values, weights = _to_the_wall(
                mag, points, mask, values, blur, spacing, min_blurred
            )
        if mask.sum() < 2000:
            raise ValueError(
                f"bottle too small for a receive profile ({mask.sum()} voxels inside it)"
            )
        grid = _fit_on_grid(
            points, mask, values, weights, spacing, extend_mm, smoothness, max_points, name, compare
        )
        tried.append(f"{spacing:g} mm: {100 * grid.holdout_rms:.2f}%")
        if best is not None and grid.holdout_rms > _REFINE * best.holdout_rms:
            break
        best = grid
    if len(tried) > 1:
        log.info(
            "receive profile %s: nodes %g mm apart (hold-out RMS by spacing %s)",
            name,
            best.spacing_mm,
            ", ".join(tried),
        )
    return SplineProfile(
        name=name,
        origin_mm=best.origin_mm,
        spacing_mm=best.spacing_mm,
        log_coefficients=best.log_coefficients,
        valid=best.valid,
        extend_mm=extend_mm,
        fit_rms=best.fit_rms,
        extension_rms=best.extension_rms,
        measured_from=measured_from,
        combination=combination,
        block=block,
        measured_with=measured_with,
        description=description,
        whitening=None if whitening is None else np.asarray(whitening, np.complex128),
    )


@dataclass
class _Grid:
    """One node grid's fit (:func:`_fit_on_grid`)."""

    origin_mm: np.ndarray
    spacing_mm: float
    log_coefficients: np.ndarray
    valid: np.ndarray
    fit_rms: float
    extension_rms: float
    holdout_rms: float


def _fit_on_grid(
    points: np.ndarray,
    mask: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    spacing_mm: float,
    extend_mm: float,
    smoothness: float | Sequence[float],
    max_points: int,
    name: str,
    holdout: bool = True,
) -> _Grid:
    """The fit on nodes ``spacing_mm`` apart of the log values ``values`` (weighted) at the
    voxels ``mask``: the smoothness chosen by the extension check, the level normalised, the
    nodes within ``extend_mm`` of the voxels marked valid, and (``holdout``) its hold-out
    misfit (NaN without)."""
    voxel_mm = float(np.linalg.norm(points[0, 0, 1] - points[0, 0, 0]))
    pts = points[mask]
    origin, shape = _node_grid(pts, extend_mm + 2.5 * spacing_mm, spacing_mm)
    use = _thinned(mask, max_points)

    # the extension check: fitted without the outer shell, judged on it
    shell_voxels = max(1, int(round(extend_mm / voxel_mm)))
    inner = ndimage.binary_erosion(mask, iterations=shell_voxels)[mask]
    choices = [float(smoothness)] if np.isscalar(smoothness) else [float(v) for v in smoothness]
    checks = {}
    if inner.sum() > 1000 and (~inner).sum() > 100:
        flat, w, _ = _basis(pts[~inner], origin, spacing_mm, shape)
        for value in choices:
            fit_in = inner & use
            c_in = _solve(
                pts[fit_in], values[fit_in], origin, spacing_mm, shape, value, weights[fit_in]
            )
            pred = np.einsum("nk,nk->n", c_in.ravel(order="F")[flat], w)
            misfit = (np.exp(pred - values[~inner]) - 1.0) ** 2
            checks[value] = float(np.sqrt(np.average(misfit, weights=weights[~inner])))
        smoothness = min(checks, key=checks.get)
        log.info(
            "receive profile %s, %.0f mm nodes: extension check RMS by smoothness %s",
            name,
            spacing_mm,
            ", ".join(f"{k:g}: {100 * v:.2f}%" for k, v in checks.items()),
        )
    else:
        smoothness = choices[0]
    ext_rms = checks.get(smoothness, float("nan"))

    # the hold-out check: fitted to every other voxel, judged on the rest (noise it fits is not
    # in the others, so a grid fine enough to fit the noise errs more there, not less)
    holdout_rms = float("nan")
    if holdout:
        even = (np.indices(mask.shape).sum(axis=0)[mask] % 2) == 0
        half = use & even
        c_even = _solve(
            pts[half], values[half], origin, spacing_mm, shape, smoothness, weights[half]
        )
        predicted = _Spline(c_even, origin, spacing_mm)(pts[~even])
        misfit = (np.exp(predicted - values[~even]) - 1.0) ** 2
        holdout_rms = float(np.sqrt(np.average(misfit, weights=weights[~even])))

    coef = _solve(pts[use], values[use], origin, spacing_mm, shape, smoothness, weights[use])
    fitted = _Spline(coef, origin, spacing_mm)(pts)
    level = float(np.mean(fitted))
    coef -= level
    fit_rms = float(np.sqrt(np.average((np.exp(fitted - values) - 1.0) ** 2, weights=weights)))

    nodes = _nodes(origin, spacing_mm, shape)
    dist, _ = cKDTree(pts[:: max(1, len(pts) // 200_000)]).query(nodes)
    valid = (dist <= extend_mm).reshape(shape)
    log.info(
        "receive profile %s: %s nodes of %.0f mm, fit RMS %.2f%%, extension check over "
        "%.0f mm: RMS %.2f%%",
        name,
        "x".join(map(str, shape)),
        spacing_mm,
        100 * fit_rms,
        extend_mm,
        100 * ext_rms,
    )
    return _Grid(origin, spacing_mm, coef, valid, fit_rms, ext_rms, holdout_rms)
