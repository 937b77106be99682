"""Noise prewhitening: channel noise covariance from noise scans, and the matrix that makes the
channels' noise white.

With noise scans ``n`` (C, Ns) acquired at dwell ``dwell_noise``, the sample covariance is
``Psi_n = n n^H / Ns``. Noise variance per sample grows with the bandwidth, ``1 / dwell``, so the
noise of imaging samples at ``dwell_data`` has covariance ``Psi = Psi_n * dwell_noise /
dwell_data``. The whitening matrix is ``W = L^-1`` with ``L L^H = Psi`` (Cholesky): whitened data
``W s`` have unit-variance, uncorrelated noise in every channel, per imaging sample.

(The header's relativeReceiverNoiseBandwidth would only rescale all channels alike: it changes
the units of SNR, not the image or its calibration, and is not applied.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["noise_covariance", "whitening_matrix"]


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
