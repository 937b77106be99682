import logging

import ismrmrd
import numpy as np
import pytest

from gadgets.core.coils import adaptive_combine, roemer, sum_of_squares, walsh_weights
from gadgets.core.noise import noise_covariance, whitening_matrix
from gadgets.noise_prewhitening import NoisePrewhitener
from gadgets.runtime.client import read_raw
from gadgets.runtime.runner import parse_header
from gadgets.simulator.coils import noise_covariance as simulated_covariance
from gadgets.simulator.coils import sensitivities
from gadgets.simulator.head import Grid
from gadgets.simulator.scan import ScanDescription, simulate


def _noise(rng, psi, n):
    white = (
        rng.standard_normal((psi.shape[0], n)) + 1j * rng.standard_normal((psi.shape[0], n))
    ) / np.sqrt(2)
    return np.linalg.cholesky(psi) @ white


def test_whitened_noise_is_white(rng):
    psi = simulated_covariance("loops", 8, rng)
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


def test_prewhitening_gadget_on_a_simulated_scan(tmp_path):
    simulate(ScanDescription.load("tiny"), tmp_path)
    xml, items = read_raw(tmp_path / "tiny.h5")
    acqs = list(items)
    noise = np.concatenate(
        [a.data for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)], 1
    )
    expected_w = whitening_matrix(noise_covariance(noise))
    gadget = NoisePrewhitener(parse_header(xml))
    imaging = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    original = imaging[5].data.copy()
    out = [o for a in acqs for o in gadget.process(a)]
    assert len(out) == len(imaging)  # noise readouts consumed
    np.testing.assert_allclose(out[5].data, expected_w @ original, rtol=1e-4, atol=1e-6)


def test_no_noise_scans_pass_through_with_a_warning(tmp_path, caplog):
    simulate(ScanDescription.load("tiny"), tmp_path)
    xml, items = read_raw(tmp_path / "tiny.h5")
    imaging = [a for a in items if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    before = imaging[0].data.copy()
    with caplog.at_level(logging.WARNING):
        out = list(NoisePrewhitener(parse_header(xml)).process(imaging[0]))
    np.testing.assert_array_equal(out[0].data, before)
    assert "not prewhitened" in caplog.text


@pytest.fixture(scope="module")
def coil_phantom():
    grid = Grid((24, 24, 24), 8.0)
    pts = grid.points()
    rho = np.where(np.linalg.norm(pts, axis=-1) < 70, 40.0, 0.0)
    rho[np.linalg.norm(pts - [20, 0, 0], axis=-1) < 20] = 140.0
    sens = sensitivities("loops", 8, pts, np.random.default_rng(3))
    return rho, sens


def test_roemer_with_true_sensitivities_is_exact(coil_phantom):
    rho, sens = coil_phantom
    np.testing.assert_allclose(np.abs(roemer(rho * sens, sens)), rho, rtol=1e-5, atol=1e-6)


def test_adaptive_combination_matches_the_matched_filter(coil_phantom):
    rho, sens = coil_phantom
    images = rho * sens
    combined = adaptive_combine(images)
    expected = rho * np.sqrt(np.sum(np.abs(sens) ** 2, axis=0))  # rho |S|
    inside = rho > 0
    rel = np.abs(combined[inside] - expected[inside]) / expected[inside]
    assert np.median(rel) < 0.01 and np.percentile(rel, 95) < 0.05
    w = walsh_weights(images)
    np.testing.assert_allclose(np.sum(np.abs(w) ** 2, axis=0), 1.0, rtol=1e-4)


def test_sum_of_squares_noise_floor_and_the_adaptive_default(coil_phantom, rng):
    rho, sens = coil_phantom
    sigma = 10.0  # low SNR, as sodium is
    noise = (
        sigma
        * (rng.standard_normal(sens.shape) + 1j * rng.standard_normal(sens.shape))
        / np.sqrt(2)
    )
    images = rho * sens + noise
    sos, ada = sum_of_squares(images), adaptive_combine(images)
    outside = rho == 0
    # pure noise: SOS reads ~sqrt(C) sigma, the matched filter ~ one channel's Rayleigh mean
    assert sos[outside].mean() == pytest.approx(np.sqrt(8) * sigma, rel=0.1)
    assert ada[outside].mean() < 0.6 * sos[outside].mean()
    # in low-signal tissue SOS is biased up; the adaptive combination stays near rho |S|
    truth = rho * np.sqrt(np.sum(np.abs(sens) ** 2, axis=0))
    weak = (rho == 40) & (truth < 3.5 * sigma)
    assert weak.sum() > 20
    bias_sos = np.mean(sos[weak] - truth[weak])
    bias_ada = np.mean(ada[weak] - truth[weak])
    assert bias_sos > 2 * abs(bias_ada)
