"""Density compensation weights for non-Cartesian k-space.

Normalisation convention (the same for every method, so quantification is stable across
scans): the weight of a sample is the k-space volume it represents, in (cycles/pixel)^d. The
weights of a full 3D ball of radius 0.5 add up to its volume, pi/6 (a 2D disc: pi/4). With these
weights the adjoint NUFFT of an object's k-space, ``x(r) = sum_j w_j s_j exp(2 pi i k_j r)``,
returns the object's own values: a uniform region of value c reconstructs to c, whatever the
number of projections, samples, matrix or FOV.

* :func:`radial_dcf` -- analytic, for centre-out radial-like readouts (3D radial, DA-3DPR, TPI,
  2D radial): the trapezoid rule of the radial integral along each readout, shared by the ``P``
  readouts::

      w_i = 4 pi |k_i|^2 dr_i / P      (3D)        w_i = 2 pi |k_i| dr_i / P      (2D)
      dr_i = (|k_{i+1}| - |k_{i-1}|) / 2  (half a step at either end)

  computed from the actual radii ``|k(t)|``, so it holds for measured trajectories, and gives
  ``min(|k|^2, k0^2)`` for DA-3DPR and TPI automatically (their radial speed falls as ``1/|k|^2``
  beyond ``k0``; the TPI twist is tangential). Why the trapezoid rule and not exact shell volumes
  ``4/3 pi (r_hi^3 - r_lo^3)``: the integrand ``|k|^2 S(k)`` has zero slope at ``k = 0``, so the
  trapezoid rule is exact to O(dr^4) (Euler-Maclaurin), whereas shell volumes add ``dr^3/12``
  per sample, a level bias of O((N dr)^2): +1.2% for a FOV-sized object with a 256-sample
  DA-3DPR at N = 32, against 0.03% for the trapezoid rule. In 2D the integrand ``|k| S(k)``
  has slope ``S(0)`` at the centre, corrected by the Euler-Maclaurin end term ``dr_0^2 / 12``.
* :func:`pipe_menon` -- iterative (Pipe & Menon, MRM 41:179, 1999) for any trajectory:
  ``w <- w / (w * C)`` with ``C`` the gridding kernel convolved with itself, evaluated by
  spreading onto and interpolating from the oversampled grid. At the fixed point
  ``sum_l w_l psi(k_j - k_l) = 1``, which makes ``w = prod_d G_d / Phi(0)^2 / D`` for sample
  density ``D``; the result is scaled by ``prod_d Phi(0)^2 / G_d`` to the volume convention.
  Results are cached on disk by a hash of the trajectory and grid parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from gadgets.core.cache import array_key, load_arrays, store_arrays
from gadgets.core.numerics.kernel import (
    DEFAULT_OVERSAMPLING,
    DEFAULT_WIDTH,
    GridGeometry,
    kaiser_bessel_ft,
)
from gadgets.core.numerics.nufft import Nufft

__all__ = ["pipe_menon", "PipeMenonResult", "radial_dcf"]

log = logging.getLogger(__name__)

_PIPE_MENON_VERSION = 2  # bump when the algorithm changes, to invalidate cached weights


def radial_dcf(traj: np.ndarray) -> np.ndarray:
    """Analytic weights (k-space volume per sample) of centre-out radial-like readouts.

    ``traj``: (..., S, d) with d = 2 or 3, readouts along the second-last axis, ``|k|``
    non-decreasing along each. Returns (..., S) float32.
    """
    traj = np.asarray(traj, dtype=np.float64)
    if traj.ndim < 2 or traj.shape[-1] not in (2, 3) or traj.shape[-2] < 2:
        raise ValueError(f"trajectory must be (..., samples >= 2, 2|3), got {traj.shape}")
    d = traj.shape[-1]
    radius = np.linalg.norm(traj, axis=-1)
    step = np.diff(radius, axis=-1)
    if np.any(step < -1e-6):
        raise ValueError("radial weights need centre-out readouts (|k| non-decreasing)")
    dr = np.zeros_like(radius)
    dr[..., :-1] += 0.5 * step
    dr[..., 1:] += 0.5 * step
    nreadouts = int(np.prod(traj.shape[:-2])) if traj.ndim > 2 else 1
    if d == 3:
        w = 4.0 * np.pi * radius**2 * dr
    else:
        w = 2.0 * np.pi * radius * dr
        w[..., 0] += 2.0 * np.pi * step[..., 0] ** 2 / 12.0  # Euler-Maclaurin: f'(0) = S(0)
    return (w / nreadouts).astype(np.float32)


@dataclass(frozen=True)
class PipeMenonResult:
    """Weights (k-space volume per sample) and how the iteration ended."""

    weights: np.ndarray
    iterations: int
    residual: float  # RMS of (w * C - 1) over the samples at the last iteration
    cached: bool


def pipe_menon(
    traj: np.ndarray,
    shape: tuple[int, ...],
    iterations: int = 150,
    tol: float = 1e-4,
    relaxation: float = 1.5,
    oversampling: float = DEFAULT_OVERSAMPLING,
    width: int = DEFAULT_WIDTH,
    nthreads: int | None = None,
    use_cache: bool = True,
) -> PipeMenonResult:
    """Iterative density compensation for an arbitrary trajectory (Pipe & Menon 1999).

    ``traj``: (..., d) cycles/pixel; ``shape``: image matrix. Iterates
    ``w <- w / (w * C)^relaxation`` until the RMS of ``w * C - 1`` falls below ``tol`` or
    ``iterations`` is reached. Returns weights in the volume convention of this module, shaped
    like ``traj[..., 0]``.

    Convergence: the residual falls fast, but near k = 0, where all readouts overlap, the
    criterion sees density only at the kernel scale (+-W/G), and the weights that set the image
    level move slowly. For a FOV-sized uniform object (3D radial, N = 32) the level is off by
    +1.5% after 30 plain iterations; with ``relaxation = 1.5`` it is 0.1% after 60 and 0.01%
    after 150, ripple within 1% of the exact band-limited image (tests/test_density.py).
    ``relaxation >= 1.9`` diverges. Results are cached, so a protocol pays this once.

    Boundary: at the edge of the sampled region half of the kernel sees empty k-space, so the
    classic iteration inflates the outermost weights without bound (x10-16 after 30-100
    iterations) and the image rings. Here samples within the kernel's reach of the rim
    ``|k| = max |k|`` are mirrored radially outside it (``r -> 2 kmax - r``) as guard samples
    whose weights follow their mirrors (times ``(r'/r)^(d-1)``, as a readout continued past the
    rim would have), so rim samples see a complete neighbourhood. This assumes the sampled
    region is a ball (disc): true of radial, DA-3DPR, TPI and 2D radial readouts.
    """
    traj = np.asarray(traj, dtype=np.float32)
    out_shape = traj.shape[:-1]
    flat = traj.reshape(-1, traj.shape[-1])
    key = array_key(
        "pipe-menon",
        _PIPE_MENON_VERSION,
        flat,
        tuple(shape),
        oversampling,
        width,
        iterations,
        tol,
        relaxation,
    )
    if use_cache:
        stored = load_arrays("dcf", key)
        if stored is not None:
            log.info("Pipe-Menon weights from cache (%s)", key[:12])
            return PipeMenonResult(
                stored["weights"].reshape(out_shape),
                int(stored["iterations"]),
                float(stored["residual"]),
                cached=True,
            )
    if not 0.0 < relaxation < 1.9:
        raise ValueError(f"Pipe-Menon relaxation must be in (0, 1.9), got {relaxation}")
    d = flat.shape[1]
    geom = GridGeometry(tuple(shape), oversampling, width)
    radius = np.linalg.norm(flat.astype(np.float64), axis=1)
    kmax = float(radius.max())
    reach = width * np.sqrt(d) / min(g for g in geom.grid_shape3 if g > 1)  # psi's k-extent
    mirrored = np.flatnonzero(radius > kmax - reach)
    r_in = np.maximum(radius[mirrored], 1e-12)
    r_out = 2.0 * kmax - r_in
    guards = flat[mirrored] * (r_out / r_in)[:, None]
    guard_gain = (r_out / r_in) ** (d - 1)
    # a matrix large enough that the guards stay inside |k| <= 0.5, same k-space grid spacing
    grow = (kmax + reach) / 0.5
    big = tuple(int(np.ceil(n * max(grow, 1.0) / 2.0)) * 2 for n in shape)
    scale_k = np.array([shape[::-1][a] / big[::-1][a] for a in range(d)])  # per column x, y, z
    op = Nufft(
        np.concatenate([flat, guards]) * scale_k,
        big,
        oversampling=oversampling,
        width=width,
        nthreads=nthreads,
    )
    m = flat.shape[0]
    w = np.ones(m, np.float64)
    residual = np.inf
    it = 0
    for it in range(1, iterations + 1):
        p = op.kernel_density(np.concatenate([w, w[mirrored] * guard_gain]))[:m].astype(np.float64)
        if not np.all(p > 0):
            raise ValueError("Pipe-Menon: a sample has no kernel overlap (trajectory off grid?)")
        residual = float(np.sqrt(np.mean((p - 1.0) ** 2)))
        log.log(
            logging.INFO if it % 25 == 0 else logging.DEBUG,
            "Pipe-Menon iteration %d/%d: residual %.3g",
            it,
            iterations,
            residual,
        )
        if residual < tol:
            break
        w /= p**relaxation
    # to the volume convention: prod Phi(0)^2 / G' in the scaled k' units of the big grid,
    # times the volume ratio of k' to k units
    phi0 = kaiser_bessel_ft(0.0, width, geom.beta)
    scale = np.prod(
        [
            phi0**2 / gs * nb / n
            for gs, nb, n in zip(op.geom.grid_shape3, op.geom.shape3, geom.shape3, strict=True)
            if gs > 1
        ]
    )
    weights = (w * scale).astype(np.float32)
    log.info("Pipe-Menon: %d iterations, residual %.3g", it, residual)
    if use_cache:
        store_arrays(
            "dcf", key, weights=weights, iterations=np.array(it), residual=np.array(residual)
        )
    return PipeMenonResult(weights.reshape(out_shape), it, residual, cached=False)
