import time

import numpy as np
import pytest
from conftest import constant_fov_kspace, ideal_constant_fov_image

from gadgets.core.numerics import trajectory as T
from gadgets.core.numerics.density import pipe_menon, radial_dcf
from gadgets.core.numerics.nufft import Nufft

N3 = 32


N2 = 64


def _radial3d():
    return T.radial_3d(T.directions(4000), 128)


def _da3dpr():
    return T.da_3dpr(T.directions(4000), 256, 10e-3 / 256, 0.4)


def _tpi():
    return T.tpi(4000, 256, 10e-3 / 256, 0.3)


@pytest.fixture(scope="module")
def ideal3d():
    return ideal_constant_fov_image(N3, 3)


@pytest.fixture(scope="module")
def ideal2d():
    return ideal_constant_fov_image(N2, 2)


def _flatness(traj, weights, n, ideal):
    """Reconstruct the constant image; return (mean, max |recon - ideal|) over the central half."""
    d = traj.shape[-1]
    kspace = constant_fov_kspace(traj, n)
    image = np.abs(Nufft(traj.reshape(-1, d), (n,) * d).adjoint(kspace[None], weights.ravel())[0])
    centre = (slice(n // 4, 3 * n // 4),) * d
    return image[centre].mean(), np.abs(image - ideal)[centre].max()


def test_weights_are_kspace_volumes():
    # normalisation convention: the weights of a full ball (disc) of radius 0.5 add up to its
    # volume (area), whatever the projections and samples
    for traj in (_radial3d(), _da3dpr(), _tpi(), T.radial_3d(T.directions(777), 50)):
        assert radial_dcf(traj).sum() == pytest.approx(np.pi / 6, rel=2e-3)
    assert radial_dcf(T.golden_angle_2d(301, 64)).sum() == pytest.approx(np.pi / 4, rel=2e-3)


def test_da3dpr_weights_follow_min_k2_k0():
    samples, dwell, p, projections = 256, 40e-6, 0.4, 100
    traj = T.da_3dpr(T.directions(projections), samples, dwell, p)
    w = radial_dcf(traj)[0].astype(np.float64)
    r = np.linalg.norm(traj[0].astype(np.float64), axis=-1)
    v0 = T.density_adapted_velocity(p, (samples - 1) * dwell)
    k0 = p * 0.5
    expected = 4 * np.pi * np.minimum(r, k0) ** 2 * v0 * dwell / projections
    step = v0 * dwell
    keep = (
        (np.abs(r - k0) > 2 * step) & (np.arange(samples) > 0) & (np.arange(samples) < samples - 1)
    )
    np.testing.assert_allclose(w[keep], expected[keep], rtol=1e-2)
    # TPI shares the radial profile, hence the weights
    w_tpi = radial_dcf(T.tpi(projections, samples, dwell, p))
    np.testing.assert_allclose(w_tpi, w[None].repeat(projections, 0), rtol=1e-3, atol=1e-12)


def test_radial_weights_need_centre_out_readouts():
    with pytest.raises(ValueError, match="centre-out"):
        radial_dcf(T.golden_angle_2d(10, 64, centre_out=False))


@pytest.mark.parametrize("make", [_radial3d, _da3dpr, _tpi], ids=["3DPR", "DA-3DPR", "TPI"])
def test_analytic_weights_flatness_3d(make, ideal3d):
    traj = make()
    mean, dev = _flatness(traj, radial_dcf(traj), N3, ideal3d)
    assert mean == pytest.approx(1.0, abs=0.01)
    assert dev < 0.01


def test_analytic_weights_flatness_2d(ideal2d):
    traj = T.golden_angle_2d(400, 128)
    mean, dev = _flatness(traj, radial_dcf(traj), N2, ideal2d)
    assert mean == pytest.approx(1.0, abs=0.01)
    assert dev < 0.01


def test_pipe_menon_flatness_and_convergence(ideal3d):
    traj = _radial3d()
    result = pipe_menon(traj, (N3,) * 3, use_cache=False)
    assert result.iterations == 150 and result.residual < 5e-4 and not result.cached
    assert result.weights.shape == traj.shape[:2]
    mean, dev = _flatness(traj, result.weights, N3, ideal3d)
    assert mean == pytest.approx(1.0, abs=0.01)
    assert dev < 0.01
    # away from the centre and the rim it agrees with the analytic weights
    r = np.linalg.norm(traj, axis=-1)[0]
    band = (r > 0.1) & (r < 0.45)
    ratio = result.weights.mean(axis=0)[band] / radial_dcf(traj).mean(axis=0)[band]
    np.testing.assert_allclose(ratio, 1.0, atol=0.03)


def test_pipe_menon_residual_decreases():
    traj = T.radial_3d(T.directions(1500), 48)
    residuals = [
        pipe_menon(traj, (24,) * 3, iterations=n, use_cache=False).residual for n in (3, 10, 40)
    ]
    assert residuals[0] > residuals[1] > residuals[2]


def test_pipe_menon_2d_flatness(ideal2d):
    traj = T.golden_angle_2d(400, 128)
    result = pipe_menon(traj, (N2, N2), use_cache=False)
    mean, dev = _flatness(traj, result.weights, N2, ideal2d)
    assert mean == pytest.approx(1.0, abs=0.01)
    assert dev < 0.015


def test_pipe_menon_cache():
    traj = T.tpi(600, 64, 5e-3 / 64, 0.3)
    t0 = time.perf_counter()
    first = pipe_menon(traj, (24,) * 3, iterations=40)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = pipe_menon(traj, (24,) * 3, iterations=40)
    t_again = time.perf_counter() - t0
    assert not first.cached and again.cached
    np.testing.assert_array_equal(first.weights, again.weights)
    assert again.iterations == first.iterations and again.residual == first.residual
    assert t_again < t_first
    # another trajectory or grid is another entry
    assert not pipe_menon(traj * 0.99, (24,) * 3, iterations=40).cached
    assert not pipe_menon(traj, (26,) * 3, iterations=40).cached


def test_pipe_menon_rejects_bad_relaxation():
    with pytest.raises(ValueError, match="relaxation"):
        pipe_menon(T.radial_3d(T.directions(10), 8), (8, 8, 8), relaxation=2.0, use_cache=False)
