"""A reference tube as the calibration sees it: where it is (volume mm, see
:mod:`gadgets.core.numerics.geometry`), which way it points, and what its template fit measured."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Tube"]


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
