"""Measuring a tube: the amplitude of its template (:mod:`.tube_templates`) that fits the image.

The amplitude ``sum T |x| / sum T^2`` over the tube's central part is the signal of that
concentration as a large region would show it: the same scale as brain. The tube's ends are
measured first (:func:`axial_extent`: half height of its axial profile), then the centre is
refined across the axis (the detected centroid leans away from the head) and the off-resonance
(its phase twist during the readout blurs the tube too); the radius is the nominal one, or
(``radius_mm = 0``) fitted. Candidates are screened with one template each first
(:func:`screen_tubes`).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from gadgets.core.calibration.tube import Tube, tube_box
from gadgets.core.calibration.tube_templates import TubeTemplates
from gadgets.core.numerics.geometry import volume_coordinates_mm

__all__ = ["axial_extent", "measure_tube", "screen_tubes", "signal_variance"]

_NOMINAL_MM = 10.0  # where a free radius starts (the reach of the fitted region scales with it)


class _TubeFit:
    """The template fit of one tube: ``(residual, amplitude, moved tube)`` for parameters ``p``
    = (shift along e1 mm, shift along e2 mm, off-resonance / 10 Hz[, radius mm]) over the middle
    of the tube, 3 voxels inside its measured ends (the template is infinite along the axis:
    the blurred ends must not enter the fit)."""

    def __init__(self, magnitude, voxel_mm, tube: Tube, head, kfilter, radius_mm: float) -> None:
        self.vox = vox = float(np.mean(voxel_mm))
        self.guess = radius_mm if radius_mm > 0 else 10.0
        half = max(tube.length_mm / 2 - 3 * vox, vox)
        reach = self.guess * 1.5 + 2 * vox
        # only the box around the tube is looked at: it holds every voxel of the region
        box = tube_box(magnitude.shape, voxel_mm, tube.centre_mm, half * np.abs(tube.axis) + reach)
        coords = volume_coordinates_mm(magnitude.shape, voxel_mm, box)
        rel = np.moveaxis(coords, 0, -1) - tube.centre_mm
        along = rel @ tube.axis
        perp = np.linalg.norm(rel - along[..., None] * tube.axis, axis=-1)
        self.region = np.zeros(magnitude.shape, bool)
        self.region[box] = (np.abs(along) <= half) & (perp <= reach) & ~head[box]
        self.y = magnitude[self.region].astype(np.float64)
        e1 = np.cross(tube.axis, [1.0, 0.0, 0.0] if abs(tube.axis[0]) < 0.9 else [0.0, 1.0, 0.0])
        self.e1 = e1 / np.linalg.norm(e1)
        self.e2 = np.cross(tube.axis, self.e1)
        self.tube, self.long = tube, tube.length_mm + 4 * vox
        self.shape, self.voxel_mm, self.kfilter = magnitude.shape, voxel_mm, kfilter
        self.start = [0.0, 0.0, 0.0] if radius_mm > 0 else [0.0, 0.0, 0.0, self.guess]
        self.fixed = None
        if radius_mm > 0:
            base = Tube(tube.centre_mm, tube.axis, self.long)
            self.fixed = TubeTemplates(
                self.shape, voxel_mm, base, radius_mm, kfilter, self.region, infinite=True
            )

    def template(self, p: np.ndarray) -> tuple[np.ndarray, Tube]:
        """The unit-amplitude template over the region for parameters ``p``, and the tube."""
        shift = p[0] * self.e1 + p[1] * self.e2
        moved = Tube(self.tube.centre_mm + shift, self.tube.axis, self.long)
        if self.fixed is not None:
            return self.fixed(shift, p[2] * 10.0), moved
        r = float(np.clip(p[3], 1.0, 3.0 * self.guess))
        t = TubeTemplates(
            self.shape, self.voxel_mm, moved, r, self.kfilter, self.region, infinite=True
        )(np.zeros(3), p[2] * 10.0)
        return t, moved

    def __call__(self, p: np.ndarray) -> tuple[float, float, Tube]:
        t, moved = self.template(p)
        amp = float(np.dot(t, self.y) / max(np.dot(t, t), 1e-30))
        return float(np.sum((self.y - amp * t) ** 2)), amp, moved

    def misfit(self) -> float:
        """Relative misfit of the unmoved template, ``residual / amplitude^2`` (voxels)."""
        res, amp, _ = self(np.asarray(self.start))
        return res / max(amp, 1e-30) ** 2 if amp > 0 else float("inf")


def screen_tubes(
    magnitude: np.ndarray,
    voxel_mm: np.ndarray,
    tubes: list[Tube],
    head: np.ndarray,
    kfilter: tuple[np.ndarray, ...] | None,
    radius_mm: float,
    keep: int,
    spare: int = 2,
) -> list[Tube]:
    """The candidates most like a tube, in their order: the ``keep`` of least relative misfit of
    the unmoved template (one 2D template each, along the volume axis nearest to the
    candidate's, so that only these pay for a full :func:`measure_tube`), and up to ``spare``
    more whose misfit is within twice the worst of those (a blob that may have outranked a
    tube; blobs measured here misfit 3-10x more than tubes)."""
    if len(tubes) <= keep:
        return tubes

    def along_nearest_axis(t: Tube) -> Tube:  # for ranking: the fast 2D template of any tube
        axis = np.eye(3)[int(np.argmax(np.abs(t.axis)))]
        return Tube(t.centre_mm, axis, t.length_mm)

    misfit = [
        _TubeFit(magnitude, voxel_mm, along_nearest_axis(t), head, kfilter, radius_mm).misfit()
        for t in tubes
    ]
    order = np.argsort(misfit, kind="stable")
    limit = 2.0 * misfit[order[keep - 1]]
    best = set(order[:keep].tolist())
    best |= {int(i) for i in order[keep : keep + spare] if misfit[i] <= limit}
    return [t for i, t in enumerate(tubes) if i in best]


def measure_tube(
    magnitude: np.ndarray,
    voxel_mm: np.ndarray,
    tube: Tube,
    head: np.ndarray,
    kfilter: tuple[np.ndarray, np.ndarray] | None,
    radius_mm: float,
) -> Tube:
    """Fit the tube's template amplitude (see the module docstring), refining its centre across
    the axis (the detected centroid leans away from the head) and, with ``radius_mm = 0``, its
    radius: Nelder-Mead on the residual, the amplitude solved in closed form at each step.

    A free radius is fitted in three steps, not as a fourth simplex parameter: every new radius
    costs a new template spectrum (~5 ms), a shift or an off-resonance only a phase ramp, so the
    centre and off-resonance are fitted at the nominal radius, then the radius alone (bounded
    Brent, ~15 spectra), then the centre and off-resonance again at that radius (0.45 -> 0.1 s
    for four tubes)."""
    tube.centre_mm, tube.length_mm = axial_extent(magnitude, voxel_mm, tube, radius_mm)
    if radius_mm > 0:
        fit = _TubeFit(magnitude, voxel_mm, tube, head, kfilter, radius_mm)
        x = _simplex_fit(fit, fit.start)
        radius = radius_mm
    else:
        nominal = _TubeFit(magnitude, voxel_mm, tube, head, kfilter, _NOMINAL_MM)
        x = _simplex_fit(nominal, nominal.start)
        shift = x[0] * nominal.e1 + x[1] * nominal.e2
        moved = Tube(tube.centre_mm + shift, tube.axis, nominal.long)

        def misfit(r: float) -> float:
            t = TubeTemplates(
                nominal.shape, voxel_mm, moved, r, kfilter, nominal.region, infinite=True
            )(np.zeros(3), x[2] * 10.0)
            amp = float(np.dot(t, nominal.y) / max(np.dot(t, t), 1e-30))
            return float(np.sum((nominal.y - amp * t) ** 2))

        best = optimize.minimize_scalar(
            misfit, bounds=(1.0, 3.0 * _NOMINAL_MM), method="bounded", options={"xatol": 0.05}
        )
        radius = float(best.x)
        fit = _TubeFit(magnitude, voxel_mm, tube, head, kfilter, radius)
        x = _simplex_fit(fit, [x[0], x[1], x[2]], step=fit.vox / 6)  # from near the optimum
    res, amp, moved = fit(x)
    tube.centre_mm = moved.centre_mm
    tube.radius_mm = radius
    tube.offset_hz = float(x[2] * 10.0)
    tube.signal, tube.residual = amp, res
    return tube


def axial_extent(
    magnitude: np.ndarray, voxel_mm: np.ndarray, tube: Tube, radius_mm: float
) -> tuple[np.ndarray, float]:
    """The tube's centre (volume mm) and length (mm) from its ends: where the mean magnitude of
    its core (within 0.6 radii of the axis), in slabs half a voxel thick along the axis, falls to
    half of its level in the middle. Blur is symmetric about an edge, so half height sits on the
    end whatever the blur; the detected extent (mask) is longer by the blur and leans towards
    whatever blurs into it (measured: 80 mm for a 60 mm tube, the centre 2.6 mm off, so that the
    region the infinite template is fitted over reached into one blurred end: a signal 1-9% low,
    varying with the noise). An end not found within 4 voxels past the detected one stays
    there."""
    vox = float(np.mean(voxel_mm))
    core = 0.6 * (radius_mm if radius_mm > 0 else _NOMINAL_MM)
    reach = tube.length_mm / 2 + 4 * vox
    box = tube_box(magnitude.shape, voxel_mm, tube.centre_mm, reach * np.abs(tube.axis) + core)
    rel = np.moveaxis(volume_coordinates_mm(magnitude.shape, voxel_mm, box), 0, -1)
    rel = rel - tube.centre_mm
    along = rel @ tube.axis
    inside = (np.linalg.norm(rel - along[..., None] * tube.axis, axis=-1) <= core) & (
        np.abs(along) <= reach
    )
    # slabs half a voxel thick, the empty ones dropped: a tube along a volume axis has its
    # voxels' planes one voxel apart, wherever they fall
    slab = np.floor(along[inside] / (0.5 * vox)).astype(int)
    slab -= slab.min()
    counts = np.bincount(slab)
    filled = counts > 0
    positions = (np.bincount(slab, weights=along[inside]) / np.maximum(counts, 1))[filled]
    values = np.abs(magnitude[box][inside]).astype(np.float64)
    profile = (np.bincount(slab, weights=values) / np.maximum(counts, 1))[filled]
    middle = np.abs(positions) <= max(tube.length_mm / 4, vox)
    if not middle.any():
        return tube.centre_mm, tube.length_mm
    half = 0.5 * float(np.median(profile[middle]))
    ends = []
    for step in (-1, 1):
        end = step * tube.length_mm / 2
        i = int(np.argmin(np.abs(positions)))
        while 0 <= i + step < len(profile) and profile[i + step] >= half:
            i += step
        j = i + step
        if 0 <= j < len(profile) and profile[i] > profile[j]:
            frac = (profile[i] - half) / (profile[i] - profile[j])
            end = positions[i] + frac * (positions[j] - positions[i])
        ends.append(end)
    length = float(ends[1] - ends[0])
    if length < 2 * vox:
        return tube.centre_mm, tube.length_mm  # no plateau to measure the ends from
    return tube.centre_mm + 0.5 * (ends[0] + ends[1]) * tube.axis, length


def signal_variance(
    magnitude: np.ndarray,
    voxel_mm: np.ndarray,
    tube: Tube,
    head: np.ndarray,
    kfilter: tuple[np.ndarray, np.ndarray] | None,
    voxel_var: np.ndarray,
    radius_fitted: bool = True,
) -> float:
    """Noise variance of a measured tube's signal (its template amplitude) for independent voxel
    noise of variance ``voxel_var`` (the volume's shape): the least-squares covariance
    ``(J^T J)^-1 J^T diag(var) J (J^T J)^-1`` of the amplitude, centre, off-resonance and (when
    fitted) radius at the fit, ``J`` by central differences. The geometry the fit also takes from
    the noise is what makes it several times the amplitude's alone (measured: 3-5x in SD)."""
    fit = _TubeFit(
        magnitude, voxel_mm, tube, head, kfilter, 0.0 if radius_fitted else tube.radius_mm
    )
    p0 = np.array([0.0, 0.0, tube.offset_hz / 10.0] + ([tube.radius_mm] if radius_fitted else []))
    t0, _ = fit.template(p0)
    steps = [0.1 * fit.vox, 0.1 * fit.vox, 0.5] + ([0.1 * fit.vox] if radius_fitted else [])
    columns = [t0]
    for i, h in enumerate(steps):
        dp = np.zeros_like(p0)
        dp[i] = h
        columns.append(
            tube.signal * (fit.template(p0 + dp)[0] - fit.template(p0 - dp)[0]) / (2 * h)
        )
    jac = np.stack(columns, axis=1)
    inv = np.linalg.pinv(jac.T @ jac)
    var = np.asarray(voxel_var, np.float64)[fit.region]
    cov = inv @ (jac.T * var) @ jac @ inv
    return float(cov[0, 0])


def _simplex_fit(fit: _TubeFit, start: list[float], step: float | None = None) -> np.ndarray:
    """Nelder-Mead on the fit's residual; offset in units of 10 Hz, so the simplex steps are
    alike; the first simplex ``step`` (mm, default half a voxel); stop at 1e-6 of the signal
    power."""
    best = optimize.minimize(
        lambda p: fit(p)[0],
        start,
        method="Nelder-Mead",
        options={
            "initial_simplex": _simplex(start, fit.vox / 2 if step is None else step),
            "xatol": 0.05,
            "fatol": 1e-6 * float(np.dot(fit.y, fit.y)),
            "maxiter": 200,
        },
    )
    return best.x


def _simplex(start: list[float], step: float) -> np.ndarray:
    pts = [np.asarray(start, np.float64)]
    for i in range(len(start)):
        p = np.array(start, np.float64)
        p[i] += step
        pts.append(p)
    return np.array(pts)
