"""The calibration as one pure function: tubes found and measured in the first-echo magnitude,
paired with their concentrations, and the line ``S = a C + b`` fitted through them
(:func:`calibrate`). The steps are those of the modules beside this one:

1. :func:`~.tube_detection.find_tubes`: candidates outside the head (or at the given positions);
2. :func:`~.tube_fit.screen_tubes`: without positions, only the most tube-like are kept;
3. :func:`~.tube_fit.measure_tube`: each tube's template amplitude (:mod:`.tube_templates`);
4. pairing: by position when given, else by signal rank (:func:`~.linear_fit.match_tubes`);
5. :func:`~.linear_fit.fit_line`, refused below ``min_r2`` or with a slope that is not positive
   (tubes in the wrong order fit a falling line perfectly);
6. refused when pairing by rank is not safe: two tubes whose signals differ by less than half
   of what the fit expects from their concentrations could be swapped by noise or by a receive
   profile error, and a swap that still fits a line is silent;
7. refused when a paired tube lies outside where the receive profile holds (``valid``: the
   coil file's bottle, from the coil combination), since its signal there is uncorrected.

A calibration that cannot be made raises nothing: the result says why (``failure``), and the
gadget returns the uncalibrated image with that reason. Only :class:`~.errors.CalibrationError`
means "refused"; any other exception is a bug and propagates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from gadgets.core.calibration.errors import CalibrationError
from gadgets.core.calibration.linear_fit import Calibration, fit_line, match_tubes
from gadgets.core.calibration.tube import Tube
from gadgets.core.calibration.tube_detection import find_tubes
from gadgets.core.calibration.tube_fit import measure_tube, screen_tubes

__all__ = ["CalibrationResult", "TubeSetup", "calibrate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TubeSetup:
    """The tube holder as the site configured it: concentrations (mM), inner radius (mm; 0:
    fitted) and, optionally, each tube's position in volume mm (same order)."""

    concentrations_mM: tuple[float, ...]
    radius_mm: float = 10.0
    positions_mm: tuple[np.ndarray, ...] | None = None
    min_r2: float = 0.99
    axis: np.ndarray | None = None  # the tubes' direction, volume axes (None: from the image)
    length_mm: float = 0.0  # the tubes' filled length (0: unknown)
    valid: np.ndarray | None = None  # (nz, ny, nx) bool: where the receive profile holds


@dataclass
class CalibrationResult:
    """What :func:`calibrate` found: the tubes it measured, the pairs (tube, mM) the fit used,
    the fit (None when there is none), the head mask, and why the calibration is refused ("" if
    it is not)."""

    tubes: list[Tube] = field(default_factory=list)
    pairs: list[tuple[Tube, float]] = field(default_factory=list)
    fit: Calibration | None = None
    head: np.ndarray | None = None
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure and self.fit is not None

    def to_dict(self) -> dict:
        """A JSON-able record (image meta ``SodiumCalibration``): status, reason, the line and,
        per paired tube, its concentration, signal, residual, centre and radius."""
        out: dict = {"status": "OK" if self.ok else "FAILED", "reason": self.failure}
        if self.fit is not None:
            fit = self.fit
            out.update(slope=fit.slope, intercept=fit.intercept, r2=fit.r2)
            out["tubes"] = [
                {
                    "concentration_mM": c,
                    "signal": t.signal,
                    "residual_mM": r,
                    "centre_mm": [float(v) for v in t.centre_mm],
                    "radius_mm": t.radius_mm,
                }
                for (t, c), r in zip(self.pairs, fit.residuals_mM, strict=True)
            ]
        return out


