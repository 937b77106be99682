"""Phantom calibration to tissue sodium concentration (TSC, mM): the reference tubes are found and
measured in the first echo (:func:`gadgets.core.calibration.calibrate.calibrate`), ``S = a C + b``
is fitted against ``tube_concentrations_mM``, and ``TSC = (S - b) / a`` is corrected for the
relaxation weighting of the tissue class against the tubes'
(:mod:`gadgets.core.numerics.relaxation`: brain vs fluid, voxel by voxel from the echo ratio with
two echoes, from the concentration with one).

Outputs (ISMRMRD images with console meta, each its own series):

* ``tsc_series_index`` (10): ``Na23 TSC [mmol/L]``, ``DataRole=Quantitative``, the fit in
  ``ImageComments`` and, as data, in the meta ``SodiumCalibration`` (JSON:
  :meth:`~gadgets.core.calibration.calibrate.CalibrationResult.to_dict`);
* ``standard_error_series_index`` (11), with ``output_standard_error``: ``Na23 TSC standard
  error [mmol/L]``, one standard deviation of the map per voxel from the image noise and the tube
  fit's (:mod:`gadgets.core.calibration.uncertainty`; the noise gain comes from the coil
  combination, the noise weights from the gridder). The QA picture prints the 95% interval of a
  typical brain value (the median over the head) with it;
* ``sodium_r_series_index`` (30), with two echoes and ``output_sodium_r``: the relaxation-weighted
  23NaR image ``I(TE1) - exp[(TE2 - TE1)/T2*_CSF] I(TE2)`` in the same mM scale;
* the uncalibrated first-echo image (``uncalibrated_series_index``, 20) when
  ``output_uncalibrated`` is on, and always when calibration fails (fewer than 2 tubes, or
  ``R^2 < min_r2``): then no TSC map is made and a notice goes to the client and the log --
  never a silently wrong TSC map; its meta ``SodiumCalibration`` says why;
* ``qa_series_index`` (50), with ``output_qa`` (on by default): ``Na23 TSC QA``, the calibration QA
  picture of :mod:`gadgets.core.output.qa` (fit plot with a, b, R^2 and residuals; tube ROIs on the
  slice through the tubes; TSC map with a colour bar in mmol/L), made whether the calibration worked
  or not (then it says ``CALIBRATION FAILED: <reason>`` in red and shows the tubes that were found).
  It travels as an RGB ``ismrmrd.Image`` (:func:`gadgets.volumes.picture_image`: 3 channels of
  uint16 0-255, ``IMTYPE_RGB``) with meta ``DataRole=QA``, ``ImageTypeValue3=QA`` and
  ``CalibrationStatus`` (``OK`` or ``FAILED``); ``DicomOutput`` turns it into a Secondary Capture
  DICOM file (and a PNG). A picture that cannot be drawn is a warning, never a lost scan. With
  ``qa_helper`` (on) it is drawn in a helper process (:mod:`gadgets.core.output.qa_process`) while
  the maps are encoded and sent: it comes last, without delaying them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import ClassVar

import ismrmrd
import numpy as np
from scipy.ndimage import gaussian_filter

from gadgets.core.calibration.calibrate import CalibrationResult, TubeSetup, calibrate
from gadgets.core.calibration.tube import tubes_mask
from gadgets.core.calibration.tube_fit import signal_variance
from gadgets.core.calibration.tube_templates import undo_tube_blur
from gadgets.core.calibration.uncertainty import (
    fit_covariance,
    smoothing_noise_ratios,
    tsc_standard_error,
    two_echo_factor_noise,
)
from gadgets.core.numerics import relaxation as rx
from gadgets.core.receive.coil_identity import SINGLE_CHANNEL
from gadgets.echo_volumes import EchoVolumesGadget
from gadgets.runtime.gadget import Property
from gadgets.runtime.notice import Notice
from gadgets.volume_meta import GriddedVolume
from gadgets.volumes import picture_image, read_meta, volume_image

__all__ = ["TscCalibration"]

log = logging.getLogger(__name__)
_TUBE_CLASSES = ("agarose", "saline")


def _identity_line(header) -> str:
    """Patient name and ID, study date and protocol, for the QA picture's corner."""
    subject, study = header.subjectInformation, header.studyInformation
    info = header.measurementInformation
    parts = [
        str(getattr(subject, "patientName", "") or "").replace("^", " "),
        f"ID {subject.patientID}" if subject is not None and subject.patientID else "",
        str(study.studyDate) if study is not None and study.studyDate else "",
        str(info.protocolName) if info is not None and info.protocolName else "",
    ]
    return "   ".join(p for p in parts if p)


