"""Noise prewhitening gadget: collects the noise scans (which come first), and whitens every
imaging readout with :func:`gadgets.core.numerics.noise.whitening_matrix` (dwell scaling included).
Noise readouts are consumed. Without noise scans the data pass through unchanged, with a
warning in the log: coil combination then assumes uncorrelated channels of equal noise.

With ``send_whitening`` the whitening matrix ``W`` (C x C, complex) also goes downstream once,
before the first imaging readout, as an image with meta ``DataRole=NoiseWhitening`` (data
``(1, 1, C, C)``): the coil combination's receive-bias correction uses it to relate the whitened
channels to the coils' own sensitivities. Only ISMRMRD types travel, so this works between
``<external>`` steps of a real Gadgetron as well."""

from __future__ import annotations

import logging

import ismrmrd
import numpy as np

from gadgets.core.numerics.noise import noise_covariance, whitening_matrix
from gadgets.runtime.gadget import Gadget, Property
from gadgets.volumes import volume_image

__all__ = ["NoisePrewhitener"]

log = logging.getLogger(__name__)


class NoisePrewhitener(Gadget):
    properties = {
        "min_noise_samples": Property(int, 256, "fewer noise samples than this: no whitening"),
        "send_whitening": Property(bool, False, "send the whitening matrix downstream once"),
    }

    def setup(self) -> None:
        self.noise: list[np.ndarray] = []
        self.noise_dwell_s: float | None = None
        self.whitening: np.ndarray | None = None
        self.ready = False

    def _prepare(self, data_dwell_s: float) -> None:
        self.ready = True
        samples = sum(n.shape[1] for n in self.noise)
        if samples < self.min_noise_samples:
            log.warning(
                "only %d noise samples (< %d): data are not prewhitened",
                samples,
                self.min_noise_samples,
            )
            return
        psi = noise_covariance(np.concatenate(self.noise, axis=1))
        self.whitening = whitening_matrix(psi, self.noise_dwell_s, data_dwell_s).astype(
            np.complex64
        )
        gains = np.sqrt(np.real(np.diag(psi)))
        log.info(
            "prewhitening %d channels from %d noise samples (noise gains %.3g..%.3g)",
            psi.shape[0],
            samples,
            gains.min(),
            gains.max(),
        )
        self.noise.clear()

    def process(self, item):
        if not isinstance(item, ismrmrd.Acquisition):
            yield item
            return
        if item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            if self.ready:
                log.warning("noise readout after the imaging data started: ignored")
                return
            self.noise.append(np.array(item.data))
            self.noise_dwell_s = item.sample_time_us * 1e-6
            return
        if not self.ready:
            self._prepare(item.sample_time_us * 1e-6)
            if self.send_whitening and self.whitening is not None:
                meta = {"DataRole": "NoiseWhitening", "fov_mm": (1.0, 1.0, 1.0)}
                yield volume_image(self.whitening[None, None], item, meta)
        if self.whitening is not None:
            if item.data.shape[0] != self.whitening.shape[0]:
                nch = self.whitening.shape[0]
                raise ValueError(f"readout has {item.data.shape[0]} channels, noise scans {nch}")
            item.data[:] = self.whitening @ item.data
        yield item
