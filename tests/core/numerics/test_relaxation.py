"""Relaxation weights (SI units), the tube/tissue class correction, 23NaR."""

import numpy as np
import pytest

from gadgets.core.numerics import relaxation as rx


def test_relaxation_weights_and_corrections():
    # Mueller et al. 2022 (23NaR at 3T): TE 0.3 / 25 ms, T2*_CSF 56 ms -> exp(24.7/56) = 1.554
    i1, i2 = np.array([1.0]), np.array([0.0])
    assert rx.sodium_r(i1, np.array([1.0]), (0.3e-3, 25e-3), 56e-3)[0] == pytest.approx(
        -0.554, 1e-3
    )
    assert rx.sodium_r(i1, i2, (0.3e-3, 25e-3))[0] == 1.0
    brain, fluid = rx.relaxation("brain", 7.0), rx.relaxation("fluid", 7.0)
    tube = rx.relaxation("agarose", 7.0)
    args = (0.1, 90.0, 0.3e-3)  # TR 100 ms, flip 90, TE 0.3 ms
    # pure fluid: the tube/fluid weight ratio; CSF saturates more at TR 100 ms (T1 61 vs 41 ms)
    factor = rx.class_correction(
        np.array([1.0]), tube.weight(*args), brain.weight(*args), fluid.weight(*args)
    )
    assert 1.04 < factor[0] < 1.12
    te = (0.3e-3, 2.3e-3)
    e_b = brain.decay(te[1]) / brain.decay(te[0])
    e_f = fluid.decay(te[1]) / fluid.decay(te[0])
    mix = 0.3  # 30% of the echo-1 signal from fluid
    frac = rx.fluid_fraction_two_echo(
        np.array([1.0]), np.array([0.7 * e_b + mix * e_f]), brain, fluid, te
    )
    assert frac[0] == pytest.approx(mix, abs=1e-5)
    ramp = rx.fluid_fraction_one_echo(np.array([50.0, 95.0, 150.0]), 70.0, 120.0)
    assert ramp.tolist() == pytest.approx([0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="unknown relaxation class"):
        rx.relaxation("gel", 3.0)


def test_relaxation_refuses_impossible_values():
    with pytest.raises(ValueError, match="sum to 1"):
        rx.Relaxation(40e-3, (3e-3, 20e-3), (0.6, 0.6))
    with pytest.raises(ValueError, match="T1 > 0"):
        rx.Relaxation(0.0, (3e-3,), (1.0,))
    with pytest.raises(ValueError, match="T2"):
        rx.Relaxation(40e-3, (-3e-3,), (1.0,))
    # units are seconds: a T1 given in ms by mistake saturates nothing
    assert rx.Relaxation(40.0, (3e-3,), (1.0,)).saturation(0.1, 90) < 0.01
