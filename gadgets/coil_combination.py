"""Coil combination of the gridder's channel volumes (prewhitened data, so noise is white):
one complex volume per echo, channels = MFI bins.

``method``:

* ``adaptive`` (default): Walsh weights
  (:func:`gadgets.core.numerics.channel_combination.walsh_weights`) from the first echo's 0 Hz bin,
  applied unchanged to every echo and bin. One set of weights keeps the combination linear, so the
  phase difference between echoes is the field's alone (B0 map) and the MFI bins combine like the
  data would. Noise stays one complex Gaussian: no floor.
* ``sos``: root sum of squares, magnitude only (the B0 steps then have no phase to work with and
  only the 0 Hz bin is kept). Its noise floor: every channel adds its noise power, so a voxel
  without signal reads ~``sqrt(C)`` sigma (5.7 sigma with 32 channels) and low-SNR tissue is
  biased upward; hence not the default.
* ``roemer``: ``S^H x / S^H S`` with sensitivities estimated as the smoothed channel volumes
  divided by their smoothed root sum of squares (relative sensitivities: like ``adaptive``, the
  array's receive profile stays in the image).

Receive-bias correction (``coil_models``): ``adaptive`` and ``roemer`` leave the coil's receive
profile in the image (tubes near a loop several times brighter than mid-brain, which biases the tube
calibration). A coil file removes it; the first listed one *measured with this scan's coil*
(:mod:`gadgets.core.receive.coil_identity`: channel count, the header's coil labels, field
strength) is used, and a file made with another coil is never used, whatever its channel count:

* a measured profile (:mod:`gadgets.core.receive.spline_profile`, any coil, made by
  ``sodium-gadgets coil-profile`` from a bottle scan through this same combination): the
  combination's weights are divided by it. The file keeps the bottle scan's prewhitening matrix;
  with ``rewhiten_to_bottle`` (on by default) this scan's channels are combined as if whitened
  with it (:func:`gadgets.core.numerics.noise.rewhitening`): the profile an optimal combination
  leaves depends on the whitening, and each scan's own estimate of the noise covariance differs
  by ~1%, which moved the profile at the tubes by up to 1.6% between two scans of one bottle.
  The profile holds only where the bottle was; that region goes
  downstream once as an image with meta ``DataRole=ReceiveProfileValidity`` (1 inside, 0 outside),
  and the calibration refuses tubes outside it;
* a polynomial profile of a one-channel coil (:mod:`gadgets.core.receive.receive_profile`);
* a loop array's geometry (:mod:`gadgets.core.receive.loop_model`): its fields are fitted to the
  channel volumes and the combination is Roemer's with those absolute sensitivities, which returns
  ``rho`` itself. The prewhitening matrix, when the prewhitener sends it (``send_whitening``), is
  consumed here and makes the fit one of channel gains only. A fit whose residual exceeds
  ``max_model_residual`` (coil not where the file says) is not used.

``coil_models=auto`` lists every coil file in the chain's ``coils/`` folder and the shipped one
that records its coil (``measured_with``). A file that records no coil is matched by channel count
alone, and only when named. No matching file: a warning naming each file's reason, and the volume
says so (``SodiumReceiveCorrected=0``), which the calibration of an array refuses.

When the gridder reports its noise weights (``SodiumNoiseWeights``), the combination's noise gain
``sum_c |w_c|^2`` (:mod:`gadgets.core.numerics.image_noise`) also goes downstream once, as an
image with meta ``DataRole=NoiseGain``: the map's standard error is made from it.
"""

from __future__ import annotations

import logging

import ismrmrd
import numpy as np
from scipy.ndimage import gaussian_filter

from gadgets.core.numerics.channel_combination import roemer, sum_of_squares, walsh_weights
from gadgets.core.numerics.geometry import Geometry
from gadgets.core.numerics.image_noise import combination_noise_gain
from gadgets.core.numerics.noise import rewhitening
from gadgets.core.receive.coil_file import (
    CoilFileError,
    coil_files_with_identity,
    find_coil_file,
    read_coil_file,
)
from gadgets.core.receive.coil_identity import SINGLE_CHANNEL, CoilIdentity
from gadgets.core.receive.loop_model import CoilModel, fit_coil_model
from gadgets.core.receive.receive_profile import ReceiveProfile
from gadgets.core.receive.spline_profile import SplineProfile
from gadgets.resources import chains_dir
from gadgets.runtime.gadget import Gadget, Property
from gadgets.runtime.notice import Notice
from gadgets.volume_meta import GriddedVolume
from gadgets.volumes import read_meta, volume_image

__all__ = ["CoilCombiner", "NOISE_GAIN_META"]

