"""k-space apodisation: the window, what it does to Gibbs ringing, and that the calibration's
tube templates carry the same window as the gridded image."""

import numpy as np
import pytest
from scipy.integrate import trapezoid
from scipy.special import i0

from gadgets.core import calibration as cal
from gadgets.core import trajectory as T
from gadgets.core.apodization import kaiser_window
from gadgets.core.density import radial_dcf
from gadgets.core.gridding import Nufft

N = 32
VOX = np.array([4.0, 4.0, 4.0])


def test_window_values_and_bad_beta():
    k = np.array([0.0, 0.3, 0.5, 0.6])
    np.testing.assert_allclose(kaiser_window(k, 0.5, 3.0), [1, i0(3 * 0.8) / i0(3), 1 / i0(3), 0])
    np.testing.assert_array_equal(kaiser_window(k, 0.5, 0.0), [1, 1, 1, 0])
    with pytest.raises(ValueError, match="beta"):
        kaiser_window(k, 0.5, -1.0)


def _ball_centre(beta: float, radius_px: float) -> float:
    """Centre value of a unit ball band-limited at 0.5 cycles/pixel with the window (exact
    radial integral of the ball's spectrum)."""
    k = np.linspace(1e-6, 0.5, 20001)
    x = 2 * np.pi * k * radius_px
    spectrum = (np.sin(x) - x * np.cos(x)) / (2 * np.pi**2 * k**3)
    return float(trapezoid(4 * np.pi * k**2 * kaiser_window(k, 0.5, beta) * spectrum, k))


def test_window_tames_the_focusing_of_ringing_in_balls():
    """A sharp cut-off puts the centre of a ball anywhere from 0.35 to 1.66 of its value as its
    radius goes from 1.5 to 8 voxels; the window keeps it close to 1."""
    radii = np.linspace(1.5, 8.0, 131)
    sharp = np.array([_ball_centre(0.0, r) for r in radii])
    windowed = np.array([_ball_centre(3.0, r) for r in radii])
    assert sharp.min() < 0.4 and sharp.max() > 1.6
    assert 0.85 < windowed.min() and windowed.max() < 1.17


def _cylinder_image(traj, beta, tube, radius_mm):
    """A unit cylinder's samples on ``traj`` gridded with the window in the weights."""
    k = traj.reshape(-1, 3)
    data = cal.cylinder_kspace(k / VOX, tube.centre_mm, tube.axis, radius_mm, tube.length_mm)
    w = radial_dcf(traj).ravel() * kaiser_window(np.linalg.norm(k, axis=1), 0.5, beta)
    return np.abs(Nufft(k, (N, N, N)).adjoint(data[None] / np.prod(VOX), w)[0])


def test_templates_carry_the_window():
    traj = T.radial_3d(T.directions(4000), 64)
    tube = cal.Tube(np.array([8.0, -4.0, 0.0]), np.array([0.0, 0.0, 1.0]), 60.0)
    kr = np.linalg.norm(traj[0], axis=1)
    t = np.arange(kr.size) * 1e-5

    def template(beta):
        window = kaiser_window(kr, 0.5, beta)
        kf = cal.readout_filter(kr, t, lambda s: np.ones_like(np.asarray(s)), 0.0, window)
        return cal.template_image((N, N, N), VOX, tube, 12.0, kf)

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
    kf = cal.readout_filter(kr, t, lambda s: np.ones_like(np.asarray(s)), 0.0,
                            kaiser_window(kr, 0.5, 3.0))  # fmt: skip
    start = cal.Tube(tube.centre_mm + [1.5, -1.0, 0.0], tube.axis, 60.0)
    fitted = cal.measure_tube(90.0 * windowed, VOX, start, head, kf, 12.0)
    assert fitted.signal == pytest.approx(90.0, rel=0.01)
