"""The calibration QA picture, drawn: a good and a failed calibration, the PNG."""

import numpy as np
import pytest
from conftest import qa_phantom
from PIL import Image

from gadgets.core.output.qa import CalibrationQa, QaTube, render_qa, write_png

CONC = (30.0, 60.0, 90.0, 120.0)


def _red(rgb):
    """Pixels of the failure red (text and frame), anti-aliasing aside."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(np.sum((r > 180) & (g < 60) & (b < 60)))


def _colours(region):
    return len(np.unique(region.reshape(-1, 3), axis=0))


def test_picture_of_a_good_calibration():
    tsc, vox, tubes = qa_phantom()
    qa = CalibrationQa(tsc * 0.01 + 0.05, vox, tuple(tubes), CONC, 0.01, 0.05, 0.9999, 0.99, tsc)
    rgb = render_qa(qa)
    assert rgb.shape == (450, 1200, 3) and rgb.dtype == np.uint8
    assert _colours(rgb[:, -120:]) > 100  # the colour bar (right edge): a real gradient
    assert _colours(rgb[60:, 400:800]) > 20  # the grey-scale slice with its tube circles
    assert _red(rgb) == 0  # nothing failed: no red anywhere
    assert render_qa(qa, size_px=(900, 300)).shape == (300, 900, 3)


@pytest.mark.parametrize("case", ["too_few_tubes", "low_r2"])
def test_picture_of_a_failed_calibration_says_so_in_red(case):
    tsc, vox, tubes = qa_phantom()
    if case == "too_few_tubes":  # 3 of 4 found: not paired, no fit
        found = tuple(
            QaTube(t.centre_mm, t.axis, t.radius_mm, t.length_mm, t.signal) for t in tubes[:3]
        )
        qa = CalibrationQa(tsc, vox, found, CONC, failure="found 3 tubes, expected 4")
    else:
        qa = CalibrationQa(
            tsc, vox, tuple(tubes), CONC, 0.01, 0.05, 0.93, 0.99, None, "tube fit R^2 0.9300 < 0.99"
        )
    assert qa.failed
    rgb = render_qa(qa)
    assert rgb.shape == (450, 1200, 3)
    assert _red(rgb[:40]) > 300  # the status line: CALIBRATION FAILED: <reason>
    assert _red(rgb[40:, 800:]) > 300  # and panel (c), where no TSC map is
    assert _colours(rgb[60:, 400:800]) > 20  # the tubes that were found are still shown


def test_png_is_written_atomically_and_exactly(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = write_png(rgb, tmp_path / "qa" / "x.png")
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), rgb)
    assert not list(path.parent.glob("*.partial"))
    with pytest.raises(ValueError, match="uint8"):
        write_png(rgb.astype(np.float32), tmp_path / "y.png")


def test_edges_name_the_patient_directions_and_the_corner_names_the_patient():
    from gadgets.core.output.qa import direction_letter

    assert [direction_letter(v) for v in np.eye(3)] == ["L", "P", "S"]
    assert [direction_letter(-v) for v in np.eye(3)] == ["R", "A", "I"]
    assert direction_letter((0.2, -0.9, 0.1)) == "A"  # the dominant axis of an oblique one
    tsc, vox, tubes = qa_phantom()
    conc = (30.0, 60.0, 90.0, 120.0)
    plain = CalibrationQa(tsc / 100, vox, tuple(tubes), conc, 0.01, 0.05, 1.0, tsc_mM=tsc)
    named = CalibrationQa(**{**plain.__dict__, "identity": "Doe Jane   ID 123   sodium_tsc"})
    a, b = render_qa(plain), render_qa(named)
    corner = (slice(0, 30), slice(800, 1200))
    assert not np.array_equal(a[corner], b[corner])  # drawn top right
    assert np.array_equal(a[100:], b[100:])  # and nowhere else
    # a sagittal-like oblique stack: the row and column edges follow the directions
    dirs = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0))
    turned = CalibrationQa(**{**plain.__dict__, "directions": dirs})
    assert not np.array_equal(render_qa(turned), a)


def test_axis_ticks_are_round_and_labelled_with_the_decimals_they_need():
    from gadgets.core.output.raster import nice_ticks, tick_label

    ticks = nice_ticks(0.0, 132.0, 6)
    assert list(ticks) == [0.0, 25.0, 50.0, 75.0, 100.0, 125.0]
    assert [tick_label(v, ticks) for v in ticks[:2]] == ["0", "25"]
    small = nice_ticks(-0.016, 0.35, 8)
    assert np.allclose(small, [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35])
    assert tick_label(small[1], small) == "0.05" and tick_label(small[2], small) == "0.10"
    quarter = nice_ticks(0.0, 1.0, 4)
    assert np.allclose(quarter, [0, 0.25, 0.5, 0.75, 1.0])
    assert tick_label(0.25, quarter) == "0.25"