# the combined volume's noise variance per voxel over one whitened channel's (B0Correction
# applies its MFI's share; TscCalibration turns it into the map's standard error)
NOISE_GAIN_META = {"DataRole": "NoiseGain"}

log = logging.getLogger(__name__)
_METHODS = ("adaptive", "sos", "roemer")


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(x.real, sigma) + 1j * gaussian_filter(x.imag, sigma)


def _mix(matrix: np.ndarray, coils: np.ndarray) -> np.ndarray:
    """``matrix @ x`` for every voxel's channel vector ``x`` of ``coils`` (C, ...); one matrix
    product over all voxels (BLAS: ~20x einsum's loop for 16 channels)."""
    return (matrix @ coils.reshape(coils.shape[0], -1)).reshape((-1, *coils.shape[1:]))


def _same_geometry(a: Geometry, b: Geometry) -> bool:
    """Equal up to float32 rounding (image headers store float32)."""
    if a.shape != b.shape:
        return False
    fields = ("fov_mm", "position_mm", "read_dir", "phase_dir", "slice_dir")
    return all(np.allclose(getattr(a, f), getattr(b, f), atol=1e-3) for f in fields)


class CoilCombiner(Gadget):
    """Channel volumes -> one complex volume per echo (per MFI bin)."""

    header_needs = ("recon_space",)

    properties = {
        "method": Property(str, "adaptive", "coil combination", choices=_METHODS),
        "block": Property(
            int, 5, "adaptive: box size (voxels) of the local covariance", low=1, high=31
        ),
        "coil_models": Property(
            str,
            "auto",
            "coil files (chains/coils/NAME or paths), comma-separated, or auto (every coil "
            "file that records its coil); the first measured with this scan's coil removes "
            "the receive profile",
            location="paths",
        ),
        "max_model_residual": Property(
            float,
            0.02,
            "coil-model fits leaving more of the signal unexplained are not used",
            low=0.0,
            high=1.0,
        ),
        "rewhiten_to_bottle": Property(
            bool,
            True,
            "combine the channels as if whitened like the coil file's bottle scan (when it keeps "
            "its prewhitening): the measured profile then holds whatever this scan's noise "
            "estimate",
        ),
    }

    def setup(self) -> None:
        names = [n.strip() for n in self.coil_models.split(",") if n.strip()]
        search = (*self.context.resource_dirs, chains_dir())
        paths, self.models = [], []
        if names == ["auto"]:
            for path, model in coil_files_with_identity(search):
                paths.append(path)
                self.models.append(model)
            names = []
        for name in names:
            try:
                paths.append(find_coil_file(name, search))
                self.models.append(read_coil_file(paths[-1]))
            except (ValueError, KeyError, TypeError) as exc:  # CoilFileError among them
                raise CoilFileError(
                    self.context.file_error(name, str(exc), "coil file", (chains_dir(),))
                ) from None
        if paths:
            log.info(
                "coil files: %s",
                ", ".join(f"{m.name} ({p})" for m, p in zip(self.models, paths, strict=True)),
            )
        self.weights: np.ndarray | None = None
        self.whitening: np.ndarray | None = None
        self._fields: tuple[Geometry, dict[int, np.ndarray]] | None = None
        self._profile: tuple[Geometry, np.ndarray, np.ndarray] | None = None
        self._precomputed_for = ""
        self.validity: np.ndarray | None = None
        self._gain_sent = False
        self.corrected = False
        self.combination = self.method
        self.notices: list[Notice] = []
        if self.method == "adaptive":
            # its numba kernel compiled (first scan on a machine, ~4 s) or loaded from numba's
            # cache (~0.2 s) now, while the scan runs, not after its last readout
            walsh_weights(np.ones((2, 4, 4, 4), np.complex64), self.block)

    def _matching(self, channels: int, warn: bool = True):
        """The first coil file measured with this scan's coil, or None (with a warning that
        gives each file's reason)."""
        scan = CoilIdentity.from_header(self.header, channels)
        reasons = []
        for model in self.models:
            ident = getattr(model, "measured_with", None)
            if ident is None:
                if model.channels == channels:
                    if not warn:
                        return model
                    log.warning(
                        "coil file %s records no coil (measured_with): used on channel count alone",
                        model.name,
                    )
                    return model
                reasons.append(f"{model.name}: {model.channels} channels")
                continue
            why = ident.mismatch(scan)
            if not why:
                return model
            reasons.append(f"{model.name}: {why}")
        if not warn:
            return None
        if not self.coil_models.strip():
            log.info("coil_models is empty: the receive profile is not corrected")
            return None
        listed = "; ".join(reasons) if reasons else f"coil_models: {self.coil_models}"
        self._warn(
            f"no coil file for this coil ({scan.describe()}; {listed}): the receive profile "
            "stays in the image; measure one with sodium-gadgets coil-profile (README: "
            "installing a new coil)"
        )
        return None

    def _geometry(self, item: ismrmrd.Image) -> Geometry:
        """The recon volume's geometry: matrix and FOV from the header, position and axes from
        ``item`` (an acquisition's, as every image here carries)."""
        recon = self.header.encoding[0].reconSpace
        m, fov = recon.matrixSize, recon.fieldOfView_mm
        return Geometry(
            (int(m.z), int(m.y), int(m.x)),
            (float(fov.x), float(fov.y), float(fov.z)),
            tuple(item.position),
            tuple(item.read_dir),
            tuple(item.phase_dir),
            tuple(item.slice_dir),
        )

    def _precompute_fields(self, item: ismrmrd.Image) -> None:
        """The matching coil model's fields over the volume, both handednesses, computed when
        the whitening arrives (the scan's start): they depend on the geometry only, and cost
        0.1-0.5 s that would otherwise come after the last readout."""
        if self.header is None:
            return
        model = self._matching(self.whitening.shape[0], warn=False)
        if not isinstance(model, CoilModel | SplineProfile):
            return
        geom = self._geometry(item)
        pts = geom.points_mm()
        if isinstance(model, SplineProfile):
            self._profile = (geom, model(pts).astype(np.float32), model.valid_at(pts))
            self._precomputed_for = model.name
            return
        pts = pts.reshape(-1, 3)
        self._fields = (geom, {h: model.fields(pts, h).astype(np.complex64) for h in (1, -1)})
        self._precomputed_for = model.name

    def _model_weights(self, coils: np.ndarray, item: ismrmrd.Image) -> np.ndarray | None:
        """Roemer weights ``s / |s|^2`` from the matching coil model, or None."""
        nch = coils.shape[0]
        model = self._matching(nch)
        if model is None:
            if nch == 1:
                self.combination = SINGLE_CHANNEL
            return None
        geom = Geometry.from_image(item)
        points = geom.points_mm()
        if isinstance(model, SplineProfile):
            return self._profile_weights(coils, model, geom)
        if isinstance(model, ReceiveProfile):
            profile = model(points)
            low = profile < 0.25  # outside what the phantom filled, a polynomial wanders
            if low.any():
                log.warning(
                    "receive profile %s below 0.25 in %d voxels: clipped",
                    model.name,
                    int(low.sum()),
                )
            self.combination = f"profile:{model.name}"
            self.corrected = True
            return (1.0 / np.maximum(profile, 0.25))[None].astype(np.complex64)
        if self.whitening is None:
            log.warning("no prewhitening matrix from upstream: coil-model fit with full mixing")
        fields = None
        if (
            self._fields is not None
            and self._precomputed_for == model.name
            and _same_geometry(self._fields[0], geom)
        ):
            fields = self._fields[1]
        fit = fit_coil_model(coils, points, model, self.whitening, fields=fields)
        if fit.residual > self.max_model_residual:
            self._warn(
                f"coil model {model.name} does not fit this scan (residual {fit.residual:.3f} > "
                f"{self.max_model_residual}): receive profile not corrected; check the coil file "
                "and that the coil is at the isocentre"
            )
            return None
        if fields is not None:
            sens = (fit.mixing @ fields[fit.handedness]).reshape(coils.shape)
        else:
            sens = fit.sensitivities(model, points.reshape(-1, 3)).reshape(coils.shape)
        power = np.sum(np.abs(sens) ** 2, axis=0)
        self.combination = f"model:{model.name}"
        self.corrected = True
        return (sens / np.maximum(power, 1e-6 * power.max())).astype(np.complex64)

    def _profile_weights(
        self, coils: np.ndarray, model: SplineProfile, geom: Geometry
    ) -> np.ndarray | None:
        """This combination's weights divided by the measured profile."""
        nch = coils.shape[0]
        if nch > 1 and (model.combination, model.block) != (self.method, self.block):
            self._warn(
                f"coil file {model.name} was measured through the {model.combination} "
                f"combination (block {model.block}); this chain combines with {self.method} "
                f"(block {self.block}): not used, the receive profile stays in the image"
            )
            return None
        cached = self._profile is not None and self._precomputed_for == model.name
        if cached and _same_geometry(self._profile[0], geom):
            profile, valid = self._profile[1], self._profile[2]
        else:
            points = geom.points_mm()
            profile, valid = model(points).astype(np.float32), model.valid_at(points)
        if nch > 1:
            rewhiten = self._rewhitening(model)
            if rewhiten is None:
                base = self._weights(coils)
            else:  # the weights of the rewhitened channels, applied to this scan's: T^H w
                t = rewhiten.astype(np.complex64)
                base = _mix(t.conj().T, self._weights(_mix(t, coils)))
        else:
            base = np.ones((1, *coils.shape[1:]), np.complex64)
        self.combination = f"profile:{model.name}"
        self.corrected = True
        self.validity = valid
        log.info(
            "receive profile %s: %.0f%% of the volume inside the bottle it was measured on",
            model.name,
            100 * valid.mean(),
        )
        return (base / np.maximum(profile, 1e-3)[None]).astype(np.complex64)

    def _rewhitening(self, model: SplineProfile) -> np.ndarray | None:
        """The matrix taking this scan's whitened channels to the bottle's whitening, with
        ``rewhiten_to_bottle`` when the coil file keeps the bottle's (else None). Either way a
        scan whose channel noise is far from the bottle's is said."""
        if model.whitening is None:
            return None
        if self.whitening is None:
            if self.rewhiten_to_bottle:
                self._warn(
                    f"coil file {model.name} keeps its bottle's prewhitening, but this scan sent "
                    "none (no noise scans, or NoisePrewhitener.send_whitening off): channels not "
                    "rewhitened, the receive profile may differ from the bottle's by 1-2%"
                )
            return None
        t, (low, high) = rewhitening(model.whitening, self.whitening)
        # beyond the spread of two estimates (up to 1.7x at 32 channels, 1024 samples each)
        if high > 2.0 * low:
            self._warn(
                f"this scan's channel noise differs from the bottle's of coil file {model.name} "
                f"(noise amplitudes {low:.2f}..{high:.2f} after rewhitening, 1 when alike): a "
                "changed coil, cable or preamplifier? Check the coil and measure its profile again"
            )
        if not self.rewhiten_to_bottle:
            return None
        log.info(
            "channels rewhitened to the bottle of %s (noise amplitudes %.3f..%.3f of this scan's)",
            model.name,
            low,
            high,
        )
        return t

    def _noise_gain(self, shape: tuple[int, ...]) -> np.ndarray:
        """The combined image's noise variance over one channel's (whitened channels)."""
        if self.method == "sos" or self.weights is None:
            return np.ones(shape, np.float32)  # |x| of unit-norm-like weights at good SNR
        roemer = self.method == "roemer" and self.combination == "roemer"
        return combination_noise_gain(self.weights, roemer=roemer)

    def _warn(self, text: str) -> None:
        """Logged, and sent to the client once (with the combined volume)."""
        log.warning(text)
        self.notices.append(Notice(text))

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
        if meta.get("DataRole") == "NoiseWhitening":  # from NoisePrewhitener: consumed here
            self.whitening = np.asarray(item.data[0, 0], np.complex128)
            self._precompute_fields(item)
            return
        if not GriddedVolume.describes(item):
            yield item
            return
        info = GriddedVolume.from_meta(meta, "CoilCombiner")
        if info.coils is None:
            yield item  # combined already
            return
        ncoils, nbins = info.coils, len(info.bins_hz)
        data = item.data.reshape((ncoils, nbins) + item.data.shape[1:])
        centre = info.centre_bin
        if self.method == "sos":
            out = sum_of_squares(data[:, centre])[None].astype(np.complex64)
            info = info.with_(bins_hz=(0.0,))
        else:
            if self.weights is None:
                self.weights = self._model_weights(data[:, centre], item)
                if self.weights is None:
                    self.weights = self._weights(data[:, centre])
                log.info("coil combination: %s over %d channels", self.combination, ncoils)
            if self.method == "roemer" and self.combination == "roemer":
                out = np.stack([roemer(data[:, b], self.weights) for b in range(nbins)])
            else:
                out = np.einsum("c...,cb...->b...", self.weights.conj(), data)
        combined = info.with_(
            coils=None, combination=self.combination, receive_corrected=self.corrected
        ).to_meta()
        yield from self.notices
        self.notices.clear()
        if self.validity is not None:  # once, for the calibration
            meta = {"DataRole": "ReceiveProfileValidity", "SodiumCombination": self.combination}
            yield volume_image(self.validity.astype(np.float32), item, meta)
            self.validity = None
        if not self._gain_sent and info.noise_weights is not None:  # once, for the calibration
            self._gain_sent = True
            yield volume_image(self._noise_gain(item.data.shape[1:]), item, NOISE_GAIN_META)
        yield volume_image(
            out.astype(np.complex64),
            item,
            combined,
            contrast=item.contrast,
            series_index=item.image_series_index,
        )
