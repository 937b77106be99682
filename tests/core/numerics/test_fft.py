import pytest
from conftest import relative_error

from gadgets.core.numerics.nufft import Nufft


def _random_problem(rng, shape, m=3000, channels=2):
    k = rng.uniform(-0.5, 0.5, (m, len(shape)))
    data = rng.standard_normal((channels, m)) + 1j * rng.standard_normal((channels, m))
    image = rng.standard_normal((channels,) + shape) + 1j * rng.standard_normal((channels,) + shape)
    return k, data, image


def test_measured_fft_plans_store_wisdom(rng):
    # planning with FFTW_MEASURE runs once per machine: its wisdom goes to the cache folder
    from gadgets.core.cache import cache_dir

    k, data, _ = _random_problem(rng, (16, 16, 16), m=500)
    quick = Nufft(k, (16, 16, 16)).adjoint(data)
    measured = Nufft(k, (16, 16, 16), fft_effort="measure").adjoint(data)
    assert relative_error(quick, measured) <= 1e-6
    assert (cache_dir("fftw") / "wisdom.npz").stat().st_size > 0
    with pytest.raises(ValueError, match="FFT effort"):
        Nufft(k, (16, 16, 16), fft_effort="exhaustive").adjoint(data)


def test_wisdom_plans_come_from_the_stored_wisdom_only(rng, monkeypatch, tmp_path):
    """``wisdom``: FFTW's estimate while the machine has no wisdom for the transform (the
    planner never times anything on the hot path); after it was timed once and stored (what
    ``sodium-gadgets fft-wisdom`` does), a new process plans from it, and gives the same bits on
    every run and the same transform as the estimate plans."""
    import numpy as np
    import pyfftw

    from gadgets.core.numerics import fft
    from gadgets.core.numerics.kernel import GridGeometry

    monkeypatch.setenv("SODIUM_GADGETS_CACHE", str(tmp_path))

    def new_process() -> None:
        pyfftw.forget_wisdom()
        monkeypatch.setattr(fft, "_wisdom_stamp", None)

    new_process()
    geom = GridGeometry((10, 12, 14), 1.25, 6)
    buf = pyfftw.empty_aligned(geom.padded_shape3 + (3,), np.complex64)
    estimate = fft.PrunedFFT(buf, geom, nthreads=1, effort="wisdom")
    assert estimate.planned_by == "estimate" and not fft.wisdom_path().exists()
    fft.PrunedFFT(buf, geom, nthreads=1, effort="measure")  # timed once, stored
    assert fft.wisdom_path().stat().st_size > 0
    new_process()
    planned = fft.PrunedFFT(buf, geom, nthreads=1, effort="wisdom")
    assert planned.planned_by == "wisdom"
    x = (rng.standard_normal(buf.shape) + 1j * rng.standard_normal(buf.shape)).astype(np.complex64)
    results = []
    for plans in (planned, planned, estimate):
        buf[:] = x
        plans.backward()
        results.append(buf.copy())
    assert np.array_equal(results[0], results[1])
    assert relative_error(results[2], results[0]) < 1e-5
