"""The one error a calibration raises when it cannot be made from this scan."""

from __future__ import annotations

__all__ = ["CalibrationError"]


class CalibrationError(ValueError):
    """The tubes do not give a calibration (too few found, ambiguous, a poor fit): the reason is
    for the radiographer and the QA picture. Any other exception in the calibration is a bug."""