def _positions(text: str) -> list[np.ndarray] | None:
    if not text.strip():
        return None
    out = []
    for part in text.split(";"):
        xyz = [float(v) for v in part.split(",") if v.strip()]
        if len(xyz) != 3:
            raise ValueError(f"tube position {part!r}: expected x,y,z in mm")
        out.append(np.array(xyz))
    return out


@dataclass
class _ClassNoise:
    """What the class correction's own noise depends on (:meth:`TscCalibration._class_factor`),
    for the standard error: ``per_fraction`` = dF/d(fluid fraction); ``varying``: where the
    fraction is not clipped; one echo: ``ramp_per_mM`` (dF/dT there); two echoes: the echoes
    smoothed by ``sigma_vox``, the classes' echo ratios and the second echo's noise power."""

    sigma_vox: ClassVar[float] = 1.0  # the echoes' smoothing for the fluid fraction
    per_fraction: float
    varying: np.ndarray
    smooth: tuple[np.ndarray, np.ndarray] | None = None
    ramp_per_mM: float = 0.0
    echo_ratios: tuple[float, float] = (0.0, 1.0)
    echo2_power: float | None = None
    outside_tubes: np.ndarray | None = None
    uncorrected: np.ndarray | None = None


class TscCalibration(EchoVolumesGadget):
    """Tubes -> linear calibration -> TSC map (mM), optional 23NaR and uncalibrated series."""

    header_needs = ("encoding", "echo_times", "field_strength")

    properties = {
        "tube_concentrations_mM": Property(
            list[float], (30.0, 60.0, 90.0, 120.0), "2-8 values, mM", low=0.0, length=(2, 8)
        ),
        "tube_class": Property(str, "agarose", "tube material", choices=_TUBE_CLASSES),
        "tube_radius_mm": Property(
            float,
            0.0,
            "inner radius of the tubes, mm (0: fitted per tube; a wrong value biases the map)",
            low=0.0,
            high=50.0,
        ),
        "tube_positions_mm": Property(str, "", "optional 'x,y,z; ...' patient LPS mm"),
        "min_r2": Property(float, 0.99, "calibrations with a lower R^2 are refused", low=0, high=1),
        "class_correction": Property(bool, True, "correct brain/fluid relaxation vs tubes"),
        "undo_tube_blur": Property(
            bool, True, "inside the tubes, undo the readout blur the template fit measured"
        ),
        "fluid_from_mM": Property(float, 70.0, "one echo: fluid fraction 0 below this, mM"),
        "fluid_to_mM": Property(float, 120.0, "one echo: fluid fraction 1 above this, mM"),
        "tube_t1_ms": Property(
            float, 0.0, "tube medium T1, ms (0: the class's default)", low=0.0, high=1000.0
        ),
        "t1_tube_ms": Property(float, 0.0, "old name of tube_t1_ms", low=0.0, high=1000.0),
        "tube_t2s_ms": Property(
            list[float],
            (),
            "tube medium T2* components, ms (empty: the class's defaults)",
            low=0.01,
            high=1000.0,
            length=(0, 4),
        ),
        "tube_t2s_fractions": Property(
            list[float],
            (),
            "their signal fractions, summing to 1 (with tube_t2s_ms)",
            low=0.0,
            high=1.0,
            length=(0, 4),
        ),
        "tube_length_mm": Property(
            float,
            0.0,
            "filled length of the tubes, mm (0: unknown); shorter blobs are not tubes",
            low=0.0,
            high=500.0,
        ),
        "tube_axis": Property(
            str,
            "z",
            "the tubes' direction in the holder (patient axes), or auto (from the image)",
            choices=("x", "y", "z", "auto"),
        ),
        "require_receive_correction": Property(
            bool,
            True,
            "refuse to calibrate an array whose receive profile no coil file removed",
        ),
        "smoothing_fwhm_mm": Property(
            float, 0.0, "Gaussian smoothing of the maps, FWHM mm", low=0.0, high=50.0
        ),
        "t2s_csf_ms": Property(
            float, 56.0, "T2* of CSF for the 23NaR map, ms", low=1.0, high=1000.0
        ),
        "output_sodium_r": Property(bool, True, "with two echoes, also the 23NaR map"),
        "output_uncalibrated": Property(bool, False, "also the uncalibrated image"),
        "output_standard_error": Property(
            bool, False, "also the TSC map's standard error (mmol/L; image noise and the fit's)"
        ),
        "standard_error_series_index": Property(
            int, 11, "series index of the TSC standard-error map"
        ),
        "tsc_series_index": Property(int, 10, "series index of the TSC map"),
        "uncalibrated_series_index": Property(int, 20, "series index, uncalibrated image"),
        "sodium_r_series_index": Property(int, 30, "series index of the 23NaR map"),
        "output_qa": Property(bool, True, "also the calibration QA picture (RGB)"),
        "qa_series_index": Property(int, 50, "series index of the QA picture"),
        "qa_helper": Property(
            bool, True, "draw the QA picture in a helper process, while the maps are sent"
        ),
    }

    def setup(self) -> None:
        super().setup()
        conc = list(self.tube_concentrations_mM)
        self.positions = _positions(self.tube_positions_mm)
        if self.positions is not None and len(self.positions) != len(conc):
            raise ValueError("tube_positions_mm and tube_concentrations_mM differ in length")
        seq = self.header.sequenceParameters  # TE: header_needs
        self.tr_s = float(seq.TR[0]) * 1e-3 if seq.TR else None
        self.flip_deg = float(seq.flipAngle_deg[0]) if seq.flipAngle_deg else 90
        self.field_T = float(self.header.acquisitionSystemInformation.systemFieldStrength_T)
        self.tube = rx.relaxation(self.tube_class, self.field_T)
        if self.output_qa:
            if self.qa_helper:
                from gadgets.core.output import qa_process

                qa_process.start()
            else:
                from gadgets.core.output.qa import warm_up

                warm_up()
        self.tube = self._tube_relaxation(self.tube)
        self.validity: np.ndarray | None = None
        self.noise_gain: np.ndarray | None = None

    def _tube_relaxation(self, default: rx.Relaxation) -> rx.Relaxation:
        """The class's relaxation with the site's measured values in its place."""
        if self.tube_t1_ms and self.t1_tube_ms and self.tube_t1_ms != self.t1_tube_ms:
            raise ValueError("tube_t1_ms and its old name t1_tube_ms differ: set one")
        t1_ms = self.tube_t1_ms or self.t1_tube_ms
        t2s, fractions = tuple(self.tube_t2s_ms), tuple(self.tube_t2s_fractions)
        if fractions and not t2s:
            raise ValueError("tube_t2s_fractions without tube_t2s_ms")
        if t2s and not fractions:
            if len(t2s) > 1:
                raise ValueError("tube_t2s_ms with more than one component needs their fractions")
            fractions = (1.0,)
        if t2s and len(fractions) != len(t2s):
            raise ValueError(
                f"tube_t2s_ms has {len(t2s)} components, tube_t2s_fractions {len(fractions)}"
            )
        return rx.Relaxation(
            t1_ms * 1e-3 if t1_ms else default.t1_s,
            tuple(t * 1e-3 for t in t2s) if t2s else default.t2s_s,
            fractions if t2s else default.fractions,
        )

    def relaxation_note(self) -> str:
        """The tube relaxation used, for the QA picture and the log."""
        t = self.tube
        t2 = "/".join(f"{1e3 * v:g}" for v in t.t2s_s)
        fr = "/".join(f"{v:g}" for v in t.fractions)
        measured = self.tube_t1_ms or self.t1_tube_ms or len(self.tube_t2s_ms)
        source = "set on the protocol" if measured else f"{self.tube_class} defaults"
        return f"tubes T1 {1e3 * t.t1_s:g} ms, T2* {t2} ms ({fr}): {source}"

    def process(self, item):
        role = read_meta(item).get("DataRole") if isinstance(item, ismrmrd.Image) else None
        if role == "ReceiveProfileValidity":
            self.validity = np.asarray(item.data[0]) > 0.5  # from CoilCombiner: consumed here
            return
        if role == "NoiseGain":
            self.noise_gain = np.asarray(item.data[0], np.float32)  # consumed here too
            return
        yield from super().process(item)

    def _echo(self, echo: int) -> tuple[np.ndarray, GriddedVolume]:
        """The echo's 0 Hz volume (complex) and what the gridder says of it."""
        img = self.echoes[echo]
        info = GriddedVolume.from_meta(read_meta(img), "TscCalibration")
        return img.data[info.centre_bin], info

    @staticmethod
    def _rotation(img: ismrmrd.Image) -> np.ndarray:
        """Patient LPS -> volume (read, phase, slice) axes."""
        return np.array([img.read_dir, img.phase_dir, img.slice_dir], np.float64)

    def _patient_to_volume(self, img: ismrmrd.Image, p: np.ndarray) -> np.ndarray:
        return self._rotation(img) @ (p - np.asarray(img.position, np.float64))

    def complete(self):
        first = self.echoes[min(self.echoes)]
        x1, info = self._echo(min(self.echoes))
        how = info.combination or "not said"
        self.combination_note = (
            f"removed ({how})" if info.receive_corrected else f"still in the image ({how})"
        )
        log.info("%s; receive profile %s", self.relaxation_note(), self.combination_note)
        mag1 = np.abs(x1).astype(np.float32)
        shape = mag1.shape
        voxel_mm = np.asarray(first.field_of_view, np.float64) / np.array(shape[::-1])
        te1 = info.require_echo_time("TscCalibration")
        beta = info.k_window_beta  # the gridder's apodisation, which the templates carry too
        kfilter = info.readout_filter(self.tube.decay, te1)
        positions = None
        if self.positions is not None:
            positions = tuple(self._patient_to_volume(first, p) for p in self.positions)
        axis = None
        if self.tube_axis != "auto":
            axis = self._rotation(first) @ np.eye(3)["xyz".index(self.tube_axis)]
        setup = TubeSetup(
            tuple(self.tube_concentrations_mM),
            self.tube_radius_mm,
            positions,
            self.min_r2,
            axis=axis,
            length_mm=self.tube_length_mm,
            valid=self.validity
            if self.validity is not None and self.validity.shape == shape
            else None,
        )
        result = calibrate(mag1, voxel_mm, setup, kfilter)
        fit = result.fit
        problem = result.failure
        uncorrected_array = info.receive_corrected is False and info.combination != SINGLE_CHANNEL
        if not problem and self.require_receive_correction and uncorrected_array:
            problem = (
                "the coil's receive profile is still in the image (no coil file matched this "
                "coil: see the coil combination's warning), so tubes beside the coil and tissue "
                "in mid-brain are not comparable; measure the coil with sodium-gadgets "
                "coil-profile, or set require_receive_correction=false"
            )
        if problem and fit is not None:
            problem = f"{problem}: {fit.summary()}"
        smooth = self.smoothing_fwhm_mm / 2.3548 / voxel_mm[::-1] if self.smoothing_fwhm_mm else 0
        tsc = se = None
        if problem:
            message = f"TSC calibration failed ({problem}); returning the uncalibrated image"
            log.warning(message)
        else:
            log.info("calibration: %s", fit.summary())
            signal = mag1
            if self.undo_tube_blur:
                signal = undo_tube_blur(mag1, voxel_mm, [t for t, _ in result.pairs], kfilter)
            tsc = fit.tsc_mM(signal)
            factor, class_noise = 1.0, None
            if self.class_correction and self.tr_s is not None:
                factor, class_noise = self._class_factor(tsc, mag1, te1)
                # inside the tubes the medium is the tube's own, which the fit calibrated
                inside = tubes_mask(shape, voxel_mm, [t for t, _ in result.pairs], voxel_mm.mean())
                factor = np.where(inside, 1.0, factor)
                class_noise.varying &= ~inside
                class_noise.outside_tubes, class_noise.uncorrected = ~inside, tsc
                tsc = tsc * factor
            se, se_missing = None, ""
            if self.output_standard_error:
                se, se_missing = self._standard_error(
                    signal, mag1, kfilter, info, result, factor, voxel_mm, class_noise
                )
            if se_missing:
                log.warning("no TSC standard error: %s", se_missing)
                yield Notice(f"no TSC standard error: {se_missing}")
            if self.smoothing_fwhm_mm:
                tsc = gaussian_filter(tsc, smooth)
        # the picture is drawn in the helper process while the maps below are sent
        picture = self._qa_start(mag1, voxel_mm, result, tsc, se)
        record = json.dumps(result.to_dict())
        if problem:
            yield Notice(message)
        else:
            comments = f"TSC from {len(fit.signals)} {self.tube_class} tubes: {fit.summary()}"
            desc = "Na23 TSC [mmol/L]"
            meta = self._meta(desc, "mmol/L", "TSC", "_TSC", (70, 140), comments)
            meta["SodiumKWindowBeta"] = beta
            meta["SodiumCalibration"] = record
            yield volume_image(
                tsc.astype(np.float32), first, meta, series_index=self.tsc_series_index
            )
            if se is not None:
                meta = self._meta(
                    "Na23 TSC standard error [mmol/L]",
                    "mmol/L",
                    "TSC_SE",
                    "_TSCSE",
                    (5, 10),
                    "1 SD of the TSC map from image noise and the tube fit (repeat-scan spread; "
                    f"systematic errors not included); {comments}",
                )
                yield volume_image(se, first, meta, series_index=self.standard_error_series_index)
            if self.necho >= 2 and self.output_sodium_r and 1 in self.echoes:
                x2, info2 = self._echo(1)
                te2 = info2.require_echo_time("TscCalibration")
                nar = rx.sodium_r(mag1, np.abs(x2), (te1, te2), self.t2s_csf_ms * 1e-3)
                nar = nar / fit.slope
                if self.smoothing_fwhm_mm:
                    nar = gaussian_filter(nar, smooth)
                comment = f"23NaR, T2*csf {self.t2s_csf_ms} ms; {comments}"
                meta = self._meta(
                    "Na23 23NaR [mmol/L eq]", "mmol/L", "NAR", "_23NaR", (15, 30), comment
                )
                yield volume_image(
                    nar.astype(np.float32), first, meta, series_index=self.sodium_r_series_index
                )
        if problem or self.output_uncalibrated:
            scale = 1000.0 / max(float(np.percentile(mag1, 99.5)), 1e-30)
            comment = "uncalibrated: " + (problem or "as requested")
            meta = self._meta(
                "Na23 uncalibrated [a.u.]",
                "1",
                "Na23",
                "_NA",
                (500, 1000),
                comment,
                quantitative=False,
            )
            meta["SodiumCalibration"] = record
            yield volume_image(
                (mag1 * scale).astype(np.float32),
                first,
                meta,
                series_index=self.uncalibrated_series_index,
            )
        if picture is not None:
            yield from self._qa_finish(picture, first, fit, result.failure)

    def _standard_error(
        self, signal, mag1, kfilter, info: GriddedVolume, result, factor, voxel_mm, class_noise
    ):
        """``(standard error map, "")`` in mmol/L (:mod:`gadgets.core.calibration.uncertainty`),
        or ``(None, why not)``. The class correction's own noise is in it (``class_noise``
        from :meth:`_class_factor`; the second echo's magnitude noise taken as the first's,
        scaled by the two echoes' noise powers: the same combination weights)."""
        if self.noise_gain is None or info.noise_power is None:
            return None, "the image noise is unknown (no noise gain from the coil combination)"
        if self.noise_gain.shape != signal.shape:
            return None, f"noise gain {self.noise_gain.shape}, map {signal.shape}"
        if self.smoothing_fwhm_mm:
            return None, "not propagated through smoothing_fwhm_mm (correlated noise)"
        mag_var = 0.5 * info.noise_power * self.noise_gain  # the magnitude: half the complex
        fit = result.fit
        tubes = fit.tubes or [t for t, _ in result.pairs]
        head = result.head if result.head is not None else np.zeros(signal.shape, bool)
        fitted = not self.tube_radius_mm
        tube_var = [
            signal_variance(mag1, voxel_mm, t, head, kfilter, mag_var, fitted) for t in tubes
        ]
        cov = fit_covariance(fit, tube_var)
        factor_var = factor_cov = 0.0
        noise = class_noise
        if noise is not None and noise.smooth is None:  # one echo: F is F(T)
            factor = factor + noise.uncorrected * np.where(noise.varying, noise.ramp_per_mM, 0.0)
        elif noise is not None:
            power2 = noise.echo2_power or info.noise_power
            factor_var, factor_cov = two_echo_factor_noise(
                *noise.smooth,
                mag_var,
                mag_var * (power2 / info.noise_power),
                smoothing_noise_ratios(info.noise_weights, info.k_radius_cpp, noise.sigma_vox),
                *noise.echo_ratios,
                noise.per_fraction,
                noise.outside_tubes,
            )
        se = tsc_standard_error(signal, mag_var, fit, cov, factor, factor_var, factor_cov)
        return se, ""

    @staticmethod
    def _typical_interval(tsc: np.ndarray, se: np.ndarray, head: np.ndarray | None) -> str:
        """The 95% interval of a typical brain value (the median over the head), for the QA."""
        inside = head if head is not None and head.shape == tsc.shape and head.any() else tsc > 20
        value, sd = float(np.median(tsc[inside])), float(np.median(se[inside]))
        return (
            f"typical brain value {value:.1f} mM, 95% interval +/- {1.96 * sd:.1f} mM "
            "(image noise and tube fit; systematic errors not included)"
        )

    def _qa_start(
        self,
        mag1: np.ndarray,
        voxel_mm: np.ndarray,
        result: CalibrationResult,
        tsc: np.ndarray | None,
        se: np.ndarray | None = None,
    ):
        """Start drawing the QA picture (see the module docstring): ``mag1`` the first-echo
        magnitude (a.u.), ``voxel_mm`` (x, y, z), the calibration, the TSC map (mM, None when
        refused). Returns ``(qa, future)``, a :class:`Notice` if the picture cannot be drawn,
        or None without ``output_qa``."""
        if not self.output_qa:
            return None
        from gadgets.core.output.qa import CalibrationQa, QaTube
        from gadgets.core.output.qa_process import render_async

        fit, reason = result.fit, result.failure
        try:
            paired = {id(t): c for t, c in result.pairs}
            nominal = self.tube_radius_mm or 10.0
            qa_tubes = tuple(
                QaTube(
                    tuple(map(float, t.centre_mm)),
                    tuple(map(float, t.axis)),
                    float(t.radius_mm or nominal),
                    float(t.length_mm),
                    float(t.signal),
                    paired.get(id(t)),
                )
                for t in result.tubes
            )
            info = self.header.measurementInformation
            protocol = (info.protocolName if info is not None else "") or "sodium"
            first = self.echoes[min(self.echoes)]
            directions = tuple(
                tuple(float(v) for v in d)
                for d in (first.read_dir, first.phase_dir, first.slice_dir)
            )
            qa = CalibrationQa(
                magnitude=mag1,
                voxel_mm=tuple(map(float, voxel_mm)),
                tubes=qa_tubes,
                concentrations_mM=tuple(map(float, self.tube_concentrations_mM)),
                slope=fit.slope if fit else None,
                intercept=fit.intercept if fit else None,
                r2=fit.r2 if fit else None,
                min_r2=self.min_r2,
                tsc_mM=tsc,
                failure=reason,
                title=f"{protocol}, {self.field_T:g} T, {self.tube_class} tubes, sodium-gadgets",
                identity=_identity_line(self.header),
                directions=directions,
                notes=(
                    self.relaxation_note(),
                    f"receive profile: {self.combination_note}",
                    *([self._typical_interval(tsc, se, result.head)] if se is not None else []),
                ),
            )
            return qa, render_async(qa, use_helper=self.qa_helper)
        except Exception as exc:  # the picture is an extra: never lose the scan for it
            log.exception("QA picture failed")
            return Notice(f"TSC QA picture failed: {type(exc).__name__}: {exc}")

    def _qa_finish(self, started, first: ismrmrd.Image, fit, reason: str):
        """The picture of :meth:`_qa_start` as an RGB image, or its warning."""
        from gadgets.core.output.qa_process import picture

        if isinstance(started, Notice):
            yield started
            return
        qa, future = started
        try:
            rgb = picture(future, qa)
        except Exception as exc:
            log.exception("QA picture failed")
            yield Notice(f"TSC QA picture failed: {type(exc).__name__}: {exc}")
            return
        status = "FAILED" if qa.failed else "OK"
        summary = fit.summary() if fit else "no fit"
        comments = f"calibration {status}" + (f": {reason}" if reason else "") + f"; {summary}"
        meta = {
            "SeriesDescription": "Na23 TSC QA",
            "GADGETRON_SeqDescription": "_QA",
            "DataRole": "QA",
            "ImageTypeValue3": "QA",
            "CalibrationStatus": status,
            "ImageComments": comments[:1000],
            "BurnedInAnnotation": "YES",  # the patient and study are drawn in it
            # for Gadgetron's DicomFinishGadget (reads them without a default)
            "GADGETRON_ImageNumber": "1",
            "GADGETRON_DataRole": "QA",
            "GADGETRON_ImageComment": comments[:1000],
        }
        log.info("QA picture: calibration %s, %dx%d px", status, rgb.shape[1], rgb.shape[0])
        yield picture_image(rgb, first, meta, series_index=self.qa_series_index)

    def _class_factor(
        self, tsc: np.ndarray, mag1: np.ndarray, te1: float
    ) -> tuple[np.ndarray, _ClassNoise]:
        """The per-voxel class correction, and what its noise depends on (for the standard
        error)."""
        brain = rx.relaxation("brain", self.field_T)
        fluid = rx.relaxation("fluid", self.field_T)
        args = (self.tr_s, self.flip_deg, te1)
        w_tube, w_brain, w_fluid = (c.weight(*args) for c in (self.tube, brain, fluid))
        slope = w_tube * (1.0 / w_fluid - 1.0 / w_brain)  # dF / d(fluid fraction)
        if 1 in self.echoes:
            x2, info2 = self._echo(1)
            te = (te1, info2.require_echo_time("TscCalibration"))
            sigma = _ClassNoise.sigma_vox
            s1, s2 = gaussian_filter(mag1, sigma), gaussian_filter(np.abs(x2), sigma)
            frac = rx.fluid_fraction_two_echo(s1, s2, brain, fluid, te)
            noise = _ClassNoise(slope, (frac > 0) & (frac < 1), smooth=(s1, s2))
            noise.echo_ratios = (rx.echo_ratio(brain, te), rx.echo_ratio(fluid, te))
            noise.echo2_power = info2.noise_power
        else:
            frac = rx.fluid_fraction_one_echo(tsc, self.fluid_from_mM, self.fluid_to_mM)
            noise = _ClassNoise(slope, (frac > 0) & (frac < 1))
            noise.ramp_per_mM = slope / (self.fluid_to_mM - self.fluid_from_mM)
        return rx.class_correction(frac, w_tube, w_brain, w_fluid), noise

    @staticmethod
    def _meta(description, unit, label, seq, window, comments, quantitative=True):
        meta = {
            "SeriesDescription": description,
            "GADGETRON_SeqDescription": seq,
            "SequenceDescriptionAdditional": label,
            "Units": unit,
            "LUTLabel": label,
            "ImageTypeValue3": label.upper(),
            "WindowCenter": f"{window[0]:g}",
            "WindowWidth": f"{window[1]:g}",
            "ImageComments": comments[:1000],
        }
        if quantitative:
            meta["DataRole"] = "Quantitative"
        return meta
