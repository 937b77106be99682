"""The contract between the sodium steps: a gridder volume's meta round-trips, and a volume
without it is refused with the name of the step that should have written it."""

import numpy as np
import pytest

from gadgets.volume_meta import GriddedVolume, MetaError
from gadgets.volumes import read_meta, volume_image


def _like():
    img = volume_image(np.zeros((1, 2, 2, 2), np.complex64), _Like())
    return img


class _Like:
    position = (1.0, 2.0, 3.0)
    read_dir, phase_dir, slice_dir = (1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)
    patient_table_position = (0.0, 0.0, 0.0)
    field_of_view = (10.0, 10.0, 10.0)


def test_meta_round_trips_through_an_image():
    info = GriddedVolume(
        bins_hz=(-40.0, 0.0, 40.0),
        dwell_s=4e-5,
        k_radius_cpp=(0.0, 0.123456, 0.5),
        k_max_cpp=0.5,
        k_window_beta=3.0,
        readouts=5000,
        echo_time_s=3e-4,
        coils=8,
    )
    image = volume_image(np.zeros((24, 2, 2, 2), np.complex64), _Like(), info.to_meta())
    back = GriddedVolume.from_meta(read_meta(image), "test")
    assert back == info.with_(k_radius_cpp=(0.0, 0.12346, 0.5))  # 5 decimals in the meta
    assert back.samples == 3 and back.centre_bin == 1
    assert back.sample_times_s.tolist() == pytest.approx([0.0, 4e-5, 8e-5])
    combined = back.with_(coils=None, combination="model:loops_8ch")
    meta = combined.to_meta()
    assert "SodiumCoils" not in meta and meta["SodiumCombination"] == "model:loops_8ch"
    assert GriddedVolume.describes(image) and not GriddedVolume.describes(_like())


def test_missing_keys_name_the_step_that_writes_them():
    with pytest.raises(MetaError, match=r"TscCalibration: .*lacks SodiumBinsHz.*StreamingGridder"):
        GriddedVolume.from_meta({}, "TscCalibration")
    meta = GriddedVolume((0.0,), 1e-5, (0.0, 0.5), 0.5, 0.0, 10).to_meta()
    del meta["SodiumKWindowBeta"]
    with pytest.raises(MetaError, match="lacks SodiumKWindowBeta"):
        GriddedVolume.from_meta(meta, "B0Correction")
    no_te = GriddedVolume((0.0,), 1e-5, (0.0, 0.5), 0.5, 0.0, 10)
    with pytest.raises(MetaError, match="B0Correction needs the echo time"):
        no_te.require_echo_time("B0Correction")
    with pytest.raises(MetaError, match="unreadable"):
        GriddedVolume.from_meta({**no_te.to_meta(), "SodiumDwellS": "fast"}, "x")
