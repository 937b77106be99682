"""Image noise propagation (gadgets.core.numerics.image_noise) against Monte Carlo: noise through
the real gridder, the coil combination and MFI."""

import numpy as np
import pytest

from gadgets.core.numerics.b0 import mfi_frequencies, mfi_weights
from gadgets.core.numerics.density import radial_dcf
from gadgets.core.numerics.image_noise import (
    bin_noise_covariance,
    combination_noise_gain,
    mfi_noise_gain,
)
from gadgets.core.numerics.nufft import GridAccumulator
from gadgets.core.numerics.trajectory import directions, radial_3d


def _unit_noise(rng, shape):
    return ((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)).astype(
        np.complex64
    )


def test_gridded_unit_noise_has_the_variance_of_the_summed_squared_weights():
    rng = np.random.default_rng(0)
    traj = radial_3d(directions(600), 32)  # (P, S, 3) cycles/pixel
    u = radial_dcf(traj) / traj.shape[0] * 3.0  # any weights: the variance is their sum of squares
    n, nch = 24, 16  # channels: independent noise realisations
    grid = GridAccumulator((n, n, n), nch)
    grid.add(traj.reshape(-1, 3), _unit_noise(rng, (nch, u.size)), u.ravel())
    image = grid.finish()
    centre = image[:, 6:18, 6:18, 6:18]  # deapodisation is exact only away from the edges
    observed = float(np.mean(np.abs(centre) ** 2))
    assert observed == pytest.approx(float(np.sum(u.astype(np.float64) ** 2)), rel=0.05)


def test_bin_covariance_and_mfi_gain_match_monte_carlo():
    rng = np.random.default_rng(1)
    times = np.arange(200) * 50e-6
    bins = mfi_frequencies(80.0, times[-1], 0.5)
    weights = rng.uniform(0.2, 1.0, times.size)  # per sample, sum over readouts of u^2
    cov = bin_noise_covariance(weights, bins, times)
    assert np.allclose(cov, cov.conj().T)
    assert np.allclose(np.diag(cov).real, weights.sum())
    # bin images of one voxel: sum_s sqrt(U_s) e^(2 pi i f_l t_s) n_s, n unit complex noise
    trials = 40000
    noise = _unit_noise(rng, (trials, times.size)).astype(np.complex128)
    phase = np.exp(2j * np.pi * bins[:, None] * times[None, :]) * np.sqrt(weights)
    binned = noise @ phase.T  # (trials, L)
    assert np.allclose(binned.T @ binned.conj() / trials, cov, atol=0.03 * weights.sum())
    field = np.array([-60.0, -13.0, 0.0, 27.0, 71.0])
    a = mfi_weights(bins, field, times)  # (L, 5)
    corrected = np.einsum("tl,lv->tv", binned, a)
    observed = np.mean(np.abs(corrected) ** 2, axis=0) / weights.sum()
    assert mfi_noise_gain(a, cov) == pytest.approx(observed, rel=0.04)
    centre = np.zeros((bins.size, 1), np.complex64)
    centre[np.argmin(np.abs(bins))] = 1.0  # the 0 Hz bin alone: one bin's noise
    assert mfi_noise_gain(centre, cov) == pytest.approx([1.0])


def test_combination_gain_matches_monte_carlo():
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((4, 3)) + 1j * rng.standard_normal((4, 3))).astype(np.complex64)
    noise = _unit_noise(rng, (20000, 4, 1))
    combined = np.sum(w.conj()[None] * noise, axis=1)
    assert combination_noise_gain(w) == pytest.approx(np.mean(np.abs(combined) ** 2, 0), rel=0.04)
    roemer = np.sum(w.conj()[None] * noise, axis=1) / np.sum(np.abs(w) ** 2, axis=0)
    assert combination_noise_gain(w, roemer=True) == pytest.approx(
        np.mean(np.abs(roemer) ** 2, 0), rel=0.04
    )


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="sample times"):
        bin_noise_covariance(np.ones(3), np.zeros(2), np.zeros(4))
    with pytest.raises(ValueError, match="MFI coefficients"):
        mfi_noise_gain(np.ones((3, 2)), np.eye(2))
