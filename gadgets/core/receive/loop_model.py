"""Receive-bias correction for loop arrays from a geometric coil model.

Adaptive coil combination returns ``rho(r) |S_w(r)|``: the array's receive profile stays in the
image, and with loops it is strong (tubes next to a loop read several times brighter than
mid-brain). Relative sensitivities estimated from the data cannot remove it, because any smooth
profile can move between ``rho`` and ``S``. A coil model can: the sensitivity of a loop is the
``B1-`` field it would make carrying unit current (quasi-static, Biot-Savart; sodium's Larmor
wavelength in tissue, ~0.5 m at 7T, is long against the head), a known function of position.

Model. Each prewhitened channel image is a fixed linear mixture of the loops' fields::

    y(r) = rho(r) M b(r) + n(r),        b_c(r) = B_x,c(r) - i h B_y,c(r),

with ``b`` the C model fields (``h = +-1``, the receive handedness of the scanner frame, found from
the data), and ``M`` a complex C x C matrix. When the prewhitening matrix ``W`` is known (the
prewhitener sends it), ``M = W diag(g)``: only the channel gains and cable phases ``g`` (C complex
numbers) are unknown, a small and well-conditioned fit. Without it, ``M`` is fitted in full
(it then also absorbs coupling between loops), which is fine for 8 channels but leaves the profile
weakly determined with 32 (C^2 unknowns): measured, +-11% between the tubes.

Fit. ``rho`` is eliminated: at each voxel ``y(r)`` must be parallel to ``s(r) = M b(r)``. The
weighted mean ``sin^2`` of the angle between them,

    sum_r (|y|^2 |s|^2 - |y^H s|^2) / sum_r |y|^2 |s|^2,

is linear-fractional in the unknowns, so it is minimised by the top generalised eigenvector of
``A x = mu G x`` (the ratio is ``1 - mu``): with ``M = W diag(g)``, ``x = g`` and, per voxel,
``q = b * conj(W^H y)``::

    A = sum_r conj(q) q^T,     G = sum_r |y|^2 (conj(b) b^T) * (W^H W)      (C x C);

for a full ``M``, ``x = vec M`` and ``A = sum_r (conj(b) b^T) kron (y y^H)``,
``G = (sum_r |y|^2 conj(b) b^T) kron I`` (C^2 x C^2). Normalising by ``|s|^2`` matters: an
unnormalised fit prefers an ``M`` that uses only the fields of far loops, small everywhere.
``M`` is identifiable because ``rho`` cannot absorb a profile ``f(r)`` unless every ``b_c / f``
lies in the span of the fields, which generically it does not.

Combination. With ``s(r) = M b(r)`` the absolute sensitivities (up to one global complex scale,
which the tube calibration absorbs), the Roemer combination ``s^H y / |s|^2`` is ``rho`` free of
the receive profile, with the same SNR as the adaptive combination.

Limits. The coil's geometry must be known in the patient frame of the acquisitions (a head coil
fixed at the isocentre, head first supine): a 5 mm error in the loops' position leaves ~10%
spread between the tubes. The fit's residual (the fraction of channel energy the model leaves
unexplained) is reported; a poor fit is refused upstream.

Coil files (JSON): ``{"name": ..., "loops": [{"centre_mm": [x, y, z], "normal": [x, y, z],
"radius_mm": r}, ...]}``, one loop per receive channel in channel order, patient LPS mm.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.linalg import eigh
from scipy.special import ellipe, ellipk

from gadgets.core.receive.coil_identity import CoilIdentity

__all__ = ["CoilModel", "fit_coil_model", "fit_mixing", "loop_field", "ModelFit"]

log = logging.getLogger(__name__)


def loop_field(
    points_mm: np.ndarray, centre_mm: np.ndarray, normal: np.ndarray, radius_mm: float
) -> np.ndarray:
    """Magnetic field (N, 3) of a circular loop with unit current at ``points_mm`` (N, 3), in
    units of ``mu0 I / (2 pi)`` per mm (exact, with complete elliptic integrals ``K(m)``,
    ``E(m)``, ``m = 4 a rho / ((a + rho)^2 + z^2)``)::

        B_z   = [K + (a^2 - rho^2 - z^2) / ((a - rho)^2 + z^2) E] / sqrt((a + rho)^2 + z^2)
        B_rho = z / rho [-K + (a^2 + rho^2 + z^2) / ((a - rho)^2 + z^2) E] / sqrt(...)

    with ``z`` along the unit ``normal`` and ``rho`` the distance from the loop's axis."""
    normal = np.asarray(normal, np.float64) / np.linalg.norm(normal)
    d = np.asarray(points_mm, np.float64) - np.asarray(centre_mm, np.float64)
    z = d @ normal
    radial = d - z[:, None] * normal
    rho = np.linalg.norm(radial, axis=1)
    e_rho = radial / np.maximum(rho, 1e-12)[:, None]
    a = float(radius_mm)
    rho = np.maximum(rho, 1e-6 * a)  # on the axis B_rho -> 0; keep the ratio finite
    q = (a + rho) ** 2 + z**2
    m = 4.0 * a * rho / q
    k, e = ellipk(m), ellipe(m)
    den = (a - rho) ** 2 + z**2
    bz = (k + (a * a - rho * rho - z * z) / den * e) / np.sqrt(q)
    brho = z / (rho * np.sqrt(q)) * (-k + (a * a + rho * rho + z * z) / den * e)
    return bz[:, None] * normal + brho[:, None] * e_rho


