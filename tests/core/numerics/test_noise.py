import numpy as np
import pytest

from gadgets.core.numerics.noise import noise_covariance, rewhitening, whitening_matrix
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


def test_rewhitening_gives_the_reference_whitening_and_its_profile(rng):
    """Two scans of one coil estimate its noise covariance each (12288 samples, as the site-B
    bottle): the profile ``|W s|`` an optimal combination leaves differs between them by ~1%;
    the scan's channels rewhitened to the reference's give the reference's profile exactly, and
    the noise amplitudes stay within a few % of 1."""
    psi = simulated_covariance(CoilSpec("loops", 8), rng)
    w_ref = whitening_matrix(noise_covariance(_noise(rng, psi, 12288)))
    w_scan = whitening_matrix(noise_covariance(_noise(rng, psi, 12288)))
    sens = rng.standard_normal((8, 200)) + 1j * rng.standard_normal((8, 200))
    ref_profile = np.linalg.norm(w_ref @ sens, axis=0)
    scan_profile = np.linalg.norm(w_scan @ sens, axis=0)
    ratio = scan_profile / ref_profile
    assert np.ptp(ratio / ratio.mean()) > 0.005  # what the rewhitening is for
    t, (low, high) = rewhitening(w_ref, w_scan)
    fixed = np.linalg.norm(t @ (w_scan @ sens), axis=0) / ref_profile
    np.testing.assert_allclose(fixed / fixed.mean(), 1.0, atol=1e-9)
    assert 0.9 < low <= high < 1.1
    # a channel whose noise doubled (a failing preamp) shows in the amplitudes
    psi_bad = psi.copy()
    psi_bad[3, :] *= 2
    psi_bad[:, 3] *= 2
    w_bad = whitening_matrix(noise_covariance(_noise(rng, psi_bad, 12288)))
    low, high = rewhitening(w_ref, w_bad)[1]
    assert high / low > 1.8
    with pytest.raises(ValueError, match="different sizes"):
        rewhitening(w_ref, np.eye(4))
