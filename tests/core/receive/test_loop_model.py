"""Receive-bias correction from a coil model: the loop field against a brute-force Biot-Savart
sum, and the fit recovering an object free of the receive profile."""

import numpy as np
import pytest
from conftest import loop_array_object, loop_array_scan

from gadgets.core.receive.loop_model import (
    CoilModel,
    fit_coil_model,
    loop_field,
)


def _polygon_field(points, centre, normal, radius, nseg=4000):
    """0.5 sum dl x r / |r|^3: the loop as a fine polygon, in units of mu0 I / (2 pi)."""
    u = np.cross(normal, [0.0, 0.0, 1.0])
    if np.linalg.norm(u) < 1e-6:
        u = np.cross(normal, [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    a = 2 * np.pi * np.arange(nseg + 1) / nseg
    ring = centre + radius * (np.cos(a)[:, None] * u + np.sin(a)[:, None] * v)
    mid, dl = 0.5 * (ring[1:] + ring[:-1]), ring[1:] - ring[:-1]
    r = points[:, None, :] - mid[None]
    return 0.5 * np.sum(np.cross(dl[None], r) / np.linalg.norm(r, axis=2)[..., None] ** 3, axis=1)


def test_loop_field_matches_biot_savart_and_axis_formula():
    centre, normal, radius = np.array([130.0, 5.0, -10.0]), np.array([-1.0, 0.0, 0.0]), 45.0
    rng = np.random.default_rng(1)
    pts = rng.uniform(-90, 90, (50, 3))
    exact = loop_field(pts, centre, normal, radius)
    brute = _polygon_field(pts, centre, normal, radius)
    assert np.max(np.linalg.norm(exact - brute, axis=1) / np.linalg.norm(brute, axis=1)) < 1e-4
    # on the axis: B = pi a^2 / (a^2 + z^2)^1.5 along the normal (units mu0 I / 2 pi)
    z = np.array([0.0, 20.0, 100.0])
    on_axis = centre + z[:, None] * normal
    expected = np.pi * radius**2 / (radius**2 + z**2) ** 1.5
    np.testing.assert_allclose(
        loop_field(on_axis, centre, normal, radius) @ normal, expected, rtol=1e-9
    )


@pytest.mark.parametrize("with_whitening", [True, False])
def test_fit_removes_the_receive_profile(loops8, with_whitening):
    rng = np.random.default_rng(7)
    rho, pts = loop_array_object((32, 32, 32), 7.0)
    images, w = loop_array_scan(loops8, rho, pts, rng)
    inside = rho > 0
    # the adaptive-like magnitude keeps the profile: the tubes differ by far more than 10%
    sos = np.sqrt(np.sum(np.abs(images) ** 2, axis=0))
    tubes = [np.linalg.norm(pts[..., :2] - [x, 0], axis=-1) < 8 for x in (-95.0, 95.0)]
    centre = np.linalg.norm(pts, axis=-1) < 8
    biased = np.array([sos[t].mean() for t in tubes]) / 3 / (sos[centre].mean() / 1)
    assert np.max(np.abs(biased - 1)) > 0.5
    fit = fit_coil_model(images, pts, loops8, w if with_whitening else None)
    assert fit.handedness == 1
    assert fit.residual < 0.01 < fit.other_residual
    sens = fit.sensitivities(loops8, pts.reshape(-1, 3)).reshape(images.shape)
    est = np.abs(np.sum(sens.conj() * images, 0) / np.sum(np.abs(sens) ** 2, 0))
    est /= est[centre].mean() / 1.0  # the global scale is the calibration's business
    for t in tubes:
        assert est[t].mean() == pytest.approx(3.0, rel=0.02)
    assert np.median(np.abs(est[inside] - rho[inside]) / rho[inside]) < 0.02


def test_wrong_geometry_is_visible_in_the_residual(loops8):
    rng = np.random.default_rng(3)
    rho, pts = loop_array_object((32, 32, 32), 7.0)
    images, w = loop_array_scan(loops8, rho, pts, rng)
    moved = CoilModel("moved", loops8.centres_mm + [0, 0, 60.0], loops8.normals, loops8.radii_mm)
    good = fit_coil_model(images, pts, loops8, w)
    bad = fit_coil_model(images, pts, moved, w)
    assert bad.residual > 5 * good.residual
    with pytest.raises(ValueError, match="8 loops"):
        fit_coil_model(images[:4], pts, loops8, w)