@dataclass(frozen=True)
class CoilModel:
    """A receive array of circular loops, one per channel, in patient LPS mm."""

    name: str
    centres_mm: np.ndarray  # (C, 3)
    normals: np.ndarray  # (C, 3)
    radii_mm: np.ndarray  # (C,)
    measured_with: CoilIdentity | None = None  # the coil the file describes (coil_identity)

    @property
    def channels(self) -> int:
        return len(self.radii_mm)

    @classmethod
    def from_json(cls, path: str | Path) -> CoilModel:
        return cls.from_dict(json.loads(Path(path).read_text()), str(path))

    @classmethod
    def from_dict(cls, desc: dict, path: str = "") -> CoilModel:
        """From a coil file's contents (``path``: where they came from, for messages)."""
        loops = desc.get("loops")
        if not loops:
            raise ValueError(f"{path}: a coil file needs a non-empty 'loops' list")
        try:
            centres = np.array([lp["centre_mm"] for lp in loops], np.float64)
            normals = np.array([lp["normal"] for lp in loops], np.float64)
            radii = np.array([lp["radius_mm"] for lp in loops], np.float64)
        except KeyError as exc:
            raise ValueError(f"{path}: each loop needs centre_mm, normal, radius_mm") from exc
        if centres.shape[1:] != (3,) or normals.shape[1:] != (3,) or np.any(radii <= 0):
            raise ValueError(f"{path}: centre_mm and normal are 3 numbers, radius_mm > 0")
        normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)
        return cls(str(desc.get("name", Path(path).stem)), centres, normals, radii)

    def fields(self, points_mm: np.ndarray, handedness: int = 1) -> np.ndarray:
        """Complex model sensitivities ``B_x - i h B_y`` (C, N) at ``points_mm`` (N, 3)."""
        out = np.empty((self.channels, len(points_mm)), np.complex128)
        for c in range(self.channels):
            b = loop_field(points_mm, self.centres_mm[c], self.normals[c], self.radii_mm[c])
            out[c] = b[:, 0] - 1j * handedness * b[:, 1]
        return out


@dataclass(frozen=True)
class ModelFit:
    """The mixing matrix ``M`` (C, C), the handedness, and the fraction of channel energy over
    the fitted voxels that ``rho M b`` leaves unexplained (noise included)."""

    mixing: np.ndarray
    handedness: int
    residual: float
    other_residual: float  # the same with the opposite handedness

    def sensitivities(self, model: CoilModel, points_mm: np.ndarray) -> np.ndarray:
        """Absolute sensitivities ``M b(r)`` (C, N), up to one global complex scale."""
        return self.mixing @ model.fields(points_mm, self.handedness)


