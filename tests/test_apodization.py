"""k-space apodisation: the window, what it does to Gibbs ringing, and that the calibration's
tube templates carry the same window as the gridded image."""

import numpy as np
import pytest

from gadgets.core import calibration as cal
from gadgets.core import trajectory as T
from gadgets.core.apodization import radial_taper
from gadgets.core.density import radial_dcf
from gadgets.core.gridding import Nufft

N = 32
VOX = np.array([4.0, 4.0, 4.0])


def test_window_values_and_bad_taper():
    k = np.array([0.0, 0.3, 0.35, 0.425, 0.5, 0.6])
    np.testing.assert_allclose(radial_taper(k, 0.5, 0.3), [1, 1, 1, 0.5, 0, 0], atol=1e-12)
    np.testing.assert_array_equal(radial_taper(k, 0.5, 0.0), [1, 1, 1, 1, 1, 0])
    hann = radial_taper(k, 0.5, 1.0)[[0, 2]]
    np.testing.assert_allclose(hann, [1, 0.5 * (1 + np.cos(0.7 * np.pi))])
    with pytest.raises(ValueError, match="taper"):
        radial_taper(k, 0.5, 1.5)


def _cylinder_image(traj, taper, tube, radius_mm):
    """A unit cylinder's samples on ``traj`` gridded with the taper in the weights."""
    k = traj.reshape(-1, 3)
    data = cal.cylinder_kspace(k / VOX, tube.centre_mm, tube.axis, radius_mm, tube.length_mm)
    w = radial_dcf(traj).ravel() * radial_taper(np.linalg.norm(k, axis=1), 0.5, taper)
    return np.abs(Nufft(k, (N, N, N)).adjoint(data[None] / np.prod(VOX), w)[0])


@pytest.fixture(scope="module")
def radial():
    return T.radial_3d(T.directions(4000), 64)


def test_taper_reduces_the_overshoot_and_templates_carry_it(radial):
    tube = cal.Tube(np.array([8.0, -4.0, 0.0]), np.array([0.0, 0.0, 1.0]), 60.0)
    kr = np.linalg.norm(radial[0], axis=1)
    t = np.arange(kr.size) * 1e-5

    def template(taper):
        window = radial_taper(kr, 0.5, taper)
        kf = cal.readout_filter(kr, t, lambda s: np.ones_like(np.asarray(s)), 0.0, window)
        return cal.template_image((N, N, N), VOX, tube, 12.0, kf)

    sharp, tapered = (_cylinder_image(radial, taper, tube, 12.0) for taper in (0.0, 0.3))
    t_sharp, t_tapered = template(0.0), template(0.3)
    # the gridded image is the template with the same window (the calibration's model) ...
    assert np.max(np.abs(sharp - t_sharp)) < 0.03
    assert np.max(np.abs(tapered - t_tapered)) < 0.03
    # ... and not the one without: the window matters by more than the match error
    assert np.max(np.abs(tapered - t_sharp)) > 0.1
    # Gibbs: the ringing of a sharp cut-off (overshoot at the wall, ripple inside) shrinks
    mid = tapered.shape[0] // 2
    assert tapered[mid].max() < sharp[mid].max() - 0.02
    assert sharp[mid].max() > 1.05
