"""B0 correction: a field map from the first two echoes (or a file), then multi-frequency
interpolation of every echo's MFI bins (:mod:`gadgets.core.numerics.b0`). Echo volumes are held
until all echoes of the scan have arrived (``encodingLimits.contrast``), then leave corrected, one
bin each, followed by the field map as its own series (``Hz``) when ``output_map`` is on.

Without two echoes and without ``map_file``, the volumes pass through at their 0 Hz bin, with
a warning: nothing is corrected.

The combination's noise gain (meta ``DataRole=NoiseGain``, from the coil combination) is held
too and leaves before the echoes, times the first echo's MFI share
(:func:`gadgets.core.numerics.image_noise.mfi_noise_gain`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import ismrmrd
import numpy as np

from gadgets.core.numerics.b0 import field_map_hz, mfi_apply, mfi_weights
from gadgets.core.numerics.image_noise import bin_noise_covariance, mfi_noise_gain
from gadgets.echo_volumes import EchoVolumesGadget
from gadgets.runtime.gadget import Property
from gadgets.volume_meta import GriddedVolume
from gadgets.volumes import read_meta, volume_image

__all__ = ["B0Correction"]

log = logging.getLogger(__name__)


class B0Correction(EchoVolumesGadget):
    """Field map from two echoes + MFI of each echo."""

    header_needs = ("encoding", "echo_times")

    properties = {
        "map_file": Property(
            str, "", ".npy field map in Hz on the recon grid (nz, ny, nx)", location=True
        ),
        "smoothing_fwhm_vox": Property(
            float, 2.0, "smoothing of the phase difference, FWHM in voxels", low=0.0, high=20.0
        ),
        "output_map": Property(bool, True, "also return the field map as a series"),
        "map_series_index": Property(int, 40, "image_series_index of the field map"),
    }

    def setup(self) -> None:
        super().setup()
        self.noise_gain: ismrmrd.Image | None = None

    def process(self, item):
        if isinstance(item, ismrmrd.Image) and read_meta(item).get("DataRole") == "NoiseGain":
            self.noise_gain = item  # leaves with the echoes, with the MFI's share
            return
        yield from super().process(item)

    def _field_map(self, centre: int) -> tuple[np.ndarray | None, str]:
        if self.map_file:
            shape = self.echoes[min(self.echoes)].data.shape[1:]
            return self._map_from_file(shape), f"file {self.map_file}"
        if 0 not in self.echoes or 1 not in self.echoes:
            return None, "none"
        te = [self._volume(e).require_echo_time("B0Correction") for e in (0, 1)]
        dte = te[1] - te[0]
        fmap = field_map_hz(
            self.echoes[0].data[centre], self.echoes[1].data[centre], dte, self.smoothing_fwhm_vox
        )
        return fmap, f"echoes 1-2 (dTE {dte * 1e3:.2f} ms)"

    def _map_from_file(self, shape: tuple[int, ...]) -> np.ndarray:
        """``map_file`` (relative: to the chain's folder), checked against the images."""
        path = Path(self.map_file).expanduser()
        if not path.is_absolute():
            found = (d / path for d in self.context.resource_dirs if (d / path).is_file())
            path = next(found, path.absolute())
        try:
            # never pickles: a .npy of numbers or nothing
            fmap = np.load(path, allow_pickle=False)
            if fmap.shape != shape or not np.issubdtype(fmap.dtype, np.number):
                raise ValueError(f"field map {fmap.shape} {fmap.dtype}, images {shape}")
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(
                self.context.file_error(str(path), f"map_file {path}: {exc}", "map_file")
            ) from None
        return fmap.astype(np.float32)

    def _noise_gain(self, info: GriddedVolume, mfi: np.ndarray | None) -> ismrmrd.Image:
        """The held noise gain, times the MFI's (``mfi``: the echo's coefficients, None when
        only the 0 Hz bin is kept: no change)."""
        held, self.noise_gain = self.noise_gain, None
        if mfi is None or info.noise_weights is None:
            return held
        cov = bin_noise_covariance(
            np.asarray(info.noise_weights), np.asarray(info.bins_hz), info.sample_times_s
        )
        gain = np.asarray(held.data[0], np.float32) * mfi_noise_gain(mfi, cov)
        return volume_image(gain, held, read_meta(held), series_index=held.image_series_index)

    def _volume(self, echo: int) -> GriddedVolume:
        return GriddedVolume.from_meta(read_meta(self.echoes[echo]), "B0Correction")

    def complete(self):
        first = self.echoes[min(self.echoes)]
        bins = np.asarray(self._volume(min(self.echoes)).bins_hz)
        centre = int(np.argmin(np.abs(bins)))
        fmap, source = self._field_map(centre)
        if fmap is None:
            log.warning("B0: one echo and no map_file: no off-resonance correction")
        else:
            mag = np.abs(first.data[centre])
            tissue = mag > 0.1 * np.percentile(mag, 99)  # the map means nothing in the air
            lo, hi = np.percentile(fmap[tissue], [1, 99])
            log.info("B0 map from %s: %.1f to %.1f Hz (1-99%%)", source, lo, hi)
            if bins.size > 1 and (lo < bins[0] or hi > bins[-1]):
                log.warning(
                    "B0 map exceeds the MFI bins (%.0f..%.0f Hz): raise b0_max_ppm",
                    bins[0],
                    bins[-1],
                )
        weights: dict[tuple[int, float], np.ndarray] = {}  # echoes of one readout share them
        corrected = source if fmap is not None and bins.size > 1 else "none"
        for echo in sorted(self.echoes):
            img = self.echoes[echo]
            info = self._volume(echo)
            if fmap is None or bins.size == 1:
                out = img.data[centre]
            else:
                key = (info.samples, info.dwell_s)
                if key not in weights:
                    weights[key] = mfi_weights(bins, fmap, info.sample_times_s)
                out = mfi_apply(img.data, weights[key])
            if self.noise_gain is not None and echo == min(self.echoes):
                yield self._noise_gain(info, weights.get((info.samples, info.dwell_s)))
            meta = info.with_(bins_hz=(0.0,), b0_correction=corrected).to_meta()
            yield volume_image(out, img, meta, contrast=echo, series_index=img.image_series_index)
        if fmap is not None and self.output_map:
            yield volume_image(
                fmap,
                first,
                {
                    "SeriesDescription": "Na23 B0 map [Hz]",
                    "Units": "Hz",
                    "LUTLabel": "B0",
                    "ImageTypeValue3": "B0_MAP",
                    "DataRole": "Quantitative",
                    "GADGETRON_SeqDescription": "_B0MAP",
                    "WindowCenter": "0",
                    "WindowWidth": "200",
                    "ImageComments": f"B0 from {source}",
                },
                series_index=self.map_series_index,
                image_type=ismrmrd.IMTYPE_REAL,
            )