def calibrate(
    magnitude: np.ndarray,
    voxel_mm: np.ndarray,
    setup: TubeSetup,
    kfilter: tuple[np.ndarray, ...] | None,
) -> CalibrationResult:
    """Calibrate on the first-echo ``magnitude`` (nz, ny, nx; a.u.) with voxels ``voxel_mm``
    (x, y, z); ``kfilter`` the readout's k-space weighting for the templates
    (:func:`~.tube_templates.readout_filter`; None: no blur). See the module docstring."""
    result = CalibrationResult()
    conc = list(setup.concentrations_mM)
    try:
        tubes, result.head = find_tubes(
            magnitude,
            voxel_mm,
            setup.radius_mm or 10.0,
            positions_mm=list(setup.positions_mm) if setup.positions_mm is not None else None,
            axis=setup.axis,
            min_length_mm=0.6 * setup.length_mm,  # blur only lengthens what is seen
        )
        log.info("calibration: %d tube candidates", len(tubes))
        if setup.positions_mm is None:  # only the most tube-like pay for a full fit
            tubes = screen_tubes(
                magnitude, voxel_mm, tubes, result.head, kfilter, setup.radius_mm, len(conc)
            )
        result.tubes = tubes
        for tube in tubes:
            measure_tube(magnitude, voxel_mm, tube, result.head, kfilter, setup.radius_mm)
        if setup.positions_mm is not None:
            result.pairs = list(zip(tubes, conc, strict=True))
        else:
            result.pairs = match_tubes(tubes, conc)
        result.fit = fit_line(
            [c for _, c in result.pairs],
            [t.signal for t, _ in result.pairs],
            [t for t, _ in result.pairs],
        )
        for t, c in result.pairs:
            log.info(
                "tube %g mM at %s mm: signal %.4g, radius %.1f mm",
                c,
                np.round(t.centre_mm, 1),
                t.signal,
                t.radius_mm,
            )
        if result.fit.slope <= 0:
            raise CalibrationError(
                f"the tube signal falls as the concentration rises (slope {result.fit.slope:.4g}):"
                " tubes swapped, or tube_positions_mm in the wrong order"
            )
        if result.fit.r2 < setup.min_r2:
            raise CalibrationError(f"tube fit R^2 {result.fit.r2:.4f} < {setup.min_r2}")
        if setup.positions_mm is None:
            _check_ranking(result.pairs, result.fit.slope)
        if setup.valid is not None:
            _check_valid(result.pairs, setup.valid, voxel_mm)
    except CalibrationError as exc:
        result.failure = str(exc)
    return result


def _check_ranking(pairs: list[tuple[Tube, float]], slope: float) -> None:
    """Step 6 of the module docstring."""
    ranked = sorted(pairs, key=lambda p: p[1])
    for (t1, c1), (t2, c2) in zip(ranked, ranked[1:], strict=False):
        expected = slope * (c2 - c1)
        if c2 > c1 and (t2.signal - t1.signal) < 0.5 * expected:
            raise CalibrationError(
                f"the tubes paired with {c1:g} and {c2:g} mM differ in signal by "
                f"{100 * (t2.signal - t1.signal) / expected:.0f}% of what their concentrations "
                "predict: paired by rank, they may be swapped (give tube_positions_mm)"
            )


def _check_valid(pairs: list[tuple[Tube, float]], valid: np.ndarray, voxel_mm: np.ndarray) -> None:
    """Step 7 of the module docstring: the voxel at each tube's centre (voxel ``n // 2`` is the
    volume's centre, :func:`~gadgets.core.numerics.geometry.volume_coordinates_mm`)."""
    shape = np.array(valid.shape[::-1])  # x, y, z
    for tube, conc in pairs:
        index = np.rint(np.asarray(tube.centre_mm) / voxel_mm).astype(int) + shape // 2
        inside = np.all((index >= 0) & (index < shape)) and valid[index[2], index[1], index[0]]
        if not inside:
            raise CalibrationError(
                f"the {conc:g} mM tube (at {np.round(tube.centre_mm).astype(int).tolist()} mm) "
                "lies outside the region where the coil file's receive profile was measured: "
                "measure the coil with a bottle that also fills the tube holder"
            )
