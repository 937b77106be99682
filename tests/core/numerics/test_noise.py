import numpy as np
import pytest

from gadgets.core.numerics.noise import noise_covariance, whitening_matrix
from gadgets.simulator.receive_coils import CoilSpec
from gadgets.simulator.receive_coils import noise_covariance as simulated_covariance


def _noise(rng, psi, n):
    white = (
        rng.standard_normal((psi.shape[0], n)) + 1j * rng.standard_normal((psi.shape[0], n))
    ) / np.sqrt(2)
    return np.linalg.cholesky(psi) @ white


def test_whitened_noise_is_white(rng):
    psi = simulated_covariance(CoilSpec("loops", 8), rng)
    w = whitening_matrix(noise_covariance(_noise(rng, psi, 20000)))
    fresh = w @ _noise(rng, psi, 20000)
    np.testing.assert_allclose(fresh @ fresh.conj().T / 20000, np.eye(8), atol=0.05)
    # noise scans at 5 us (25x the variance per sample) whiten data acquired at 125 us
    w = whitening_matrix(noise_covariance(_noise(rng, 25 * psi, 20000)), 5e-6, 125e-6)
    fresh = w @ _noise(rng, psi, 20000)
    np.testing.assert_allclose(np.real(np.diag(fresh @ fresh.conj().T)) / 20000, 1.0, rtol=0.05)


def test_bad_noise_is_refused(rng):
    with pytest.raises(ValueError, match="NaN"):
        noise_covariance(np.full((4, 100), np.nan))
    dead = _noise(rng, np.eye(4), 100)
    dead[2] = 0
    with pytest.raises(ValueError, match="positive definite"):
        whitening_matrix(noise_covariance(dead))
