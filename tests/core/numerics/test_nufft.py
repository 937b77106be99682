import subprocess

import numpy as np
import pytest
from conftest import read_cfl, relative_error, require_tool, write_cfl
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import j1

from gadgets.core.numerics import trajectory as T
from gadgets.core.numerics.density import radial_dcf
from gadgets.core.numerics.nudft import nudft_adjoint, nudft_forward
from gadgets.core.numerics.nufft import GridAccumulator, Nufft
from gadgets.core.numerics.phantom import Sphere, sphere_kspace

WIDE = {"oversampling": 2.0, "width": 8}


def _random_problem(rng, shape, m=3000, channels=2):
    k = rng.uniform(-0.5, 0.5, (m, len(shape)))
    data = rng.standard_normal((channels, m)) + 1j * rng.standard_normal((channels, m))
    image = rng.standard_normal((channels,) + shape) + 1j * rng.standard_normal((channels,) + shape)
    return k, data, image


SHAPES = [(24, 24), (15, 17), (12, 14, 16), (9, 11, 13)]


def _inner(a, b) -> complex:
    # in double: np.vdot of complex64 accumulates in single precision (BLAS cdotc)
    return complex(np.vdot(np.asarray(a, np.complex128), np.asarray(b, np.complex128)))


def _centroid(image):
    mag = np.abs(image)
    mask = mag > 0.5 * mag.max()
    idx = np.nonzero(mask)
    return np.array([np.average(i, weights=mag[mask]) for i in idx])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_adjoint_matches_exact_nudft(shape, rng):
    k, data, _ = _random_problem(rng, shape)
    exact = nudft_adjoint(data, k, shape)
    assert relative_error(exact, Nufft(k, shape).adjoint(data)) <= 2e-4
    assert relative_error(exact, Nufft(k, shape, **WIDE).adjoint(data)) <= 1e-6


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_exact_nudft(shape, rng):
    k, _, image = _random_problem(rng, shape)
    exact = nudft_forward(image, k)
    assert relative_error(exact, Nufft(k, shape).forward(image)) <= 2e-4
    assert relative_error(exact, Nufft(k, shape, **WIDE).forward(image)) <= 1e-6


def test_radial_3d_with_density_weights_matches_nudft(rng):
    traj = T.da_3dpr(T.directions(600, "golden_means"), 64, 20e-6, 0.4)
    k = traj.reshape(-1, 3)
    w = radial_dcf(traj).ravel()
    data = rng.standard_normal((3, k.shape[0])) + 1j * rng.standard_normal((3, k.shape[0]))
    exact = nudft_adjoint(data * w, k, (16, 16, 16))
    assert relative_error(exact, Nufft(k, (16, 16, 16)).adjoint(data, w)) <= 2e-4


def test_against_finufft_at_scale(rng):
    finufft = pytest.importorskip("finufft")
    traj = T.radial_3d(T.directions(3000, "spiral"), 64)
    k = traj.reshape(-1, 3).astype(np.float64)
    data = rng.standard_normal((2, k.shape[0])) + 1j * rng.standard_normal((2, k.shape[0]))
    data *= radial_dcf(traj).ravel()
    n = 48
    xyz = [np.ascontiguousarray(2 * np.pi * k[:, c]) for c in range(3)]
    ref = finufft.nufft3d1(*xyz, data, (n, n, n), eps=1e-12, isign=1)
    ref = ref.transpose(0, 3, 2, 1)  # finufft is (x, y, z); ours (z, y, x)
    assert relative_error(ref, Nufft(k, (n, n, n)).adjoint(data)) <= 2e-4


