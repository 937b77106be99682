"""Tube calibration: templates, the T2* blur a naive ROI suffers, finding, fitting, matching."""

import numpy as np
import pytest
from conftest import VOXEL_4MM, readout_weighting

from gadgets.core.calibration.tube import Tube
from gadgets.core.calibration.tube_fit import (
    axial_extent,
    measure_tube,
    screen_tubes,
    signal_variance,
)
from gadgets.core.calibration.tube_templates import template_image, undo_tube_blur
from gadgets.core.numerics.geometry import volume_coordinates_mm

SHAPE = (40, 40, 40)


def test_template_fit_is_free_of_t2star_blur_where_a_roi_mean_is_not():
    """A 10 mm agarose tube at 7T, 10 ms readout: the centre ROI reads low; the fit does not."""
    kf = readout_weighting()
    truth = Tube(np.array([36.0, -8.0, 0.0]), np.array([0.0, 0.0, 1.0]), 50.0)
    image = 90.0 * template_image(SHAPE, VOXEL_4MM, truth, 10.0, kf)
    rng = np.random.default_rng(3)
    image = np.abs(image + rng.normal(0, 1.0, SHAPE))
    coords = np.moveaxis(volume_coordinates_mm(SHAPE, VOXEL_4MM), 0, -1)
    centre_roi = np.linalg.norm((coords - truth.centre_mm)[..., :2], axis=-1) <= 6.0
    centre_roi &= np.abs(coords[..., 2]) <= 15
    roi_mean = image[centre_roi].mean()
    assert roi_mean < 0.95 * 90.0  # the naive measurement is biased
    start = Tube(truth.centre_mm + [2.5, -1.5, 0.0], truth.axis, 56.0)
    head = np.zeros(SHAPE, bool)
    fitted = measure_tube(image, VOXEL_4MM, start, head, kf, 10.0)
    assert fitted.signal == pytest.approx(90.0, rel=0.02)
    assert np.linalg.norm(fitted.centre_mm - truth.centre_mm) < 0.5
    free = measure_tube(image, VOXEL_4MM, Tube(truth.centre_mm, truth.axis, 56.0), head, kf, 0)
    assert free.radius_mm == pytest.approx(10.0, abs=0.5)
    assert free.signal == pytest.approx(90.0, rel=0.03)
    # the map with the measured tube's blur undone: its centre ROI reads the amplitude
    fitted.length_mm = 50.0
    sharp = undo_tube_blur(image, VOXEL_4MM, [fitted], kf)
    assert sharp[centre_roi].mean() == pytest.approx(90.0, rel=0.02)
    far = np.linalg.norm((coords - truth.centre_mm)[..., :2], axis=-1) > 20.0
    assert np.array_equal(sharp[far], image[far])  # outside the tube nothing changes
    assert np.array_equal(undo_tube_blur(image, VOXEL_4MM, [fitted], None), image)


@pytest.mark.parametrize("lean_mm", [-8.0, 0.0, 8.0])
def test_a_tube_detected_too_long_and_off_centre_is_measured_from_its_ends(lean_mm):
    # the mask of a blurred tube is longer than the tube and its centroid leans: a fit region
    # taken from it reaches into a blurred end, where the infinite template does not hold
    kf = readout_weighting()
    truth = Tube(np.array([36.0, -8.0, -6.0]), np.array([0.0, 0.0, 1.0]), 60.0)
    image = 90.0 * template_image(SHAPE, VOXEL_4MM, truth, 12.0, kf)
    image = np.abs(image + np.random.default_rng(5).normal(0, 1.0, SHAPE))
    detected = Tube(truth.centre_mm + [1.5, -1.0, lean_mm], truth.axis, 80.0)
    centre, length = axial_extent(image, VOXEL_4MM, detected, 12.0)
    print(f"lean {lean_mm:+.0f} mm: centre z {centre[2]:+.2f} mm, length {length:.2f} mm")
    assert centre[2] == pytest.approx(truth.centre_mm[2], abs=1.0)
    assert length == pytest.approx(60.0, abs=2.0)
    fitted = measure_tube(image, VOXEL_4MM, detected, np.zeros(SHAPE, bool), kf, 12.0)
    assert fitted.signal == pytest.approx(90.0, rel=0.01)
    assert fitted.length_mm == pytest.approx(60.0, abs=2.0)


def test_screening_keeps_the_tubes_not_a_blob():
    """One template per candidate ranks real tubes above a tube-sized blob."""
    kf = readout_weighting()
    image = np.zeros(SHAPE)
    tubes = []
    for i, x in enumerate((-40.0, 0.0, 40.0)):
        t = Tube(np.array([x, 40.0, 0.0]), np.array([0.0, 0.0, 1.0]), 50.0)
        image += (60.0 + 30 * i) * template_image(SHAPE, VOXEL_4MM, t, 10.0, kf)
        tubes.append(t)
    coords = np.moveaxis(volume_coordinates_mm(SHAPE, VOXEL_4MM), 0, -1)
    blob_centre = np.array([0.0, -40.0, 0.0])
    image += 80.0 * (np.linalg.norm(coords - blob_centre, axis=-1) <= 14.0)
    blob = Tube(blob_centre, np.array([0.0, 0.0, 1.0]), 28.0)
    head = np.zeros(SHAPE, bool)
    kept = screen_tubes(image, VOXEL_4MM, [blob, *tubes], head, kf, 10.0, keep=3)
    assert kept == tubes


@pytest.mark.parametrize("radius_mm", [0.0, 10.0])
def test_signal_variance_is_the_spread_of_repeated_fits(radius_mm):
    """The template fit's predicted signal noise against 40 noise realisations of one tube,
    with the radius fitted and fixed; the amplitude alone (sum T^2) would predict much less."""
    kf = readout_weighting()
    truth = Tube(np.array([36.0, -8.0, 0.0]), np.array([0.0, 0.0, 1.0]), 50.0)
    clean = 90.0 * template_image(SHAPE, VOXEL_4MM, truth, 10.0, kf)
    head = np.zeros(SHAPE, bool)
    rng = np.random.default_rng(5)
    signals, predicted = [], []
    for _ in range(40):
        image = clean + rng.normal(0, 3.0, SHAPE)
        tube = measure_tube(
            image, VOXEL_4MM, Tube(truth.centre_mm, truth.axis, 56.0), head, kf, radius_mm
        )
        signals.append(tube.signal)
        var = np.full(SHAPE, 9.0)
        predicted.append(signal_variance(image, VOXEL_4MM, tube, head, kf, var, radius_mm == 0))
    assert np.sqrt(np.mean(predicted)) == pytest.approx(np.std(signals, ddof=1), rel=0.25)
