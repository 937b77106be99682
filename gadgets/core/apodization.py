"""k-space apodisation: a radial window on the samples against Gibbs ringing.

A reconstruction cut sharply at ``k_max`` rings next to every edge (Gibbs: +9% overshoot, then
ripples one voxel apart). In sodium images the edges are strong (CSF and vitreous at ~140 mM next
to brain at 30-40 mM) and the voxels are big, so the ripples decide the mean of a small ROI:
measured on the 7T simulated head, a 4-voxel grey-matter ROI beside a ventricle read 10 mM low
with a sharp cut-off. The window trades a little resolution for it.

Window (a radial Tukey window), with ``u = |k| / k_max`` and ``taper`` in [0, 1]::

    w(u) = 1                                        u <= 1 - taper
    w(u) = (1 + cos(pi (u - 1 + taper) / taper)) / 2    1 - taper < u <= 1
    w(u) = 0                                        u > 1

``taper = 0`` is the sharp cut-off, ``taper = 1`` the Hann window. It multiplies each sample's
density compensation weight, so it costs nothing during streaming; the calibration's tube
templates carry the same window (:func:`gadgets.core.calibration.readout_filter`).
"""

from __future__ import annotations

import numpy as np


def radial_taper(k_radius_cpp: np.ndarray, k_max_cpp: float, taper: float) -> np.ndarray:
    """The window ``w(|k| / k_max)`` above at radii ``k_radius_cpp`` (cycles per pixel)."""
    if not 0.0 <= taper <= 1.0:
        raise ValueError(f"taper must be in [0, 1], not {taper}")
    u = np.asarray(k_radius_cpp, np.float64) / float(k_max_cpp)
    w = (u <= 1.0).astype(np.float64)
    if taper > 0:
        edge = (u > 1.0 - taper) & (u <= 1.0)
        w[edge] = 0.5 * (1.0 + np.cos(np.pi * (u[edge] - 1.0 + taper) / taper))
    return w
