"""Coil combination of the gridder's channel volumes (prewhitened data, so noise is white):
one complex volume per echo, channels = MFI bins.

``method``:

* ``adaptive`` (default): Walsh weights (:func:`gadgets.core.coils.walsh_weights`) from the
  first echo's 0 Hz bin, applied unchanged to every echo and bin. One set of weights keeps the
  combination linear, so the phase difference between echoes is the field's alone (B0 map) and
  the MFI bins combine like the data would. Noise stays one complex Gaussian: no floor.
* ``sos``: root sum of squares, magnitude only (the B0 steps then have no phase to work with and
  only the 0 Hz bin is kept). Its noise floor: every channel adds its noise power, so a voxel
  without signal reads ~``sqrt(C)`` sigma (5.7 sigma with 32 channels) and low-SNR tissue is
  biased upward; hence not the default.
* ``roemer``: ``S^H x / S^H S`` with sensitivities estimated as the smoothed channel volumes
  divided by their smoothed root sum of squares (relative sensitivities: like ``adaptive``, the
  array's receive profile stays in the image).

The receive profile of loop arrays (tubes near a loop several times brighter than the middle of
the head) is not removed here; see the README's accuracy section.
"""

from __future__ import annotations

import logging

import ismrmrd
import numpy as np
from scipy.ndimage import gaussian_filter

from .core.coils import roemer, sum_of_squares, walsh_weights
from .runtime.gadget import Gadget, Property
from .volumes import meta_floats, read_meta, volume_image

log = logging.getLogger(__name__)
_METHODS = ("adaptive", "sos", "roemer")


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(x.real, sigma) + 1j * gaussian_filter(x.imag, sigma)


class CoilCombiner(Gadget):
    """Channel volumes -> one complex volume per echo (per MFI bin)."""

    properties = {
        "method": Property(str, "adaptive", "adaptive, sos or roemer"),
        "block": Property(int, 5, "adaptive: box size (voxels) of the local covariance"),
    }

    def setup(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(_METHODS)}, not {self.method!r}")
        self.weights: np.ndarray | None = None

    def _weights(self, coils: np.ndarray) -> np.ndarray:
        if self.method == "adaptive":
            return walsh_weights(coils, self.block)
        sens = np.stack([_smooth(c, 2.0) for c in coils])
        norm = np.sqrt(np.sum(np.abs(sens) ** 2, axis=0))
        return sens / np.maximum(norm, 1e-12 * norm.max())

    def process(self, item):
        if not isinstance(item, ismrmrd.Image):
            yield item
            return
        meta = read_meta(item)
        if "SodiumCoils" not in meta:
            yield item  # not a gridder volume
            return
        bins = meta_floats(meta, "SodiumBinsHz")
        ncoils = int(float(meta["SodiumCoils"]))
        data = item.data.reshape((ncoils, bins.size) + item.data.shape[1:])
        centre = int(np.argmin(np.abs(bins)))
        if self.method == "sos":
            out = sum_of_squares(data[:, centre])[None].astype(np.complex64)
            meta["SodiumBinsHz"] = [0.0]
        else:
            if self.weights is None:
                self.weights = self._weights(data[:, centre])
                log.info("coil combination: %s over %d channels", self.method, ncoils)
            if self.method == "roemer":
                out = np.stack([roemer(data[:, b], self.weights) for b in range(bins.size)])
            else:
                out = np.einsum("c...,cb...->b...", self.weights.conj(), data)
        del meta["SodiumCoils"]
        meta["SodiumCombination"] = self.method
        yield volume_image(out.astype(np.complex64), item, meta, contrast=item.contrast,
                           series_index=item.image_series_index)  # fmt: skip
