"""Tube calibration: templates, the T2* blur a naive ROI suffers, finding, fitting, matching."""

import numpy as np
import pytest
from conftest import VOXEL_4MM, readout_weighting

from gadgets.core.calibration.linear_fit import fit_line, match_tubes
from gadgets.core.calibration.tube import Tube
from gadgets.core.calibration.tube_detection import _open_with_ball, find_tubes
from gadgets.core.calibration.tube_fit import measure_tube
from gadgets.core.calibration.tube_templates import template_image
from gadgets.core.numerics.geometry import volume_coordinates_mm


def test_find_tubes_beside_a_head_and_calibrate():
    kf = readout_weighting("saline", 3.0)
    shape = (48, 48, 48)  # 192 mm
    coords = np.moveaxis(volume_coordinates_mm(shape, VOXEL_4MM), 0, -1)
    head = (coords[..., 0] / 60) ** 2 + (coords[..., 1] / 70) ** 2 + (coords[..., 2] / 60) ** 2
    image = 40.0 * (head <= 1.0)
    conc = [30.0, 60.0, 90.0, 120.0]
    centres = [(76, -30), (-76, -30), (76, 30), (-76, 30)]
    for c, (x, y) in zip(conc, centres, strict=True):
        t = Tube(np.array([x, y, 0.0]), np.array([0.0, 0.0, 1.0]), 50.0)
        image = image + (2.0 * c + 5.0) * template_image(shape, VOXEL_4MM, t, 10.0, kf)
    image = np.abs(image + np.random.default_rng(0).normal(0, 1.0, shape))
    tubes, head_mask = find_tubes(image, VOXEL_4MM, 10.0)
    assert len(tubes) == 4
    for t in tubes:
        assert min(np.hypot(t.centre_mm[0] - x, t.centre_mm[1] - y) for x, y in centres) < 6
        measure_tube(image, VOXEL_4MM, t, head_mask, kf, 10.0)
    pairs = match_tubes(tubes, conc)
    fit = fit_line([c for _, c in pairs], [t.signal for t, _ in pairs])
    assert fit.slope == pytest.approx(2.0, rel=0.02) and fit.intercept == pytest.approx(5, abs=3)
    assert fit.r2 > 0.999 and max(abs(r) for r in fit.residuals_mM) < 2.0
    assert fit.tsc_mM(np.array([85.0]))[0] == pytest.approx(40.0, abs=2.0)


def test_opening_by_distance_transform_is_exact():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.random((30, 34, 28)), 2.5) > 0.5
    mask[:, :3, :] = True  # touching the border: outside counts as empty
    for r in (2, 4, 6):
        zz, yy, xx = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1]
        ball = zz**2 + yy**2 + xx**2 <= r**2
        expected = ndimage.binary_opening(mask, ball)
        assert expected.any() or r == 6
        assert np.array_equal(_open_with_ball(mask, r), expected)
