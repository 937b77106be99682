"""Gridding: adjoint and forward non-uniform FFT (NUFFT) with a Kaiser-Bessel kernel.

Sign and unit conventions (see also :mod:`gadgets.core.numerics.kernel`):

* forward:  ``s(k_j) = sum_r x(r) exp(-2 pi i k_j . r)``
* adjoint:  ``x(r) = sum_j w_j s_j exp(+2 pi i k_j . r)``  (``w_j`` optional density weights)

with ``k`` in cycles per pixel (columns ``kx, ky[, kz]``) and ``r`` in pixels from the image centre:
image array index ``i`` along an axis of length ``N`` is ``r = i - N // 2``. Images are
``(C, nz, ny, nx)`` (or ``(C, ny, nx)``), x fastest, as ISMRMRD images; k-space data are
``(C, M)`` (channels, samples), as ISMRMRD acquisitions. Everything is complex64/float32.

How it is fast:

* A :class:`Nufft` plan computes each sample's separable kernel weights and first grid cell once
  per trajectory; every channel, echo and repetition reuses them.
* The grid is channel-innermost, ``(z, y, x, C)``: one kernel weight is evaluated once per
  (sample, cell) and applied to all channels in one contiguous vector operation.
* Samples are binned into tiles of at least ``W`` cells per axis and the tiles are coloured
  (2 x 2 x 2 colours): tiles of one colour never touch the same cell, so threads spread them in
  parallel without locks or private grid copies. Tiles of a colour are dealt to threads by
  size (largest first) for balance.
* The grid is padded by a halo so spreading never wraps; the halo is folded back afterwards.
* The FFT is pruned and in place (:mod:`gadgets.core.numerics.fft`).

:class:`GridAccumulator` is the incremental form for streaming: readouts are gridded as they
arrive and one :meth:`GridAccumulator.finish` does the fold, FFT, crop and deapodization. Its
result equals :meth:`Nufft.adjoint` on the concatenated data.
"""

from __future__ import annotations

import logging

import numba as nb
import numpy as np
import pyfftw

from gadgets.core.numerics.fft import PrunedFFT
from gadgets.core.numerics.kernel import (
    DEFAULT_OVERSAMPLING,
    DEFAULT_WIDTH,
    GridGeometry,
    kernel_weights,
)

__all__ = ["GridAccumulator", "Nufft"]

log = logging.getLogger(__name__)

_TILE = 8  # tile side in grid cells (raised to W when the kernel is wider)


# --------------------------------------------------------------------------------------------
# numba kernels. Grids are float32 views (z, y, x, 2C) of the complex64 buffer; data are
# float32 views (C, 2M) of complex64 (C, M).


@nb.njit(cache=True, fastmath=True, inline="always", nogil=True)
def _accumulate(grid, row, sz, sy, nq, z0, y0, x0, weights, i, wz, wy, wx):
    """grid[z0+a, y0+b, x0:x0+wx, :] += wz[a] wy[b] * row for the kernel's wz x wy rows.

    ``grid`` is the flat float32 grid, ``row`` = outer(w_x, channel values) (wx * nq floats):
    each kernel row is then one contiguous multiply-add, channels innermost. Indices are
    unsigned so that numba emits no negative-index wrap-around, which would stop LLVM from
    vectorising; and no views are made (a view costs an atomic refcount that threads contend for).
    """
    n = np.uint64(wx * nq)
    base_x = np.uint64(x0) * np.uint64(nq)
    for a in range(wz):
        w0 = weights[i, 0, a]
        base_z = np.uint64(z0 + a) * np.uint64(sz) + base_x
        for b in range(wy):
            w1 = w0 * weights[i, 1, b]
            base = base_z + np.uint64(y0 + b) * np.uint64(sy)
            for t in range(n):
                grid[base + t] += w1 * row[t]


@nb.njit(cache=True, fastmath=True, inline="always", nogil=True)
def _load_row(row, data, src, f, weights, i, wx, nch):
    """row[c * nq + 2 ch + (0|1)] = w_x[c] * f * data[ch, src] (re, im)."""
    nq = 2 * nch
    for ch in range(nch):
        re = data[ch, 2 * src] * f
        im = data[ch, 2 * src + 1] * f
        for c in range(wx):
            wc = weights[i, 2, c]
            row[c * nq + 2 * ch] = wc * re
            row[c * nq + 2 * ch + 1] = wc * im


