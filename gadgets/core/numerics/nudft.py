"""Exact non-uniform discrete Fourier transform (double precision): the reference the gridding is
tested against. Same conventions as :mod:`gadgets.core.numerics.nufft`::

    forward:  s_j  = sum_r x(r) exp(-2 pi i k_j . r)
    adjoint:  x(r) = sum_j s_j exp(+2 pi i k_j . r)

``r = index - N // 2`` per axis, images ``(C, nz, ny, nx)``, data ``(C, M)``, ``k`` (M, d) with
columns ``(kx, ky[, kz])``. Cost O(M N^d): for small problems and tests only.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["nudft_adjoint", "nudft_forward"]


def _axis_phases(k: np.ndarray, shape3: tuple[int, int, int]) -> list[np.ndarray]:
    """exp(-2 pi i k_a r_a) per array axis a (z, y, x): list of (M, N_a) complex128."""
    ndim = k.shape[1]
    phases = []
    for axis, n in enumerate(shape3):
        r = np.arange(n) - n // 2
        col = 2 - axis
        if col >= ndim:
            phases.append(np.ones((k.shape[0], 1), np.complex128))
        else:
            phases.append(np.exp(-2j * np.pi * np.outer(k[:, col].astype(np.float64), r)))
    return phases


@nb.njit(parallel=True, cache=True)
def _adjoint(data, ez, ey, ex, out):
    nch, m = data.shape
    nz, ny, nx = out.shape[1], out.shape[2], out.shape[3]
    for z in nb.prange(nz):
        for j in range(m):
            for y in range(ny):
                fzy = np.conj(ez[j, z] * ey[j, y])
                for x in range(nx):
                    f = fzy * np.conj(ex[j, x])
                    for c in range(nch):
                        out[c, z, y, x] += data[c, j] * f


@nb.njit(parallel=True, cache=True)
def _forward(image, ez, ey, ex, out):
    nch = image.shape[0]
    nz, ny, nx = image.shape[1], image.shape[2], image.shape[3]
    for j in nb.prange(out.shape[1]):
        for z in range(nz):
            for y in range(ny):
                fzy = ez[j, z] * ey[j, y]
                for x in range(nx):
                    f = fzy * ex[j, x]
                    for c in range(nch):
                        out[c, j] += image[c, z, y, x] * f


def _shape3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (1,) * (3 - len(shape)) + tuple(shape)  # type: ignore[return-value]


def nudft_adjoint(data: np.ndarray, traj: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Exact adjoint: (C, M) k-space -> (C, *shape) image, complex128."""
    k = np.asarray(traj, np.float64).reshape(-1, len(shape))
    data = np.atleast_2d(np.asarray(data, np.complex128))
    out = np.zeros((data.shape[0],) + _shape3(shape), np.complex128)
    _adjoint(data, *_axis_phases(k, _shape3(shape)), out)
    return out.reshape((data.shape[0],) + tuple(shape))


def nudft_forward(image: np.ndarray, traj: np.ndarray) -> np.ndarray:
    """Exact forward: (C, *shape) image -> (C, M) k-space, complex128."""
    image = np.asarray(image, np.complex128)
    ndim = np.asarray(traj).shape[-1]
    shape = image.shape[-ndim:]
    k = np.asarray(traj, np.float64).reshape(-1, ndim)
    image = image.reshape((-1,) + _shape3(shape))
    out = np.zeros((image.shape[0], k.shape[0]), np.complex128)
    _forward(image, *_axis_phases(k, _shape3(shape)), out)
    return out
