"""Gridding benchmark: our adjoint NUFFT against FINUFFT and ducc0, in one process and one run.

The standard problem: 3D kooshball, N = 64, 8000 centre-out spokes x 128 samples (1,024,000
samples), |k|^2 weights, complex64, 1 and 8 channels, 2 threads. Each method is timed best of 3
(after a warm-up call, so numba compilation is not counted); its relative L2 error is against
FINUFFT at eps 1e-9 (double precision); "peak MB" is the resident memory the method adds (plan,
buffers and two calls) measured in a fresh process, sampled every millisecond.

``ours`` reuses its plan (kernel weights, tile order): the trajectory of a protocol is fixed,
so the gadgets build the plan once. Plan time is printed separately, and so are FINUFFT's and
ducc0's own plan-reuse modes, for a like-for-like comparison.

Run: ``python benchmarks/gridding.py`` (needs ``pip install -e .[bench]``). The last line is::

    gridding 8ch: ours=<s> finufft_1e-3=<s> ducc0=<s|na> ratio_finufft=<ours/finufft>
    ratio_ducc0=<ours/ducc0|na> rel_err=<ours>   (on one line)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import numba
import numpy as np

from gadgets.core.numerics.nufft import Nufft
from gadgets.core.numerics.trajectory import directions, radial_3d

try:
    import ducc0
except ImportError:  # optional peer
    ducc0 = None
import finufft


class PeakRSS:
    """Peak resident memory above the starting level while the block runs (MB)."""

    def __enter__(self):
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.start = self._rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _watch(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 1e6


def best_of(fn, repeats: int = 3):
    """(best seconds, last result)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def problem(args):
    """Trajectory (M, 3) cycles/pixel, FINUFFT coordinates (radians) and 8 channels of data."""
    traj = radial_3d(directions(args.spokes, "golden_means"), args.samples)
    k = traj.reshape(-1, 3)
    weights = np.sum(k.astype(np.float64) ** 2, axis=1).astype(np.float32)  # |k|^2
    rng = np.random.default_rng(0)
    m = k.shape[0]
    data = (rng.standard_normal((8, m)) + 1j * rng.standard_normal((8, m))) * weights
    xyz = [np.ascontiguousarray(2 * np.pi * k[:, c], dtype=np.float32) for c in range(3)]
    return k, xyz, data.astype(np.complex64)


def methods(k, xyz, n: int, nthreads: int, nch: int):
    """name -> prepare(); prepare() does any planning and returns run(data) -> image."""
    shape = (n, n, n)

    def ours():
        op = Nufft(k, shape, nthreads=nthreads)
        return op.adjoint

    def ours_incl_plan():
        return lambda data: Nufft(k, shape, nthreads=nthreads).adjoint(data)

    def finufft_simple(eps):
        return lambda: (
            lambda data: finufft.nufft3d1(*xyz, data, shape, eps=eps, isign=1, nthreads=nthreads)
        )

    def finufft_plan():
        plan = finufft.Plan(
            1, shape, n_trans=nch, eps=1e-3, isign=1, nthreads=nthreads, dtype="complex64"
        )
        plan.setpts(*xyz)
        return plan.execute

    def ducc_simple():
        out = np.empty((nch,) + shape, np.complex64)
        return lambda data: ducc0.nufft.nu2u(
            points=data,
            coord=k,
            forward=False,
            epsilon=1e-3,
            nthreads=nthreads,
            out=out,
            periodicity=1.0,
        )

    def ducc_plan():
        plan = ducc0.nufft.plan(
            nu2u=True, coord=k, grid_shape=shape, epsilon=1e-3, nthreads=nthreads, periodicity=1.0
        )
        out = np.empty((nch,) + shape, np.complex64)
        return lambda data: np.stack(
            [plan.nu2u(points=data[c], forward=False, out=out[c]) for c in range(nch)]
        )

    table = {
        "ours": ours,
        "ours_incl_plan": ours_incl_plan,
        "finufft_1e-03": finufft_simple(1e-3),
        "finufft_1e-06": finufft_simple(1e-6),
        "finufft_1e-03_plan_reuse": finufft_plan,
    }
    if ducc0 is not None:
        table["ducc0_1e-03"] = ducc_simple
        table["ducc0_1e-03_plan_reuse"] = ducc_plan
    return table


