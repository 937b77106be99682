"""Phantom calibration to tissue sodium concentration (TSC, mM): the reference tubes are found
and measured in the first echo (:mod:`gadgets.core.calibration`), ``S = a C + b`` is fitted
against ``tube_concentrations_mM``, and ``TSC = (S - b) / a`` is corrected for the relaxation
weighting of the tissue class against the tubes' (:mod:`gadgets.core.relaxation`: brain vs fluid,
voxel by voxel from the echo ratio with two echoes, from the concentration with one).

Outputs (ISMRMRD images with console meta, each its own series):

* ``tsc_series_index`` (10): ``Na23 TSC [mmol/L]``, ``DataRole=Quantitative``, the fit in
  ``ImageComments``;
* ``sodium_r_series_index`` (30), with two echoes and ``output_sodium_r``: the relaxation-weighted
  23NaR image ``I(TE1) - exp[(TE2 - TE1)/T2*_CSF] I(TE2)`` in the same mM scale;
* the uncalibrated first-echo image (``uncalibrated_series_index``, 20) when
  ``output_uncalibrated`` is on, and always when calibration fails (fewer than 2 tubes, or
  ``R^2 < min_r2``): then no TSC map is made and a warning goes to the client and the log --
  never a silently wrong TSC map;
* ``qa_series_index`` (50), with ``output_qa`` (on by default): ``Na23 TSC QA``, the calibration
  QA picture of :mod:`gadgets.core.qa` (fit plot with a, b, R^2 and residuals; tube ROIs on the
  slice through the tubes; TSC map with a colour bar in mmol/L), made whether the calibration
  worked or not (then it says ``CALIBRATION FAILED: <reason>`` in red and shows the tubes that
  were found). It travels as an RGB ``ismrmrd.Image`` (:func:`gadgets.volumes.picture_image`:
  3 channels of uint16 0-255, ``IMTYPE_RGB``) with meta ``DataRole=QA``, ``ImageTypeValue3=QA``
  and ``CalibrationStatus`` (``OK`` or ``FAILED``); ``DicomOutput`` turns it into a Secondary
  Capture DICOM file (and a PNG). A picture that cannot be drawn is a warning, never a lost scan.
  With ``qa_helper`` (on) it is drawn in a helper process (:mod:`gadgets.core.qa_helper`) while
  the maps are encoded and sent: it comes last, without delaying them.
"""

from __future__ import annotations

import logging

import ismrmrd
import numpy as np
from scipy.ndimage import gaussian_filter

from .core import calibration as cal
from .core import relaxation as rx
from .core.apodization import kaiser_window
from .runtime.gadget import Property
from .volumes import EchoVolumesGadget, meta_floats, picture_image, read_meta, volume_image

log = logging.getLogger(__name__)


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


