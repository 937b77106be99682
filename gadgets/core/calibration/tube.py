"""A reference tube as the calibration sees it: where it is (volume mm, see
:mod:`gadgets.core.numerics.geometry`), which way it points, and what its template fit measured."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gadgets.core.numerics.geometry import volume_coordinates_mm

__all__ = ["Tube", "tube_box", "tubes_mask"]


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


def tube_box(shape, voxel_mm, centre_mm, extent_mm) -> tuple[slice, slice, slice]:
    """Array slices (z, y, x) of the voxels within ``extent_mm`` (x, y, z) of ``centre_mm``
    (volume mm, :func:`volume_coordinates_mm`)."""
    out = []
    for n, d, c, e in zip(shape, voxel_mm[::-1], centre_mm[::-1], extent_mm[::-1], strict=True):
        lo = int(np.floor((c - e) / d)) + n // 2
        hi = int(np.ceil((c + e) / d)) + n // 2 + 1
        out.append(slice(min(max(lo, 0), n), min(max(hi, 0), n)))
    return tuple(out)


def tubes_mask(
    shape: tuple[int, int, int], voxel_mm: np.ndarray, tubes: list[Tube], margin_mm: float = 0.0
) -> np.ndarray:
    """Voxels (nz, ny, nx) inside any of ``tubes`` (their fitted radius and length, grown by
    ``margin_mm``); each tube is looked at in its bounding box only."""
    mask = np.zeros(shape, bool)
    for tube in tubes:
        radius = (tube.radius_mm or 10.0) + margin_mm
        half = tube.length_mm / 2 + margin_mm
        box = tube_box(shape, voxel_mm, tube.centre_mm, half * np.abs(tube.axis) + radius)
        if any(b.start >= b.stop for b in box):
            continue
        rel = np.moveaxis(volume_coordinates_mm(shape, voxel_mm, box), 0, -1) - tube.centre_mm
        along = rel @ tube.axis
        perp = np.linalg.norm(rel - along[..., None] * tube.axis, axis=-1)
        mask[box] |= (np.abs(along) <= half) & (perp <= radius)
    return mask
