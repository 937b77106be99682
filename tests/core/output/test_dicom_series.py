import dataclasses
import json
import subprocess

import ismrmrd
import numpy as np
import pytest
from conftest import dicom_geometry, require_tool

from gadgets.app.application import recon_file
from gadgets.core.numerics.geometry import Geometry
from gadgets.core.output.dicom_files import read_series, write_series
from gadgets.core.output.dicom_series import SeriesInfo, series_datasets
from gadgets.runtime.client import read_raw
from gadgets.simulator.scan import ScanDescription, simulate


def _patient_points(datasets):
    """Patient coordinates (nz, ny, nx, 3) of every pixel, from the DICOM attributes alone."""
    pts = []
    for d in datasets:
        iop = np.array(d.ImageOrientationPatient, float)
        ipp = np.array(d.ImagePositionPatient, float)
        dr, dc = (float(v) for v in d.PixelSpacing)
        r, c = np.meshgrid(np.arange(d.Rows), np.arange(d.Columns), indexing="ij")
        pts.append(ipp + c[..., None] * dc * iop[:3] + r[..., None] * dr * iop[3:])
    return np.stack(pts)


def test_stored_values_are_exact_to_005_mM(header_xml, tmp_path, rng):
    volume = rng.uniform(-10, 320, (6, 20, 24))  # noise can make TSC negative
    volume[0, 0, :3] = [0.0, 149.97, 320.0]
    paths = write_series(
        series_datasets(volume, dicom_geometry(), header_xml, SeriesInfo("Na23 TSC [mmol/L]", 100)),
        tmp_path,
        "tsc",
    )
    back, datasets = read_series(paths)
    assert np.abs(back - volume).max() <= 0.05
    d = datasets[0]
    rwvm = d.RealWorldValueMappingSequence[0]
    assert rwvm.MeasurementUnitsCodeSequence[0].CodeValue == "mmol/L"
    assert rwvm.MeasurementUnitsCodeSequence[0].CodingSchemeDesignator == "UCUM"
    assert float(rwvm.RealWorldValueSlope) == float(d.RescaleSlope)
    assert d.ImagedNucleus == "23NA" and list(d.ImageType)[:2] == ["DERIVED", "PRIMARY"]
    assert "Laterality" not in d and d.BodyPartExamined == "HEAD"
    assert "stored at" not in d.get("ImageComments", "")


@pytest.mark.parametrize(("peak", "unit"), [(5000.0, "mmol/L"), (2.2e17, "1"), (-7e9, "Hz")])
def test_any_range_is_written_and_a_coarse_quantity_is_flagged(
    header_xml, tmp_path, rng, peak, unit
):
    """A failed calibration or an uncalibrated image still reaches the console: values of any
    size are stored at a coarser slope, to within half of it."""
    volume = rng.uniform(0, 1, (6, 20, 24)) * peak
    volume[0, 0, 0] = peak
    info = SeriesInfo("Na23 map", 7, unit=unit)
    back, datasets = read_series(
        write_series(series_datasets(volume, dicom_geometry(), header_xml, info), tmp_path, "s")
    )
    slope = float(datasets[0].RescaleSlope)
    assert 32767 / 2.5 < abs(peak) / slope <= 32767  # the finest 1-2-5 step that holds it
    assert np.abs(back - volume).max() <= slope / 2 * 1.0001
    assert ("stored at" in datasets[0].get("ImageComments", "")) == (unit != "1")


def test_identity_and_acquisition_come_from_the_header(header_xml, tmp_path):
    a = series_datasets(
        np.zeros((6, 20, 24)), dicom_geometry(), header_xml, SeriesInfo("Na23 TSC [mmol/L]", 100)
    )
    b = series_datasets(
        np.zeros((6, 20, 24)), dicom_geometry(), header_xml, SeriesInfo("B0 [Hz]", 101, unit="Hz")
    )
    assert a[0].PatientName == "Phantom^Sodium" and a[0].PatientID == "SIM1"
    assert a[0].StudyInstanceUID == b[0].StudyInstanceUID  # lands in the scanner's study
    assert a[0].FrameOfReferenceUID == b[0].FrameOfReferenceUID
    assert a[0].SeriesInstanceUID != b[0].SeriesInstanceUID  # one new series each
    assert len({d.SOPInstanceUID for d in a}) == 6
    assert all(uid.startswith("2.25.") for uid in (a[0].SeriesInstanceUID, a[0].SOPInstanceUID))
    assert float(a[0].EchoTime) == 0.3 and float(a[0].RepetitionTime) == 100.0
    assert float(a[0].FlipAngle) == 90.0 and float(a[0].MagneticFieldStrength) == 7.0
    assert a[0].ProtocolName == "sodium_tsc_b0"


@pytest.mark.parametrize("unit", ["mmol/L", "Hz", "1"])
def test_dciodvfy_reports_no_errors(header_xml, tmp_path, rng, unit):
    dciodvfy = require_tool("dciodvfy")
    volume = rng.uniform(-50, 150, (6, 20, 24))
    info = SeriesInfo(f"Na23 map [{unit}]", 100, unit=unit, window=(50.0, 200.0), comments="test")
    paths = write_series(series_datasets(volume, dicom_geometry(), header_xml, info), tmp_path, "s")
    for path in paths[:2]:
        done = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        report = done.stdout + done.stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, report


def test_oblique_scan_geometry_places_the_tubes(tmp_path):
    # an oblique, off-centre acquisition: simulate, reconstruct, write DICOM, and find the tubes
    # from the DICOM geometry where the simulator put them (patient coordinates)
    a, b = np.deg2rad(20.0), np.deg2rad(15.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rot = rz @ rx
    desc = dataclasses.replace(
        ScanDescription.load("tiny"),
        name="oblique",
        matrix=32,
        fov_mm=240.0,
        geometry={
            "position_mm": [5.0, -4.0, 6.0],
            "read_dir": rot[:, 0].tolist(),
            "phase_dir": rot[:, 1].tolist(),
            "slice_dir": rot[:, 2].tolist(),
        },
        trajectory={
            "identifier": "DA-3DPR",
            "projections": 1500,
            "samples": 64,
            "readout_ms": 6.0,
            "p": 0.4,
        },
    )
    simulate(desc, tmp_path)
    truth = json.loads((tmp_path / "oblique_truth.json").read_text())
    recon_file(tmp_path / "oblique.h5", tmp_path / "rec", "sodium_preview")
    ds = ismrmrd.Dataset(str(tmp_path / "rec" / "images.h5"), "dataset", create_if_needed=False)
    image = ds.read_image("image_1", 0)
    ds.close()
    xml = read_raw(tmp_path / "oblique.h5")[0]
    info = SeriesInfo("Na23 preview [a.u.]", 1, unit="1", label="Na23", image_type=("OTHER",))
    paths = write_series(
        series_datasets(image.data[0], Geometry.from_image(image), xml, info), tmp_path, "p"
    )
    volume, datasets = read_series(paths)
    points = _patient_points(datasets)
    voxel = 240.0 / 32
    for tube in truth["tubes"]:
        centre = np.array(tube["centre_mm"])
        near = np.linalg.norm(points - centre, axis=-1) < 25.0
        values = np.where(near, volume, 0.0)
        bright = values > 0.5 * values.max()
        found = (points[bright] * values[bright, None]).sum(0) / values[bright].sum()
        assert np.linalg.norm(found - centre) < voxel, (tube, found)