def measure_memory(args) -> None:
    """Child mode: peak resident memory (MB) that one method adds, plan and buffers included."""
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    k, xyz, data = problem(args)
    data = np.ascontiguousarray(data[: args.channels])
    # load compiled code (numba cache, libraries) on a tiny problem first: not the method's data
    tiny = argparse.Namespace(**{**vars(args), "spokes": 50, "samples": 16})
    tk, txyz, tdata = problem(tiny)
    methods(tk, txyz, 16, args.threads, args.channels)[args.memory_of]()(tdata[: args.channels])
    with PeakRSS() as mem:
        run = methods(k, xyz, args.matrix, args.threads, args.channels)[args.memory_of]()
        run(data)
        run(data)
    print(f"{mem.extra_mb:.1f}")


def memory_in_child(args, name: str, nch: int) -> float:
    cmd = [
        sys.executable,
        __file__,
        "--memory-of",
        name,
        "--channels",
        str(nch),
        "--threads",
        str(args.threads),
        "--spokes",
        str(args.spokes),
        "--samples",
        str(args.samples),
        "--matrix",
        str(args.matrix),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spokes", type=int, default=8000)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--matrix", type=int, default=64)
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    parser.add_argument("--channels", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        measure_memory(args)
        return
    nthreads, n = args.threads, args.matrix
    numba.set_num_threads(min(nthreads, numba.config.NUMBA_NUM_THREADS))
    k, xyz, data8 = problem(args)
    print(
        f"problem: 3D kooshball N={n}, {args.spokes} spokes x {args.samples} samples = "
        f"{k.shape[0]:,} samples, |k|^2 weights, complex64, {nthreads} threads"
    )
    t0 = time.perf_counter()
    op = Nufft(k, (n, n, n), nthreads=nthreads)
    print(
        f"ours: {op.geom.describe()}; plan {time.perf_counter() - t0:.2f} s, "
        f"plan {op.plan_nbytes / 1e6:.0f} MB + grid {op.geom.padded_shape3} x C x 8 bytes"
    )
    del op

    rows = []
    results: dict[tuple[str, int], tuple[float, float]] = {}
    for nch in (1, 8):
        data = np.ascontiguousarray(data8[:nch])
        ref = finufft.nufft3d1(
            *(c.astype(np.float64) for c in xyz),
            data.astype(np.complex128),
            (n, n, n),
            eps=1e-9,
            isign=1,
            nthreads=nthreads,
        ).reshape((nch, n, n, n))
        for name, prepare in methods(k, xyz, n, nthreads, nch).items():
            run = prepare()
            run(data)  # warm-up: compilation, plans, page faults
            secs, out = best_of(lambda run=run, data=data: run(data))
            out = np.asarray(out).reshape((nch, n, n, n))
            if not name.startswith("ours"):
                out = out.transpose(0, 3, 2, 1)  # peers are (x, y, z); ours (z, y, x)
            err = float(np.linalg.norm(out - ref.transpose(0, 3, 2, 1)) / np.linalg.norm(ref))
            del run, out
            peak = memory_in_child(args, name, nch)
            rows.append((name, nch, secs, err, peak))
            results[(name, nch)] = (secs, err)

    print(f"{'method':>26} {'ch':>3} {'seconds':>8} {'rel_err':>9} {'peak MB':>8}")
    for name, nch, secs, err, peak in rows:
        print(f"{name:>26} {nch:3d} {secs:8.3f} {err:9.2e} {peak:8.0f}")
    print("peak MB: resident memory the method adds in a fresh process (plan, buffers, call)")
    ours, ours_err = results[("ours", 8)]
    fin = results[("finufft_1e-03", 8)][0]
    duc = results.get(("ducc0_1e-03", 8), (None,))[0]
    duc_s = f"{duc:.3f}" if duc else "na"
    ratio_duc = f"{ours / duc:.2f}" if duc else "na"
    print(
        f"gridding 8ch: ours={ours:.3f} finufft_1e-3={fin:.3f} ducc0={duc_s} "
        f"ratio_finufft={ours / fin:.2f} ratio_ducc0={ratio_duc} rel_err={ours_err:.2e}"
    )


if __name__ == "__main__":
    main()
