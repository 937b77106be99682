"""The calibration line ``S = a C + b`` through the tubes, and signal -> concentration
``TSC = (S - b) / a`` (mM); pairing tubes with concentrations by signal rank."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gadgets.core.calibration.errors import CalibrationError
from gadgets.core.calibration.tube import Tube

__all__ = ["Calibration", "fit_line", "match_tubes"]


@dataclass
class Calibration:
    """``S = slope C + intercept`` fitted on tubes of known concentration."""

    slope: float
    intercept: float
    r2: float
    concentrations_mM: list[float]
    signals: list[float]
    tubes: list[Tube] = field(default_factory=list)

    @property
    def residuals_mM(self) -> list[float]:
        return [
            (s - self.intercept) / self.slope - c
            for s, c in zip(self.signals, self.concentrations_mM, strict=True)
        ]

    def tsc_mM(self, signal: np.ndarray) -> np.ndarray:
        return ((signal - self.intercept) / self.slope).astype(np.float32)

    def summary(self) -> str:
        per = ", ".join(
            f"{c:g} mM: {r:+.2f}"
            for c, r in zip(self.concentrations_mM, self.residuals_mM, strict=True)
        )
        return (
            f"S = {self.slope:.5g} C + {self.intercept:.4g}, R2 = {self.r2:.5f}, "
            f"{len(self.signals)} tubes, residuals [mM] {per}"
        )


def fit_line(concentrations_mM: list[float], signals: list[float], tubes=()) -> Calibration:
    """Least-squares ``S = a C + b`` with R^2."""
    c = np.asarray(concentrations_mM, np.float64)
    s = np.asarray(signals, np.float64)
    if c.size < 2:
        raise CalibrationError("a calibration needs at least two tubes")
    slope, intercept = np.polyfit(c, s, 1)
    ss_tot = float(np.sum((s - s.mean()) ** 2))
    r2 = 1.0 - float(np.sum((s - (slope * c + intercept)) ** 2)) / ss_tot if ss_tot > 0 else 0.0
    return Calibration(float(slope), float(intercept), r2, list(c), list(s), list(tubes))


def match_tubes(tubes: list[Tube], concentrations_mM: list[float]) -> list[tuple[Tube, float]]:
    """Pair tubes with concentrations by rank of signal (more tubes than concentrations: the
    best-fitting ones are kept). Fewer tubes than concentrations cannot be paired by rank."""
    if len(tubes) < len(concentrations_mM):
        raise CalibrationError(
            f"found {len(tubes)} tubes, expected {len(concentrations_mM)}: cannot tell which "
            "are missing (give tube positions)"
        )
    kept = sorted(tubes, key=lambda t: t.residual / max(t.signal, 1e-30) ** 2)
    kept = kept[: len(concentrations_mM)]
    kept.sort(key=lambda t: t.signal)
    return list(zip(kept, sorted(concentrations_mM), strict=True))
