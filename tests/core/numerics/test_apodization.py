"""k-space apodisation: the window, what it does to Gibbs ringing, and that the calibration's
tube templates carry the same window as the gridded image."""

import numpy as np
import pytest
from scipy.integrate import trapezoid
from scipy.special import i0

from gadgets.core.numerics.apodization import kaiser_window


def _ball_centre(beta: float, radius_px: float) -> float:
    """Centre value of a unit ball band-limited at 0.5 cycles/pixel with the window (exact
    radial integral of the ball's spectrum)."""
    k = np.linspace(1e-6, 0.5, 20001)
    x = 2 * np.pi * k * radius_px
    spectrum = (np.sin(x) - x * np.cos(x)) / (2 * np.pi**2 * k**3)
    return float(trapezoid(4 * np.pi * k**2 * kaiser_window(k, 0.5, beta) * spectrum, k))


def test_window_values_and_bad_beta():
    k = np.array([0.0, 0.3, 0.5, 0.6])
    np.testing.assert_allclose(kaiser_window(k, 0.5, 3.0), [1, i0(3 * 0.8) / i0(3), 1 / i0(3), 0])
    np.testing.assert_array_equal(kaiser_window(k, 0.5, 0.0), [1, 1, 1, 0])
    with pytest.raises(ValueError, match="beta"):
        kaiser_window(k, 0.5, -1.0)


def test_window_tames_the_focusing_of_ringing_in_balls():
    """A sharp cut-off puts the centre of a ball anywhere from 0.35 to 1.66 of its value as its
    radius goes from 1.5 to 8 voxels; the window keeps it close to 1."""
    radii = np.linspace(1.5, 8.0, 131)
    sharp = np.array([_ball_centre(0.0, r) for r in radii])
    windowed = np.array([_ball_centre(3.0, r) for r in radii])
    assert sharp.min() < 0.4 and sharp.max() > 1.6
    assert 0.85 < windowed.min() and windowed.max() < 1.17
