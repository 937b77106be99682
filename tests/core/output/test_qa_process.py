"""The QA picture drawn in a helper process: the same pixels, and no picture lost when it dies."""

import os

import numpy as np
from conftest import qa_phantom

from gadgets.core.output import qa_process as qa_helper
from gadgets.core.output.qa import CalibrationQa, render_qa

CONC = (30.0, 60.0, 90.0, 120.0)


def test_helper_process_draws_the_same_picture_and_is_replaced_when_it_dies(caplog):
    """The helper's picture is the in-process one, pixel for pixel; a killed helper costs no
    picture (drawn in-process, with a warning) and the next start() runs a new one."""
    tsc, vox, tubes = qa_phantom()
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