class TscCalibration(EchoVolumesGadget):
    """Tubes -> linear calibration -> TSC map (mM), optional 23NaR and uncalibrated series."""

    properties = {
        "tube_concentrations_mM": Property(tuple, (30.0, 60.0, 90.0, 120.0), "2-8 values"),
        "tube_class": Property(str, "agarose", "tube material: agarose or saline"),
        "tube_radius_mm": Property(float, 10.0, "inner radius of the tubes (0: fit it)"),
        "tube_positions_mm": Property(str, "", "optional 'x,y,z; ...' patient LPS mm"),
        "min_r2": Property(float, 0.99, "calibrations with a lower R^2 are refused"),
        "class_correction": Property(bool, True, "correct brain/fluid relaxation vs tubes"),
        "undo_tube_blur": Property(
            bool, True, "inside the tubes, undo the readout blur the template fit measured"
        ),
        "fluid_from_mM": Property(float, 70.0, "one echo: fluid fraction 0 below this"),
        "fluid_to_mM": Property(float, 120.0, "one echo: fluid fraction 1 above this"),
        "t1_tube_ms": Property(float, 0.0, "tube T1 (0: class default for the field)"),
        "smoothing_fwhm_mm": Property(float, 0.0, "Gaussian smoothing of the maps"),
        "t2s_csf_ms": Property(float, 56.0, "T2* of CSF for the 23NaR map"),
        "output_sodium_r": Property(bool, True, "with two echoes, also the 23NaR map"),
        "output_uncalibrated": Property(bool, False, "also the uncalibrated image"),
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
        if not 2 <= len(conc) <= 8:
            raise ValueError(f"tube_concentrations_mM: 2 to 8 values, got {len(conc)}")
        self.positions = _positions(self.tube_positions_mm)
        if self.positions is not None and len(self.positions) != len(conc):
            raise ValueError("tube_positions_mm and tube_concentrations_mM differ in length")
        seq = self.header.sequenceParameters
        self.tr_ms = float(seq.TR[0]) if seq is not None and seq.TR else None
        self.flip_deg = float(seq.flipAngle_deg[0]) if seq is not None and seq.flipAngle_deg else 90
        self.field_T = float(self.header.acquisitionSystemInformation.systemFieldStrength_T)
        self.tube = rx.relaxation(self.tube_class, self.field_T)
        if self.output_qa:
            if self.qa_helper:
                from .core import qa_helper

                qa_helper.start()
            else:
                from .core.qa import warm_up

                warm_up()
        if self.t1_tube_ms > 0:
            self.tube = rx.Relaxation(self.t1_tube_ms, self.tube.t2s_ms, self.tube.fractions)

    def _echo(self, echo: int) -> tuple[np.ndarray, dict]:
        img = self.echoes[echo]
        meta = read_meta(img)
        bins = meta_floats(meta, "SodiumBinsHz")
        return img.data[int(np.argmin(np.abs(bins)))], meta

    def _patient_to_volume(self, img: ismrmrd.Image, p: np.ndarray) -> np.ndarray:
        rot = np.array([img.read_dir, img.phase_dir, img.slice_dir], np.float64)
        return rot @ (p - np.asarray(img.position, np.float64))

    def complete(self):
        first = self.echoes[min(self.echoes)]
        x1, meta = self._echo(min(self.echoes))
        mag1 = np.abs(x1).astype(np.float32)
        shape = mag1.shape
        voxel_mm = np.asarray(first.field_of_view, np.float64) / np.array(shape[::-1])
        te1 = float(meta.get("SodiumEchoTimeS", 0.0))
        kfilter = None
        beta = float(meta.get("SodiumKWindowBeta", 0.0))  # the gridder's apodisation
        if "SodiumKRadius" in meta:
            kr = meta_floats(meta, "SodiumKRadius")
            times = np.arange(kr.size) * float(meta["SodiumDwellS"])
            window = None
            if beta > 0:
                window = kaiser_window(kr, float(meta["SodiumKMax"]), beta)
            kfilter = cal.readout_filter(kr, times, self.tube.decay, te1, window)
        else:
            log.warning("no readout timing in the image meta: tube templates without T2* blur")
        positions = None
        if self.positions is not None:
            positions = [self._patient_to_volume(first, p) for p in self.positions]
        conc = list(self.tube_concentrations_mM)
        fit, problem, reason = None, "", ""
        tubes: list[cal.Tube] = []
        pairs: list[tuple[cal.Tube, float]] = []
        tsc = None
        try:
            tubes, head = cal.find_tubes(mag1, voxel_mm, self.tube_radius_mm or 10.0,
                                         positions_mm=positions)  # fmt: skip
            log.info("calibration: %d tube candidates", len(tubes))
            if positions is None:  # only the most tube-like pay for a full fit
                tubes = cal.screen_tubes(mag1, voxel_mm, tubes, head, kfilter,
                                         self.tube_radius_mm, len(conc))  # fmt: skip
            for tube in tubes:
                cal.measure_tube(mag1, voxel_mm, tube, head, kfilter, self.tube_radius_mm)
            pairs = (
                list(zip(tubes, conc, strict=True))
                if positions is not None
                else cal.match_tubes(tubes, conc)
            )
            fit = cal.fit_line([c for _, c in pairs], [t.signal for t, _ in pairs],
                               [t for t, _ in pairs])  # fmt: skip
            for t, c in pairs:
                log.info("tube %g mM at %s mm: signal %.4g, radius %.1f mm", c,
                         np.round(t.centre_mm, 1), t.signal, t.radius_mm)  # fmt: skip
            if fit.r2 < self.min_r2:
                reason = f"tube fit R^2 {fit.r2:.4f} < {self.min_r2}"
                problem = f"{reason}: {fit.summary()}"
        except ValueError as exc:
            problem = reason = str(exc)
        smooth = self.smoothing_fwhm_mm / 2.3548 / voxel_mm[::-1] if self.smoothing_fwhm_mm else 0
        if problem:
            message = f"TSC calibration failed ({problem}); returning the uncalibrated image"
            log.warning(message)
        else:
            log.info("calibration: %s", fit.summary())
            signal = mag1
            if self.undo_tube_blur:
                signal = cal.undo_tube_blur(mag1, voxel_mm, [t for t, _ in pairs], kfilter)
            tsc = fit.tsc_mM(signal)
            if self.class_correction and self.tr_ms is not None:
                tsc = tsc * self._class_factor(tsc, mag1, te1)
            if self.smoothing_fwhm_mm:
                tsc = gaussian_filter(tsc, smooth)
        # the picture is drawn in the helper process while the maps below are sent
        picture = self._qa_start(mag1, voxel_mm, tubes, pairs, fit, reason, tsc)
        if problem:
            yield f"WARNING: {message}"
        else:
            comments = f"TSC from {len(fit.signals)} {self.tube_class} tubes: {fit.summary()}"
            desc = "Na23 TSC [mmol/L]"
            meta = self._meta(desc, "mmol/L", "TSC", "_TSC", (70, 140), comments, te1)
            meta["SodiumKWindowBeta"] = beta
            yield volume_image(tsc.astype(np.float32), first, meta,
                               series_index=self.tsc_series_index)  # fmt: skip
            if self.necho >= 2 and self.output_sodium_r and 1 in self.echoes:
                x2, meta2 = self._echo(1)
                te2 = float(meta2.get("SodiumEchoTimeS", te1))
                nar = rx.sodium_r(mag1, np.abs(x2), (te1, te2), self.t2s_csf_ms) / fit.slope
                if self.smoothing_fwhm_mm:
                    nar = gaussian_filter(nar, smooth)
                yield volume_image(nar.astype(np.float32), first, self._meta(
                    "Na23 23NaR [mmol/L eq]", "mmol/L", "NAR", "_23NaR", (15, 30),
                    f"23NaR, T2*csf {self.t2s_csf_ms} ms; {comments}", te1),
                    series_index=self.sodium_r_series_index)  # fmt: skip
        if problem or self.output_uncalibrated:
            scale = 1000.0 / max(float(np.percentile(mag1, 99.5)), 1e-30)
            yield volume_image((mag1 * scale).astype(np.float32), first, self._meta(
                "Na23 uncalibrated [a.u.]", "1", "Na23", "_NA", (500, 1000),
                "uncalibrated: " + (problem or "as requested"), te1, quantitative=False),
                series_index=self.uncalibrated_series_index)  # fmt: skip
        if picture is not None:
            yield from self._qa_finish(picture, first, fit, reason)

    def _qa_start(
        self,
        mag1: np.ndarray,
        voxel_mm: np.ndarray,
        tubes: list[cal.Tube],
        pairs: list[tuple[cal.Tube, float]],
        fit: cal.Calibration | None,
        reason: str,
        tsc: np.ndarray | None,
    ):
        """Start drawing the QA picture (see the module docstring): ``mag1`` the first-echo
        magnitude (a.u.), ``voxel_mm`` (x, y, z), the tubes found and those paired with a
        concentration (mM), the fit (None: none), why it failed ("" if it did not), the TSC
        map (mM, None when failed). Returns ``(qa, future)``, a warning text if the picture
        cannot be drawn, or None without ``output_qa``."""
        if not self.output_qa:
            return None
        from .core.qa import CalibrationQa, QaTube
        from .core.qa_helper import render_async

        try:
            paired = {id(t): c for t, c in pairs}
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
                for t in tubes
            )
            info = self.header.measurementInformation
            protocol = (info.protocolName if info is not None else "") or "sodium"
            qa = CalibrationQa(
                magnitude=mag1, voxel_mm=tuple(map(float, voxel_mm)), tubes=qa_tubes,
                concentrations_mM=tuple(map(float, self.tube_concentrations_mM)),
                slope=fit.slope if fit else None, intercept=fit.intercept if fit else None,
                r2=fit.r2 if fit else None, min_r2=self.min_r2, tsc_mM=tsc, failure=reason,
                title=f"{protocol}, {self.field_T:g} T, {self.tube_class} tubes, sodium-gadgets",
            )  # fmt: skip
            return qa, render_async(qa, use_helper=self.qa_helper)
        except Exception as exc:  # the picture is an extra: never lose the scan for it
            log.exception("QA picture failed")
            return f"WARNING: TSC QA picture failed: {type(exc).__name__}: {exc}"

    def _qa_finish(self, started, first: ismrmrd.Image, fit: cal.Calibration | None, reason: str):
        """The picture of :meth:`_qa_start` as an RGB image, or its warning."""
        from .core.qa_helper import picture

        if isinstance(started, str):
            yield started
            return
        qa, future = started
        try:
            rgb = picture(future, qa)
        except Exception as exc:
            log.exception("QA picture failed")
            yield f"WARNING: TSC QA picture failed: {type(exc).__name__}: {exc}"
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
        }
        log.info("QA picture: calibration %s, %dx%d px", status, rgb.shape[1], rgb.shape[0])
        yield picture_image(rgb, first, meta, series_index=self.qa_series_index)

    def _class_factor(self, tsc: np.ndarray, mag1: np.ndarray, te1: float) -> np.ndarray:
        brain = rx.relaxation("brain", self.field_T)
        fluid = rx.relaxation("fluid", self.field_T)
        args = (self.tr_ms, self.flip_deg, te1)
        if 1 in self.echoes:
            x2, meta2 = self._echo(1)
            te2 = float(meta2.get("SodiumEchoTimeS", te1))
            frac = rx.fluid_fraction_two_echo(
                gaussian_filter(mag1, 1.0), gaussian_filter(np.abs(x2), 1.0), brain, fluid,
                (te1, te2),
            )  # fmt: skip
        else:
            frac = rx.fluid_fraction_one_echo(tsc, self.fluid_from_mM, self.fluid_to_mM)
        return rx.class_correction(frac, self.tube.weight(*args), brain.weight(*args),
                                   fluid.weight(*args))  # fmt: skip

    @staticmethod
    def _meta(description, unit, label, seq, window, comments, te_s, quantitative=True):
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
            "EchoTime_ms": f"{te_s * 1e3:.3f}",
        }
        if quantitative:
            meta["DataRole"] = "Quantitative"
        return meta
