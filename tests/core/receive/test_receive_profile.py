"""A one-channel coil's receive profile: fitted from a uniform phantom's image (synthetic, then
a simulated bottle through the command line), its coil file, and its use in coil combination."""

import json

import numpy as np
import pytest

from gadgets.core.calibration.tube import Tube
from gadgets.core.calibration.tube_templates import readout_filter, template_image
from gadgets.core.numerics.apodization import kaiser_window
from gadgets.core.numerics.geometry import volume_coordinates_mm
from gadgets.core.receive.receive_profile import ReceiveProfile, exponents, fit_profile

# where it matters: the tubes of the simulated heads, mid-brain, the eyes
POINTS = np.array([[88, 35, 0], [-88, -35, 0], [0, 0, 0], [-13, 2, 14], [-32, -76, -30]], float)


def _quadratic(points):
    p = np.asarray(points, np.float64)
    return 1.0 - 0.12 * (p[..., 0] ** 2 + p[..., 1] ** 2) / 150**2 - 0.08 * p[..., 2] ** 2 / 150**2


def test_fit_recovers_a_profile_from_a_blurred_noisy_bottle():
    shape, vox = (40, 40, 40), np.array([6.0, 6.0, 6.0])
    bottle = Tube(np.zeros(3), np.array([0.0, 0.0, 1.0]), 200.0)
    kr = np.linspace(0.0, 0.5, 200)  # band-limited with the Kaiser window coil-profile uses
    kf = readout_filter(kr, kr * 0.02, lambda t: np.ones_like(t), 0.0, kaiser_window(kr, 0.5, 6))
    image = template_image(shape, vox, bottle, 100.0, kf)
    coords = np.moveaxis(volume_coordinates_mm(shape, vox), 0, -1)
    rng = np.random.default_rng(5)
    image = np.abs(80.0 * image * _quadratic(coords) + rng.normal(0, 1.5, shape))
    profile = fit_profile(image, coords, "test")
    np.testing.assert_allclose(profile(POINTS), _quadratic(POINTS), rtol=0.005)
    assert profile(np.zeros(3)) == pytest.approx(1.0)
    assert 0.01 < profile.fit_rms < 0.05  # the noise (1.5 / 80) and what ringing is left
    with pytest.raises(ValueError, match="no uniform phantom"):
        fit_profile(np.zeros(shape), coords, "empty")
    with pytest.raises(ValueError, match="degree"):
        exponents(9)


def test_coil_file_round_trip_and_bad_files(tmp_path):
    powers = exponents(2)
    profile = ReceiveProfile("cage", powers, np.linspace(1.0, 0.1, len(powers)), 120.0, 0.02)
    profile.to_json(tmp_path / "cage.json", "a test coil")
    back = ReceiveProfile.from_dict(json.loads((tmp_path / "cage.json").read_text()), "cage")
    assert back.name == "cage" and back.scale_mm == 120.0
    np.testing.assert_array_equal(back(POINTS), profile(POINTS))
    with pytest.raises(ValueError, match="exponents and coefficients"):
        ReceiveProfile.from_dict({"profile": {"exponents": [[0, 0, 0]]}}, "bad")
    with pytest.raises(ValueError, match="one finite coefficient"):
        ReceiveProfile.from_dict({"profile": {"exponents": [[0, 0, 0]], "coefficients": [1, 2]}})
