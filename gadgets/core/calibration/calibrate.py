"""The calibration as one pure function: tubes found and measured in the first-echo magnitude,
paired with their concentrations, and the line ``S = a C + b`` fitted through them
(:func:`calibrate`). The steps are those of the modules beside this one:

1. :func:`~.tube_detection.find_tubes`: candidates outside the head (or at the given positions);
2. :func:`~.tube_fit.screen_tubes`: without positions, only the most tube-like are kept;
3. :func:`~.tube_fit.measure_tube`: each tube's template amplitude (:mod:`.tube_templates`);
4. pairing: by position when given, else by signal rank (:func:`~.linear_fit.match_tubes`);
5. :func:`~.linear_fit.fit_line`, refused below ``min_r2`` or with a slope that is not positive
   (tubes in the wrong order fit a falling line perfectly).

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
    except CalibrationError as exc:
        result.failure = str(exc)
    return result
