import numpy as np
import pytest

from gadgets.core.numerics.channel_combination import (
    adaptive_combine,
    roemer,
    sum_of_squares,
    walsh_weights,
)
from gadgets.simulator.head import Grid
from gadgets.simulator.receive_coils import CoilSpec, sensitivities


@pytest.fixture(scope="module")
def coil_phantom():
    grid = Grid((24, 24, 24), 8.0)
    pts = grid.points()
    rho = np.where(np.linalg.norm(pts, axis=-1) < 70, 40.0, 0.0)
    rho[np.linalg.norm(pts - [20, 0, 0], axis=-1) < 20] = 140.0
    sens = sensitivities(CoilSpec("loops", 8), pts, np.random.default_rng(3))
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


def test_adaptive_weights_are_the_local_covariance_dominant_eigenvectors(coil_phantom, rng):
    """Against the definition, computed the plain way: at every second voxel the box-averaged
    channel covariance (scipy's uniform_filter), its dominant eigenvector (numpy's eigh), phase
    referenced to the strongest coil, interpolated linearly to every voxel (scipy's zoom)."""
    from scipy.ndimage import uniform_filter, zoom

    rho, sens = coil_phantom
    noise = rng.standard_normal(sens.shape) + 1j * rng.standard_normal(sens.shape)
    images = (rho * sens + 0.5 * noise).astype(np.complex64)
    nch, block = images.shape[0], 5
    sub = (slice(None, None, 2),) * 3
    cov = np.empty((12, 12, 12, nch, nch), np.complex128)
    for a in range(nch):
        for b in range(nch):
            prod = images[a] * images[b].conj()
            smooth = uniform_filter(prod.real, block) + 1j * uniform_filter(prod.imag, block)
            cov[..., a, b] = smooth[sub]
    vec = np.linalg.eigh(cov)[1][..., -1]
    ref = int(np.argmax(np.sum(np.abs(images) ** 2, axis=(1, 2, 3))))
    vec = vec * (vec[..., ref].conj() / np.abs(vec[..., ref]))[..., None]
    full = np.stack(
        [zoom(c.real, 2, order=1) + 1j * zoom(c.imag, 2, order=1) for c in np.moveaxis(vec, -1, 0)]
    )
    full /= np.linalg.norm(full, axis=0)
    got = walsh_weights(images, block, stride=2)
    tissue = rho > 0  # where only noise, the dominant direction is noise itself
    np.testing.assert_allclose(got[:, tissue], full[:, tissue], atol=2e-4)


def test_adaptive_weights_of_a_volume_thinner_than_the_box():
    """A window longer than an axis folds back again (scipy's 'reflect'), as uniform_filter
    does: a 1 x 6 x 6 volume's weights are the ones of the same plane repeated in z."""
    rng = np.random.default_rng(5)
    plane = rng.standard_normal((4, 1, 6, 6)) + 1j * rng.standard_normal((4, 1, 6, 6))
    plane += 5 * np.arange(1, 5)[:, None, None, None]
    thin = walsh_weights(plane.astype(np.complex64))
    thick = walsh_weights(np.repeat(plane, 5, axis=1).astype(np.complex64))
    np.testing.assert_allclose(thin[:, 0], thick[:, 2], atol=1e-5)
