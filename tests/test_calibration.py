"""Tube calibration: templates, the T2* blur a naive ROI suffers, finding, fitting, matching."""

import numpy as np
import pytest
from scipy.special import j0

from gadgets.core import calibration as cal
from gadgets.core import relaxation as rx

SHAPE = (40, 40, 40)
VOX = np.array([4.0, 4.0, 4.0])


def _filter(tube_class="agarose", field=7.0, readout_s=10e-3):
    kr = np.linspace(0, 0.5, 256)
    t = kr / 0.5 * readout_s  # linear |k|(t) like plain 3D radial
    return cal.readout_filter(kr, t, rx.relaxation(tube_class, field).decay, 0.3e-3)


def test_template_of_a_large_cylinder_is_one_inside():
    """On average 1 inside (the centre itself rings: band-limiting a disc of radius R leaves
    1 - J0(2 pi R k_max) there, +-10% at R = 10 voxels)."""
    tube = cal.Tube(np.zeros(3), np.array([0.0, 0.0, 1.0]), 120.0)
    image = cal.template_image(SHAPE, VOX, tube, 40.0, None)
    coords = np.moveaxis(cal.volume_coordinates_mm(SHAPE, VOX), 0, -1)
    inside = (np.hypot(coords[..., 0], coords[..., 1]) <= 30) & (np.abs(coords[..., 2]) <= 40)
    assert image[inside].mean() == pytest.approx(1.0, abs=0.02)
    assert abs(image[20, 20, 20] - (1 - j0(2 * np.pi * 10 * 0.5))) < 0.05
    assert image[20, 20, 1] < 0.05  # outside


def test_template_fit_is_free_of_t2star_blur_where_a_roi_mean_is_not():
    """A 10 mm agarose tube at 7T, 10 ms readout: the centre ROI reads low; the fit does not."""
    kf = _filter()
    truth = cal.Tube(np.array([36.0, -8.0, 0.0]), np.array([0.0, 0.0, 1.0]), 50.0)
    image = 90.0 * cal.template_image(SHAPE, VOX, truth, 10.0, kf)
    rng = np.random.default_rng(3)
    image = np.abs(image + rng.normal(0, 1.0, SHAPE))
    coords = np.moveaxis(cal.volume_coordinates_mm(SHAPE, VOX), 0, -1)
    centre_roi = np.linalg.norm((coords - truth.centre_mm)[..., :2], axis=-1) <= 6.0
    centre_roi &= np.abs(coords[..., 2]) <= 15
    roi_mean = image[centre_roi].mean()
    assert roi_mean < 0.95 * 90.0  # the naive measurement is biased
    start = cal.Tube(truth.centre_mm + [2.5, -1.5, 0.0], truth.axis, 56.0)
    head = np.zeros(SHAPE, bool)
    fitted = cal.measure_tube(image, VOX, start, head, kf, 10.0)
    assert fitted.signal == pytest.approx(90.0, rel=0.02)
    assert np.linalg.norm(fitted.centre_mm - truth.centre_mm) < 0.5
    free = cal.measure_tube(image, VOX, cal.Tube(truth.centre_mm, truth.axis, 56.0), head, kf, 0)
    assert free.radius_mm == pytest.approx(10.0, abs=0.5)
    assert free.signal == pytest.approx(90.0, rel=0.03)
    # the map with the measured tube's blur undone: its centre ROI reads the amplitude
    fitted.length_mm = 50.0
    sharp = cal.undo_tube_blur(image, VOX, [fitted], kf)
    assert sharp[centre_roi].mean() == pytest.approx(90.0, rel=0.02)
    far = np.linalg.norm((coords - truth.centre_mm)[..., :2], axis=-1) > 20.0
    assert np.array_equal(sharp[far], image[far])  # outside the tube nothing changes
    assert np.array_equal(cal.undo_tube_blur(image, VOX, [fitted], None), image)


def test_screening_keeps_the_tubes_not_a_blob():
    """One template per candidate ranks real tubes above a tube-sized blob."""
    kf = _filter()
    image = np.zeros(SHAPE)
    tubes = []
    for i, x in enumerate((-40.0, 0.0, 40.0)):
        t = cal.Tube(np.array([x, 40.0, 0.0]), np.array([0.0, 0.0, 1.0]), 50.0)
        image += (60.0 + 30 * i) * cal.template_image(SHAPE, VOX, t, 10.0, kf)
        tubes.append(t)
    coords = np.moveaxis(cal.volume_coordinates_mm(SHAPE, VOX), 0, -1)
    blob_centre = np.array([0.0, -40.0, 0.0])
    image += 80.0 * (np.linalg.norm(coords - blob_centre, axis=-1) <= 14.0)
    blob = cal.Tube(blob_centre, np.array([0.0, 0.0, 1.0]), 28.0)
    head = np.zeros(SHAPE, bool)
    kept = cal.screen_tubes(image, VOX, [blob, *tubes], head, kf, 10.0, keep=3)
    assert kept == tubes


