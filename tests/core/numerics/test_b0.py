"""B0: field map from two echoes, MFI coefficients and correction, and the B0 chain."""

import numpy as np
import pytest

from gadgets.core.numerics.b0 import field_map_hz, mfi_coefficients, mfi_combine, mfi_frequencies


def test_mfi_bins_cover_the_range_with_bounded_spacing():
    bins = mfi_frequencies(80.0, 10e-3, max_cycles=0.5)
    assert bins[0] == -80.0 and bins[-1] == 80.0 and bins.size % 2 == 1 and 0.0 in bins
    assert np.max(np.diff(bins)) * 10e-3 <= 0.5 + 1e-12
    assert mfi_frequencies(0.0, 10e-3).tolist() == [0.0]


def test_mfi_coefficients_reproduce_the_phase_over_the_readout():
    t = np.linspace(0, 10e-3, 256)
    bins = mfi_frequencies(80.0, 10e-3)
    offsets = np.array([-80.0, -33.3, 0.0, 12.5, 79.0])
    coef = mfi_coefficients(bins, t, offsets)
    approx = coef @ np.exp(2j * np.pi * bins[:, None] * t[None, :])
    exact = np.exp(2j * np.pi * offsets[:, None] * t[None, :])
    assert np.max(np.abs(approx - exact)) < 0.02  # phase error < ~1 degree


def test_mfi_combine_recovers_a_demodulated_voxel():
    """Each voxel's bin images are what gridding data demodulated at f_l gives for an
    off-resonant voxel: sum_t exp(2 pi i (f_l - f) t). MFI with the true map recovers sum_t 1."""
    t = np.arange(128) * 60e-6
    bins = mfi_frequencies(60.0, t[-1] + 60e-6)
    rng = np.random.default_rng(0)
    fmap = rng.uniform(-55, 55, size=(4, 5, 6))
    bin_images = (
        np.sum(
            np.exp(2j * np.pi * (bins[:, None, None, None, None] - fmap[None, ..., None]) * t),
            axis=-1,
        )
        / t.size
    )
    corrected = mfi_combine(bin_images, bins, fmap, t)
    uncorrected = np.abs(bin_images[bins.size // 2])
    assert np.max(np.abs(corrected - 1.0)) < 0.02
    assert np.min(uncorrected) < 0.8  # off-resonance did blur before correction


def test_field_map_from_two_echoes():
    rng = np.random.default_rng(1)
    shape = (16, 16, 16)
    z, y, x = np.indices(shape)
    truth = 30.0 * np.sin(x / 5.0) + 10.0 * (z - 8) / 8  # smooth, +-40 Hz
    rho = np.ones(shape)
    te1, te2 = 0.3e-3, 2.3e-3
    e1 = rho * np.exp(-2j * np.pi * truth * te1 + 0.7j)
    e2 = 0.8 * rho * np.exp(-2j * np.pi * truth * te2 + 0.7j)
    noise = 0.05 * (rng.standard_normal((2,) + shape) + 1j * rng.standard_normal((2,) + shape))
    fmap = field_map_hz(e1 + noise[0], e2 + noise[1], te2 - te1, fwhm_vox=1.5)
    inner = (slice(3, -3),) * 3
    assert np.sqrt(np.mean((fmap - truth)[inner] ** 2)) < 2.0
    with pytest.raises(ValueError, match="later"):
        field_map_hz(e1, e2, -1e-3)
