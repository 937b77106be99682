"""The simulator's signal equation, evaluated on a fine grid with time segmentation.

For coil c and a sample acquired ``t`` seconds after its excitation at k-space position ``k``
(cycles per recon pixel)::

    s_c(k, t) = sum_r S_c(r) rho(r) R(r, t) exp(-2 pi i (k . r + df(r) t))

with ``R(r, t) = sum_q A_q(r) exp(-t / T2*_q)`` (the voxel's relaxation components, T1
saturation and concentration included in ``A_q``) and ``df`` the off-resonance (Hz).

How it stays honest (accurate to ~1e-5, so the reconstruction's shortcuts are not baked in):

* ``r`` runs over a fine grid (``f >= 2.5`` times the recon matrix) holding the object blurred
  by a Gaussian of transfer function ``H(k) = exp(-|k|^2 / (2 sigma^2))`` (``sigma`` = 0.45
  cycles per recon pixel), computed exactly from the shapes' analytic Fourier transforms; the
  k-space is divided by ``H`` at the end. The fine grid's spectrum repeats every ``f`` cycles, so
  the nearest replica is >= 2 cycles away, where ``H < 5e-5``: a plain voxel average (box
  filter) leaves replicas at ~20% of a flat-faced object's high-k signal.
* Time: the product ``R(r, t) exp(-2 pi i df t)`` is evaluated at segment times ``tau_l``
  (spacing <= 0.5 ms and <= 1/20 of a readout) and interpolated to each sample's own ``t`` with
  6-point Lagrange weights (error ~ (|lambda| dtau)^6 / 150 with ``lambda = 1/T2* + 2 pi i df``,
  below 1e-5 here).
* Space: each segment's image is transformed with a NUFFT of width 8 at oversampling 1.5
  (1e-6 against the exact DFT), evaluated only at the samples whose Lagrange window includes
  that segment.
"""

from __future__ import annotations

import logging
import time

import numba as nb
import numpy as np

from gadgets.core.numerics.nufft import Nufft

__all__ = [
    "LAGRANGE_POINTS",
    "OBJECT_SIGMA",
    "SPATIAL_OVERSAMPLING",
    "SPATIAL_WIDTH",
    "lagrange_weights",
    "segment_times",
    "simulate_kspace",
]

log = logging.getLogger(__name__)

LAGRANGE_POINTS = 6
OBJECT_SIGMA = 0.45  # Gaussian anti-aliasing filter, cycles per recon pixel
SPATIAL_OVERSAMPLING = 1.5
SPATIAL_WIDTH = 8


def segment_times(t_s: np.ndarray, max_step_s: float) -> np.ndarray:
    """Uniform segment times covering ``t_s`` with room for the Lagrange windows."""
    t_min, t_max = float(np.min(t_s)), float(np.max(t_s))
    n = max(int(np.ceil((t_max - t_min) / max_step_s)) + 1, LAGRANGE_POINTS)
    step = (t_max - t_min) / (n - 1) if t_max > t_min else max_step_s
    return t_min + step * np.arange(n)


