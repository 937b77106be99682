import dataclasses
import hashlib
import json

import ismrmrd
import numpy as np
import pytest
from conftest import relative_error
from scipy.special import j1

from gadgets.cli import main
from gadgets.core import trajectory as T
from gadgets.core.dicom import Geometry
from gadgets.core.phantom import Sphere, sphere_kspace
from gadgets.simulator.coils import noise_covariance, sensitivities
from gadgets.simulator.evaluate import psf_limited
from gadgets.simulator.field import b0_map_hz, larmor_hz
from gadgets.simulator.head import Cylinder, Ellipsoid, Grid, smooth_indicator, volume_fraction
from gadgets.simulator.scan import SCAN_DIR, ScanDescription, simulate
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
        traj, times, fine.shape, N, frac[None], np.array([t2_s]),
        np.full(fine.shape, df_hz, np.float32), np.ones((1,) + fine.shape, np.complex64),
    )[0]  # fmt: skip


def test_partial_volume_is_exact_enough():
    _, fine = _grids()
    r = 37.0
    vol = volume_fraction(Ellipsoid((5.0, -3.0, 11.0), (r, r, r)), fine).sum() * fine.voxel_mm**3
    assert vol == pytest.approx(4 / 3 * np.pi * r**3, rel=1e-3)
    cyl = volume_fraction(Cylinder((20.0, 4.0, -6.0), 12.0, 50.0), fine).sum() * fine.voxel_mm**3
    assert cyl == pytest.approx(np.pi * 12.0**2 * 50.0, rel=1e-3)


@pytest.mark.parametrize(
    "shape_obj",
    [
        Cylinder((20.0, 4.0, -6.0), 12.0, 50.0, axis=(0.0, 0.6, 0.8)),
        Ellipsoid((9.0, -5.0, 3.0), (30, 45, 20)),
    ],
    ids=["cylinder", "ellipsoid"],
)
def test_truth_rasteriser_and_simulated_object_agree(shape_obj):
    # the recon-grid truth (voxel averages) and the simulator's object (analytic transform under
    # a narrow Gaussian) describe the same shape: same voxels, same orientation
    _, fine = _grids()
    exact = volume_fraction(shape_obj, fine)
    smooth = smooth_indicator(shape_obj, fine, 1.0)  # sigma 1 cycle/voxel: a slight blur only
    assert np.abs(exact - smooth).mean() < 0.01
    inside = exact > 0.99
    assert smooth[inside].min() > 0.8 and smooth[exact < 0.01].max() < 0.2


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


def test_coils_and_noise_model():
    rng = np.random.default_rng(0)
    pts = np.array([[0.0, 0.0, 0.0], [60.0, 0.0, 0.0], [-60.0, 0.0, 0.0]])
    s = sensitivities("loops", 8, pts, rng)
    assert np.sqrt(np.sum(np.abs(s[:, 0]) ** 2)) == pytest.approx(1.0, rel=1e-5)
    assert np.argmax(np.abs(s[:, 1])) != np.argmax(np.abs(s[:, 2]))  # near coils dominate
    psi = noise_covariance("loops", 8, rng)
    np.testing.assert_allclose(psi, psi.conj().T)
    assert np.linalg.eigvalsh(psi).min() > 0
    gains = np.sqrt(np.real(np.diag(psi)))
    assert 0.85 <= gains.min() and gains.max() <= 1.2 and np.ptp(gains) > 0.05
    corr = np.abs(psi / np.outer(gains, gains))
    neighbours = np.sort(corr - np.eye(8), axis=1)[:, -1]
    assert np.all((neighbours >= 0.1) & (neighbours <= 0.3 + 1e-9))
    birdcage = sensitivities("birdcage", 1, pts, rng)
    assert birdcage.shape == (1, 3) and np.allclose(np.abs(birdcage[0, 0]), 1.0)


def test_b0_map_range():
    pts = Grid((32,) * 3, 7.0).points()
    for field in (3.0, 7.0):
        df = b0_map_hz(pts, field, (0.0, -70.0, -5.0))
        ppm = 1e6 / larmor_hz(field)
        assert 0.6 < df.max() * ppm < 1.3 and df.min() * ppm > -1.3
        near = b0_map_hz(np.array([[0.0, -70.0, -5.0]]), field, (0.0, -70.0, -5.0))[0]
        assert near == pytest.approx(df.max(), rel=0.2)  # the bump is the maximum


