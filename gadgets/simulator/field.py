"""B0 off-resonance map: a smooth low-order field plus a local bump near the frontal sinuses.

``df(p) = ppm * f0 * 1e-6`` with ``f0`` the sodium Larmor frequency (11.262 MHz/T): about
+-1 ppm, i.e. +-79 Hz at 7T and +-34 Hz at 3T. The low-order part is a fixed combination of
linear and quadratic shim terms; the bump is a Gaussian (sigma 14 mm, +0.8 ppm) at the sinus.
"""

from __future__ import annotations

import numpy as np

from gadgets.core.numerics.trajectory import GAMMA_NA23_HZ_PER_T

__all__ = ["b0_map_hz", "larmor_hz"]


def larmor_hz(field_T: float) -> float:
    return GAMMA_NA23_HZ_PER_T * field_T


def b0_map_hz(
    points_mm: np.ndarray,
    field_T: float,
    sinus_mm: tuple[float, float, float] | None,
    scale: float = 1.0,
) -> np.ndarray:
    """Off-resonance (Hz) at patient points (..., 3) mm; ``scale`` 0 switches it off."""
    p = np.asarray(points_mm, np.float64) / 100.0  # in units of 10 cm
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    ppm = (
        0.10 * x - 0.15 * y + 0.08 * z + 0.12 * (x**2 - y**2) - 0.10 * (z**2 - 0.5 * (x**2 + y**2))
    )
    if sinus_mm is not None:
        d2 = np.sum((np.asarray(points_mm, np.float64) - np.asarray(sinus_mm)) ** 2, axis=-1)
        ppm = ppm + 0.8 * np.exp(-d2 / (2 * 14.0**2))
    return (scale * ppm * larmor_hz(field_T) * 1e-6).astype(np.float32)
