"""calibrate(): the refusals that keep a silently wrong map from being made -- tubes that rank
cannot tell apart, and tubes outside where the receive profile was measured."""

import numpy as np
import pytest
from conftest import VOXEL_4MM, readout_weighting

from gadgets.core.calibration.calibrate import TubeSetup, calibrate
from gadgets.core.calibration.tube import Tube, tubes_mask
from gadgets.core.calibration.tube_templates import template_image
from gadgets.core.numerics.geometry import volume_coordinates_mm

SHAPE = (48, 48, 48)
CENTRES = [(76, -30), (-76, -30), (76, 30), (-76, 30)]
KF = readout_weighting("saline", 3.0)


def _image(signals_mM):
    coords = np.moveaxis(volume_coordinates_mm(SHAPE, VOXEL_4MM), 0, -1)
    head = (coords[..., 0] / 60) ** 2 + (coords[..., 1] / 70) ** 2 + (coords[..., 2] / 60) ** 2
    image = 40.0 * (head <= 1.0)
    for c, (x, y) in zip(signals_mM, CENTRES, strict=True):
        t = Tube(np.array([x, y, 0.0]), np.array([0.0, 0.0, 1.0]), 50.0)
        image = image + (2.0 * c + 5.0) * template_image(SHAPE, VOXEL_4MM, t, 10.0, KF)
    return np.abs(image + np.random.default_rng(0).normal(0, 0.5, SHAPE))


def test_tubes_that_rank_cannot_tell_apart_are_refused():
    ok = calibrate(_image([30, 60, 90, 120]), VOXEL_4MM, TubeSetup((30, 60, 90, 120)), KF)
    assert ok.ok, ok.failure
    # the 60 and 64 mM tubes read the same: a line still fits (R^2 0.99+), but which is which?
    same = calibrate(_image([30, 62, 62, 120]), VOXEL_4MM, TubeSetup((30, 60, 64, 120)), KF)
    assert not same.ok
    assert "the tubes paired with 60 and 64 mM differ in signal by" in same.failure
    assert same.failure.endswith("paired by rank, they may be swapped (give tube_positions_mm)")


def test_a_tube_outside_the_measured_receive_profile_is_refused():
    image = _image([30, 60, 90, 120])
    valid = np.ones(SHAPE, bool)
    tube = Tube(np.array([-76.0, 30.0, 0.0]), np.array([0, 0, 1.0]), 50.0, radius_mm=10.0)
    valid[tubes_mask(SHAPE, VOXEL_4MM, [tube], 8.0)] = False  # the bottle did not reach it
    result = calibrate(image, VOXEL_4MM, TubeSetup((30, 60, 90, 120), valid=valid), KF)
    assert not result.ok
    assert result.failure.startswith("the 120 mM tube (at [-76, 30, 0] mm) lies outside")
    assert "measure the coil with a bottle that also fills the tube holder" in result.failure
    everywhere = np.ones(SHAPE, bool)
    assert calibrate(image, VOXEL_4MM, TubeSetup((30, 60, 90, 120), valid=everywhere), KF).ok


@pytest.mark.parametrize("length_mm", [0.0, 50.0])
def test_the_holder_geometry_finds_the_same_tubes(length_mm):
    image = _image([30, 60, 90, 120])
    setup = TubeSetup((30, 60, 90, 120), axis=np.array([0, 0, 1.0]), length_mm=length_mm)
    result = calibrate(image, VOXEL_4MM, setup, KF)
    assert result.ok and result.fit.r2 > 0.999
