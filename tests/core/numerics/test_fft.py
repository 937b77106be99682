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
