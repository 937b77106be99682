"""The TSC standard error (gadgets.core.calibration.uncertainty) against Monte Carlo of the
calibration it describes: noisy tube signals, a least-squares line, a noisy voxel."""

import numpy as np
import pytest

from gadgets.core.calibration.linear_fit import fit_line
from gadgets.core.calibration.uncertainty import fit_covariance, tsc_standard_error

CONC = [30.0, 60.0, 90.0, 120.0]
SLOPE, INTERCEPT = 0.01, 0.05


def test_predicted_standard_error_is_the_spread_of_repeated_calibrations():
    rng = np.random.default_rng(0)
    tube_sd = np.array([0.004, 0.006, 0.005, 0.008])  # signal units, one per tube
    voxel_sd, true_mM, factor = 0.02, 45.0, 1.1
    clean = SLOPE * np.asarray(CONC) + INTERCEPT
    maps = []
    for _ in range(20000):
        fit = fit_line(CONC, list(clean + tube_sd * rng.standard_normal(4)))
        voxel = SLOPE * true_mM + INTERCEPT + voxel_sd * rng.standard_normal()
        maps.append(factor * (voxel - fit.intercept) / fit.slope)
    reference = fit_line(CONC, list(clean))
    cov = fit_covariance(reference, list(tube_sd**2))
    voxel = np.array([SLOPE * true_mM + INTERCEPT])
    se = tsc_standard_error(voxel, np.array([voxel_sd**2]), reference, cov, factor)
    assert se[0] == pytest.approx(np.std(maps), rel=0.03)
    # without the fit's noise: the voxel's alone, factor / slope
    none = type(cov)(0.0, 0.0, 0.0)
    assert tsc_standard_error(voxel, np.array([voxel_sd**2]), reference, none, factor)[
        0
    ] == pytest.approx(factor * voxel_sd / SLOPE, rel=1e-5)


def test_smoothing_of_gridded_noise_follows_its_k_space_weights():
    """Noise gridded by the real accumulator from 3D radial readouts, then smoothed as the class
    correction smooths (Gaussian, 1 voxel): its variance and its covariance with the unsmoothed
    image are the k-space prediction's, about half white noise's (radial noise lives at high k)."""
    from scipy.ndimage import gaussian_filter

    from gadgets.core.calibration.uncertainty import smoothing_noise_ratios
    from gadgets.core.numerics.density import radial_dcf
    from gadgets.core.numerics.nufft import GridAccumulator
    from gadgets.core.numerics.trajectory import directions, radial_3d

    rng = np.random.default_rng(5)
    traj = radial_3d(directions(700), 32)  # (P, S, 3) cycles/pixel
    u = radial_dcf(traj) / traj.shape[0]
    n, nch = 24, 16  # channels: independent realisations
    grid = GridAccumulator((n, n, n), nch)
    noise = (rng.standard_normal((nch, u.size)) + 1j * rng.standard_normal((nch, u.size))) / 2**0.5
    grid.add(traj.reshape(-1, 3), noise.astype(np.complex64), u.ravel())
    image = grid.finish().real.astype(np.float64)  # one real part: the magnitude's noise
    smooth = np.stack([gaussian_filter(c, 1.0) for c in image])
    inner = (slice(None), slice(7, 17), slice(7, 17), slice(7, 17))
    var = np.mean(image[inner] ** 2)
    var_ratio = np.mean(smooth[inner] ** 2) / var
    cov_ratio = np.mean(smooth[inner] * image[inner]) / var
    radius = np.linalg.norm(traj[0], axis=-1)  # every readout has the same |k| per sample
    weights = np.sum(u**2, axis=0)  # per sample: sum over readouts of u^2
    predicted = smoothing_noise_ratios(weights, radius, 1.0)
    assert predicted[0] == pytest.approx(var_ratio, rel=0.1)
    assert predicted[1] == pytest.approx(cov_ratio, rel=0.1)
    delta = np.zeros((9, 9, 9))
    delta[4, 4, 4] = 1.0
    white = float(np.sum(gaussian_filter(delta, 1.0) ** 2))
    assert predicted[0] < 0.7 * white  # about half: white noise would be smoothed less


@pytest.mark.parametrize("fraction", [0.4, 0.0, 0.97])
def test_two_echo_class_factor_noise_matches_monte_carlo(fraction):
    """Two noisy echoes, smoothed, into a fluid fraction clipped to 0..1 and the class factor,
    against the prediction: var F and Cov(S1, F), in mid-range and at the clips (white matter,
    fraction 0, where a linearisation alone would predict no noise at all)."""
    from scipy.ndimage import gaussian_filter

    from gadgets.core.calibration.uncertainty import two_echo_factor_noise

    rng = np.random.default_rng(6)
    shape = (10, 10, 10)
    s1_true, e_b, e_f, slope = 1.0, 0.80, 0.96, 0.35
    s2_true = s1_true * (e_b + fraction * (e_f - e_b))
    sd1, sd2 = 0.03, 0.025
    delta = np.zeros((9, 9, 9))
    delta[4, 4, 4] = 1.0
    kernel = gaussian_filter(delta, 1.0)
    ratios = (float(np.sum(kernel**2)), float(kernel[4, 4, 4]))  # white noise
    factors, voxels = [], []
    for _ in range(4000):
        m1 = s1_true + sd1 * rng.standard_normal(shape)
        m2 = s2_true + sd2 * rng.standard_normal(shape)
        ratio = gaussian_filter(m2, 1.0, mode="wrap") / gaussian_filter(m1, 1.0, mode="wrap")
        f = np.clip((ratio - e_b) / (e_f - e_b), 0.0, 1.0)
        factors.append(slope * f[5, 5, 5])
        voxels.append(m1[5, 5, 5])
    one = np.ones((1,))
    var_f, cov = two_echo_factor_noise(
        s1_true * one,
        s2_true * one,
        sd1**2 * one,
        sd2**2 * one,
        ratios,
        e_b,
        e_f,
        slope,
        np.ones(1, bool),
    )
    assert var_f[0] == pytest.approx(np.var(factors), rel=0.1)
    assert cov[0] == pytest.approx(np.cov(voxels, factors)[0, 1], rel=0.2, abs=2e-7)
    outside = two_echo_factor_noise(one, one, one, one, ratios, e_b, e_f, slope, np.zeros(1, bool))
    assert outside[0][0] == 0.0 and outside[1][0] == 0.0
