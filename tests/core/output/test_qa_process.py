"""The calibration QA picture: the renderer (pure), its Secondary Capture DICOM file, and the
picture coming out of the quantitative chains -- for a calibration that works (``birdcage``)
and one that is refused (``refused``), the session runs of conftest.py shared with
tests/test_chains.py."""

import os

import numpy as np

from gadgets.core.output import qa_process as qa_helper
from gadgets.core.output.qa import CalibrationQa, QaTube, render_qa

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


def test_helper_process_draws_the_same_picture_and_is_replaced_when_it_dies(caplog):
    """The helper's picture is the in-process one, pixel for pixel; a killed helper costs no
    picture (drawn in-process, with a warning) and the next start() runs a new one."""
    tsc, vox, tubes = _phantom()
    qa = CalibrationQa(tsc * 0.01 + 0.05, vox, tuple(tubes), CONC, 0.01, 0.05, 0.9999, 0.99, tsc)
    qa_helper.start()
    first = qa_helper._helper
    assert first is not None and first.proc.pid != os.getpid()
    drawn = qa_helper.picture(qa_helper.render_async(qa), qa)
    assert np.array_equal(drawn, render_qa(qa))
    first.proc.kill()
    first.proc.wait()
    with caplog.at_level("WARNING", logger="gadgets.core.output.qa_process"):
        again = qa_helper.picture(qa_helper.render_async(qa), qa)
    assert np.array_equal(again, drawn) and "drawing the picture in-process" in caplog.text
    qa_helper.start()
    assert qa_helper._helper is not first and qa_helper._helper.proc.poll() is None
    assert np.array_equal(qa_helper.picture(qa_helper.render_async(qa), qa), drawn)
