import numpy as np
import pytest
from scipy.integrate import quad

from gadgets.core.numerics.kernel import (
    GridGeometry,
    beatty_beta,
    fft_friendly_size,
    kaiser_bessel,
    kaiser_bessel_ft,
)


def test_beatty_beta_formula():
    # pi * sqrt((W / alpha)^2 (alpha - 1/2)^2 - 0.8) for W = 4, alpha = 2
    assert beatty_beta(4, 2.0) == pytest.approx(np.pi * np.sqrt(9.0 - 0.8), rel=1e-12)
    with pytest.raises(ValueError):
        beatty_beta(1, 1.25)


@pytest.mark.parametrize("width,alpha", [(5, 2.0), (8, 1.25), (3, 2.0)])
def test_fourier_transform_matches_quadrature(width, alpha):
    beta = beatty_beta(width, alpha)
    for xi in (0.0, 0.1, 0.25, 1.0 / (2 * alpha), 0.7):
        numeric, _ = quad(
            lambda u, xi=xi: kaiser_bessel(u, width, beta) * np.cos(2 * np.pi * u * xi),
            -width / 2,
            width / 2,
            epsabs=1e-13,
            limit=200,
        )
        assert kaiser_bessel_ft(xi, width, beta) == pytest.approx(numeric, rel=1e-9, abs=1e-12)


def test_kernel_support_and_peak():
    beta = beatty_beta(5, 2.0)
    assert kaiser_bessel(0.0, 5, beta) == pytest.approx(1.0)
    assert kaiser_bessel(2.5001, 5, beta) == 0.0
    assert kaiser_bessel(-3.0, 5, beta) == 0.0


def test_fft_friendly_size_is_minimal_and_smooth():
    def smooth(m):
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(2, 400):
        m = fft_friendly_size(n)
        assert m >= n and m % 2 == 0 and smooth(m)
        assert not any(q % 2 == 0 and smooth(q) for q in range(n, m))


def test_geometry_rejects_bad_parameters():
    with pytest.raises(ValueError, match="oversampling"):
        GridGeometry((32, 32), oversampling=1.1)
    with pytest.raises(ValueError, match="width"):
        GridGeometry((32, 32), width=1)
    with pytest.raises(ValueError, match="2D or 3D"):
        GridGeometry((32,))


def test_geometry_sizes():
    g = GridGeometry((64, 64, 64))
    assert g.grid_shape3 == (128, 128, 128)
    g2 = GridGeometry((30, 40), oversampling=1.25)
    assert g2.shape3 == (1, 30, 40)
    assert g2.grid_shape3[0] == 1 and g2.grid_shape3[1] >= 38 and g2.grid_shape3[2] >= 50
