"""Receive coils: sensitivities and noise covariance.

* ``birdcage``: one channel, nearly uniform (a mild quadratic fall-off and a constant phase).
* ``loops``: N circular loops (radius 45 mm) on a cylinder of radius 130 mm around the z axis
  (rings of 8 along z), normals pointing at the axis. Sensitivity = B1- of each loop,
  ``(Bx - i By) / 2`` with ``B`` from the Biot-Savart law (48 straight segments), plus a cable
  phase per channel; scaled so that the root sum of squares is 1 at the isocentre.

Noise: covariance ``Psi = G C G`` with unequal channel gains ``G`` (0.85-1.2) and correlations
``|C_ij|`` about 0.3 between neighbouring loops, falling with distance, with random phases
(deterministic from the seed); positive definite by construction.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "CYLINDER_RADIUS_MM",
    "LOOP_RADIUS_MM",
    "loop_geometry",
    "noise_covariance",
    "sensitivities",
]

LOOP_RADIUS_MM = 45.0
CYLINDER_RADIUS_MM = 130.0


def loop_geometry(nchannels: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 3) and unit normals (N, 3) of the loops."""
    per_ring = min(8, nchannels)
    rings = int(np.ceil(nchannels / per_ring))
    zs = (np.arange(rings) - (rings - 1) / 2) * 80.0
    centres, normals = [], []
    for i in range(nchannels):
        ring, j = divmod(i, per_ring)
        phi = 2 * np.pi * j / per_ring + (np.pi / per_ring) * (ring % 2)
        n = np.array([np.cos(phi), np.sin(phi), 0.0])
        centres.append(CYLINDER_RADIUS_MM * n + np.array([0, 0, zs[ring]]))
        normals.append(-n)
    return np.array(centres), np.array(normals)


@nb.njit(cache=True, parallel=True)
def _biot_savart_b1minus(points, seg_mid, seg_dl, out):
    """out[j] = sum over segments of (dl x r) / |r|^3, as Bx - i By (unit current)."""
    for j in nb.prange(points.shape[0]):
        bx = 0.0
        by = 0.0
        for s in range(seg_mid.shape[0]):
            rx = points[j, 0] - seg_mid[s, 0]
            ry = points[j, 1] - seg_mid[s, 1]
            rz = points[j, 2] - seg_mid[s, 2]
            r2 = max(rx * rx + ry * ry + rz * rz, 25.0)  # keep finite next to the wire
            inv = 1.0 / (r2 * np.sqrt(r2))
            bx += (seg_dl[s, 1] * rz - seg_dl[s, 2] * ry) * inv
            by += (seg_dl[s, 2] * rx - seg_dl[s, 0] * rz) * inv
        out[j] = complex(bx, -by)


def _loop_segments(centre: np.ndarray, normal: np.ndarray, nseg: int = 48):
    u = np.cross(normal, [0.0, 0.0, 1.0])
    if np.linalg.norm(u) < 1e-6:
        u = np.cross(normal, [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    a = 2 * np.pi * np.arange(nseg + 1) / nseg
    ring = centre + LOOP_RADIUS_MM * (np.cos(a)[:, None] * u + np.sin(a)[:, None] * v)
    return 0.5 * (ring[1:] + ring[:-1]), ring[1:] - ring[:-1]


def sensitivities(kind: str, nchannels: int, points_mm: np.ndarray, rng: np.random.Generator):
    """Complex sensitivities (C, ...) at patient points (..., 3)."""
    shape = points_mm.shape[:-1]
    pts = np.ascontiguousarray(points_mm.reshape(-1, 3), np.float64)
    if kind == "birdcage":
        if nchannels != 1:
            raise ValueError("a birdcage coil has one channel")
        rho2 = (pts[:, 0] ** 2 + pts[:, 1] ** 2) / 150.0**2
        z2 = pts[:, 2] ** 2 / 150.0**2
        s = (1.0 - 0.15 * rho2 - 0.10 * z2) * np.exp(1j * 0.4)
        return s.reshape((1,) + shape).astype(np.complex64)
    if kind != "loops":
        raise ValueError(f"unknown coil {kind!r}: use 'birdcage' or 'loops'")
    centres, normals = loop_geometry(nchannels)
    cable = np.exp(2j * np.pi * rng.random(nchannels))
    iso = np.zeros((1, 3))
    out = np.empty((nchannels, pts.shape[0]), np.complex128)
    at_iso = np.empty(nchannels, np.complex128)
    for c in range(nchannels):
        mid, dl = _loop_segments(centres[c], normals[c])
        _biot_savart_b1minus(pts, mid, dl, out[c])
        tmp = np.empty(1, np.complex128)
        _biot_savart_b1minus(iso, mid, dl, tmp)
        at_iso[c] = tmp[0]
        out[c] *= cable[c]
        at_iso[c] *= cable[c]
    out /= np.sqrt(np.sum(np.abs(at_iso) ** 2))
    return out.reshape((nchannels,) + shape).astype(np.complex64)


def noise_covariance(kind: str, nchannels: int, rng: np.random.Generator) -> np.ndarray:
    """Normalised channel noise covariance (C, C), Hermitian positive definite."""
    if kind == "birdcage":
        return np.ones((1, 1), np.complex128)
    centres, _ = loop_geometry(nchannels)
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    nearest = np.min(d + 1e9 * np.eye(nchannels), axis=1).min()
    mag = 0.3 * np.exp(-1.2 * (d / nearest - 1.0))
    phase = rng.uniform(-np.pi, np.pi, (nchannels, nchannels))
    phase = np.triu(phase, 1) - np.triu(phase, 1).T
    corr = mag * np.exp(1j * phase)
    np.fill_diagonal(corr, 1.0)
    lam = np.linalg.eigvalsh(corr).min()
    if lam < 0.2:  # keep it comfortably positive definite
        corr = (corr + (0.2 - lam) * np.eye(nchannels)) / (1.0 + 0.2 - lam)
    gains = rng.uniform(0.85, 1.2, nchannels)
    return gains[:, None] * corr * gains[None, :]
