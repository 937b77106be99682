"""The calibration QA picture: the renderer (pure), its Secondary Capture DICOM file, and the
picture coming out of the quantitative chains -- for a calibration that works (``birdcage``)
and one that is refused (``refused``), the session runs of conftest.py shared with
tests/test_chains.py."""

import os
import subprocess

import ismrmrd
import numpy as np
import pydicom
import pytest
from conftest import require_tool
from PIL import Image
from pydicom.uid import MRImageStorage, SecondaryCaptureImageStorage
from pynetdicom import AE, evt

from gadgets.core import qa_helper
from gadgets.core.dicom import (
    SeriesInfo,
    picture_from_dataset,
    secondary_capture_dataset,
    write_series,
)
from gadgets.core.qa import CalibrationQa, QaTube, render_qa, write_png
from gadgets.dicom_output import DicomOutput
from gadgets.runtime.client import read_raw
from gadgets.runtime.pacs import PacsTarget, c_store
from gadgets.runtime.runner import parse_header
from gadgets.volumes import picture_image, picture_rgb, read_meta

QA = "Na23 TSC QA"
CONC = (30.0, 60.0, 90.0, 120.0)


def _phantom(n=32, vox=7.0):
    """A head (40 mM) and four tubes along z, as (TSC map, tubes at their true places)."""
    z, y, x = (np.mgrid[:n, :n, :n] - n // 2) * vox
    tsc = np.zeros((n, n, n), np.float32)
    tsc[(x / 70) ** 2 + (y / 80) ** 2 + (z / 75) ** 2 < 1] = 40.0
    tubes = []
    for c, (cx, cy) in zip(CONC, [(88, -35), (-88, -35), (88, 35), (-88, 35)], strict=True):
        tsc[((x - cx) ** 2 + (y - cy) ** 2 < 100) & (np.abs(z) < 25)] = c
        tubes.append(QaTube((cx, cy, 0.0), (0.0, 0.0, 1.0), 10.0, 50.0, 0.01 * c + 0.05, c))
    return tsc, (vox, vox, vox), tubes


def _red(rgb):
    """Pixels of the failure red (text and frame), anti-aliasing aside."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(np.sum((r > 180) & (g < 60) & (b < 60)))


def _colours(region):
    return len(np.unique(region.reshape(-1, 3), axis=0))


def test_picture_of_a_good_calibration():
    tsc, vox, tubes = _phantom()
    qa = CalibrationQa(tsc * 0.01 + 0.05, vox, tuple(tubes), CONC, 0.01, 0.05, 0.9999, 0.99, tsc)
    rgb = render_qa(qa)
    assert rgb.shape == (450, 1200, 3) and rgb.dtype == np.uint8
    assert _colours(rgb[:, -120:]) > 100  # the colour bar (right edge): a real gradient
    assert _colours(rgb[60:, 400:800]) > 20  # the grey-scale slice with its tube circles
    assert _red(rgb) == 0  # nothing failed: no red anywhere
    assert render_qa(qa, size_px=(900, 300)).shape == (300, 900, 3)


def test_helper_process_draws_the_same_picture_and_is_replaced_when_it_dies(caplog):
    """The helper's picture is the in-process one, pixel for pixel; a killed helper costs no
    picture (drawn in-process, with a warning) and the next start() runs a new one."""
    tsc, vox, tubes = _phantom()
    qa = CalibrationQa(tsc * 0.01 + 0.05, vox, tuple(tubes), CONC, 0.01, 0.05, 0.9999, 0.99, tsc)
    qa_helper.start()
    first = qa_helper._helper
    assert first is not None and first.proc.pid != os.getpid()
    drawn = qa_helper.picture(qa_helper.render_async(qa), qa)
    assert np.array_equal(drawn, render_qa(qa))
    first.proc.kill()
    first.proc.wait()
    with caplog.at_level("WARNING", logger="gadgets.core.qa_helper"):
        again = qa_helper.picture(qa_helper.render_async(qa), qa)
    assert np.array_equal(again, drawn) and "drawing the picture in-process" in caplog.text
    qa_helper.start()
    assert qa_helper._helper is not first and qa_helper._helper.proc.poll() is None
    assert np.array_equal(qa_helper.picture(qa_helper.render_async(qa), qa), drawn)


@pytest.mark.parametrize("case", ["too_few_tubes", "low_r2"])
def test_picture_of_a_failed_calibration_says_so_in_red(case):
    tsc, vox, tubes = _phantom()
    if case == "too_few_tubes":  # 3 of 4 found: not paired, no fit
        found = tuple(QaTube(t.centre_mm, t.axis, t.radius_mm, t.length_mm, t.signal)
                      for t in tubes[:3])  # fmt: skip
        qa = CalibrationQa(tsc, vox, found, CONC, failure="found 3 tubes, expected 4")
    else:
        qa = CalibrationQa(tsc, vox, tuple(tubes), CONC, 0.01, 0.05, 0.93, 0.99, None,
                           "tube fit R^2 0.9300 < 0.99")  # fmt: skip
    assert qa.failed
    rgb = render_qa(qa)
    assert rgb.shape == (450, 1200, 3)
    assert _red(rgb[:40]) > 300  # the status line: CALIBRATION FAILED: <reason>
    assert _red(rgb[40:, 800:]) > 300  # and panel (c), where no TSC map is
    assert _colours(rgb[60:, 400:800]) > 20  # the tubes that were found are still shown


def test_png_is_written_atomically_and_exactly(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = write_png(rgb, tmp_path / "qa" / "x.png")
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), rgb)
    assert not list(path.parent.glob("*.partial"))
    with pytest.raises(ValueError, match="uint8"):
        write_png(rgb.astype(np.float32), tmp_path / "y.png")


def test_picture_travels_as_an_rgb_ismrmrd_image():
    rgb = np.random.default_rng(4).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    like = ismrmrd.Image.from_array(np.zeros((1, 4, 4, 4), np.float32), transpose=False)
    img = picture_image(rgb, like, {"DataRole": "QA"}, series_index=50)
    assert img.image_type == ismrmrd.IMTYPE_RGB and img.data.shape == (3, 1, 45, 61)
    assert img.image_series_index == 50 and read_meta(img)["DataRole"] == "QA"
    assert np.array_equal(picture_rgb(img), rgb)


def _dciodvfy_errors(path):
    dciodvfy = require_tool("dciodvfy")
    done = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    report = done.stdout + done.stderr
    return [line for line in report.splitlines() if line.startswith("Error")], report


def test_quantitative_chain_returns_the_qa_picture(birdcage):
    sim, out, images = birdcage
    qa = images[QA]
    meta = read_meta(qa)
    assert meta["DataRole"] == "QA" and meta["ImageTypeValue3"] == "QA"
    assert meta["CalibrationStatus"] == "OK" and qa.image_series_index == 50
    rgb = picture_rgb(qa)
    assert rgb.shape == (450, 1200, 3) and _red(rgb) == 0
    # the Secondary Capture file and its PNG, streamed back like the maps
    (dcm,) = sorted(out.path.glob("series050_*.dcm"))
    assert [p.name for p in out.pngs] == ["series050_0001.png"]
    ds = pydicom.dcmread(dcm)
    assert ds.SOPClassUID == SecondaryCaptureImageStorage
    assert ds.SeriesDescription == QA and ds.SeriesNumber == 50
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    assert ds.PlanarConfiguration == 0 and ds.BitsAllocated == 8
    assert np.array_equal(picture_from_dataset(ds), rgb)
    png = np.asarray(Image.open(out.path / "series050_0001.png").convert("RGB"))
    assert np.array_equal(png, rgb)
    # in the same patient, study and frame of reference as the TSC series, its own series
    tsc = pydicom.dcmread(sorted(out.path.glob("series010_*.dcm"))[0])
    for key in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert ds[key].value == tsc[key].value, key
    assert ds.SeriesInstanceUID != tsc.SeriesInstanceUID
    errors, report = _dciodvfy_errors(dcm)
    assert not errors, report


def test_refused_calibration_still_returns_a_picture_flagged_failed(refused):
    sim, out, images = refused
    meta = read_meta(images[QA])
    assert meta["CalibrationStatus"] == "FAILED" and "R^2" in meta["ImageComments"]
    rgb = picture_rgb(images[QA])
    assert _red(rgb[:40]) > 300
    png = np.asarray(Image.open(out.path / "series050_0001.png").convert("RGB"))
    assert np.array_equal(png, rgb)


def test_secondary_capture_round_trip_and_folder_delivery(birdcage, tmp_path):
    sim, _, images = birdcage
    xml = read_raw(sim / "tiny_birdcage.h5")[0]
    rgb = picture_rgb(images[QA])
    info = SeriesInfo(QA, 50, unit="1", label="QA", image_type=("QA",), comments="ok")
    (path,) = write_series([secondary_capture_dataset(rgb, xml, info)], tmp_path / "sc", "qa")
    assert np.array_equal(picture_from_dataset(pydicom.dcmread(path)), rgb)
    # an odd number of pixel bytes is padded to even length and still reads back exactly
    odd = rgb[:45, :61]
    (path,) = write_series([secondary_capture_dataset(odd, xml, info)], tmp_path / "odd", "qa")
    assert np.array_equal(picture_from_dataset(pydicom.dcmread(path)), odd)
    errors, report = _dciodvfy_errors(path)
    assert not errors, report
    # DicomOutput with deliver=folder: the DICOM file and the PNG beside it
    folder = tmp_path / "folder"
    gadget = DicomOutput(parse_header(xml), deliver="folder", folder=str(folder))
    passed = list(gadget.process(images[QA]))
    assert passed == [images[QA]]
    assert sorted(p.name for p in folder.iterdir()) == ["series050_0001.dcm", "series050_0001.png"]
    png = np.asarray(Image.open(folder / "series050_0001.png").convert("RGB"))
    assert np.array_equal(png, rgb)


def test_cstore_proposes_secondary_capture(birdcage, tmp_path):
    sim, out, _ = birdcage
    sc = sorted(out.path.glob("series050_*.dcm"))
    mr = sorted(out.path.glob("series010_*.dcm"))[:1]
    for contexts, stored_expected in (
        ([MRImageStorage, SecondaryCaptureImageStorage], 2),
        ([MRImageStorage], 1),  # a PACS without Secondary Capture: reported, not raised
    ):
        stored = []

        def on_store(event, stored=stored):
            stored.append(event.dataset.SOPClassUID)
            return 0x0000

        ae = AE(ae_title="PACS")
        for uid in contexts:
            ae.add_supported_context(uid)
        server = ae.start_server(("127.0.0.1", 0), block=False,
                                 evt_handlers=[(evt.EVT_C_STORE, on_store)])  # fmt: skip
        try:
            port = server.server_address[1]
            report = c_store(mr + sc, PacsTarget("127.0.0.1", port, timeout_s=5))
        finally:
            server.shutdown()
        assert len(stored) == len(report.stored) == stored_expected
        assert (report.error is None) == (stored_expected == 2)
