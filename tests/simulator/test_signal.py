import numpy as np
from conftest import relative_error
from scipy.special import j1

from gadgets.core.numerics import trajectory as T
from gadgets.core.numerics.phantom import Sphere, sphere_kspace
from gadgets.simulator.head import Cylinder, Ellipsoid, Grid, smooth_indicator
from gadgets.simulator.signal import OBJECT_SIGMA, segment_times, simulate_kspace

N = 24


FOV = 192.0  # 8 mm voxels


FINE = 60  # 2.5 x


def _grids():
    return Grid((N,) * 3, FOV / N), Grid((FINE,) * 3, FOV / FINE)


def _radial(projections=600, samples=32):
    return T.radial_3d(T.directions(projections), samples).reshape(-1, 3)


def _engine(shape_obj, traj, times, t2_s=1e6, df_hz=0.0):
    """Noise-free single-channel k-space of one uniform shape of value 1."""
    _, fine = _grids()
    frac = smooth_indicator(shape_obj, fine, OBJECT_SIGMA * N / FINE)
    return simulate_kspace(
        traj,
        times,
        fine.shape,
        N,
        frac[None],
        np.array([t2_s]),
        np.full(fine.shape, df_hz, np.float32),
        np.ones((1,) + fine.shape, np.complex64),
    )[0]


def test_sphere_kspace_matches_analytic_transform():
    traj = _radial()
    centre_mm, radius_mm = np.array([16.0, -24.0, 8.0]), 40.0
    sim = _engine(Ellipsoid(tuple(centre_mm), (radius_mm,) * 3), traj, np.zeros(len(traj)))
    voxel = FOV / N
    exact = sphere_kspace(traj, [Sphere(tuple(centre_mm / voxel), radius_mm / voxel, 1.0)])
    assert relative_error(exact, sim) <= 1e-3


def test_cylinder_kspace_matches_analytic_transform():
    traj = _radial()
    c_mm, a_mm, length_mm = np.array([-20.0, 12.0, 4.0]), 30.0, 70.0
    sim = _engine(Cylinder(tuple(c_mm), a_mm, length_mm), traj, np.zeros(len(traj)))
    voxel = FOV / N
    k = traj.astype(np.float64)
    a, length, c = a_mm / voxel, length_mm / voxel, c_mm / voxel
    kr = np.hypot(k[:, 0], k[:, 1])
    safe = np.where(kr > 0, kr, 1.0)
    disc = np.where(kr > 0, a * j1(2 * np.pi * a * safe) / safe, np.pi * a**2)
    exact = disc * length * np.sinc(length * k[:, 2]) * np.exp(-2j * np.pi * k @ c)
    assert relative_error(exact, sim) <= 1e-3


def test_time_segmentation_matches_exact_signal(rng):
    # the engine (segments + Lagrange + NUFFT + box correction) against a direct sum with each
    # sample's own time: accuracy 1e-5
    fine = Grid((16,) * 3, 12.0)
    amps = rng.uniform(0, 1, (2,) + fine.shape).astype(np.float32)
    t2 = np.array([3e-3, 20e-3])
    b0 = rng.uniform(-80, 80, fine.shape).astype(np.float32)
    coils = rng.standard_normal((2,) + fine.shape) + 1j * rng.standard_normal((2,) + fine.shape)
    coils = coils.astype(np.complex64)
    traj = T.da_3dpr(T.directions(40), 50, 40e-6, 0.4).reshape(-1, 3)
    times = np.tile(0.3e-3 + 40e-6 * np.arange(50), 40)
    recon = 8
    sim = simulate_kspace(traj, times, fine.shape, recon, amps, t2, b0, coils, object_sigma=None)
    r = np.stack(np.meshgrid(*[np.arange(16) - 8] * 3, indexing="ij"), -1).reshape(-1, 3)[:, ::-1]
    kf = traj.astype(np.float64) * recon / 16
    m = (amps.reshape(2, -1).T[None] * np.exp(-times[:, None, None] / t2)).sum(-1)  # (M, V)
    m = m * np.exp(-2j * np.pi * b0.reshape(-1)[None] * times[:, None])
    e = np.exp(-2j * np.pi * kf @ r.T) * m * (recon / 16) ** 3
    exact = np.einsum("mv,cv->cm", e, coils.reshape(2, -1))
    assert relative_error(exact, sim) <= 1e-5
    assert len(segment_times(times, 0.5e-3)) >= 6
    # the scan asks for >= 20 segments per readout: 10 ms -> 0.5 ms steps, 5 ms -> 0.25 ms
    assert len(segment_times(np.linspace(0, 5e-3, 128), min(0.5e-3, 5e-3 / 20))) >= 20


def test_off_resonance_and_t2star_of_a_point_source():
    # a small sphere at the centre: its transform is real, so the phase along each readout is
    # -2 pi df t exactly, and |s| / |F(k)| falls as exp(-t / T2*)
    df, t2 = 37.0, 6e-3
    dwell, samples = 40e-6, 64
    traj = T.radial_3d(T.directions(30), samples).reshape(-1, 3)
    times = np.tile(0.5e-3 + dwell * np.arange(samples), 30)
    voxel = FOV / N
    sim = _engine(Ellipsoid((0.0, 0.0, 0.0), (6.0, 6.0, 6.0)), traj, times, t2_s=t2, df_hz=df)
    ft = sphere_kspace(traj, [Sphere((0, 0, 0), 6.0 / voxel, 1.0)]).real
    phase = np.unwrap(np.angle(sim.reshape(30, samples)), axis=1)
    expected = -2 * np.pi * df * times.reshape(30, samples)
    np.testing.assert_allclose(np.diff(phase, axis=1), np.diff(expected, axis=1), atol=1e-4)
    decay = np.abs(sim) / np.abs(ft)
    np.testing.assert_allclose(decay, np.exp(-times / t2), rtol=2e-3)
