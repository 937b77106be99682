"""Noise prewhitening: channel noise covariance from noise scans, and the matrix that makes the
channels' noise white.

With noise scans ``n`` (C, Ns) acquired at dwell ``dwell_noise``, the sample covariance is
``Psi_n = n n^H / Ns``. Noise variance per sample grows with the bandwidth, ``1 / dwell``, so the
noise of imaging samples at ``dwell_data`` has covariance ``Psi = Psi_n * dwell_noise /
dwell_data``. The whitening matrix is ``W = L^-1`` with ``L L^H = Psi`` (Cholesky): whitened data
``W s`` have unit-variance, uncorrelated noise in every channel, per imaging sample.

(The header's relativeReceiverNoiseBandwidth would only rescale all channels alike: it changes
the units of SNR, not the image or its calibration, and is not applied.)

An SNR-optimal combination of whitened channels leaves the profile ``sqrt(s^H Psi^-1 s)`` in the
image (``s``: the channels' sensitivities), so a receive profile measured on a bottle holds for a
patient only if both were whitened alike. Each scan estimates ``Psi`` from its own noise
samples, and with ~10^4 of them per channel the estimate errs by ~1%; on an 8-loop array that
moved the profile at the tubes by up to 1.6% between two scans of the same bottle.
:func:`rewhitening` maps a scan's whitened channels onto the bottle's whitening instead.
"""

from __future__ import annotations

import numpy as np

__all__ = ["noise_covariance", "rewhitening", "whitening_matrix"]


def noise_covariance(noise: np.ndarray) -> np.ndarray:
    """Sample covariance (C, C) of noise samples (C, Ns)."""
    noise = np.asarray(noise)
    if noise.ndim != 2 or noise.shape[1] < noise.shape[0]:
        raise ValueError(
            f"need noise as (channels, samples) with samples >= channels, got {noise.shape}"
        )
    if not np.all(np.isfinite(noise)):
        raise ValueError("noise samples contain NaN or infinite values")
    n = noise.astype(np.complex128)
    return n @ n.conj().T / n.shape[1]


def whitening_matrix(
    covariance: np.ndarray, dwell_noise_s: float | None = None, dwell_data_s: float | None = None
) -> np.ndarray:
    """``W`` (C, C) with ``W Psi W^H = I`` for the imaging samples' noise covariance ``Psi``
    (the noise-scan covariance scaled by ``dwell_noise / dwell_data`` when both are given)."""
    psi = np.asarray(covariance, np.complex128)
    if dwell_noise_s and dwell_data_s:
        psi = psi * (dwell_noise_s / dwell_data_s)
    try:
        chol = np.linalg.cholesky(psi)
    except np.linalg.LinAlgError as exc:
        raise ValueError("noise covariance is not positive definite (a dead channel?)") from exc
    return np.linalg.inv(chol)


def rewhitening(reference: np.ndarray, scan: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """``T`` (C, C) taking channels whitened with this scan's matrix ``scan`` to channels
    whitened with ``reference`` (``T scan x = reference x`` up to a scale): ``T = reference
    scan^-1 / g``, with ``g`` chosen so that the channels' noise power, ``tr(T T^H) / C``, stays
    1. Also the range (min, max) of the noise amplitudes ``T`` leaves (square roots of the
    eigenvalues of ``T T^H``): 1 to within about ``sqrt(2 C / N)`` when the two are estimates
    of the same covariance from ``N`` samples of ``C`` channels each (8 channels, 12288 samples:
    +-4%), far from 1 when the coil's noise has changed."""
    ref = np.asarray(reference, np.complex128)
    own = np.asarray(scan, np.complex128)
    if ref.ndim != 2 or ref.shape != own.shape or ref.shape[0] != ref.shape[1]:
        raise ValueError(
            f"whitening matrices of different sizes: reference {ref.shape}, scan {own.shape}"
        )
    t = ref @ np.linalg.inv(own)
    t /= np.sqrt(np.real(np.trace(t @ t.conj().T)) / t.shape[0])
    amplitude = np.sqrt(np.clip(np.linalg.eigvalsh(t @ t.conj().T), 0.0, None))
    return t, (float(amplitude.min()), float(amplitude.max()))
