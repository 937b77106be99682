"""Off-resonance (B0): a field map from two echoes, and its correction by multi-frequency
interpolation (MFI; Man, Pauly, Macovski, MRM 37:785, 1997).

Convention: a voxel ``f`` Hz off resonance contributes ``rho exp(-2 pi i f t)`` at time ``t``
after excitation (the simulator's and the scanner's sign). During a long centre-out readout this
phase blurs the voxel; demodulating the data by ``exp(+2 pi i f t)`` before gridding removes it.

* Field map: with echo images ``x1``, ``x2`` (coil-combined with the same weights, so channel
  phases cancel), ``f = -arg(x2 conj(x1)) / (2 pi (TE2 - TE1))``. The product is smoothed with a
  Gaussian before taking the angle (a magnitude-weighted average of the phase difference), so
  noisy low-signal voxels borrow from their neighbours; voxels with no signal nearby get the map
  of a wider smoothing. Unaliased range: ``|f| < 1 / (2 dTE)`` (250 Hz for dTE 2 ms), larger
  than the ~1 ppm of a shimmed head at 7T (80 Hz for 23Na), so no unwrapping is needed there.
* MFI: the data are gridded ``L`` times, demodulated at bin frequencies ``f_l`` (all bins of one
  readout in one gridding pass, as extra channels); afterwards each voxel takes
  ``sum_l c_l(f(r)) I_l(r)`` with ``c(f)`` the least-squares solution of
  ``sum_l c_l exp(2 pi i f_l t) = exp(2 pi i f t)`` over the readout's sample times. Bins are
  spaced so the phase between neighbours grows by at most ``max_cycles`` (default 0.5) over the
  readout.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = [
    "field_map_hz",
    "mfi_apply",
    "mfi_coefficients",
    "mfi_combine",
    "mfi_frequencies",
    "mfi_weights",
]


def _smooth_complex(z: np.ndarray, sigma_vox: float) -> np.ndarray:
    return gaussian_filter(z.real, sigma_vox) + 1j * gaussian_filter(z.imag, sigma_vox)


def field_map_hz(
    echo1: np.ndarray, echo2: np.ndarray, delta_te_s: float, fwhm_vox: float = 2.0
) -> np.ndarray:
    """B0 map in Hz from two complex echo images (same shape, same coil weights).

    The phase difference is averaged with a Gaussian of ``fwhm_vox`` voxels, weighted by the
    product of the magnitudes; where that average is weak (no signal nearby) a 3x wider
    Gaussian fills in, so the map is defined everywhere (it is only meaningful in tissue).
    """
    if delta_te_s <= 0:
        raise ValueError(f"the second echo must come later (dTE = {delta_te_s} s)")
    z = echo2 * np.conj(echo1)
    sigma = fwhm_vox / 2.3548
    fine = _smooth_complex(z, sigma)
    coarse = _smooth_complex(z, 3 * sigma)
    weak = np.abs(fine) < 0.05 * np.percentile(np.abs(fine), 99)
    z = np.where(weak, coarse, fine)
    return (-np.angle(z) / (2 * np.pi * delta_te_s)).astype(np.float32)


def mfi_frequencies(max_offset_hz: float, readout_s: float, max_cycles: float = 0.5) -> np.ndarray:
    """Bin frequencies, symmetric about 0 Hz (odd count, so 0 Hz is a bin), spanning
    ``+-max_offset_hz`` with neighbours at most ``max_cycles / readout_s`` apart."""
    if max_offset_hz <= 0:
        return np.zeros(1)
    half = int(np.ceil(max_offset_hz * readout_s / max_cycles))
    return np.linspace(-max_offset_hz, max_offset_hz, 2 * max(half, 1) + 1)


def mfi_coefficients(
    bins_hz: np.ndarray, times_s: np.ndarray, offsets_hz: np.ndarray
) -> np.ndarray:
    """Least-squares MFI coefficients ``(len(offsets_hz), L)``: for each offset ``f``, ``c`` with
    ``sum_l c_l exp(2 pi i f_l t) ~ exp(2 pi i f t)`` over ``times_s``."""
    t = np.asarray(times_s, np.float64)[:, None]
    basis = np.exp(2j * np.pi * t * np.asarray(bins_hz)[None, :])  # (T, L)
    target = np.exp(2j * np.pi * t * np.asarray(offsets_hz)[None, :])  # (T, F)
    coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
    return coef.T


def mfi_weights(bins_hz: np.ndarray, field_hz: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """Per-voxel MFI coefficients ``(L, ...)`` (complex64) for a field map (Hz): tabulated every
    0.5 Hz over the bins' span (the map clipped to it) and linearly interpolated per voxel. The
    same for every echo of one readout: computed once, applied with :func:`mfi_apply`."""
    bins_hz = np.asarray(bins_hz, np.float64)
    f = np.clip(field_hz, bins_hz[0], bins_hz[-1])
    grid = np.arange(bins_hz[0], bins_hz[-1] + 0.5, 0.5)
    table = mfi_coefficients(bins_hz, times_s, grid).T.astype(np.complex64)  # (L, F)
    pos = (f - grid[0]) / 0.5
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, grid.size - 2)
    frac = (pos - i0).astype(np.float32)
    return (1 - frac) * table[:, i0] + frac * table[:, i0 + 1]


def mfi_apply(bin_images: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_l weights_l * bin_images_l``: the off-resonance-corrected image."""
    out = bin_images[0] * weights[0]
    for image, w in zip(bin_images[1:], weights[1:], strict=True):
        out += image * w
    return out.astype(bin_images.dtype, copy=False)


def mfi_combine(
    bin_images: np.ndarray, bins_hz: np.ndarray, field_hz: np.ndarray, times_s: np.ndarray
) -> np.ndarray:
    """Off-resonance-corrected image from the bin images ``(L, ...)`` and a field map (Hz)
    (:func:`mfi_weights`, then :func:`mfi_apply`)."""
    if np.size(bins_hz) == 1:
        return bin_images[0]
    return mfi_apply(bin_images, mfi_weights(bins_hz, field_hz, times_s))
