"""Image noise through the linear reconstruction: gridding, coil combination and MFI.

After prewhitening every channel's samples carry independent complex noise of unit variance
(``E|n|^2 = 1``). The gridder's image of one channel is ``I(x) = sum_i u_i d_i e^(2 pi i k_i.x)``
(``u_i`` the density weight times the apodisation window, over the averages), so its noise
variance is the same at every voxel, ``P = sum_i u_i^2`` (the *noise power*). With the samples
indexed by readout ``r`` and sample ``s`` at time ``t_s``, the gridder keeps
``U_s = sum_r u_rs^2`` (meta ``SodiumNoiseWeights``) and ``P = sum_s U_s``.

* **MFI bins.** Bin ``l`` grids ``d e^(2 pi i f_l t)``, so bins ``l, m`` share noise with covariance
  ``K_lm = sum_s U_s e^(2 pi i (f_l - f_m) t_s)`` (:func:`bin_noise_covariance`; ``K_ll = P``).
* **Coil combination** ``J(x) = sum_c w_c(x)^* I_c(x)`` of independent channels: variance
  ``P sum_c |w_c(x)|^2`` (:func:`combination_noise_gain` gives the sum; Roemer's
  ``sum_c s_c^* I_c / sum_c |s_c|^2`` is ``w = s / sum |s|^2``, gain ``1 / sum |s|^2``).
* **MFI** ``y(x) = sum_l a_l(x) J_l(x)``: variance ``sum_lm a_l K_lm a_m^*`` times the
  combination gain (:func:`mfi_noise_gain`, relative to ``P``).

A magnitude image of adequate SNR has noise variance half the complex one (the component along
the signal's phase). Noise correlation between voxels is not modelled: the variances hold per
voxel, not for sums over voxels (smoothing, ROI means of correlated noise).
"""

from __future__ import annotations

import numpy as np

__all__ = ["bin_noise_covariance", "combination_noise_gain", "mfi_noise_gain"]


def bin_noise_covariance(
    noise_weights: np.ndarray, bins_hz: np.ndarray, times_s: np.ndarray
) -> np.ndarray:
    """``K`` (L, L) complex128: the noise covariance of the MFI bin images of one channel, per
    unit sample noise variance, from the per-sample noise weights ``U_s`` (S,), the bins' demod
    frequencies (Hz) and the samples' times after the readout start (s)."""
    u = np.asarray(noise_weights, np.float64)
    f = np.asarray(bins_hz, np.float64)
    t = np.asarray(times_s, np.float64)
    if u.shape != t.shape:
        raise ValueError(f"{u.size} noise weights for {t.size} sample times")
    phase = np.exp(2j * np.pi * f[:, None] * t[None, :])  # (L, S)
    return (phase * u) @ phase.conj().T


def combination_noise_gain(weights: np.ndarray, roemer: bool = False) -> np.ndarray:
    """``sum_c |w_c|^2`` (float32, the weights' spatial shape): the combined image's noise
    variance over one channel's; ``roemer``: ``weights`` are sensitivities ``s`` of
    ``sum s^* I / sum |s|^2`` (gain ``1 / sum |s|^2``, 0 where all vanish)."""
    power = np.sum(np.abs(np.asarray(weights)) ** 2, axis=0)
    if roemer:
        power = np.where(power > 0, 1.0 / np.where(power > 0, power, 1.0), 0.0)
    return power.astype(np.float32)


def mfi_noise_gain(mfi_weights: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """``Re sum_lm a_l K_lm a_m^* / K_cc`` (float32, per voxel): the MFI-corrected image's noise
    variance over one bin's, for per-voxel coefficients ``a`` (L, ...) and the bins' covariance
    ``K`` (L, L) (:func:`bin_noise_covariance`; ``K_cc`` the diagonal, the same for every bin)."""
    a = np.asarray(mfi_weights)
    k = np.asarray(covariance, np.complex128)
    if a.shape[0] != k.shape[0]:
        raise ValueError(f"{a.shape[0]} MFI coefficients for {k.shape[0]} bins")
    ka = np.tensordot(k.astype(np.complex64), a.conj(), axes=(1, 0))  # sum_m K_lm a_m^*
    gain = np.sum(a * ka, axis=0).real / float(np.real(k[0, 0]))
    return gain.astype(np.float32)
