"""A quick-look sodium image: each echo gridded as its readouts arrive, channels combined by
root sum of squares, one magnitude volume per echo. Uncalibrated (arbitrary units): the TSC chains
(prewhitening, adaptive coil combination, B0, calibration) replace it for quantitative maps.

Trajectory: each readout's ``traj`` (cycles/pixel), or the header's ``trajectoryDescription``
when readouts carry none. Density compensation: analytic radial weights per readout
(:func:`gadgets.core.density.radial_dcf`). Noise readouts are skipped.
"""

from __future__ import annotations

import logging

import ismrmrd
import numpy as np

from .core.density import radial_dcf
from .core.gridding import GridAccumulator
from .core.trajectory import trajectory_description
from .runtime.gadget import Gadget, Property

log = logging.getLogger(__name__)


class SumOfSquaresPreview(Gadget):
    """Stream readouts onto one grid per echo; at the end, a root-sum-of-squares image per echo."""

    properties = {
        "oversampling": Property(float, 2.0, "grid oversampling (1.25-2)"),
        "kernel_width": Property(int, 5, "Kaiser-Bessel width, grid cells"),
        "series_index": Property(int, 1, "image_series_index of the output"),
    }

    def setup(self) -> None:
        header = self.header
        enc = header.encoding[0]
        m = enc.reconSpace.matrixSize
        self.matrix = (int(m.z), int(m.y), int(m.x))
        fov = enc.reconSpace.fieldOfView_mm
        self.fov_mm = (float(fov.x), float(fov.y), float(fov.z))
        limits = enc.encodingLimits.kspace_encoding_step_1
        self.projections = int(limits.maximum) + 1 if limits is not None else None
        self.described = trajectory_description(header)
        self._described_traj = None
        self.grids: dict[int, GridAccumulator] = {}
        self.template: ismrmrd.Acquisition | None = None

    def _trajectory(self, acq: ismrmrd.Acquisition) -> np.ndarray:
        if acq.trajectory_dimensions == 3:
            return acq.traj
        if self.described is None:
            raise ValueError("readouts carry no traj and the header has no trajectoryDescription")
        if self._described_traj is None:
            self._described_traj = self.described.trajectory()
        return self._described_traj[acq.idx.kspace_encode_step_1]

    def process(self, item):
        if not isinstance(item, ismrmrd.Acquisition):
            yield item
            return
        if item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            return
        if self.projections is None:
            raise ValueError("the header lacks encodingLimits.kspace_encoding_step_1")
        lo, hi = item.discard_pre, item.number_of_samples - item.discard_post
        traj = self._trajectory(item)[lo:hi]
        data = item.data[:, lo:hi]
        echo = item.idx.contrast
        grid = self.grids.get(echo)
        if grid is None:
            grid = GridAccumulator(
                self.matrix, data.shape[0], oversampling=self.oversampling, width=self.kernel_width
            )
            self.grids[echo] = grid
        dcf = radial_dcf(traj[None])[0] / self.projections
        grid.add(traj, data, dcf)
        self.template = item  # nothing is yielded per readout: the images come at the end

    def finish(self):
        for echo in sorted(self.grids):
            image = self.grids[echo].finish()
            magnitude = np.sqrt(np.sum(np.abs(image) ** 2, axis=0)).astype(np.float32)
            img = ismrmrd.Image.from_array(magnitude[None], transpose=False)
            if self.template is not None:
                for key in (
                    "position",
                    "read_dir",
                    "phase_dir",
                    "slice_dir",
                    "patient_table_position",
                ):
                    setattr(img, key, tuple(getattr(self.template, key)))
            img.field_of_view = self.fov_mm
            img.contrast = echo
            img.image_series_index = self.series_index + echo
            img.image_index = 1
            img.image_type = ismrmrd.IMTYPE_MAGNITUDE
            log.info("preview echo %d: %s", echo, magnitude.shape)
            yield img
