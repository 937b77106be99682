"""Analytic sphere phantoms: exact continuous k-space, for checking reconstructions.

A uniform sphere of value ``rho``, radius ``R`` and centre ``c`` (pixels) has the Fourier
transform, with ``q = 2 pi |k|`` (k in cycles/pixel)::

    S(k) = rho exp(-2 pi i k . c) 4 pi (sin(q R) - q R cos(q R)) / q^3,   S(0) = rho 4/3 pi R^3

so its k-space is known exactly at any trajectory point, independently of any gridding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["sodium_spheres", "Sphere", "sphere_image", "sphere_kspace"]


@dataclass(frozen=True)
class Sphere:
    centre_px: tuple[float, float, float]  # (x, y, z) pixels from the image centre
    radius_px: float
    value: float  # e.g. sodium concentration in mM


def sphere_kspace(traj: np.ndarray, spheres: list[Sphere]) -> np.ndarray:
    """Exact k-space (M,) complex128 of a sum of uniform spheres at ``traj`` (M, 3) cycles/pixel."""
    k = np.asarray(traj, np.float64).reshape(-1, 3)
    q = 2.0 * np.pi * np.linalg.norm(k, axis=1)
    out = np.zeros(k.shape[0], np.complex128)
    small = q * max((s.radius_px for s in spheres), default=1.0) < 1e-3
    qs = np.where(small, 1.0, q)
    for s in spheres:
        qr = qs * s.radius_px
        shape = 4.0 * np.pi * (np.sin(qr) - qr * np.cos(qr)) / qs**3
        # Taylor series near k = 0, where the closed form cancels catastrophically
        series = 4.0 / 3.0 * np.pi * s.radius_px**3 * (1.0 - (q * s.radius_px) ** 2 / 10.0)
        out += s.value * np.where(small, series, shape) * np.exp(-2j * np.pi * k @ s.centre_px)
    return out


def sphere_image(shape: tuple[int, int, int], spheres: list[Sphere]) -> np.ndarray:
    """The phantom sampled at voxel centres, (nz, ny, nx): value where |r - c| < R."""
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    z, y, x = grids
    out = np.zeros(shape)
    for s in spheres:
        cx, cy, cz = s.centre_px
        inside = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < s.radius_px**2
        out[inside] += s.value
    return out


def sodium_spheres(matrix: int) -> list[Sphere]:
    """A small sodium test object scaled to the matrix: a 'head' of 40 mM tissue with a 140 mM
    'ventricle' and a 65 mM 'lesion' off-centre, and two calibration spheres of 60 and 120 mM."""
    s = matrix / 48.0
    return [
        Sphere((0.0, 0.0, 0.0), 15.0 * s, 40.0),
        Sphere((-4.0 * s, 3.0 * s, 2.0 * s), 4.0 * s, 100.0),  # +100 on 40: 140 mM
        Sphere((6.0 * s, -5.0 * s, -3.0 * s), 3.5 * s, 25.0),  # +25 on 40: 65 mM
        Sphere((19.0 * s, 0.0, 8.0 * s), 3.0 * s, 60.0),
        Sphere((-19.0 * s, 0.0, -8.0 * s), 3.0 * s, 120.0),
    ]
