"""Tube calibration: templates, the T2* blur a naive ROI suffers, finding, fitting, matching."""

import numpy as np
import pytest
from conftest import VOXEL_4MM, readout_weighting
from scipy import ndimage

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


def test_opening_with_a_ball_is_exact():
    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.random((30, 34, 28)), 2.5) > 0.5
    mask[:, :3, :] = True  # touching the border: outside counts as empty
    for r in (2, 4, 6):
        zz, yy, xx = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1]
        ball = zz**2 + yy**2 + xx**2 <= r**2
        expected = ndimage.binary_opening(mask, ball)
        assert expected.any() or r == 6
        assert np.array_equal(_open_with_ball(mask, r), expected)


def _head_with_eyes_and_tubes(
    centres, radius_mm=13.5, voxel=VOXEL_4MM, shape=(60, 60, 60), amplitudes=None
):
    """A 'head' (40 a.u.) with two eyes of tube size (140 a.u.) bulging from its face, and
    tubes of 60 mm along z at ``centres`` (x, y) (``amplitudes``, default 40, 70, ...), blurred
    by the readout."""
    kf = readout_weighting("agarose", 7.0)
    coords = np.moveaxis(volume_coordinates_mm(shape, voxel), 0, -1)
    head = (coords[..., 0] / 70) ** 2 + (coords[..., 1] / 90) ** 2 + (coords[..., 2] / 80) ** 2
    image = 40.0 * (head <= 1.0)
    for side in (1, -1):
        eye = np.linalg.norm(coords - np.array([side * 30, -80, -5.0]), axis=-1) <= radius_mm
        image = np.where(eye, 140.0, image)
    image = ndimage.gaussian_filter(image, 0.8)
    amplitudes = amplitudes or [40.0 + 30 * i for i in range(len(centres))]
    for (x, y), a in zip(centres, amplitudes, strict=True):
        t = Tube(np.array([x, y, 0.0]), np.array([0.0, 0.0, 1.0]), 60.0)
        image = image + a * template_image(shape, voxel, t, radius_mm, kf)
    return np.abs(image + np.random.default_rng(2).normal(0, 1.0, shape))


def _distances(tubes, centres):
    return [
        min(np.hypot(t.centre_mm[0] - x, t.centre_mm[1] - y) for x, y in centres) for t in tubes
    ]


def test_eyes_of_tube_size_are_not_taken_for_tubes():
    centres = [(95, -40), (95, 40), (-95, -20), (-95, 30)]
    image = _head_with_eyes_and_tubes(centres)
    tubes, _ = find_tubes(image, VOXEL_4MM, 13.5, axis=np.array([0, 0, 1.0]), min_length_mm=36)
    found = _distances(tubes, centres)
    print("found tubes: distance from the true centre (mm):", np.round(found, 1))
    assert len(tubes) == 4 and max(found) < 4.0
    assert all(t.centre_mm[1] > -60 for t in tubes)  # none at the eyes (y = -80)


def test_neighbouring_tubes_that_blur_into_one_are_split_along_the_holder_axis():
    centres = [(95, -20), (95, 20), (-95, 0)]  # 13 mm of air between the first two
    image = _head_with_eyes_and_tubes(centres)
    merged, _ = find_tubes(image, VOXEL_4MM, 13.5)
    assert len(merged) == 2  # the failure the axis avoids: two tubes as one long blob
    tubes, _ = find_tubes(image, VOXEL_4MM, 13.5, axis=np.array([0, 0, 1.0]), min_length_mm=36)
    found = _distances(tubes, centres)
    print("split tubes: distance from the true centre (mm):", np.round(found, 1))
    assert len(tubes) == 3 and max(found) < 4.0
    assert all(np.allclose(t.axis, [0, 0, 1]) for t in tubes)


@pytest.mark.parametrize("faint", [10.0, 15.0, 20.0, 45.0, 150.0])
def test_a_faint_tube_beside_a_bright_one_is_split_whatever_their_ratio(faint):
    # a faint tube 13 mm beside a 150 mM one: a floor on the peak height relative to the
    # strongest tube takes them as one, and so does a peak search whose window reaches the
    # bright tube's flank (15 mM)
    centres = [(95, -20), (95, 20), (-95, 0)]
    image = _head_with_eyes_and_tubes(centres, amplitudes=[faint, 150.0, 90.0])
    tubes, _ = find_tubes(image, VOXEL_4MM, 13.5, axis=np.array([0, 0, 1.0]), min_length_mm=36)
    found = _distances(tubes, centres)
    print(f"{faint:.0f} beside 150: distance from the true centre (mm):", np.round(found, 1))
    assert len(tubes) == 3 and max(found) < 4.0
