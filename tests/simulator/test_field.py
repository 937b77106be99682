import numpy as np
import pytest

from gadgets.simulator.field import b0_map_hz, larmor_hz
from gadgets.simulator.head import Grid


def test_b0_map_range():
    pts = Grid((32,) * 3, 7.0).points()
    for field in (3.0, 7.0):
        df = b0_map_hz(pts, field, (0.0, -70.0, -5.0))
        ppm = 1e6 / larmor_hz(field)
        assert 0.6 < df.max() * ppm < 1.3 and df.min() * ppm > -1.3
        near = b0_map_hz(np.array([[0.0, -70.0, -5.0]]), field, (0.0, -70.0, -5.0))[0]
        assert near == pytest.approx(df.max(), rel=0.2)  # the bump is the maximum