@pytest.fixture(scope="module")
def tiny_scan(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    assert main(["simulate", "tiny", "--out", str(out)]) == 0
    return out


def _read(path):
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        header = ismrmrd.xsd.CreateFromDocument(ds.read_xml_header())
        acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    finally:
        ds.close()
    return header, acqs


def test_raw_file_follows_the_conventions(tiny_scan):
    desc = ScanDescription.load("tiny")
    header, acqs = _read(tiny_scan / "tiny.h5")
    truth = json.loads((tiny_scan / "tiny_truth.json").read_text())
    assert header.experimentalConditions.H1resonanceFrequency_Hz == pytest.approx(
        78.834e6, rel=1e-4
    )
    sysinfo = header.acquisitionSystemInformation
    assert sysinfo.systemFieldStrength_T == 7.0 and sysinfo.receiverChannels == 4
    assert sysinfo.relativeReceiverNoiseBandwidth == pytest.approx(0.793)
    enc = header.encoding[0]
    assert enc.trajectory.value == "radial"
    assert enc.reconSpace.matrixSize.x == 20 and enc.reconSpace.fieldOfView_mm.z == 224
    assert enc.encodingLimits.kspace_encoding_step_1.maximum == 299
    assert enc.encodingLimits.contrast.maximum == 1
    assert list(header.sequenceParameters.TE) == [0.3, 2.3]
    assert header.sequenceParameters.TR == [100.0] and header.sequenceParameters.flipAngle_deg == [
        90.0
    ]
    assert header.measurementInformation.protocolName == "sodium_tsc_b0"

    noise = [a for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    imaging = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    assert acqs[: len(noise)] == noise and len(noise) == desc.noise_readouts  # noise first
    assert len(imaging) == 300 * 2
    dwell_us = 6000.0 / 48
    described = T.trajectory_description(header).trajectory()
    for i, a in enumerate(imaging):
        assert a.data.shape == (4, 48) and a.trajectory_dimensions == 3
        assert a.center_sample == 0 and a.discard_pre == 0 and a.discard_post == 0
        assert a.sample_time_us == pytest.approx(dwell_us, rel=1e-5)
        assert a.idx.kspace_encode_step_1 == i // 2 and a.idx.contrast == i % 2
        np.testing.assert_array_equal(a.traj, described[i // 2])  # header and traj agree
        assert tuple(a.read_dir) == (1.0, 0.0, 0.0) and tuple(a.slice_dir) == (0.0, 0.0, 1.0)
    stamps = [a.acquisition_time_stamp for a in imaging]
    assert np.all(np.diff(stamps) >= 0) and stamps[-1] == round(599 * 0.1 / 2.5e-3)
    assert imaging[0].is_flag_set(ismrmrd.ACQ_FIRST_IN_SLICE)
    assert imaging[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    assert not imaging[-2].is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    # the variant without traj carries the same data
    _, bare = _read(tiny_scan / "tiny_notraj.h5")
    assert bare[-1].trajectory_dimensions == 0
    np.testing.assert_array_equal(bare[-1].data, imaging[-1].data)
    # ground truth
    t = np.load(tiny_scan / "tiny_truth.npz")
    assert t["tsc_mM"].shape == (20, 20, 20) and t["labels"].shape == (20, 20, 20)
    assert "white_matter" in list(t["label_names"]) and t["b0_hz"].max() > 30
    names = {r["name"]: r for r in truth["rois"]}
    assert names["tube3"]["true_mM"] == 120 and names["white_matter"]["true_mM"] == 33


def test_truth_map_holds_the_roi_values(tmp_path):
    desc = dataclasses.replace(ScanDescription.load("tiny"), matrix=40, fov_mm=224.0)
    phantom = desc.phantom()
    grid = desc.grid(40)
    tsc = phantom.tsc_map(phantom.composition(grid))
    for roi in phantom.rois:
        idx = np.round(grid.index_of(np.asarray(roi.centre_mm))).astype(int)
        assert tsc[tuple(idx)] == pytest.approx(roi.true_mM, abs=0.5), roi.name


def test_noise_scans_have_the_requested_covariance(tmp_path):
    desc = dataclasses.replace(
        ScanDescription.load("tiny"), name="noisy", noise_readouts=400, noise_dwell_us=5.0
    )
    summary = simulate(desc, tmp_path)
    _, acqs = _read(tmp_path / "noisy.h5")
    noise = np.concatenate(
        [a.data for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)], axis=1
    )
    cov = noise @ noise.conj().T / noise.shape[1]
    psi = np.array(summary["noise"]["covariance"]["real"]) + 1j * np.array(
        summary["noise"]["covariance"]["imag"]
    )
    # variance per sample scales with bandwidth: noise scans at 5 us dwell, imaging at 125 us
    expected = psi * summary["noise"]["sigma_per_sample"] ** 2 * (125.0 / 5.0)
    np.testing.assert_allclose(np.real(np.diag(cov)), np.real(np.diag(expected)), rtol=0.05)
    off = np.abs(cov - expected) / np.sqrt(np.outer(np.diag(expected).real, np.diag(expected).real))
    assert off.max() < 0.05


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes(tiny_scan, tmp_path):
    simulate(ScanDescription.load("tiny"), tmp_path)
    again = _digest(tmp_path)
    assert again == _digest(tiny_scan)
    other = dataclasses.replace(ScanDescription.load("tiny"), seed=2)
    simulate(other, tmp_path / "other")
    assert _digest(tmp_path / "other")["tiny.h5"] != again["tiny.h5"]


def test_named_scans_are_valid():
    names = sorted(p.stem for p in SCAN_DIR.glob("*.json"))
    for required in (
        "brain_7T_da3dpr_8ch_dualecho", "brain_3T_tpi_birdcage", "brain_7T_radial_32ch",
        "tubes_only", "tiny",
    ):  # fmt: skip
        assert required in names
    for name in names:
        desc = ScanDescription.load(name)
        assert desc.name == name
        traj = desc.trajectory_description()
        assert traj.projections > 0 and len(desc.te_ms) >= 1
        tubes = len(desc.tube_list())  # a calibration set, or one uniform bottle
        assert 2 <= tubes <= 8 or (desc.protocol == "sodium_coil_profile" and tubes == 1)
    with pytest.raises(ValueError, match="no scan description"):
        ScanDescription.load("brain_9T")


def test_bad_description_is_rejected(tmp_path):
    path = tmp_path / "bad.json"
    data = json.loads((SCAN_DIR / "tiny.json").read_text()) | {"colour": "blue"}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown keys"):
        ScanDescription.load(path)
    data.pop("colour")
    data["geometry"] = {"read_dir": [1, 0, 0], "phase_dir": [1, 0, 0]}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="orthonormal"):
        simulate(ScanDescription.load(path), tmp_path / "x")


def test_white_matter_snr_measured_from_the_data(tmp_path):
    # the SNR the description asks for is what a reconstruction of the file delivers: noise
    # level from the file's own noise scans, white matter from the density-compensated image
    from gadgets.core.density import radial_dcf
    from gadgets.core.gridding import Nufft

    summary = simulate(ScanDescription.load("brain_3T_tpi_birdcage"), tmp_path)
    _, acqs = _read(tmp_path / "brain_3T_tpi_birdcage.h5")
    noise = np.concatenate(
        [a.data for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)], axis=1
    )
    imaging = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    traj = np.stack([a.traj for a in imaging])
    data = np.stack([a.data[0] for a in imaging])
    w = radial_dcf(traj).ravel()
    n = summary["matrix"]
    image = np.abs(Nufft(traj.reshape(-1, 3), (n, n, n)).adjoint(data.ravel(), w)[0])
    sigma = np.sqrt(np.mean(np.abs(noise) ** 2))  # per sample, same dwell as imaging
    roi = next(r for r in summary["rois"] if r["name"] == "white_matter")
    grid = ScanDescription.load("brain_3T_tpi_birdcage").grid(n)
    inside = np.linalg.norm(grid.points() - np.array(roi["centre_mm"]), axis=-1) <= roi["radius_mm"]
    snr = image[inside].mean() / (sigma * np.sqrt(np.sum(w.astype(np.float64) ** 2)))
    assert snr == pytest.approx(summary["snr_wm"], rel=0.1)


def test_psf_limited_reference():
    """The noise-free reference of a scan: large regions keep their concentration, the tubes
    (whose blur the chains undo) are the truth, and small fluid ROIs ring with a sharp cut-off
    (the 3D Gibbs effect the chains' apodisation is for)."""
    desc = ScanDescription.load("tiny_b0")
    traj = desc.trajectory_description().trajectory()
    kr = np.linalg.norm(traj[0], axis=1)
    times = np.arange(kr.size) * desc.trajectory_description().dwell_s
    grid = desc.grid(desc.matrix)
    geom = Geometry((desc.matrix,) * 3, (desc.fov_mm,) * 3, grid.position_mm, *grid.dirs)
    phantom = desc.phantom()
    rois = {r.name: r for r in phantom.rois}

    def roi_mean(volume, name):
        d = np.linalg.norm(geom.points_mm() - np.asarray(rois[name].centre_mm), axis=-1)
        return volume[(d <= rois[name].radius_mm) | (d == d.min())].mean()

    sharp = psf_limited(desc, kr, times, desc.te_ms[0] * 1e-3)
    tapered = psf_limited(desc, kr, times, desc.te_ms[0] * 1e-3, k_window_beta=3.0)
    for i in range(4):  # + the head's ringing reaching the tubes (< 1 mM)
        assert roi_mean(sharp, f"tube{i}") == pytest.approx(rois[f"tube{i}"].true_mM, abs=1.2)
    assert roi_mean(sharp, "tumour") == pytest.approx(65.0, abs=4.0)
    # the object's integral is kept (apodisation and T2* weighting leave k = 0 alone)
    assert tapered.sum() == pytest.approx(sharp.sum(), rel=1e-6)
    assert abs(roi_mean(tapered, "csf") - roi_mean(sharp, "csf")) > 1.0