@nb.njit(cache=True, fastmath=True, nogil=True)
def _spread_serial(grid, sz, sy, data, dcf, starts, weights, wz, wy, wx):
    """Spread samples in the order given (one thread): the streaming path."""
    nch = data.shape[0]
    nq = 2 * nch
    row = np.empty(wx * nq, np.float32)
    for i in range(starts.shape[0]):
        _load_row(row, data, i, dcf[i], weights, i, wx, nch)
        _accumulate(
            grid, row, sz, sy, nq, starts[i, 0], starts[i, 1], starts[i, 2], weights, i, wz, wy, wx
        )


@nb.njit(cache=True, fastmath=True, parallel=True, nogil=True)
def _spread_tiled(
    grid, sz, sy, data, dcf, order, starts, weights, wz, wy, wx, seg_ptr, segments, nwork
):
    """Spread sorted samples colour by colour; within a colour each worker owns its tiles."""
    nch = data.shape[0]
    nq = 2 * nch
    ncolours = (seg_ptr.shape[0] - 1) // nwork
    for colour in range(ncolours):
        for worker in nb.prange(nwork):
            row = np.empty(wx * nq, np.float32)
            slot = colour * nwork + worker
            for s in range(seg_ptr[slot], seg_ptr[slot + 1]):
                for i in range(segments[s, 0], segments[s, 1]):
                    src = order[i]
                    _load_row(row, data, src, dcf[src], weights, i, wx, nch)
                    _accumulate(
                        grid,
                        row,
                        sz,
                        sy,
                        nq,
                        starts[i, 0],
                        starts[i, 1],
                        starts[i, 2],
                        weights,
                        i,
                        wz,
                        wy,
                        wx,
                    )