def lagrange_weights(t_s: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each time, the first segment index of its window and the window's Lagrange weights
    (M, P): ``f(t) ~= sum_p w[p] f(tau[first + p])``, exact for polynomials of degree P-1."""
    p = LAGRANGE_POINTS
    step = tau[1] - tau[0]
    pos = (np.asarray(t_s, np.float64) - tau[0]) / step
    first = np.clip(np.floor(pos).astype(np.int64) - p // 2 + 1, 0, len(tau) - p)
    x = pos - first  # position within the window, nodes at 0 .. p-1
    w = np.ones((len(x), p))
    for j in range(p):
        for m in range(p):
            if m != j:
                w[:, j] *= (x - m) / (j - m)
    return first, w


@nb.njit(cache=True, parallel=True)
def _segment_image(out, coils, amps, decay, b0_hz, tau, scale):
    """out[c] = coils[c] * sum_q amps[q] decay[q] * exp(-2 pi i df tau) * scale (flat voxels)."""
    nvox = amps.shape[1]
    for v in nb.prange(nvox):
        r = 0.0
        for q in range(amps.shape[0]):
            r += amps[q, v] * decay[q]
        ph = -2.0 * np.pi * b0_hz[v] * tau
        m = complex(r * np.cos(ph) * scale, r * np.sin(ph) * scale)
        for c in range(coils.shape[0]):
            out[c, v] = coils[c, v] * m


def simulate_kspace(
    traj: np.ndarray,
    times_s: np.ndarray,
    fine_shape: tuple[int, int, int],
    recon_matrix: int,
    amplitudes: np.ndarray,
    t2s_s: np.ndarray,
    b0_hz: np.ndarray,
    coils: np.ndarray,
    max_segment_s: float = 0.5e-3,
    channel_block: int = 8,
    nthreads: int | None = None,
    object_sigma: float | None = OBJECT_SIGMA,
) -> np.ndarray:
    """Noise-free k-space (C, M) complex64.

    ``traj`` (M, 3) cycles per recon pixel, columns (kx, ky, kz); ``times_s`` (M,) time since
    excitation; fine-grid maps on ``fine_shape`` (z, y, x): ``amplitudes`` (Q, ...) with ``t2s_s``
    (Q,), ``b0_hz`` (...), ``coils`` (C, ...). The sum over fine voxels is scaled by ``(N /
    N_fine)^3`` so that k-space is in the units of the recon grid (a uniform object of value 1
    reconstructs to 1 with :mod:`gadgets.core.numerics.density` weights). ``object_sigma``: the
    Gaussian filter the maps were built with (cycles per recon pixel), undone here; None if they are
    unfiltered.
    """
    t0 = time.perf_counter()
    nf = np.asarray(fine_shape, np.float64)
    ratio = recon_matrix / nf[::-1]  # per trajectory column x, y, z
    k_fine = np.asarray(traj, np.float64) * ratio
    op = Nufft(
        k_fine,
        fine_shape,
        oversampling=SPATIAL_OVERSAMPLING,
        width=SPATIAL_WIDTH,
        nthreads=nthreads,
    )
    tau = segment_times(times_s, max_segment_s)
    first, weights = lagrange_weights(times_s, tau)
    nch = coils.shape[0]
    nvox = int(np.prod(fine_shape))
    amps = np.ascontiguousarray(amplitudes.reshape(amplitudes.shape[0], nvox), np.float32)
    b0 = np.ascontiguousarray(b0_hz.reshape(nvox), np.float32)
    coils_flat = np.ascontiguousarray(coils.reshape(nch, nvox), np.complex64)
    scale = float(np.prod(recon_matrix / nf))
    out = np.zeros((nch, traj.shape[0]), np.complex128)
    log.info(
        "simulating %d samples x %d channels on a %s grid, %d time segments of %.3f ms",
        traj.shape[0],
        nch,
        fine_shape,
        len(tau),
        1e3 * (tau[1] - tau[0]),
    )
    for lo in range(0, nch, channel_block):
        hi = min(nch, lo + channel_block)
        image = np.empty((hi - lo, nvox), np.complex64)
        for seg, tau_l in enumerate(tau):
            slot = seg - first
            members = np.flatnonzero((slot >= 0) & (slot < LAGRANGE_POINTS))
            if members.size == 0:
                continue
            decay = np.exp(-tau_l / t2s_s).astype(np.float32)
            _segment_image(image, coils_flat[lo:hi], amps, decay, b0, float(tau_l), scale)
            values = op.forward(image.reshape((hi - lo,) + tuple(fine_shape)), samples=members)
            out[lo:hi, members] += values * weights[members, slot[members]]
            if seg % 10 == 0:
                log.info("  channels %d-%d: segment %d/%d", lo, hi - 1, seg + 1, len(tau))
    if object_sigma is not None:
        k2 = np.sum(np.asarray(traj, np.float64) ** 2, axis=1)
        out *= np.exp(k2 / (2 * object_sigma**2))
    log.info("signal simulated in %.1f s", time.perf_counter() - t0)
    return out.astype(np.complex64)