def _top_eigenvector(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    a = 0.5 * (a + a.conj().T)
    g = 0.5 * (g + g.conj().T)
    n = a.shape[0]
    return eigh(a, g, subset_by_index=[n - 1, n - 1])[1][:, 0]


def fit_mixing(
    channels: np.ndarray, fields: np.ndarray, whitening: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Mixing matrix ``M`` (C, C) with ``channels ~ rho M fields`` and its residual fraction.

    ``channels``: (C, N) prewhitened channel values at N voxels with signal; ``fields``: (C, N)
    model fields there; ``whitening``: the prewhitening matrix ``W`` (then ``M = W diag(g)``),
    or None (``M`` in full). See the module docstring for the eigenproblems."""
    y = np.asarray(channels, np.complex128).T  # (N, C)
    b = np.asarray(fields, np.complex128).T
    nvox, nch = y.shape
    power = np.sum(np.abs(y) ** 2, axis=1)
    bb = (b.conj().T * power) @ b  # sum |y|^2 conj(b) b^T
    if whitening is not None:
        w = np.asarray(whitening, np.complex128)
        q = b * (y.conj() @ w)  # b * conj(W^H y)
        gains = _top_eigenvector(q.conj().T @ q, bb * (w.conj().T @ w))
        mixing = w * gains[None, :]
    else:
        v = (b.conj()[:, :, None] * y[:, None, :]).reshape(nvox, nch * nch)  # kron(conj b, y)
        vec = _top_eigenvector(v.T @ v.conj(), np.kron(bb, np.eye(nch)))
        mixing = vec.reshape(nch, nch).T  # vec() is column-major: m[d * C + i] = M[i, d]
    s = mixing @ b.T  # (C, N)
    rho = np.sum(s.conj() * y.T, axis=0) / np.maximum(np.sum(np.abs(s) ** 2, axis=0), 1e-300)
    resid = np.sum(np.abs(y.T - s * rho) ** 2) / max(float(power.sum()), 1e-300)
    return mixing, float(resid)


def fit_coil_model(
    images: np.ndarray,
    points_mm: np.ndarray,
    model: CoilModel,
    whitening: np.ndarray | None = None,
    max_voxels: int = 6000,
    fields: dict[int, np.ndarray] | None = None,
) -> ModelFit:
    """Fit ``M`` and the handedness to prewhitened channel volumes ``images`` (C, *shape) at
    patient points ``points_mm`` (*shape, 3), on the voxels with signal (root sum of squares
    above 20% of its 99.5th percentile; a regular subset of at most ``max_voxels``).
    ``whitening``: the prewhitening matrix when known (see the module docstring). ``fields``:
    ``model.fields`` at all of ``points_mm`` (C, N) per handedness (+1, -1), when computed
    beforehand (they depend on the geometry only)."""
    nch = images.shape[0]
    if nch != model.channels:
        raise ValueError(f"coil model {model.name!r} has {model.channels} loops, data {nch}")
    flat = images.reshape(nch, -1)
    sos = np.sqrt(np.sum(np.abs(flat) ** 2, axis=0))
    idx = np.flatnonzero(sos > 0.2 * np.percentile(sos, 99.5))
    idx = idx[:: max(1, int(np.ceil(idx.size / max_voxels)))]
    pts = points_mm.reshape(-1, 3)[idx]
    fits = {
        h: fit_mixing(
            flat[:, idx], model.fields(pts, h) if fields is None else fields[h][:, idx], whitening
        )
        for h in (1, -1)
    }
    best = min(fits, key=lambda h: fits[h][1])
    fit = ModelFit(fits[best][0], best, fits[best][1], fits[-best][1])
    log.info(
        "coil model %s (%s): %d voxels, residual %.4f (handedness %+d; %.4f with the other)",
        model.name,
        "channel gains" if whitening is not None else "full mixing",
        idx.size,
        fit.residual,
        best,
        fit.other_residual,
    )
    return fit