@nb.njit(cache=True, fastmath=True, parallel=True, nogil=True)
def _interp(grid, sz, sy, out, positions, dest, starts, weights, wz, wy, wx, chunk_ptr):
    """Forward interpolation at plan positions ``positions`` (flat grid):
    out[ch, dest[j]] = sum over the kernel of grid values around sample ``positions[j]``."""
    nch = out.shape[0]
    nq = 2 * nch
    n = wx * nq
    for chunk in nb.prange(chunk_ptr.shape[0] - 1):
        acc = np.empty(n, np.float32)
        for j in range(chunk_ptr[chunk], chunk_ptr[chunk + 1]):
            i = positions[j]
            for t in range(n):
                acc[t] = 0.0
            base_x = np.uint64(starts[i, 2]) * np.uint64(nq)
            for a in range(wz):
                w0 = weights[i, 0, a]
                base_z = np.uint64(starts[i, 0] + a) * np.uint64(sz) + base_x
                for b in range(wy):
                    w1 = w0 * weights[i, 1, b]
                    base = base_z + np.uint64(starts[i, 1] + b) * np.uint64(sy)
                    for t in range(np.uint64(n)):
                        acc[t] += w1 * grid[base + t]  # unsigned: see _accumulate
            d = dest[j]
            for q in range(nq):
                v = np.float32(0.0)
                for c in range(wx):
                    v += weights[i, 2, c] * acc[c * nq + q]
                out[q // 2, 2 * d + (q % 2)] = v


@nb.njit(cache=True, parallel=True, nogil=True)
def _zero(grid):
    nz, ny, nx, nq = grid.shape
    for z in nb.prange(nz):
        for y in range(ny):
            for x in range(nx):
                for q in range(nq):
                    grid[z, y, x, q] = 0.0


@nb.njit(cache=True, parallel=True, nogil=True)
def _crop_deapodize(grid, out, oz, oy, ox, dz, dy, dx):
    """out[c, z, y, x] = grid[oz + z, oy + y, ox + x, c] * dz[z] dy[y] dx[x] (float32 views)."""
    nch = out.shape[0]
    nz, ny, nx = out.shape[1], out.shape[2], out.shape[3] // 2
    for z in nb.prange(nz):
        for y in range(ny):
            fzy = dz[z] * dy[y]
            for x in range(nx):
                f = fzy * dx[x]
                for c in range(nch):
                    out[c, z, y, 2 * x] = grid[oz + z, oy + y, ox + x, 2 * c] * f
                    out[c, z, y, 2 * x + 1] = grid[oz + z, oy + y, ox + x, 2 * c + 1] * f


@nb.njit(cache=True, parallel=True, nogil=True)
def _apodize_pad(image, grid, oz, oy, ox, dz, dy, dx):
    """Inverse of :func:`_crop_deapodize`, into a zeroed grid (float32 views)."""
    nch = image.shape[0]
    nz, ny, nx = image.shape[1], image.shape[2], image.shape[3] // 2
    for z in nb.prange(nz):
        for y in range(ny):
            fzy = dz[z] * dy[y]
            for x in range(nx):
                f = fzy * dx[x]
                for c in range(nch):
                    grid[oz + z, oy + y, ox + x, 2 * c] = image[c, z, y, 2 * x] * f
                    grid[oz + z, oy + y, ox + x, 2 * c + 1] = image[c, z, y, 2 * x + 1] * f


# --------------------------------------------------------------------------------------------
# grid <-> image, shared by the batch and the incremental forms


def _fold_halo(buf: np.ndarray, geom: GridGeometry) -> None:
    """Add the halo cells into the periodic grid they alias (axis by axis, corners included)."""
    for axis, (g, h) in enumerate(zip(geom.grid_shape3, geom.halos3, strict=True)):
        if h == 0:
            continue
        lo = [slice(None)] * 4
        hi = [slice(None)] * 4
        lo[axis], hi[axis] = slice(g, g + h), slice(0, h)
        buf[tuple(lo)] += buf[tuple(hi)]  # halo below the grid -> its top rows
        lo[axis], hi[axis] = slice(h, 2 * h), slice(h + g, 2 * h + g)
        buf[tuple(lo)] += buf[tuple(hi)]  # halo above the grid -> its bottom rows


def _unfold_halo(buf: np.ndarray, geom: GridGeometry) -> None:
    """Fill the halo with periodic copies of the grid, so interpolation needs no wrap-around."""
    for axis in (2, 1, 0):
        g, h = geom.grid_shape3[axis], geom.halos3[axis]
        if h == 0:
            continue
        dst = [slice(None)] * 4
        src = [slice(None)] * 4
        dst[axis], src[axis] = slice(0, h), slice(g, g + h)
        buf[tuple(dst)] = buf[tuple(src)]
        dst[axis], src[axis] = slice(h + g, 2 * h + g), slice(h, 2 * h)
        buf[tuple(dst)] = buf[tuple(src)]


class _GridBuffer:
    """The padded oversampled grid of one geometry and channel count, with its FFT plans."""

    def __init__(self, geom: GridGeometry, nchannels: int, nthreads: int, fft_effort: str):
        self.geom = geom
        self.nchannels = nchannels
        self.buffer = pyfftw.empty_aligned(geom.padded_shape3 + (nchannels,), np.complex64)
        self.fview = self.buffer.view(np.float32)
        self.flat = self.fview.reshape(-1)
        _, py, px = geom.padded_shape3
        self.strides = (py * px * 2 * nchannels, px * 2 * nchannels)  # z and y, in floats
        self.fft = PrunedFFT(self.buffer, geom, nthreads=nthreads, effort=fft_effort)
        _zero(self.fview)  # after planning, which may have written into it
        self.deapod = [geom.deapodization(a).astype(np.float32) for a in range(3)]
        log.debug(
            "grid buffer %s x %d channels: %.1f MB",
            geom.padded_shape3,
            nchannels,
            self.nbytes / 1e6,
        )

    @property
    def nbytes(self) -> int:
        return self.buffer.nbytes

    def zero(self) -> None:
        _zero(self.fview)

    def to_image(self, out: np.ndarray | None = None) -> np.ndarray:
        """Fold, FFT, crop and deapodize the spread grid (destroys it) -> (C, nz, ny, nx), into
        ``out`` (complex64, C-contiguous) when given."""
        geom = self.geom
        _fold_halo(self.buffer, geom)
        self.fft.backward()
        if out is None:
            out = np.empty((self.nchannels,) + geom.shape3, np.complex64)
        _crop_deapodize(self.fview, out.view(np.float32), *geom.crop_offsets3, *self.deapod)
        return out

    def from_image(self, image: np.ndarray) -> None:
        """Apodize, zero-pad and FFT an image (C, nz, ny, nx) onto the grid, halo filled."""
        geom = self.geom
        self.zero()
        image = np.ascontiguousarray(image, dtype=np.complex64)
        _apodize_pad(image.view(np.float32), self.fview, *geom.crop_offsets3, *self.deapod)
        self.fft.forward()
        _unfold_halo(self.buffer, geom)


def _as_channels(data: np.ndarray, nsamples: int) -> np.ndarray:
    """k-space data as contiguous complex64 (C, M); a 1D array is one channel."""
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.shape[1] != nsamples:
        raise ValueError(f"k-space data must be (channels, {nsamples}), got {data.shape}")
    return np.ascontiguousarray(data, dtype=np.complex64)


def _as_dcf(dcf: np.ndarray | None, nsamples: int) -> np.ndarray:
    if dcf is None:
        return np.ones(nsamples, np.float32)
    dcf = np.asarray(dcf, dtype=np.float32).reshape(-1)
    if dcf.shape[0] != nsamples:
        raise ValueError(f"density weights must have {nsamples} entries, got {dcf.shape[0]}")
    return dcf


def _image_shape(geom: GridGeometry, image: np.ndarray) -> np.ndarray:
    """Image as (C, nz, ny, nx) complex64; a single image without channel axis is accepted."""
    image = np.asarray(image)
    if image.shape == geom.shape:
        image = image[None]
    if image.shape[1:] != geom.shape:
        raise ValueError(f"image must be (channels,) + {geom.shape}, got {image.shape}")
    return np.ascontiguousarray(image.reshape((image.shape[0],) + geom.shape3), np.complex64)


def _default_threads(nthreads: int | None) -> int:
    return nb.get_num_threads() if nthreads is None else max(1, int(nthreads))


# --------------------------------------------------------------------------------------------
# public API


class Nufft:
    """Adjoint and forward NUFFT for one trajectory, reusable for any number of channels/calls.

    Parameters
    ----------
    traj:
        (M, d) or (..., d) trajectory in cycles per pixel, columns ``(kx, ky[, kz])``.
    shape:
        Image matrix ``(nz, ny, nx)`` or ``(ny, nx)``.
    oversampling, width:
        Grid oversampling ``alpha`` in [1.25, 2] and kernel width ``W`` in grid cells.
    nthreads:
        Threads for spreading and FFT (default: numba's thread count).
    fft_effort:
        ``"estimate"`` (default, no planning cost), ``"wisdom"`` (the machine's stored plans, else
        estimate), ``"measure"`` or ``"patient"`` (timed now, stored as wisdom): see
        :mod:`gadgets.core.numerics.fft`.
    """

    def __init__(
        self,
        traj: np.ndarray,
        shape: tuple[int, ...],
        oversampling: float = DEFAULT_OVERSAMPLING,
        width: int = DEFAULT_WIDTH,
        nthreads: int | None = None,
        fft_effort: str = "estimate",
    ) -> None:
        self.geom = GridGeometry(tuple(shape), oversampling, width)
        traj = np.asarray(traj)
        if traj.shape[-1] != self.geom.ndim:
            raise ValueError(f"trajectory must end in {self.geom.ndim} coordinates: {traj.shape}")
        traj = traj.reshape(-1, self.geom.ndim)
        self.nsamples = traj.shape[0]
        self.nthreads = _default_threads(nthreads)
        self.fft_effort = fft_effort
        starts, weights = kernel_weights(traj, self.geom)
        self._order, self._seg_ptr, self._segments = _colour_tiles(starts, self.geom, self.nthreads)
        self._starts = np.ascontiguousarray(starts[self._order])
        self._weights = np.ascontiguousarray(weights[self._order])
        self._positions: np.ndarray | None = None  # plan position of each sample, on demand
        self._buffers: dict[int, _GridBuffer] = {}

    @property
    def plan_nbytes(self) -> int:
        """Memory held by the per-sample plan (order, first cells, weights)."""
        return self._order.nbytes + self._starts.nbytes + self._weights.nbytes

    def _buffer(self, nchannels: int) -> _GridBuffer:
        buf = self._buffers.get(nchannels)
        if buf is None:
            buf = _GridBuffer(self.geom, nchannels, self.nthreads, self.fft_effort)
            self._buffers = {nchannels: buf}  # keep one buffer: memory is bounded
        return buf

    def adjoint(self, data: np.ndarray, dcf: np.ndarray | None = None) -> np.ndarray:
        """k-space (C, M) -> image (C, *shape): ``x(r) = sum_j dcf_j s_j e^{+2 pi i k_j r}``."""
        data = _as_channels(data, self.nsamples)
        dcf = _as_dcf(dcf, self.nsamples)
        buf = self._buffer(data.shape[0])
        buf.zero()
        wz, wy, wx = self.geom.widths3
        _spread_tiled(
            buf.flat,
            *buf.strides,
            data.view(np.float32),
            dcf,
            self._order,
            self._starts,
            self._weights,
            wz,
            wy,
            wx,
            self._seg_ptr,
            self._segments,
            self.nthreads,
        )
        return buf.to_image().reshape((data.shape[0],) + self.geom.shape)

    def forward(self, image: np.ndarray, samples: np.ndarray | None = None) -> np.ndarray:
        """Image (C, *shape) -> k-space (C, M): ``s_j = sum_r x(r) e^{-2 pi i k_j r}``.

        ``samples``: indices of the samples wanted (default all); the result is then
        (C, len(samples)) in that order. The FFT is done once either way.
        """
        image = _image_shape(self.geom, image)
        buf = self._buffer(image.shape[0])
        buf.from_image(image)
        return self._interpolate(buf, image.shape[0], samples)

    def _interpolate(self, buf: _GridBuffer, nchannels: int, samples: np.ndarray | None):
        if samples is None:
            positions = np.arange(self.nsamples)
            dest = self._order
        else:
            if self._positions is None:
                self._positions = np.empty_like(self._order)
                self._positions[self._order] = np.arange(self.nsamples)
            wanted = self._positions[np.asarray(samples, np.int64).reshape(-1)]
            dest = np.argsort(wanted, kind="stable")  # visit in plan order, for locality
            positions = wanted[dest]
        out = np.empty((nchannels, positions.shape[0]), np.complex64)
        chunk_ptr = np.linspace(0, positions.shape[0], 8 * self.nthreads + 1).astype(np.int64)
        wz, wy, wx = self.geom.widths3
        _interp(
            buf.flat,
            *buf.strides,
            out.view(np.float32),
            positions,
            dest,
            self._starts,
            self._weights,
            wz,
            wy,
            wx,
            chunk_ptr,
        )
        return out

    def kernel_density(self, weights: np.ndarray) -> np.ndarray:
        """``p_j = sum_m phi(G k_j - m) sum_l w_l phi(G k_l - m)``: the weights spread onto the
        periodic oversampled grid and interpolated back, no FFT (Pipe & Menon's ``w * C``)."""
        weights = np.asarray(weights, dtype=np.float32).reshape(-1)
        if weights.shape[0] != self.nsamples:
            raise ValueError(f"need {self.nsamples} weights, got {weights.shape[0]}")
        buf = self._buffer(1)
        buf.zero()
        values = weights.astype(np.complex64)[None, :]
        wz, wy, wx = self.geom.widths3
        _spread_tiled(
            buf.flat,
            *buf.strides,
            values.view(np.float32),
            np.ones(self.nsamples, np.float32),
            self._order,
            self._starts,
            self._weights,
            wz,
            wy,
            wx,
            self._seg_ptr,
            self._segments,
            self.nthreads,
        )
        _fold_halo(buf.buffer, self.geom)
        _unfold_halo(buf.buffer, self.geom)
        out = self._interpolate(buf, 1, None)
        return out[0].real  # the centring signs cancel: each cell's sign enters twice


class GridAccumulator:
    """Incremental adjoint NUFFT for streaming: :meth:`add` readouts as they arrive, then
    :meth:`finish` once. The result equals :meth:`Nufft.adjoint` on all readouts together.

    Memory: one padded grid, ``prod(G + 2 halo) * C * 8`` bytes, and the image it ends as,
    ``prod(N) * C * 8`` bytes (logged at creation). The image's memory is allocated and touched
    here, at the scan's start: page faults on a fresh 50 MB array cost 0.03-0.1 s, which would
    otherwise come after the last readout.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        nchannels: int,
        oversampling: float = DEFAULT_OVERSAMPLING,
        width: int = DEFAULT_WIDTH,
        nthreads: int | None = None,
        fft_effort: str = "estimate",
    ) -> None:
        self.geom = GridGeometry(tuple(shape), oversampling, width)
        self.nchannels = int(nchannels)
        self._buf = _GridBuffer(self.geom, self.nchannels, _default_threads(nthreads), fft_effort)
        self._image: np.ndarray | None = None
        self._prepare_image()
        self.nsamples = 0
        log.info(
            "streaming grid %s x %d channels: %.1f MB, its image %.1f MB",
            self.geom.padded_shape3,
            self.nchannels,
            self._buf.nbytes / 1e6,
            self._image.nbytes / 1e6,
        )

    @staticmethod
    def memory_bytes(
        shape: tuple[int, ...],
        nchannels: int,
        oversampling: float = DEFAULT_OVERSAMPLING,
        width: int = DEFAULT_WIDTH,
    ) -> int:
        """What an accumulator of this size holds: its padded grid and its image, bytes."""
        geom = GridGeometry(tuple(shape), oversampling, width)
        return 8 * int(nchannels) * (int(np.prod(geom.padded_shape3)) + int(np.prod(geom.shape3)))

    def _prepare_image(self) -> None:
        self._image = np.empty((self.nchannels,) + self.geom.shape3, np.complex64)
        self._image.fill(0)  # touch every page now

    @property
    def nbytes(self) -> int:
        return 0 if self._buf is None else self._buf.nbytes

    def add(self, traj: np.ndarray, data: np.ndarray, dcf: np.ndarray | None = None) -> None:
        """Grid readouts: ``traj`` (S, d) cycles/pixel, ``data`` (C, S), ``dcf`` (S,) or None."""
        if self._buf is None:
            raise RuntimeError("this accumulator was finished with reuse=False")
        traj = np.asarray(traj).reshape(-1, self.geom.ndim)
        data = _as_channels(data, traj.shape[0])
        if data.shape[0] != self.nchannels:
            raise ValueError(f"expected {self.nchannels} channels, got {data.shape[0]}")
        if not np.all(np.isfinite(data)):
            raise ValueError("k-space data contain NaN or infinite values")
        starts, weights = kernel_weights(traj, self.geom)
        wz, wy, wx = self.geom.widths3
        _spread_serial(
            self._buf.flat,
            *self._buf.strides,
            data.view(np.float32),
            _as_dcf(dcf, traj.shape[0]),
            starts,
            weights,
            wz,
            wy,
            wx,
        )
        self.nsamples += traj.shape[0]

    def finish(self, reuse: bool = True) -> np.ndarray:
        """The image (C, *shape) of everything added. The accumulator is reset afterwards, or,
        with ``reuse=False``, its grid is let go (not zeroed: 150 MB of stores saved after a
        scan's last readout) and it takes no more readouts."""
        image = self._buf.to_image(self._image).reshape((self.nchannels,) + self.geom.shape)
        self._image = None  # the caller owns it; a later finish() makes a new one
        if reuse:
            self.reset()
        else:
            self._buf = None
        return image

    def reset(self) -> None:
        if self._buf is None:
            raise RuntimeError("this accumulator was finished with reuse=False")
        self._buf.zero()
        self.nsamples = 0


def _colour_tiles(
    starts: np.ndarray, geom: GridGeometry, nworkers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort samples by tile and deal each colour's tiles to workers.

    Tiles are ``T >= W`` cells per axis (by first touched cell), so a sample of tile ``t`` writes
    only into tiles ``t`` and ``t + 1``; tiles whose indices differ by 2 along every axis (same
    parity = same colour) never write to the same cell. Returns the sample order, and for each
    (colour, worker) slot a list of contiguous sample ranges in that order.
    """
    tile = max(_TILE, geom.width)
    t = (starts // tile).astype(np.int64)
    ntiles = [int(p // tile) + 1 for p in geom.padded_shape3]
    tile_id = (t[:, 0] * ntiles[1] + t[:, 1]) * ntiles[2] + t[:, 2]
    colour = (t[:, 0] % 2) * 4 + (t[:, 1] % 2) * 2 + (t[:, 2] % 2)
    key = colour * (ntiles[0] * ntiles[1] * ntiles[2]) + tile_id
    # stable: samples of a readout stay in acquisition order, neighbours in k-space
    order = np.argsort(key, kind="stable").astype(np.int64)
    sorted_key = key[order]
    bounds = np.flatnonzero(np.diff(sorted_key)) + 1
    seg_start = np.concatenate(([0], bounds)).astype(np.int64)
    seg_end = np.concatenate((bounds, [len(order)])).astype(np.int64)
    seg_colour = colour[order[seg_start]]

    slots: list[list[tuple[int, int]]] = [[] for _ in range(8 * nworkers)]
    for col in range(8):
        idx = np.flatnonzero(seg_colour == col)
        sizes = seg_end[idx] - seg_start[idx]
        load = np.zeros(nworkers, np.int64)
        for s in idx[np.argsort(-sizes, kind="stable")]:  # longest processing time first
            w = int(np.argmin(load))
            load[w] += seg_end[s] - seg_start[s]
            slots[col * nworkers + w].append((int(seg_start[s]), int(seg_end[s])))
    seg_ptr = np.zeros(len(slots) + 1, np.int64)
    seg_ptr[1:] = np.cumsum([len(s) for s in slots])
    segments = np.array([r for s in slots for r in s], np.int64).reshape(-1, 2)
    return order, seg_ptr, segments
