"""The standard error of a TSC map, mmol/L per voxel: the image noise and the fit's, propagated.

With ``TSC(x) = F(x) T(x)``, ``T = (S - b) / a`` (``S`` the first-echo magnitude, ``S = a C + b``
the fit, ``F`` the class correction, 1 in the tubes)::

    dTSC = (F / a) (dS - db - T da)
    var TSC = (F / a)^2 [var S(x) + var b + T^2 var a + 2 T cov(a, b)]

* ``var S(x)``: the magnitude's noise variance, half the complex image noise variance that
  :mod:`gadgets.core.numerics.image_noise` propagates (at adequate SNR; the Rician floor of the
  background is not modelled).
* ``(a, b)``: the ordinary least-squares line through tubes whose signals carry noise
  ``var s_k`` (:func:`~.tube_fit.signal_variance`: the template fit's covariance, the tube's
  centre, off-resonance and radius fitted with its amplitude; independent voxel noise assumed,
  which over-states it for radial sampling, whose noise is mostly of high spatial frequency), so
  that ``Cov(a, b) = (X^T X)^-1 X^T diag(var s_k) X (X^T X)^-1``, ``X = [C, 1]``.

What it leaves out, so what a repeated scan would *not* show either: systematic errors (the fit's
residuals, resolution, the relaxation values set for the tubes), the noise of the class
correction's fluid fraction (from smoothed images), and noise correlation between voxels, so
maps smoothed after calibration get no standard error. Inside the tubes the fit's noise and the
voxel's are not independent (the line is taken from those voxels), so there it is only a rough
guide (measured: 0.74-1.6 times the spread). It is the spread of repeated scans of the same head,
not the error against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gadgets.core.calibration.linear_fit import Calibration

__all__ = ["FitCovariance", "fit_covariance", "tsc_standard_error"]


@dataclass(frozen=True)
class FitCovariance:
    """Covariance of the fitted slope ``a`` (signal per mM) and intercept ``b`` (signal)."""

    var_slope: float
    var_intercept: float
    cov: float


def fit_covariance(fit: Calibration, signal_var: list[float]) -> FitCovariance:
    """Covariance of the least-squares line of ``fit`` for independent tube signals of
    variances ``signal_var`` (one per tube, in the fit's order)."""
    c = np.asarray(fit.concentrations_mM, np.float64)
    x = np.stack([c, np.ones_like(c)], axis=1)
    inv = np.linalg.inv(x.T @ x)
    cov = inv @ x.T @ np.diag(np.asarray(signal_var, np.float64)) @ x @ inv
    return FitCovariance(float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1]))


def tsc_standard_error(
    magnitude: np.ndarray,
    magnitude_var: np.ndarray,
    fit: Calibration,
    covariance: FitCovariance,
    factor: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Standard error (mmol/L, float32) of ``factor * (magnitude - b) / a`` per voxel, for the
    magnitude's noise variance ``magnitude_var`` (same shape) and the fit's covariance."""
    a, b = fit.slope, fit.intercept
    t = (np.asarray(magnitude, np.float64) - b) / a
    var = (
        np.asarray(magnitude_var, np.float64)
        + covariance.var_intercept
        + t**2 * covariance.var_slope
        + 2.0 * t * covariance.cov
    )
    se = np.abs(np.asarray(factor, np.float64) / a) * np.sqrt(np.maximum(var, 0.0))
    return se.astype(np.float32)
