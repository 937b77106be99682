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

Plans are built once per buffer. ``effort``:

* ``estimate``: FFTW's heuristic plan (milliseconds to plan, bit-reproducible, but 1.5-4x slower
  than a timed plan on grids such as 78^3 x 40);
* ``wisdom``: the plan FFTW timed once on this machine and stored as wisdom in the cache
  (``sodium-gadgets fft-wisdom``, :mod:`gadgets.app.fft_wisdom`), else ``estimate``. Plans come
  from the stored wisdom only, never timed on the hot path, so every scan a process reconstructs
  with the same wisdom gets the same bits; the wisdom is re-read when its file changes;
* ``measure`` / ``patient``: FFTW times candidate plans now (seconds to a minute, unless the
  wisdom has them) and stores them as wisdom. Which plan wins, and with it the last bits of every
  value (~1e-7 relative), depends on the machine's load while it planned.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pyfftw

from gadgets.core.cache import cache_dir, load_arrays, store_arrays
from gadgets.core.numerics.kernel import GridGeometry

__all__ = ["EFFORTS", "PrunedFFT", "wisdom_path"]

log = logging.getLogger(__name__)

_EFFORTS = {
    "estimate": "FFTW_ESTIMATE",
    "measure": "FFTW_MEASURE",
    "patient": "FFTW_PATIENT",
}
EFFORTS = ("wisdom", *_EFFORTS)
_wisdom_lock = threading.Lock()
_wisdom_stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the file last imported


def _load_wisdom() -> None:
    """Import the stored wisdom if its file is new or has changed since the last import."""
    global _wisdom_stamp
    with _wisdom_lock:
        try:
            st = wisdom_path().stat()
        except OSError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == _wisdom_stamp:
            return
        _wisdom_stamp = stamp
        stored = load_arrays("fftw", "wisdom")
        if stored is not None:
            pyfftw.import_wisdom(tuple(stored[f"w{i}"].tobytes() for i in range(3)))


def _save_wisdom() -> None:
    global _wisdom_stamp
    with _wisdom_lock:
        wisdom = pyfftw.export_wisdom()
        path = store_arrays(
            "fftw", "wisdom", **{f"w{i}": np.frombuffer(w, np.uint8) for i, w in enumerate(wisdom)}
        )
        st = path.stat()
        _wisdom_stamp = (st.st_mtime_ns, st.st_size)  # what this process holds already


def wisdom_path() -> Path:
    """Where the machine's FFTW wisdom is kept (the cache, :func:`gadgets.core.cache.cache_dir`)."""
    return cache_dir("fftw") / "wisdom.npz"


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
        if effort not in EFFORTS:
            raise ValueError(f"FFT effort must be one of {list(EFFORTS)}, got {effort!r}")
        if buffer.shape[:3] != geom.padded_shape3:
            raise ValueError(f"buffer {buffer.shape} does not match grid {geom.padded_shape3}")
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
        #: how the plans were made: "estimate", "wisdom", "measure" or "patient"
        self.planned_by = effort

        def plan(axis: int, direction: str) -> pyfftw.FFTW:
            view = views[axis]

            def make(rigor: str, *extra: str) -> pyfftw.FFTW:
                flags = (rigor, "FFTW_DESTROY_INPUT", *extra)
                return pyfftw.FFTW(
                    view, view, axes=(axis,), direction=direction, flags=flags, threads=nthreads
                )

            if effort != "wisdom":
                return make(_EFFORTS[effort])
            try:  # timed at MEASURE or better, on this machine, once
                return make("FFTW_MEASURE", "FFTW_WISDOM_ONLY")
            except RuntimeError:  # no wisdom for this transform
                self.planned_by = "estimate"
                return make("FFTW_ESTIMATE")

        self._backward = [plan(a, "FFTW_BACKWARD") for a in axes]
        self._forward = [plan(a, "FFTW_FORWARD") for a in reversed(axes)]
        if effort in ("measure", "patient"):
            _save_wisdom()
        if effort == "wisdom" and self.planned_by == "estimate":
            log.info(
                "no FFTW wisdom for the grid %s x %d on %d threads: FFTW_ESTIMATE plans (slower; "
                "`sodium-gadgets fft-wisdom SCAN.h5` times them once per machine)",
                geom.padded_shape3,
                buffer.shape[3],
                nthreads,
            )

    def backward(self) -> None:
        """Grid (k-space, centred) -> cropped image region of the buffer, unnormalised."""
        for plan in self._backward:
            plan.execute()

    def forward(self) -> None:
        """Cropped image region (zero elsewhere) -> full grid, unnormalised."""
        for plan in self._forward:
            plan.execute()
