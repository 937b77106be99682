"""Where a reconstructed volume sits in the patient: voxel positions in DICOM patient
coordinates (LPS, mm) and in volume millimetres.

Convention. A volume is ``(nz, ny, nx)``, x fastest; voxel index ``i_a`` sits at
``r_a = i_a - n_a // 2`` voxels from the volume centre, which is the ISMRMRD ``position``
(patient LPS mm); ``x``, ``y``, ``z`` run along ``read_dir``, ``phase_dir``, ``slice_dir`` with
voxel sizes ``d_a = FOV_a / n_a``::

    p(i) = position + d_x r_x read_dir + d_y r_y phase_dir + d_z r_z slice_dir

*Volume millimetres* are the same offsets without the rotation and the position: ``(d_x r_x,
d_y r_y, d_z r_z)`` along (read, phase, slice) from the volume centre
(:func:`volume_coordinates_mm`); the tube finder and the QA picture work in them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Geometry", "volume_coordinates_mm"]


@dataclass(frozen=True)
class Geometry:
    """Where a ``(nz, ny, nx)`` volume sits in the patient (LPS mm)."""

    shape: tuple[int, int, int]
    fov_mm: tuple[float, float, float]  # (x, y, z)
    position_mm: tuple[float, float, float]
    read_dir: tuple[float, float, float]
    phase_dir: tuple[float, float, float]
    slice_dir: tuple[float, float, float]

    @property
    def voxel_mm(self) -> np.ndarray:
        nz, ny, nx = self.shape
        return np.array(self.fov_mm, np.float64) / np.array([nx, ny, nz])

    def slice_position(self, k: int) -> np.ndarray:
        nz, ny, nx = self.shape
        dx, dy, dz = self.voxel_mm
        return (
            np.asarray(self.position_mm, np.float64)
            + dx * (0 - nx // 2) * np.asarray(self.read_dir)
            + dy * (0 - ny // 2) * np.asarray(self.phase_dir)
            + dz * (k - nz // 2) * np.asarray(self.slice_dir)
        )

    def points_mm(self) -> np.ndarray:
        """``(nz, ny, nx, 3)`` patient LPS mm of every voxel centre."""
        nz, ny, nx = self.shape
        dx, dy, dz = self.voxel_mm
        iz, iy, ix = np.meshgrid(
            np.arange(nz) - nz // 2,
            np.arange(ny) - ny // 2,
            np.arange(nx) - nx // 2,
            indexing="ij",
        )
        return (
            np.asarray(self.position_mm)
            + (dx * ix)[..., None] * np.asarray(self.read_dir)
            + (dy * iy)[..., None] * np.asarray(self.phase_dir)
            + (dz * iz)[..., None] * np.asarray(self.slice_dir)
        )

    @classmethod
    def from_datasets(cls, datasets: list) -> Geometry:
        """From a single-frame DICOM series (pydicom datasets) sorted by InstanceNumber, by the
        attributes alone (ImagePositionPatient, ImageOrientationPatient, PixelSpacing): the
        inverse of the convention above, i.e. what a viewer sees."""
        first = datasets[0]
        iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
        read_dir, phase_dir = iop[:3], iop[3:]
        dy, dx = (float(v) for v in first.PixelSpacing)
        nz, ny, nx = len(datasets), int(first.Rows), int(first.Columns)
        ipp = np.asarray([[float(v) for v in d.ImagePositionPatient] for d in datasets])
        if nz > 1:
            step = (ipp[-1] - ipp[0]) / (nz - 1)
            dz = float(np.linalg.norm(step))
            slice_dir = step / dz
        else:
            dz = float(first.get("SliceThickness", 1.0))
            slice_dir = np.cross(read_dir, phase_dir)
        centre = ipp[0] + dx * (nx // 2) * read_dir + dy * (ny // 2) * phase_dir
        centre = centre + dz * (nz // 2) * slice_dir
        return cls(
            (nz, ny, nx),
            (nx * dx, ny * dy, nz * dz),
            tuple(map(float, centre)),
            tuple(map(float, read_dir)),
            tuple(map(float, phase_dir)),
            tuple(map(float, slice_dir)),
        )

    @classmethod
    def from_image(cls, image) -> Geometry:
        """From an ``ismrmrd.Image`` of the whole volume (data (1, nz, ny, nx))."""
        nz, ny, nx = image.data.shape[-3:]
        return cls(
            (nz, ny, nx),
            tuple(map(float, image.field_of_view)),
            tuple(map(float, image.position)),
            tuple(map(float, image.read_dir)),
            tuple(map(float, image.phase_dir)),
            tuple(map(float, image.slice_dir)),
        )


def volume_coordinates_mm(
    shape: tuple[int, int, int], voxel_mm: np.ndarray, box: tuple[slice, ...] | None = None
) -> np.ndarray:
    """``(3, nz, ny, nx)``: (read, phase, slice) mm of each voxel from the volume centre
    (voxel ``n // 2``), the convention above; only the voxels of
    ``box`` (array slices (z, y, x) with explicit bounds) when given."""
    box = box or tuple(slice(0, n) for n in shape)
    axes = [
        (np.arange(b.start, b.stop) - n // 2) * d
        for b, n, d in zip(box, shape, voxel_mm[::-1], strict=True)
    ]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return np.stack([x, y, z])
