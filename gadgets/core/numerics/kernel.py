"""Kaiser-Bessel gridding kernel, its Fourier transform and the oversampled grid geometry.

Conventions (used by every gridding routine in this package):

* k-space coordinates are in cycles per pixel; the N-matrix spans ``-0.5 <= k < 0.5``.
* The oversampled grid has ``G`` cells per axis (``G >= alpha * N``, even, FFT-friendly). Grid
  cell ``m`` (an integer) sits at ``k = m / G``; a sample at ``k`` touches the ``W`` cells with
  ``|G k - m| < W / 2``. Kernel arguments ``u`` are in grid cells.
* The kernel, normalised to ``phi(0) = 1``::

      phi(u) = I0(beta * sqrt(1 - (2 u / W)^2)) / I0(beta)        for |u| <= W / 2

  with Beatty et al. (IEEE TMI 2005) ``beta = pi * sqrt((W / alpha)^2 (alpha - 1/2)^2 - 0.8)``.
* Its continuous Fourier transform, used for deapodization, is::

      Phi(xi) = integral phi(u) exp(-2 pi i u xi) du
              = W / I0(beta) * sinh(sqrt(beta^2 - (pi W xi)^2)) / sqrt(beta^2 - (pi W xi)^2)

  evaluated at ``xi = r / G`` for image position ``r`` (pixels from the centre).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import i0

__all__ = [
    "DEFAULT_OVERSAMPLING",
    "DEFAULT_WIDTH",
    "beatty_beta",
    "fft_friendly_size",
    "GridGeometry",
    "kaiser_bessel",
    "kaiser_bessel_ft",
    "kernel_weights",
]

#: Default oversampling factor and kernel width: relative L2 error ~1e-4 against the exact
#: non-uniform DFT (see tests/test_gridding.py and the benchmark).
DEFAULT_OVERSAMPLING = 2.0
DEFAULT_WIDTH = 5

_CHUNK = 1 << 16  # samples per block when computing kernel weights


def beatty_beta(width: float, oversampling: float) -> float:
    """Kaiser-Bessel shape parameter of Beatty et al. 2005 for kernel width ``W`` (grid cells)
    and oversampling ``alpha``: ``beta = pi sqrt((W/alpha)^2 (alpha - 0.5)^2 - 0.8)``."""
    arg = (width / oversampling) ** 2 * (oversampling - 0.5) ** 2 - 0.8
    if arg <= 0:
        raise ValueError(f"kernel width {width} too small for oversampling {oversampling}")
    return float(np.pi * np.sqrt(arg))


def kaiser_bessel(u: np.ndarray, width: float, beta: float) -> np.ndarray:
    """Kernel value ``phi(u)`` at offsets ``u`` (grid cells), zero outside ``|u| <= W/2``."""
    u = np.asarray(u, dtype=np.float64)
    x = 1.0 - (2.0 * u / width) ** 2
    out = i0(beta * np.sqrt(np.clip(x, 0.0, None))) / i0(beta)
    return np.where(x >= 0.0, out, 0.0)


def kaiser_bessel_ft(xi: np.ndarray, width: float, beta: float) -> np.ndarray:
    """Continuous Fourier transform ``Phi(xi)`` of :func:`kaiser_bessel` (``xi`` in cycles per
    grid cell); real and even."""
    xi = np.asarray(xi, dtype=np.float64)
    z2 = beta**2 - (np.pi * width * xi) ** 2
    z = np.sqrt(np.abs(z2))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(z2 > 0, np.sinh(z) / z, np.sin(z) / z)
    ratio = np.where(z < 1e-8, 1.0, ratio)
    return width / i0(beta) * ratio


def fft_friendly_size(n: int) -> int:
    """Smallest even integer ``>= n`` whose prime factors are 2, 3, 5 and 7 only."""
    m = max(2, int(np.ceil(n)))
    while True:
        if m % 2 == 0:
            r = m
            for p in (2, 3, 5, 7):
                while r % p == 0:
                    r //= p
            if r == 1:
                return m
        m += 1


@dataclass(frozen=True)
class GridGeometry:
    """Image matrix, oversampled grid and kernel of one gridding problem.

    ``shape`` is the image matrix in array order ``(nz, ny, nx)`` for 3D or ``(ny, nx)`` for 2D;
    trajectory columns are ``(kx, ky[, kz])``. Internally 2D is handled as 3D with a trivial z axis
    (``nz = G_z = W_z = 1``).
    """

    shape: tuple[int, ...]
    oversampling: float = DEFAULT_OVERSAMPLING
    width: int = DEFAULT_WIDTH

    def __post_init__(self) -> None:
        if len(self.shape) not in (2, 3) or min(self.shape) < 2:
            raise ValueError(f"image shape must be 2D or 3D with sides >= 2, got {self.shape}")
        if not 1.25 <= self.oversampling <= 2.0:
            raise ValueError(f"oversampling must lie in [1.25, 2], got {self.oversampling}")
        if not 2 <= self.width <= 16 or int(self.width) != self.width:
            raise ValueError(f"kernel width must be an integer in [2, 16], got {self.width}")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @cached_property
    def beta(self) -> float:
        return beatty_beta(self.width, self.oversampling)

    @property
    def shape3(self) -> tuple[int, int, int]:
        """Image shape padded to 3D: ``(nz, ny, nx)``."""
        return (1,) * (3 - self.ndim) + self.shape  # type: ignore[return-value]

    @cached_property
    def grid_shape3(self) -> tuple[int, int, int]:
        """Oversampled grid ``(Gz, Gy, Gx)``; 1 along a trivial axis."""
        return tuple(  # type: ignore[return-value]
            1 if n == 1 else fft_friendly_size(self.oversampling * n) for n in self.shape3
        )

    @cached_property
    def widths3(self) -> tuple[int, int, int]:
        """Kernel width per axis ``(Wz, Wy, Wx)``; 1 along a trivial axis."""
        return tuple(1 if n == 1 else self.width for n in self.shape3)  # type: ignore[return-value]

    @cached_property
    def halo(self) -> int:
        """Cells of padding on each side of the grid, so that spreading needs no wrap-around."""
        return self.width // 2 + 1

    @cached_property
    def halos3(self) -> tuple[int, int, int]:
        return tuple(0 if n == 1 else self.halo for n in self.shape3)  # type: ignore[return-value]

    @cached_property
    def padded_shape3(self) -> tuple[int, int, int]:
        return tuple(g + 2 * h for g, h in zip(self.grid_shape3, self.halos3, strict=True))  # type: ignore[return-value]

    @cached_property
    def crop_offsets3(self) -> tuple[int, int, int]:
        """Padded-grid index of image voxel 0 along each axis (after the centring signs)."""
        return tuple(  # type: ignore[return-value]
            h + g // 2 - n // 2
            for n, g, h in zip(self.shape3, self.grid_shape3, self.halos3, strict=True)
        )

    def deapodization(self, axis: int) -> np.ndarray:
        """Per-axis factor applied to image voxel ``n`` (array axis 0..2 of the 3D shape):
        ``(-1)^r / Phi(r / G)`` with ``r = n - N // 2``. The sign undoes the centring of the grid
        (``(-1)^j`` is folded into the kernel weights, see :func:`kernel_weights`)."""
        n, g = self.shape3[axis], self.grid_shape3[axis]
        if n == 1:
            return np.ones(1)
        r = np.arange(n) - n // 2
        sign = np.where(r % 2 == 0, 1.0, -1.0)
        return sign / kaiser_bessel_ft(r / g, self.width, self.beta)

    def describe(self) -> str:
        return (
            f"matrix {self.shape}, grid {self.grid_shape3[3 - self.ndim :]} "
            f"(alpha {self.oversampling:g}), Kaiser-Bessel W={self.width} beta={self.beta:.3f}"
        )


def kernel_weights(
    k: np.ndarray, geom: GridGeometry, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Separable kernel weights of each sample on the padded grid.

    ``k``: (M, d) trajectory in cycles per pixel, columns ``(kx, ky[, kz])``.

    Returns ``starts`` (M, 3) int32, the padded-grid index ``(iz, iy, ix)`` of the first cell each
    sample touches, and ``weights`` (M, 3, W) with ``weights[:, a, t]`` the kernel value times the
    centring sign ``(-1)^j`` for cell ``starts[:, a] + t`` along array axis ``a`` (0 = z). Along a
    trivial axis the first weight is 1 and the rest 0.
    """
    k = np.asarray(k)
    if k.ndim != 2 or k.shape[1] != geom.ndim:
        raise ValueError(f"trajectory must be (M, {geom.ndim}), got {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError("trajectory contains NaN or infinite values")
    if np.any(np.abs(k) > 0.5 + 1e-3):
        raise ValueError(f"trajectory exceeds |k| <= 0.5 cycles/pixel (max {np.abs(k).max():.4f})")
    m = k.shape[0]
    width = geom.width
    starts = np.zeros((m, 3), dtype=np.int32)
    weights = np.zeros((m, 3, width), dtype=dtype)
    weights[:, :, 0] = 1.0
    offsets = np.arange(width)[None, :]
    for lo in range(0, m, _CHUNK):  # chunks bound the float64 temporaries
        hi = min(m, lo + _CHUNK)
        for axis in range(3):
            g = geom.grid_shape3[axis]
            if g == 1:
                continue
            col = k[lo:hi, 2 - axis].astype(np.float64)  # array axis 0 = z = trajectory column 2
            u = g * col + g // 2  # position in centred grid units, j = m + G/2
            j0 = np.floor(u - width / 2.0).astype(np.int64) + 1
            j = j0[:, None] + offsets
            sign = 1.0 - 2.0 * (j % 2)
            weights[lo:hi, axis, :] = sign * kaiser_bessel(u[:, None] - j, width, geom.beta)
            starts[lo:hi, axis] = j0 + geom.halos3[axis]
    return starts, weights
