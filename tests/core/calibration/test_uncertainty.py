"""The TSC standard error (gadgets.core.calibration.uncertainty) against Monte Carlo of the
calibration it describes: noisy tube signals, a least-squares line, a noisy voxel."""

import numpy as np
import pytest

from gadgets.core.calibration.linear_fit import fit_line
from gadgets.core.calibration.uncertainty import fit_covariance, tsc_standard_error

CONC = [30.0, 60.0, 90.0, 120.0]
SLOPE, INTERCEPT = 0.01, 0.05


def test_predicted_standard_error_is_the_spread_of_repeated_calibrations():
    rng = np.random.default_rng(0)
    tube_sd = np.array([0.004, 0.006, 0.005, 0.008])  # signal units, one per tube
    voxel_sd, true_mM, factor = 0.02, 45.0, 1.1
    clean = SLOPE * np.asarray(CONC) + INTERCEPT
    maps = []
    for _ in range(20000):
        fit = fit_line(CONC, list(clean + tube_sd * rng.standard_normal(4)))
        voxel = SLOPE * true_mM + INTERCEPT + voxel_sd * rng.standard_normal()
        maps.append(factor * (voxel - fit.intercept) / fit.slope)
    reference = fit_line(CONC, list(clean))
    cov = fit_covariance(reference, list(tube_sd**2))
    voxel = np.array([SLOPE * true_mM + INTERCEPT])
    se = tsc_standard_error(voxel, np.array([voxel_sd**2]), reference, cov, factor)
    assert se[0] == pytest.approx(np.std(maps), rel=0.03)
    # without the fit's noise: the voxel's alone, factor / slope
    none = type(cov)(0.0, 0.0, 0.0)
    assert tsc_standard_error(voxel, np.array([voxel_sd**2]), reference, none, factor)[
        0
    ] == pytest.approx(factor * voxel_sd / SLOPE, rel=1e-5)
