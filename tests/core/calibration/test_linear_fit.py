"""Tube calibration: templates, the T2* blur a naive ROI suffers, finding, fitting, matching."""

import numpy as np
import pytest

from gadgets.core.calibration.linear_fit import fit_line, match_tubes
from gadgets.core.calibration.tube import Tube


def test_fit_and_match_errors():
    with pytest.raises(ValueError, match="at least two"):
        fit_line([30.0], [1.0])
    tubes = [Tube(np.zeros(3), np.array([0, 0, 1.0]), 50.0, signal=s) for s in (3.0, 1.0)]
    with pytest.raises(ValueError, match="found 2 tubes, expected 3"):
        match_tubes(tubes, [10.0, 20.0, 30.0])
    for t in tubes:
        t.residual = 1.0
    pairs = match_tubes(tubes, [60.0, 30.0])
    assert [(t.signal, c) for t, c in pairs] == [(1.0, 30.0), (3.0, 60.0)]
