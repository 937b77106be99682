"""Pruned, in-place FFTs between the oversampled gridding grid and the image (pyfftw).

The gridding grid is one buffer of shape ``(Gpz, Gpy, Gpx, C)`` (complex64, channel innermost,
``Gp = G + 2 * halo``). Only the central ``N`` of the ``G`` outputs are kept along each axis, so
the 3D transform is done as three 1D passes on shrinking views of the same buffer::

    adjoint:  x over (Gz, Gy)  ->  y over (Gz, Nx)  ->  z over (Ny, Nx)
    forward:  z over (Ny, Nx)  ->  y over (Gz, Nx)  ->  x over (Gz, Gy)

which costs ``1 + 1/alpha + 1/alpha^2`` instead of 3 full passes, needs no second buffer and
keeps the channels interleaved (FFTW vectorises across them). The kept outputs are contiguous
because the centring sign ``(-1)^j`` is folded into the kernel weights (see
:mod:`gadgets.core.numerics.kernel`). Transforms are unnormalised: backward is
``sum_j x_j e^{+2 pi i j q/G}``.

Plans are built once per buffer with ``FFTW_ESTIMATE`` (milliseconds) unless ``effort`` asks for
more, in which case FFTW wisdom is stored in the cache directory so the planning cost is paid once
per machine, never on the hot path of a later scan.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pyfftw

from gadgets.core.cache import load_arrays, store_arrays
from gadgets.core.numerics.kernel import GridGeometry

__all__ = ["PrunedFFT"]

log = logging.getLogger(__name__)

_EFFORTS = {
    "estimate": "FFTW_ESTIMATE",
    "measure": "FFTW_MEASURE",
    "patient": "FFTW_PATIENT",
}
_wisdom_lock = threading.Lock()
_wisdom_loaded = False


def _load_wisdom() -> None:
    global _wisdom_loaded
    with _wisdom_lock:
        if _wisdom_loaded:
            return
        _wisdom_loaded = True
        stored = load_arrays("fftw", "wisdom")
        if stored is not None:
            pyfftw.import_wisdom(tuple(stored[f"w{i}"].tobytes() for i in range(3)))


def _save_wisdom() -> None:
    with _wisdom_lock:
        wisdom = pyfftw.export_wisdom()
        store_arrays(
            "fftw", "wisdom", **{f"w{i}": np.frombuffer(w, np.uint8) for i, w in enumerate(wisdom)}
        )


class PrunedFFT:
    """The three in-place 1D FFT passes for one gridding buffer.

    ``buffer``: complex64 array of shape ``geom.padded_shape3 + (C,)``, which must stay alive and
    in place for the life of this object (the FFTW plans point into it). Planning with an
    ``effort`` other than ``estimate`` overwrites it (FFTW runs trial transforms in it): plan
    before filling it.
    """

    def __init__(
        self, buffer: np.ndarray, geom: GridGeometry, nthreads: int = 1, effort: str = "estimate"
    ) -> None:
        if effort not in _EFFORTS:
            raise ValueError(f"FFT effort must be one of {sorted(_EFFORTS)}, got {effort!r}")
        if buffer.shape[:3] != geom.padded_shape3:
            raise ValueError(f"buffer {buffer.shape} does not match grid {geom.padded_shape3}")
        flags = (_EFFORTS[effort], "FFTW_DESTROY_INPUT")
        if effort != "estimate":
            _load_wisdom()
        h, g, o, n = geom.halos3, geom.grid_shape3, geom.crop_offsets3, geom.shape3
        full = [slice(hh, hh + gg) for hh, gg in zip(h, g, strict=True)]
        kept = [slice(oo, oo + nn) for oo, nn in zip(o, n, strict=True)]
        views = {
            2: buffer[full[0], full[1], full[2]],
            1: buffer[full[0], full[1], kept[2]],
            0: buffer[full[0], kept[1], kept[2]],
        }
        axes = [a for a in (2, 1, 0) if g[a] > 1]

        def plan(axis: int, direction: str) -> pyfftw.FFTW:
            view = views[axis]
            return pyfftw.FFTW(
                view, view, axes=(axis,), direction=direction, flags=flags, threads=nthreads
            )

        self._backward = [plan(a, "FFTW_BACKWARD") for a in axes]
        self._forward = [plan(a, "FFTW_FORWARD") for a in reversed(axes)]
        if effort != "estimate":
            _save_wisdom()

    def backward(self) -> None:
        """Grid (k-space, centred) -> cropped image region of the buffer, unnormalised."""
        for plan in self._backward:
            plan.execute()

    def forward(self) -> None:
        """Cropped image region (zero elsewhere) -> full grid, unnormalised."""
        for plan in self._forward:
            plan.execute()