def test_adjointness(rng):
    for shape in [(20, 22), (10, 12, 14)]:
        k, data, image = _random_problem(rng, shape, m=2000, channels=3)
        op = Nufft(k, shape)
        lhs = _inner(op.forward(image), data)
        rhs = _inner(image, op.adjoint(data))
        assert abs(lhs - rhs) <= 1e-5 * abs(lhs)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(6, 20), min_size=2, max_size=3).map(tuple),
    alpha=st.sampled_from([1.25, 1.5, 2.0]),
    width=st.integers(3, 8),
    seed=st.integers(0, 2**31),
)
def test_adjointness_property(shape, alpha, width, seed):
    rng = np.random.default_rng(seed)
    k, data, image = _random_problem(rng, shape, m=500, channels=1)
    op = Nufft(k, shape, oversampling=alpha, width=width, nthreads=2)
    forward = op.forward(image)
    lhs = _inner(forward, data)
    rhs = _inner(image, op.adjoint(data))
    # relative to the norms: over the whole parameter space (alpha 1.25 amplifies the image
    # edge ~15x over float32 round-off) the random inner product can be sqrt(M) below them
    assert abs(lhs - rhs) <= 1e-5 * np.linalg.norm(forward) * np.linalg.norm(data)


def test_off_centre_sphere_lands_on_its_voxel():
    # s(k) = sum_r rho(r) exp(-2 pi i k.r): a sphere at (x, y, z) = (5, -3, 7) px must appear at
    # array index (z, y, x) = N/2 + (7, -3, 5): no flip, no swap, no half-voxel shift
    n = 32
    traj = T.radial_3d(T.directions(4000), 64)
    k = traj.reshape(-1, 3)
    kspace = sphere_kspace(k, [Sphere((5.0, -3.0, 7.0), 4.0, 1.0)])
    image = Nufft(k, (n, n, n)).adjoint(kspace[None], radial_dcf(traj).ravel())[0]
    np.testing.assert_allclose(_centroid(image), [n // 2 + 7, n // 2 - 3, n // 2 + 5], atol=0.02)
    assert abs(image[n // 2 + 7, n // 2 - 3, n // 2 + 5]) == pytest.approx(1.0, abs=0.05)


def test_off_centre_disc_lands_on_its_pixel():
    n, a, c = 48, 5.0, np.array([-9.0, 4.0])  # (x, y)
    traj = T.golden_angle_2d(400, 96)
    k = traj.reshape(-1, 2).astype(np.float64)
    q = np.linalg.norm(k, axis=1)
    safe = np.where(q > 0, q, 1.0)
    ft = np.where(q > 0, a * j1(2 * np.pi * a * safe) / safe, np.pi * a**2)  # disc of radius a
    kspace = ft * np.exp(-2j * np.pi * k @ c)
    image = Nufft(k, (n, n)).adjoint(kspace[None], radial_dcf(traj).ravel())[0]
    np.testing.assert_allclose(_centroid(image), [n // 2 + 4, n // 2 - 9], atol=0.02)


def test_incremental_equals_batch(rng):
    traj = T.da_3dpr(T.directions(800), 96, 30e-6, 0.3)
    w = radial_dcf(traj)
    shape = (20, 20, 20)
    data = rng.standard_normal((4,) + traj.shape[:2]) + 1j * rng.standard_normal(
        (4,) + traj.shape[:2]
    )
    batch = Nufft(traj.reshape(-1, 3), shape).adjoint(data.reshape(4, -1), w.ravel())
    acc = GridAccumulator(shape, nchannels=4)
    p = 0
    while p < traj.shape[0]:  # readouts arrive one or a few at a time
        q = min(traj.shape[0], p + int(rng.integers(1, 4)))
        acc.add(traj[p:q].reshape(-1, 3), data[:, p:q].reshape(4, -1), w[p:q].ravel())
        p = q
    assert acc.nsamples == traj.shape[0] * traj.shape[1]
    streamed = acc.finish()
    assert relative_error(batch, streamed) <= 1e-6
    assert acc.nsamples == 0  # reset for the next series
    acc.add(traj[:10].reshape(-1, 3), data[:, :10].reshape(4, -1))
    assert acc.finish().shape == (4,) + shape


def test_channels_are_independent(rng):
    k, data, _ = _random_problem(rng, (16, 16, 16), channels=5)
    op = Nufft(k, (16, 16, 16))
    together = op.adjoint(data)
    for c in range(5):
        np.testing.assert_allclose(op.adjoint(data[c]), together[c : c + 1], rtol=0, atol=1e-5)


def test_threads_do_not_race(rng):
    # tiles of one colour never share cells, so every cell sums its samples in the same order
    # whatever the number of threads: results agree to rounding, and repeat bit for bit
    traj = T.radial_3d(T.directions(3000), 64)
    k = traj.reshape(-1, 3)
    data = rng.standard_normal((8, k.shape[0])) + 1j * rng.standard_normal((8, k.shape[0]))
    results = [Nufft(k, (32, 32, 32), nthreads=t).adjoint(data) for t in (1, 2, 3, 4)]
    for r in results[1:]:
        assert relative_error(results[0], r) <= 1e-6
    op = Nufft(k, (32, 32, 32), nthreads=2)
    first = op.adjoint(data)
    for _ in range(3):
        np.testing.assert_array_equal(op.adjoint(data), first)


def test_bad_input_is_rejected():
    k = np.zeros((10, 3))
    with pytest.raises(ValueError, match="NaN"):
        Nufft(np.full((10, 3), np.nan), (8, 8, 8))
    with pytest.raises(ValueError, match="exceeds"):
        Nufft(k + 0.6, (8, 8, 8))
    with pytest.raises(ValueError, match="coordinates"):
        Nufft(np.zeros((10, 2)), (8, 8, 8))
    op = Nufft(k, (8, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        op.adjoint(np.zeros((2, 11)))
    with pytest.raises(ValueError, match="density weights"):
        op.adjoint(np.zeros((2, 10)), np.ones(9))
    with pytest.raises(ValueError, match="image must be"):
        op.forward(np.zeros((2, 8, 8)))
    acc = GridAccumulator((8, 8, 8), nchannels=2)
    with pytest.raises(ValueError, match="NaN"):
        acc.add(k, np.full((2, 10), np.nan))
    with pytest.raises(ValueError, match="expected 2 channels"):
        acc.add(k, np.zeros((3, 10)))


def test_bart_adjoint_nufft_agrees(tmp_path):
    # BART's own NUFFT on the same trajectory and data (BART: traj in (3, samples, readouts)
    # with k in cycles/FOV, image (x, y, z), scaled by 1/sqrt(N^3))
    bart = require_tool("bart")
    n = 24
    traj = T.radial_3d(T.directions(2000, "golden_means"), 48)
    kspace = sphere_kspace(traj.reshape(-1, 3), [Sphere((5.0, -3.0, 7.0), 4.0, 1.0)])
    ours = Nufft(traj.reshape(-1, 3), (n, n, n)).adjoint(kspace[None])[0]
    write_cfl(tmp_path / "traj", (traj * n).transpose(2, 1, 0))
    write_cfl(tmp_path / "ksp", kspace.reshape(traj.shape[:2]).T[None])
    subprocess.run(
        [
            bart,
            "nufft",
            "-a",
            "-d",
            f"{n}:{n}:{n}",
            tmp_path / "traj",
            tmp_path / "ksp",
            tmp_path / "img",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    theirs = read_cfl(tmp_path / "img").reshape(n, n, n, order="F").transpose(2, 1, 0)
    scale = np.vdot(theirs, ours) / np.vdot(theirs, theirs)
    assert abs(np.angle(scale)) < 1e-3  # same sign convention and centre: a real scale
    assert relative_error(ours, scale * theirs) <= 5e-3


def test_forward_at_a_subset_of_samples(rng):
    k, _, image = _random_problem(rng, (12, 14, 16), m=2000)
    op = Nufft(k, (12, 14, 16))
    full = op.forward(image)
    subset = rng.permutation(2000)[:300]
    np.testing.assert_array_equal(op.forward(image, samples=subset), full[:, subset])
