"""A quick-look sodium image: each echo gridded as its readouts arrive (the streaming gridder of
:mod:`gadgets.gridding`, no MFI bins), channels combined by root sum of squares, one magnitude
volume per echo. Uncalibrated (arbitrary units): the TSC chains (prewhitening, adaptive coil
combination, B0, calibration) replace it for quantitative maps. Noise readouts are skipped.
"""

from __future__ import annotations

import logging

import ismrmrd
import numpy as np

from gadgets.core.numerics.channel_combination import sum_of_squares
from gadgets.gridding import StreamingGridder
from gadgets.runtime.gadget import Property
from gadgets.volumes import volume_image

__all__ = ["SumOfSquaresPreview"]

log = logging.getLogger(__name__)


class SumOfSquaresPreview(StreamingGridder):
    """Stream readouts onto one grid per echo; at the end, a root-sum-of-squares image per echo."""

    properties = {
        **{
            name: StreamingGridder.properties[name]
            for name in ("kernel_width", "dcf", "k_window_beta", "fft_effort", "max_bad_fraction")
        },
        "oversampling": Property(float, 2.0, "grid oversampling (1.25-2)"),
        "series_index": Property(int, 1, "image_series_index of the output"),
    }
    b0_max_ppm = 0.0  # no MFI bins: one image per coil and echo
    mfi_max_cycles = 0.5

    def finish(self):
        for echo, image in self._echo_images():
            magnitude = sum_of_squares(image).astype(np.float32)
            log.info("preview echo %d: %s", echo, magnitude.shape)
            yield volume_image(
                magnitude,
                self.template,
                {"fov_mm": self.fov_mm},
                contrast=echo,
                series_index=self.series_index + echo,
                image_type=ismrmrd.IMTYPE_MAGNITUDE,
            )
        yield from self.notices
