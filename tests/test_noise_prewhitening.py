import logging

import ismrmrd
import numpy as np

from gadgets.core.numerics.noise import noise_covariance, whitening_matrix
from gadgets.noise_prewhitening import NoisePrewhitener
from gadgets.runtime.client import read_raw
from gadgets.runtime.header import parse_header
from gadgets.simulator.scan import ScanDescription, simulate


def test_prewhitening_gadget_on_a_simulated_scan(tmp_path):
    simulate(ScanDescription.load("tiny"), tmp_path)
    xml, items = read_raw(tmp_path / "tiny.h5")
    acqs = list(items)
    noise = np.concatenate(
        [a.data for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)], 1
    )
    expected_w = whitening_matrix(noise_covariance(noise))
    gadget = NoisePrewhitener(parse_header(xml))
    imaging = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    original = imaging[5].data.copy()
    out = [o for a in acqs for o in gadget.process(a)]
    assert len(out) == len(imaging)  # noise readouts consumed
    np.testing.assert_allclose(out[5].data, expected_w @ original, rtol=1e-4, atol=1e-6)


def test_no_noise_scans_pass_through_with_a_warning(tmp_path, caplog):
    simulate(ScanDescription.load("tiny"), tmp_path)
    xml, items = read_raw(tmp_path / "tiny.h5")
    imaging = [a for a in items if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    before = imaging[0].data.copy()
    with caplog.at_level(logging.WARNING):
        out = list(NoisePrewhitener(parse_header(xml)).process(imaging[0]))
    np.testing.assert_array_equal(out[0].data, before)
    assert "not prewhitened" in caplog.text
