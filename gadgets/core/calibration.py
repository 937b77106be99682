"""Phantom calibration: find the reference tubes, measure each, fit ``S = a C + b``, and turn
signal into tissue sodium concentration ``TSC = (S - b) / a`` (mM).

Finding the tubes (no positions needed). The object mask (``> threshold_fraction`` of the 99.5th
percentile of the smoothed magnitude) is opened with a ball wider than a tube with its blur halo
(radius ``max(r + 1.5 voxels, 25 mm)``): the head survives, the tubes and the bridges that blur
draws between them and the scalp do not. The
head is the largest opened component; tubes are the components of ``mask - dilated head``
holding at least a third of a nominal tube's cross-section per axial voxel, and their axis is
the principal axis of their voxels (snapped to a volume axis within 8 degrees). With
``positions_mm`` given, each position takes the nearest candidate (within 15 mm), or itself
with the slice direction as axis.

Measuring a tube without T2* bias. A small tube in air loses signal at its centre during a long
readout: its short-T2* component blurs outward, and with nothing around it nothing blurs back;
a ROI mean of the centre reads 5-15% low at 7T with agarose, while brain surrounded by signal
does not. So each tube is fitted with a template: the image of a uniform cylinder of the tube's
radius, centre and axis, made by the acquisition itself -- its analytic Fourier transform
(``2 pi r^2 L jinc sinc``), times the k-space weighting of relaxation during the readout,
``H(|k|) = decay(TE + t(|k|)) / decay(TE)`` (from the readout's ``|k|(t)``; times the
reconstruction's apodisation window, :mod:`gadgets.core.apodization`), cut at ``k_max``,
back on the image grid by FFT. The amplitude ``sum T |x| / sum T^2`` over the tube's central part
is the signal of that concentration as a large region would show it: the same scale as brain.
Without the readout timing the template has no blur (``H = 1``) and a warning says so.
The map itself can have the blur undone inside each tube (:func:`undo_tube_blur`). Tubes along a
volume axis are fitted with the 2D template of an infinitely long cylinder (fast); candidates
are screened with one template each first (:func:`screen_tubes`).
The radius is the nominal one, or (``radius_mm = 0``) fitted: the template radius with the least
residual, 0.5 mm steps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage, optimize
from scipy.special import j1

log = logging.getLogger(__name__)


@dataclass
class Tube:
    """A tube found in the image: centre and unit axis in volume mm (read, phase, slice from the
    volume centre), length estimate, and (after :func:`measure_tube`) radius and signal."""

    centre_mm: np.ndarray
    axis: np.ndarray
    length_mm: float
    radius_mm: float = 0.0
    signal: float = float("nan")
    residual: float = float("nan")
    voxels: int = 0
    offset_hz: float = 0.0


@dataclass
class Calibration:
    """``S = slope C + intercept`` fitted on tubes of known concentration."""

    slope: float
    intercept: float
    r2: float
    concentrations_mM: list[float]
    signals: list[float]
    tubes: list[Tube] = field(default_factory=list)

    @property
    def residuals_mM(self) -> list[float]:
        return [
            (s - self.intercept) / self.slope - c
            for s, c in zip(self.signals, self.concentrations_mM, strict=True)
        ]

    def tsc_mM(self, signal: np.ndarray) -> np.ndarray:
        return ((signal - self.intercept) / self.slope).astype(np.float32)

    def summary(self) -> str:
        per = ", ".join(
            f"{c:g} mM: {r:+.2f}"
            for c, r in zip(self.concentrations_mM, self.residuals_mM, strict=True)
        )
        return (
            f"S = {self.slope:.5g} C + {self.intercept:.4g}, R2 = {self.r2:.5f}, "
            f"{len(self.signals)} tubes, residuals [mM] {per}"
        )


def volume_coordinates_mm(
    shape: tuple[int, int, int], voxel_mm: np.ndarray, box: tuple[slice, ...] | None = None
) -> np.ndarray:
    """``(3, nz, ny, nx)``: (read, phase, slice) mm of each voxel from the volume centre
    (voxel ``n // 2``), the convention of :mod:`gadgets.core.dicom`; only the voxels of
    ``box`` (array slices (z, y, x) with explicit bounds) when given."""
    box = box or tuple(slice(0, n) for n in shape)
    axes = [(np.arange(b.start, b.stop) - n // 2) * d
            for b, n, d in zip(box, shape, voxel_mm[::-1], strict=True)]  # fmt: skip
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return np.stack([x, y, z])


def find_tubes(
    magnitude: np.ndarray,
    voxel_mm: np.ndarray,
    radius_mm: float = 10.0,
    threshold_fraction: float = 0.12,
    positions_mm: list[np.ndarray] | None = None,
) -> tuple[list[Tube], np.ndarray]:
    """Tubes (see the module docstring) and the head mask. ``voxel_mm`` is (x, y, z)."""
    smooth = ndimage.gaussian_filter(magnitude, 1.0)
    mask = smooth > threshold_fraction * np.percentile(smooth, 99.5)
    mask = ndimage.binary_fill_holes(mask)
    vox = float(np.mean(voxel_mm))
    # a ball wider than a tube with its blur halo, narrower than a head
    ball_r = int(np.ceil(max(radius_mm + 1.5 * vox, 25.0) / vox))
    opened = _open_with_ball(mask, ball_r)
    labels, count = ndimage.label(opened)
    if count:
        sizes = ndimage.sum(opened, labels, range(1, count + 1))
        head = labels == 1 + int(np.argmax(sizes))
        head = ndimage.binary_dilation(head, iterations=1)
    else:
        head = np.zeros_like(mask)
    coords = volume_coordinates_mm(magnitude.shape, voxel_mm)
    rest, count = ndimage.label(mask & ~head)
    min_voxels = 0.33 * np.pi * radius_mm**2 / vox**2 * 2  # two axial voxels' worth
    candidates: list[Tube] = []
    for lab in range(1, count + 1):
        sel = rest == lab
        n = int(sel.sum())
        if n < min_voxels:
            continue
        pts = coords[:, sel].T
        w = smooth[sel]
        centre = np.average(pts, axis=0, weights=w)
        _, _, vt = np.linalg.svd((pts - centre) * np.sqrt(w)[:, None], full_matrices=False)
        axis = vt[0] / np.linalg.norm(vt[0])
        nearest = int(np.argmax(np.abs(axis)))
        if abs(axis[nearest]) > np.cos(np.deg2rad(8.0)):  # tubes lie along an axis: snap
            axis = np.eye(3)[nearest]
        along = (pts - centre) @ axis
        length = float(along.max() - along.min() + vox)
        if length < 2 * radius_mm and n < np.pi * radius_mm**2 * 2 * radius_mm / vox**3:
            continue  # too short for a tube: a blob (an ear, a fold of the scalp)
        candidates.append(Tube(centre, axis, length, voxels=n))
    if positions_mm is None:
        return candidates, head
    tubes = []
    for p in positions_mm:
        p = np.asarray(p, np.float64)
        near = [c for c in candidates if np.linalg.norm(c.centre_mm - p) < 15.0]
        if near:
            tubes.append(min(near, key=lambda c: np.linalg.norm(c.centre_mm - p)))
        else:
            tubes.append(Tube(p, np.array([0.0, 0.0, 1.0]), 4 * radius_mm))
    return tubes, head


def _open_with_ball(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening with the ball ``|offset|^2 <= radius^2`` (voxels), outside the volume
    empty: erosion and dilation as squared distance transforms, exact, 10x faster than
    :func:`scipy.ndimage.binary_opening` with a ball this size."""
    pad = radius + 1
    padded = np.pad(mask, pad)
    eroded = ndimage.distance_transform_edt(padded) ** 2 > radius**2 + 0.5
    opened = ndimage.distance_transform_edt(~eroded) ** 2 <= radius**2 + 0.5
    return opened[pad:-pad, pad:-pad, pad:-pad]


def cylinder_kspace(
    k_cpmm: np.ndarray, centre_mm: np.ndarray, axis: np.ndarray, radius_mm: float, length_mm: float
) -> np.ndarray:
    """Fourier transform ``int exp(-2 pi i k.u) du`` of a uniform cylinder at ``k`` (..., 3)."""
    k_par = k_cpmm @ axis
    k_perp = np.sqrt(np.maximum(np.sum(k_cpmm**2, axis=-1) - k_par**2, 0.0))
    arg = 2 * np.pi * radius_mm * k_perp
    safe = np.where(arg > 1e-9, arg, 1.0)
    jinc = np.where(arg > 1e-9, 2 * j1(safe) / safe, 1.0)
    area = np.pi * radius_mm**2
    return (
        area
        * length_mm
        * jinc
        * np.sinc(length_mm * k_par)
        * np.exp(-2j * np.pi * (k_cpmm @ centre_mm))
    )


def readout_filter(
    k_radius_cpp: np.ndarray,
    times_s: np.ndarray,
    decay,
    te_s: float,
    window: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(|k|, H, t)`` of a centre-out readout: relaxation weighting ``decay(TE + t) / decay(TE)``
    (times the reconstruction's apodisation ``window`` per sample, when it has one) and readout
    time against ``|k|`` in cycles per pixel (sorted, for ``np.interp``)."""
    order = np.argsort(k_radius_cpp)
    t = np.asarray(times_s, np.float64)[order]
    h = np.asarray(decay(te_s + t)) / float(decay(te_s))
    if window is not None:
        h = h * np.asarray(window, np.float64)[order]
    return np.asarray(k_radius_cpp)[order], h, t


def template_image(
    shape: tuple[int, int, int],
    voxel_mm: np.ndarray,
    tube: Tube,
    radius_mm: float,
    kfilter: tuple[np.ndarray, ...] | None,
    offset_hz: float = 0.0,
) -> np.ndarray:
    """The reconstructed magnitude image of a unit-concentration cylinder, ``(nz, ny, nx)``,
    ``offset_hz`` off resonance (its phase twist during the readout blurs it too)."""
    whole = np.ones(shape, bool)
    image = _Templates(shape, voxel_mm, tube, radius_mm, kfilter, whole)(np.zeros(3), offset_hz)
    return image.reshape(shape)


class _Templates:
    """Template images of one tube for many centre shifts and off-resonances, fast: the
    cylinder's spectrum and ``H(|k|)`` are computed once; a shift is a separable phase ramp, an
    off-resonance ``exp(-2 pi i f t(|k|))``; only the voxels of ``region`` are read after the
    FFT (in the order of ``image[region]``, sample ``n // 2`` at the volume centre).

    ``infinite``: for a tube along a volume axis, the tube's middle is that of an infinitely long
    cylinder, whose spectrum lives on the ``k_axis = 0`` plane: a 2D FFT of one cross-section
    instead of a 3D one (50x faster at 56^3), read out along the axis for every region voxel."""

    def __init__(
        self, shape, voxel_mm, tube: Tube, radius_mm: float, kfilter, region, infinite=False
    ) -> None:
        along = np.flatnonzero(tube.axis)
        # array axes are (z, y, x); volume axes (x, y, z)
        flat = 2 - int(along[0]) if infinite and along.size == 1 else None
        ks = [np.fft.fftfreq(n, d) for n, d in zip(shape, voxel_mm[::-1], strict=True)]
        if flat is not None:
            ks[flat] = np.zeros(1)
        self.kz, self.ky, self.kx = ks
        kz, ky, kx = np.meshgrid(*ks, indexing="ij")
        k = np.stack([kx, ky, kz], axis=-1)
        k_cpp = np.sqrt((kx * voxel_mm[0]) ** 2 + (ky * voxel_mm[1]) ** 2 + (kz * voxel_mm[2]) ** 2)
        if flat is None:
            spec = cylinder_kspace(k, tube.centre_mm, tube.axis, radius_mm, tube.length_mm)
            spec /= np.prod(voxel_mm)
        else:  # per unit length: the voxel's extent along the axis cancels the cylinder's length
            spec = cylinder_kspace(k, tube.centre_mm, tube.axis, radius_mm, 1.0)
            spec /= np.prod(np.delete(voxel_mm, along[0]))
        self.t_k = None
        if kfilter is None:
            spec *= k_cpp <= 0.5
        else:
            kr, h, t = kfilter
            inside = k_cpp <= kr[-1]
            spec *= np.where(inside, np.interp(k_cpp, kr, h), 0.0)
            self.t_k = np.where(inside, np.interp(k_cpp, kr, t), 0.0).astype(np.float32)
        self.spec = spec.astype(np.complex64)
        self.workers = 1 if flat is not None else -1
        # positions in the unshifted FFT output of the region's voxels, in the region's order
        small = spec.shape
        index = np.fft.fftshift(np.arange(int(np.prod(small))).reshape(small))
        self.where = np.broadcast_to(index, shape)[region]

    def __call__(self, shift_mm: np.ndarray, offset_hz: float) -> np.ndarray:
        rz, ry, rx = (
            np.exp(-2j * np.pi * k * d).astype(np.complex64)
            for k, d in ((self.kz, shift_mm[2]), (self.ky, shift_mm[1]), (self.kx, shift_mm[0]))
        )
        spec = self.spec * rz[:, None, None] * ry[None, :, None] * rx[None, None, :]
        if offset_hz and self.t_k is not None:
            phase = np.float32(-2 * np.pi * offset_hz) * self.t_k
            twist = np.empty(phase.shape, np.complex64)
            twist.real, twist.imag = np.cos(phase), np.sin(phase)
            spec *= twist
        # one thread for a 2D template: threads cost more than its 30 us transform
        image = sp_fft.ifftn(spec, workers=self.workers, overwrite_x=True)
        return np.abs(image.reshape(-1)[self.where]).astype(np.float64)


def _box(shape, voxel_mm, centre_mm, extent_mm) -> tuple[slice, slice, slice]:
    """Array slices (z, y, x) of the voxels within ``extent_mm`` (x, y, z) of ``centre_mm``
    (volume mm, :func:`volume_coordinates_mm`)."""
    out = []
    for n, d, c, e in zip(shape, voxel_mm[::-1], centre_mm[::-1], extent_mm[::-1], strict=True):
        lo = int(np.floor((c - e) / d)) + n // 2
        hi = int(np.ceil((c + e) / d)) + n // 2 + 1
        out.append(slice(min(max(lo, 0), n), min(max(hi, 0), n)))
    return tuple(out)


class _TubeFit:
    """The template fit of one tube: ``(residual, amplitude, moved tube)`` for parameters ``p``
    = (shift along e1 mm, shift along e2 mm, off-resonance / 10 Hz[, radius mm]) over the middle
    of the tube (the detected length is only roughly known, blur and threshold: the template is
    longer than that, so the ends never enter the fit)."""

    def __init__(self, magnitude, voxel_mm, tube: Tube, head, kfilter, radius_mm: float) -> None:
        self.vox = vox = float(np.mean(voxel_mm))
        self.guess = radius_mm if radius_mm > 0 else 10.0
        half = max(tube.length_mm / 2 - 3 * vox, vox)
        reach = self.guess * 1.5 + 2 * vox
        # only the box around the tube is looked at: it holds every voxel of the region
        box = _box(magnitude.shape, voxel_mm, tube.centre_mm, half * np.abs(tube.axis) + reach)
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
            self.fixed = _Templates(self.shape, voxel_mm, base, radius_mm, kfilter, self.region,
                                    infinite=True)  # fmt: skip

    def __call__(self, p: np.ndarray) -> tuple[float, float, Tube]:
        shift = p[0] * self.e1 + p[1] * self.e2
        moved = Tube(self.tube.centre_mm + shift, self.tube.axis, self.long)
        if self.fixed is not None:
            t = self.fixed(shift, p[2] * 10.0)
        else:
            r = float(np.clip(p[3], 1.0, 3.0 * self.guess))
            t = _Templates(self.shape, self.voxel_mm, moved, r, self.kfilter, self.region,
                           infinite=True)(np.zeros(3), p[2] * 10.0)  # fmt: skip
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
    radius: Nelder-Mead on the residual, the amplitude solved in closed form at each step."""
    fit = _TubeFit(magnitude, voxel_mm, tube, head, kfilter, radius_mm)
    # offset in units of 10 Hz, so the simplex steps are alike; stop at 1e-6 of the signal power
    best = optimize.minimize(
        lambda p: fit(p)[0], fit.start, method="Nelder-Mead",
        options={"initial_simplex": _simplex(fit.start, fit.vox / 2), "xatol": 0.05,
                 "fatol": 1e-6 * float(np.dot(fit.y, fit.y)), "maxiter": 200},
    )  # fmt: skip
    res, amp, moved = fit(best.x)
    tube.centre_mm = moved.centre_mm
    tube.radius_mm = radius_mm if radius_mm > 0 else float(best.x[3])
    tube.offset_hz = float(best.x[2] * 10.0)
    tube.signal, tube.residual = amp, res
    return tube


def undo_tube_blur(
    magnitude: np.ndarray,
    voxel_mm: np.ndarray,
    tubes: list[Tube],
    kfilter: tuple[np.ndarray, ...] | None,
    max_gain: float = 2.0,
) -> np.ndarray:
    """``magnitude`` with the readout blur of each measured tube undone in its middle part.

    A region-based voxel-wise partial-volume correction (as in PET and sodium MRI): each voxel
    inside a tube is divided by ``T(r)``, the image a uniform unit cylinder (the tube's fitted
    centre, radius and off-resonance) makes through this acquisition -- band limit and
    relaxation during the readout -- where a large region would read 1. The tube sits in air, so
    its own blurred signal is all there is there; afterwards the map inside reads the
    concentration the calibration measured, not 5-15% less at 7T. Scaled: voxels whose centre is
    at least half a voxel inside the wall and more than a voxel from the detected ends (where
    the infinite template holds), the gain capped at ``max_gain``; chosen by the fitted geometry
    alone (the head mask, blurred, can reach into a tube 2 mm from the scalp: measured, a quarter
    of each tube's voxels at 5.6 mm). Without readout timing nothing changes."""
    out = np.array(magnitude, copy=True)
    if kfilter is None:
        return out
    coords = np.moveaxis(volume_coordinates_mm(magnitude.shape, voxel_mm), 0, -1)
    vox = float(np.mean(voxel_mm))
    for tube in tubes:
        rel = coords - tube.centre_mm
        along = rel @ tube.axis
        perp = np.linalg.norm(rel - along[..., None] * tube.axis, axis=-1)
        region = np.abs(along) <= max(tube.length_mm / 2 - vox, vox)
        region &= perp <= tube.radius_mm + vox
        if not region.any():
            continue
        shape = Tube(tube.centre_mm, tube.axis, tube.length_mm + 4 * vox)
        blurred = _Templates(magnitude.shape, voxel_mm, shape, tube.radius_mm, kfilter, region,
                             infinite=True)(np.zeros(3), tube.offset_hz)  # fmt: skip
        gain = np.clip(1.0 / np.maximum(blurred, 1e-12), 1.0 / max_gain, max_gain)
        inside = perp[region] <= tube.radius_mm - 0.5 * vox  # the wall's voxels keep theirs
        out[region] *= np.where(inside, gain, 1.0).astype(out.dtype)
    return out


def _simplex(start: list[float], step: float) -> np.ndarray:
    pts = [np.asarray(start, np.float64)]
    for i in range(len(start)):
        p = np.array(start, np.float64)
        p[i] += step
        pts.append(p)
    return np.array(pts)


def fit_line(concentrations_mM: list[float], signals: list[float], tubes=()) -> Calibration:
    """Least-squares ``S = a C + b`` with R^2."""
    c = np.asarray(concentrations_mM, np.float64)
    s = np.asarray(signals, np.float64)
    if c.size < 2:
        raise ValueError("a calibration needs at least two tubes")
    slope, intercept = np.polyfit(c, s, 1)
    ss_tot = float(np.sum((s - s.mean()) ** 2))
    r2 = 1.0 - float(np.sum((s - (slope * c + intercept)) ** 2)) / ss_tot if ss_tot > 0 else 0.0
    return Calibration(float(slope), float(intercept), r2, list(c), list(s), list(tubes))


def match_tubes(tubes: list[Tube], concentrations_mM: list[float]) -> list[tuple[Tube, float]]:
    """Pair tubes with concentrations by rank of signal (more tubes than concentrations: the
    best-fitting ones are kept). Fewer tubes than concentrations cannot be paired by rank."""
    if len(tubes) < len(concentrations_mM):
        raise ValueError(
            f"found {len(tubes)} tubes, expected {len(concentrations_mM)}: cannot tell which "
            "are missing (give tube positions)"
        )
    kept = sorted(tubes, key=lambda t: t.residual / max(t.signal, 1e-30) ** 2)
    kept = kept[: len(concentrations_mM)]
    kept.sort(key=lambda t: t.signal)
    return list(zip(kept, sorted(concentrations_mM), strict=True))
