"""The calibration QA picture: the renderer (pure), its Secondary Capture DICOM file, and the
picture coming out of the quantitative chains -- for a calibration that works (``birdcage``)
and one that is refused (``refused``), the session runs of conftest.py shared with
tests/test_chains.py."""

import numpy as np
import pytest
from PIL import Image

from gadgets.core.output.qa import CalibrationQa, QaTube, render_qa, write_png

CONC = (30.0, 60.0, 90.0, 120.0)


def _phantom(n=32, vox=7.0):
    """A head (40 mM) and four tubes along z, as (TSC map, tubes at their true places)."""
    z, y, x = (np.mgrid[:n, :n, :n] - n // 2) * vox
    tsc = np.zeros((n, n, n), np.float32)
    tsc[(x / 70) ** 2 + (y / 80) ** 2 + (z / 75) ** 2 < 1] = 40.0
    tubes = []
    for c, (cx, cy) in zip(CONC, [(88, -35), (-88, -35), (88, 35), (-88, 35)], strict=True):
        tsc[((x - cx) ** 2 + (y - cy) ** 2 < 100) & (np.abs(z) < 25)] = c
        tubes.append(QaTube((cx, cy, 0.0), (0.0, 0.0, 1.0), 10.0, 50.0, 0.01 * c + 0.05, c))
    return tsc, (vox, vox, vox), tubes


def _red(rgb):
    """Pixels of the failure red (text and frame), anti-aliasing aside."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(np.sum((r > 180) & (g < 60) & (b < 60)))


def _colours(region):
    return len(np.unique(region.reshape(-1, 3), axis=0))


def test_picture_of_a_good_calibration():
    tsc, vox, tubes = _phantom()
    qa = CalibrationQa(tsc * 0.01 + 0.05, vox, tuple(tubes), CONC, 0.01, 0.05, 0.9999, 0.99, tsc)
    rgb = render_qa(qa)
    assert rgb.shape == (450, 1200, 3) and rgb.dtype == np.uint8
    assert _colours(rgb[:, -120:]) > 100  # the colour bar (right edge): a real gradient
    assert _colours(rgb[60:, 400:800]) > 20  # the grey-scale slice with its tube circles
    assert _red(rgb) == 0  # nothing failed: no red anywhere
    assert render_qa(qa, size_px=(900, 300)).shape == (300, 900, 3)


@pytest.mark.parametrize("case", ["too_few_tubes", "low_r2"])
def test_picture_of_a_failed_calibration_says_so_in_red(case):
    tsc, vox, tubes = _phantom()
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
