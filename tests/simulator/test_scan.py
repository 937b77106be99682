import dataclasses
import hashlib
import json

import ismrmrd
import numpy as np
import pytest

from gadgets.app.cli import main
from gadgets.core.numerics import trajectory as T
from gadgets.resources import scans_dir
from gadgets.simulator.scan import ScanDescription, simulate


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


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


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


def test_same_seed_same_bytes(tiny_scan, tmp_path):
    simulate(ScanDescription.load("tiny"), tmp_path)
    again = _digest(tmp_path)
    assert again == _digest(tiny_scan)
    other = dataclasses.replace(ScanDescription.load("tiny"), seed=2)
    simulate(other, tmp_path / "other")
    assert _digest(tmp_path / "other")["tiny.h5"] != again["tiny.h5"]


def test_named_scans_are_valid():
    names = sorted(p.stem for p in scans_dir().glob("*.json"))
    for required in (
        "brain_7T_da3dpr_8ch_dualecho",
        "brain_3T_tpi_birdcage",
        "brain_7T_radial_32ch",
        "tubes_only",
        "tiny",
    ):
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
    data = json.loads((scans_dir() / "tiny.json").read_text()) | {"colour": "blue"}
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
    from gadgets.core.numerics.density import radial_dcf
    from gadgets.core.numerics.nufft import Nufft

    # the full-size scan's description at a third of its readouts (the definition is per scan)
    desc = ScanDescription.load("brain_3T_tpi_birdcage")
    fewer = {**desc.trajectory, "projections": desc.trajectory["projections"] // 3}
    desc = dataclasses.replace(desc, trajectory=fewer)
    summary = simulate(desc, tmp_path)
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
    grid = desc.grid(n)
    inside = np.linalg.norm(grid.points() - np.array(roi["centre_mm"]), axis=-1) <= roi["radius_mm"]
    snr = image[inside].mean() / (sigma * np.sqrt(np.sum(w.astype(np.float64) ** 2)))
    assert snr == pytest.approx(summary["snr_wm"], rel=0.1)


def test_headers_pass_the_ismrmrd_cpp_library(tmp_path, tiny):
    """ISMRMRD's C++ library (Debian's ismrmrd-tools) reads and re-writes every named scan's
    header: a <version> other than the library's own is refused there -- and by Gadgetron,
    which re-serialises the header for each external step -- so the simulator writes none."""
    import subprocess

    from conftest import require_tool

    from gadgets.simulator.scan import _header

    test_xml, info = require_tool("ismrmrd_test_xml"), require_tool("ismrmrd_info")
    for path in sorted(scans_dir().glob("*.json")):
        desc = ScanDescription.load(path)
        xml = _header(desc, desc.trajectory_description(), desc.coil_spec())
        assert "<version>" not in xml
        (tmp_path / "h.xml").write_text(xml)
        done = subprocess.run([test_xml, "h.xml"], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, (path.name, done.stderr)
    old = xml.replace('ISMRMRD">', 'ISMRMRD"><version>2</version>', 1)  # what it wrote before
    (tmp_path / "old.xml").write_text(old)
    done = subprocess.run([test_xml, "old.xml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0 and "version does not match" in done.stderr
    done = subprocess.run([info, str(tiny)], capture_output=True, text=True)
    assert done.returncode == 0 and "Dataset support: yes" in done.stdout
