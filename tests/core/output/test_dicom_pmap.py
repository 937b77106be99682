"""The float32 DICOM Parametric Map of a TSC map (gadgets/core/dicom_pmap.py) and its delivery
by DicomOutput (``parametric_map=true``)."""

import subprocess

import ismrmrd
import numpy as np
import pydicom
import pytest
from conftest import delivered, require_tool

from gadgets.core.numerics.geometry import Geometry
from gadgets.core.output.dicom_files import write_series
from gadgets.core.output.dicom_pmap import SERIES_NUMBER_OFFSET, parametric_map_dataset
from gadgets.core.output.dicom_series import SeriesInfo, series_datasets
from gadgets.dicom_output import DicomOutput
from gadgets.runtime.client import read_raw
from gadgets.runtime.header import parse_header
from gadgets.simulator.scan import ScanDescription, simulate
from gadgets.volumes import volume_image

SHAPE = (6, 8, 10)


TSC = "Na23 TSC [mmol/L]"


@pytest.fixture(scope="module")
def header_xml(tmp_path_factory):
    out = tmp_path_factory.mktemp("hdr")
    simulate(ScanDescription.load("tiny"), out)
    return read_raw(out / "tiny.h5")[0]


def _geometry():
    return Geometry(SHAPE, (100.0, 80.0, 60.0), (1.0, 2.0, 3.0), (1, 0, 0), (0, 1, 0), (0, 0, 1))


def _volume(rng):
    volume = rng.uniform(-5.0, 160.0, SHAPE).astype(np.float32)
    volume[0, 0, :4] = [33.337, 0.0, 140.0001, -1.25]
    volume[5, 7, 9] = 1e-3
    return volume


def _frames_by_slice(ds, source):
    """The map's frames in slice order (frame k <- the MR slice at the same position)."""
    pixels = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    where = [
        tuple(float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient)
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    order = [where.index(tuple(float(v) for v in s.ImagePositionPatient)) for s in source]
    return pixels[order]


def _dciodvfy_errors(path):
    dciodvfy = require_tool("dciodvfy")
    done = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    report = done.stdout + done.stderr
    return [line for line in report.splitlines() if line.startswith("Error")], report


def _tsc_image(volume, meta):
    like = ismrmrd.Image.from_array(np.zeros((1, *SHAPE), np.float32), transpose=False)
    g = _geometry()
    like.position, like.field_of_view = g.position_mm, g.fov_mm
    like.read_dir, like.phase_dir, like.slice_dir = g.read_dir, g.phase_dir, g.slice_dir
    return volume_image(volume, like, meta, series_index=10)


def test_parametric_map_holds_the_exact_floats(header_xml, tmp_path, rng):
    volume = _volume(rng)
    info = SeriesInfo(TSC, 10, window=(70.0, 140.0))
    source = series_datasets(volume, _geometry(), header_xml, info)
    (path,) = write_series([parametric_map_dataset(volume, source, info)], tmp_path, "pm")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert int(ds.NumberOfFrames) == SHAPE[0] and (ds.Rows, ds.Columns) == SHAPE[1:]
    assert "FloatPixelData" in ds and ds.pixel_array.dtype == np.float32
    assert np.array_equal(_frames_by_slice(ds, source), volume)  # bit-exact, no rescale
    mr = source[0]
    for key in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert ds[key].value == mr[key].value, key
    assert ds.SeriesInstanceUID != mr.SeriesInstanceUID
    assert ds.SeriesNumber == 10 + SERIES_NUMBER_OFFSET == 1010
    assert ds.SeriesDescription == "Na23 TSC [mmol/L] float" and ds.ContentLabel == "TSC"
    shared = ds.SharedFunctionalGroupsSequence[0]
    rwvm = shared.RealWorldValueMappingSequence[0]
    unit = rwvm.MeasurementUnitsCodeSequence[0]
    assert (unit.CodeValue, unit.CodingSchemeDesignator) == ("mmol/L", "UCUM")
    assert (rwvm.RealWorldValueSlope, rwvm.RealWorldValueIntercept) == (1.0, 0.0)
    assert rwvm.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeMeaning == (
        "Concentration"
    )
    voi = shared.FrameVOILUTSequence[0]
    assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (70.0, 140.0)
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [10.0, 10.0]
    errors, report = _dciodvfy_errors(path)
    assert not errors, report


def test_mismatched_source_is_refused(header_xml, rng):
    volume = _volume(rng)
    info = SeriesInfo(TSC, 10)
    source = series_datasets(volume, _geometry(), header_xml, info)
    with pytest.raises(ValueError, match="do not match"):
        parametric_map_dataset(volume, source[:-1], info)


def test_dicom_output_delivers_the_parametric_map(header_xml, tmp_path, rng):
    volume = _volume(rng)
    meta = {
        "SeriesDescription": TSC,
        "Units": "mmol/L",
        "LUTLabel": "TSC",
        "ImageTypeValue3": "TSC",
        "WindowCenter": "70",
        "WindowWidth": "140",
        "DataRole": "Quantitative",
    }
    image = _tsc_image(volume, meta)
    folder = tmp_path / "on"
    gadget = DicomOutput(
        parse_header(header_xml), deliver="folder", folder=str(folder), parametric_map="true"
    )
    assert list(gadget.process(image)) == [image]
    series = delivered(folder)
    assert sorted(series) == [10, 1010] and [len(series[10]), len(series[1010])] == [6, 1]
    ds = pydicom.dcmread(series[1010][0])
    source = [pydicom.dcmread(p) for p in series[10]]
    assert np.array_equal(_frames_by_slice(ds, source), volume)
    assert ds.StudyInstanceUID == source[0].StudyInstanceUID
    # off by default, and never for a map that is not in mmol/L or not quantitative
    for kwargs, m in (({}, meta), ({"parametric_map": "true"}, {**meta, "DataRole": ""})):
        folder = tmp_path / f"off{len(kwargs)}"
        gadget = DicomOutput(
            parse_header(header_xml), deliver="folder", folder=str(folder), **kwargs
        )
        list(gadget.process(_tsc_image(volume, m)))
        assert len(list(folder.rglob("*.dcm"))) == 6


def test_cstore_proposes_parametric_map_storage(header_xml, tmp_path, rng):
    from pynetdicom import AE, evt

    from gadgets.runtime.pacs import PacsTarget, c_store

    volume = _volume(rng)
    info = SeriesInfo(TSC, 10)
    source = series_datasets(volume, _geometry(), header_xml, info)
    files = write_series(source[:1], tmp_path, "mr")
    files += write_series([parametric_map_dataset(volume, source, info)], tmp_path, "pm")
    stored = []

    def on_store(event):
        stored.append(str(event.dataset.SOPClassUID))
        return 0x0000

    ae = AE(ae_title="PACS")
    for uid in ("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.30"):
        ae.add_supported_context(uid)
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        report = c_store(files, PacsTarget("127.0.0.1", server.server_address[1], timeout_s=5))
    finally:
        server.shutdown()
    assert report.error is None and sorted(stored) == [
        "1.2.840.10008.5.1.4.1.1.30",
        "1.2.840.10008.5.1.4.1.1.4",
    ]