def test_find_tubes_beside_a_head_and_calibrate():
    kf = _filter("saline", 3.0)
    shape = (48, 48, 48)  # 192 mm
    coords = np.moveaxis(cal.volume_coordinates_mm(shape, VOX), 0, -1)
    head = (coords[..., 0] / 60) ** 2 + (coords[..., 1] / 70) ** 2 + (coords[..., 2] / 60) ** 2
    image = 40.0 * (head <= 1.0)
    conc = [30.0, 60.0, 90.0, 120.0]
    centres = [(76, -30), (-76, -30), (76, 30), (-76, 30)]
    for c, (x, y) in zip(conc, centres, strict=True):
        t = cal.Tube(np.array([x, y, 0.0]), np.array([0.0, 0.0, 1.0]), 50.0)
        image = image + (2.0 * c + 5.0) * cal.template_image(shape, VOX, t, 10.0, kf)
    image = np.abs(image + np.random.default_rng(0).normal(0, 1.0, shape))
    tubes, head_mask = cal.find_tubes(image, VOX, 10.0)
    assert len(tubes) == 4
    for t in tubes:
        assert min(np.hypot(t.centre_mm[0] - x, t.centre_mm[1] - y) for x, y in centres) < 6
        cal.measure_tube(image, VOX, t, head_mask, kf, 10.0)
    pairs = cal.match_tubes(tubes, conc)
    fit = cal.fit_line([c for _, c in pairs], [t.signal for t, _ in pairs])
    assert fit.slope == pytest.approx(2.0, rel=0.02) and fit.intercept == pytest.approx(5, abs=3)
    assert fit.r2 > 0.999 and max(abs(r) for r in fit.residuals_mM) < 2.0
    assert fit.tsc_mM(np.array([85.0]))[0] == pytest.approx(40.0, abs=2.0)


def test_fit_and_match_errors():
    with pytest.raises(ValueError, match="at least two"):
        cal.fit_line([30.0], [1.0])
    tubes = [cal.Tube(np.zeros(3), np.array([0, 0, 1.0]), 50.0, signal=s) for s in (3.0, 1.0)]
    with pytest.raises(ValueError, match="found 2 tubes, expected 3"):
        cal.match_tubes(tubes, [10.0, 20.0, 30.0])
    for t in tubes:
        t.residual = 1.0
    pairs = cal.match_tubes(tubes, [60.0, 30.0])
    assert [(t.signal, c) for t, c in pairs] == [(1.0, 30.0), (3.0, 60.0)]


def test_relaxation_weights_and_corrections():
    # seed 004: TE 0.3 / 25 ms, T2*_CSF 56 ms -> factor exp(24.7/56) = 1.554
    i1, i2 = np.array([1.0]), np.array([0.0])
    assert rx.sodium_r(i1, np.array([1.0]), (0.3e-3, 25e-3), 56.0)[0] == pytest.approx(-0.554, 1e-3)
    assert rx.sodium_r(i1, i2, (0.3e-3, 25e-3))[0] == 1.0
    brain, fluid = rx.relaxation("brain", 7.0), rx.relaxation("fluid", 7.0)
    tube = rx.relaxation("agarose", 7.0)
    args = (100.0, 90.0, 0.3e-3)
    # pure fluid: the tube/fluid weight ratio; CSF saturates more at TR 100 ms (T1 61 vs 41 ms)
    factor = rx.class_correction(np.array([1.0]), tube.weight(*args), brain.weight(*args),
                                 fluid.weight(*args))  # fmt: skip
    assert 1.04 < factor[0] < 1.12
    te = (0.3e-3, 2.3e-3)
    e_b = brain.decay(te[1]) / brain.decay(te[0])
    e_f = fluid.decay(te[1]) / fluid.decay(te[0])
    mix = 0.3  # 30% of the echo-1 signal from fluid
    frac = rx.fluid_fraction_two_echo(np.array([1.0]), np.array([0.7 * e_b + mix * e_f]),
                                      brain, fluid, te)  # fmt: skip
    assert frac[0] == pytest.approx(mix, abs=1e-5)
    ramp = rx.fluid_fraction_one_echo(np.array([50.0, 95.0, 150.0]), 70.0, 120.0)
    assert ramp.tolist() == pytest.approx([0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="unknown relaxation class"):
        rx.relaxation("gel", 3.0)


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
        assert np.array_equal(cal._open_with_ball(mask, r), expected)
