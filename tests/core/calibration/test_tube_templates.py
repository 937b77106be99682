"""k-space apodisation: the window, what it does to Gibbs ringing, and that the calibration's
tube templates carry the same window as the gridded image."""

import numpy as np
import pytest
from scipy.special import j0

from gadgets.core.calibration.tube import Tube
from gadgets.core.calibration.tube_fit import measure_tube
from gadgets.core.calibration.tube_templates import (
    cylinder_kspace,
    readout_blur,
    readout_filter,
    template_image,
)
from gadgets.core.numerics import trajectory as T
from gadgets.core.numerics.apodization import kaiser_window
from gadgets.core.numerics.density import radial_dcf
from gadgets.core.numerics.geometry import volume_coordinates_mm
from gadgets.core.numerics.nufft import Nufft

N = 32


VOX = np.array([4.0, 4.0, 4.0])


def _cylinder_image(traj, beta, tube, radius_mm):
    """A unit cylinder's samples on ``traj`` gridded with the window in the weights."""
    k = traj.reshape(-1, 3)
    data = cylinder_kspace(k / VOX, tube.centre_mm, tube.axis, radius_mm, tube.length_mm)
    w = radial_dcf(traj).ravel() * kaiser_window(np.linalg.norm(k, axis=1), 0.5, beta)
    return np.abs(Nufft(k, (N, N, N)).adjoint(data[None] / np.prod(VOX), w)[0])


def test_templates_carry_the_window():
    traj = T.radial_3d(T.directions(4000), 64)
    tube = Tube(np.array([8.0, -4.0, 0.0]), np.array([0.0, 0.0, 1.0]), 60.0)
    kr = np.linalg.norm(traj[0], axis=1)
    t = np.arange(kr.size) * 1e-5

    def template(beta):
        window = kaiser_window(kr, 0.5, beta)
        kf = readout_filter(kr, t, lambda s: np.ones_like(np.asarray(s)), 0.0, window)
        return template_image((N, N, N), VOX, tube, 12.0, kf)

    sharp, windowed = (_cylinder_image(traj, beta, tube, 12.0) for beta in (0.0, 3.0))
    # the gridded image is the template with the same window (the calibration's model) ...
    assert np.max(np.abs(sharp - template(0.0))) < 0.03
    assert np.max(np.abs(windowed - template(3.0))) < 0.03
    # ... and not the one without: the window matters by more than the match error
    assert np.max(np.abs(windowed - template(0.0))) > 0.1
    # Gibbs: the overshoot at the wall shrinks
    assert sharp.max() > 1.15 and windowed.max() < sharp.max() - 0.1
    # and the fitted amplitude is the concentration's, window or not
    head = np.zeros((N, N, N), bool)
    kf = readout_filter(
        kr, t, lambda s: np.ones_like(np.asarray(s)), 0.0, kaiser_window(kr, 0.5, 3.0)
    )
    start = Tube(tube.centre_mm + [1.5, -1.0, 0.0], tube.axis, 60.0)
    fitted = measure_tube(90.0 * windowed, VOX, start, head, kf, 12.0)
    assert fitted.signal == pytest.approx(90.0, rel=0.01)


SHAPE = (40, 40, 40)


VOX = np.array([4.0, 4.0, 4.0])


def test_template_of_a_large_cylinder_is_one_inside():
    """On average 1 inside (the centre itself rings: band-limiting a disc of radius R leaves
    1 - J0(2 pi R k_max) there, +-10% at R = 10 voxels)."""
    tube = Tube(np.zeros(3), np.array([0.0, 0.0, 1.0]), 120.0)
    image = template_image(SHAPE, VOX, tube, 40.0, None)
    coords = np.moveaxis(volume_coordinates_mm(SHAPE, VOX), 0, -1)
    inside = (np.hypot(coords[..., 0], coords[..., 1]) <= 30) & (np.abs(coords[..., 2]) <= 40)
    assert image[inside].mean() == pytest.approx(1.0, abs=0.02)
    assert abs(image[20, 20, 20] - (1 - j0(2 * np.pi * 10 * 0.5))) < 0.05
    assert image[20, 20, 1] < 0.05  # outside


def test_readout_blur_of_a_drawn_cylinder_is_its_analytic_template():
    """An object drawn on a finer grid (the bottle's wall, placed to a fraction of a voxel) and
    blurred through the readout is the analytic template of the same cylinder, closer the finer
    it is drawn."""
    n, vox = 32, np.array([4.0, 4.0, 4.0])
    kr = np.linspace(0.0, 0.5, 200)
    window = kaiser_window(kr, 0.5, 3.0)
    kf = readout_filter(kr, kr * 0.02, lambda t: np.exp(-np.asarray(t) / 0.01), 0.0, window)
    tube = Tube(np.array([6.0, -3.0, 0.0]), np.array([0.0, 0.0, 1.0]), 80.0)
    analytic = template_image((n,) * 3, vox, tube, 30.0, kf)
    coarse = np.moveaxis(volume_coordinates_mm((n,) * 3, vox), 0, -1)
    errors = []
    for f in (1, 3, 5):
        fine = np.moveaxis(volume_coordinates_mm((n * f,) * 3, vox / f), 0, -1)
        fine += coarse[0, 0, 0] - fine[f // 2, f // 2, f // 2]  # middle fine voxel: the centre
        rel = fine - tube.centre_mm
        drawn = (np.hypot(rel[..., 0], rel[..., 1]) <= 30.0) & (np.abs(rel[..., 2]) <= 40.0)
        errors.append(np.abs(readout_blur(drawn.astype(float), kf, f) - analytic))
    assert [e.mean() for e in errors] == sorted((e.mean() for e in errors), reverse=True)
    assert errors[1].max() < 0.1 and errors[1].mean() < 0.005  # 3x, as coil-profile draws it
    with pytest.raises(ValueError, match="odd"):
        readout_blur(np.zeros((64,) * 3), kf, 2)
