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

* ``F``: the class correction. With two echoes its fluid fraction comes from the smoothed echo
  ratio, whose noise adds ``T^2 var F + 2 (F T / a) Cov(S, F)``
  (:func:`two_echo_factor_noise`; the smoothing's effect on the gridded noise from its k-space
  weights, :func:`smoothing_noise_ratios`). With one echo the fraction is a ramp of the
  uncorrected TSC itself, so the noise of ``T`` passes with ``F + T dF/dT`` instead of ``F``.

What it leaves out, so what a repeated scan would *not* show either: systematic errors (the fit's
residuals, resolution, the relaxation values set for the tubes), noise correlation between
voxels beyond the class correction's smoothing (so maps smoothed after calibration get no
standard error), and, at the tubes' edges, the noise of ``undo_tube_blur``'s fitted tube
geometry (a fitted radius 0.1 mm off moves an edge voxel by tens of mmol/L). Inside the tubes
the fit's noise and the voxel's are not independent (the line is taken from those voxels), so
there it is only a rough guide (measured: 0.74-1.6 times the spread). It is the spread of
repeated scans of the same head, not the error against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gadgets.core.calibration.linear_fit import Calibration

__all__ = [
    "FitCovariance",
    "fit_covariance",
    "smoothing_noise_ratios",
    "tsc_standard_error",
    "two_echo_factor_noise",
]


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
    factor_var: np.ndarray | float = 0.0,
    factor_cov: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Standard error (mmol/L, float32) of ``F * (magnitude - b) / a`` per voxel, for the
    magnitude's noise variance ``magnitude_var`` (same shape) and the fit's covariance; the class
    factor ``F`` may be noisy itself (two echoes: ``factor_var``, and ``factor_cov`` its
    covariance with the magnitude, :func:`two_echo_factor_noise`). For a factor that is a
    function of the uncorrected TSC (one echo), pass its derivative's effect in ``factor``
    (``F + T dF/dT``): the same noise, amplified."""
    a, b = fit.slope, fit.intercept
    t = (np.asarray(magnitude, np.float64) - b) / a
    var = (
        np.asarray(magnitude_var, np.float64)
        + covariance.var_intercept
        + t**2 * covariance.var_slope
        + 2.0 * t * covariance.cov
    )
    f = np.asarray(factor, np.float64)
    total = (f / a) ** 2 * var + t**2 * np.asarray(factor_var) + 2.0 * f * t * factor_cov / a
    return np.sqrt(np.maximum(total, 0.0)).astype(np.float32)


def smoothing_noise_ratios(
    noise_weights: np.ndarray, k_radius_cpp: np.ndarray, sigma_vox: float
) -> tuple[float, float]:
    """What a Gaussian smoothing of ``sigma_vox`` voxels does to gridded image noise, per unit
    variance of the unsmoothed image: ``(var of the smoothed image, its covariance with the
    unsmoothed one)``. Sample ``i`` of every readout carries noise weight ``u_i`` (the gridder's
    ``SodiumNoiseWeights``) at ``|k_i|`` (cycles per pixel), and the kernel's transform is
    ``G(k) = exp(-2 pi^2 sigma^2 k^2)``, so::

        var ratio = sum u G^2 / sum u,    cov ratio = sum u G / sum u

    (exact for the adjoint NUFFT's noise). It depends on the trajectory: plain 3D radial's noise,
    mostly at high k, keeps about half of what white noise would keep (tested); a
    density-adapted readout's, with more at low k, keeps more (8% of the variance at 1 voxel
    on the 7T dual-echo scan, against 2.2% for white noise)."""
    u = np.asarray(noise_weights, np.float64)
    g = np.exp(-2.0 * np.pi**2 * sigma_vox**2 * np.asarray(k_radius_cpp, np.float64) ** 2)
    total = max(float(np.sum(u)), 1e-300)
    return float(np.sum(u * g**2) / total), float(np.sum(u * g) / total)


def two_echo_factor_noise(
    smooth1: np.ndarray,
    smooth2: np.ndarray,
    var1: np.ndarray,
    var2: np.ndarray,
    ratios: tuple[float, float],
    echo_ratio_brain: float,
    echo_ratio_fluid: float,
    dfactor_dfraction: float,
    where: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Noise of the two-echo class correction ``F = F0 + F' clip(f, 0, 1)``, ``f = (s2 / s1 -
    e_b) / (e_f - e_b)``, from the smoothed echo magnitudes ``s1``, ``s2`` whose unsmoothed
    noise variances are ``var1``, ``var2`` (``ratios``: :func:`smoothing_noise_ratios`). The
    fraction's noise is linearised::

        df = (ds2 / s1 - s2 ds1 / s1^2) / (e_f - e_b),   sigma_f^2 = var df

    and its clipping to 0..1 is kept: ``f`` is taken as normal, ``N(f, sigma_f^2)``, censored at
    0 and 1, so that white matter (``f`` near 0) gets the noise of the fraction's positive
    excursions, not none. Returns ``(var F, Cov(S1, F))`` per voxel, ``S1`` the unsmoothed first
    echo (its noise and ``s1``'s are the same noise, smoothed; by Stein's lemma the covariance
    passes with the probability that ``f`` is not clipped); zero outside ``where`` (the tubes,
    where ``F`` is 1) and where the image is empty."""
    from scipy.special import ndtr

    var_ratio, cov_ratio = ratios
    s1 = np.asarray(smooth1, np.float64)
    s2 = np.asarray(smooth2, np.float64)
    safe = np.where(np.abs(s1) > 0, s1, np.inf)
    span = echo_ratio_fluid - echo_ratio_brain
    mu = (s2 / safe - echo_ratio_brain) / span
    d2, d1 = 1.0 / safe / span, -s2 / safe**2 / span
    sigma = np.sqrt(var_ratio * (d2**2 * np.asarray(var2) + d1**2 * np.asarray(var1)))
    sig = np.maximum(sigma, 1e-12)
    a, b = -mu / sig, (1.0 - mu) / sig
    pa, pb = ndtr(a), ndtr(b)
    phi_a = np.exp(-0.5 * a**2) / np.sqrt(2 * np.pi)
    phi_b = np.exp(-0.5 * b**2) / np.sqrt(2 * np.pi)
    unclipped = pb - pa
    mean = (1.0 - pb) + mu * unclipped + sig * (phi_a - phi_b)
    second = (
        (1.0 - pb)
        + (mu**2 + sig**2) * unclipped
        + 2.0 * mu * sig * (phi_a - phi_b)
        + sig**2 * (a * phi_a - b * phi_b)
    )
    var_f = np.maximum(second - mean**2, 0.0)
    cov = dfactor_dfraction * d1 * np.asarray(var1) * cov_ratio * unclipped
    keep = np.asarray(where, bool) & np.isfinite(mu) & (sigma > 0)
    return np.where(keep, dfactor_dfraction**2 * var_f, 0.0), np.where(keep, cov, 0.0)
