"""A real PACS: every series of a quantitative scan C-STOREd to Orthanc (Debian's ``orthanc``,
started here on free loopback ports), then read back through Orthanc's REST API: every
instance arrived, and its pixel values and geometry are those of the files written beside."""

import io
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from conftest import require_tool

from gadgets.app.application import recon_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    exe = require_tool("Orthanc")
    root = tmp_path_factory.mktemp("orthanc")
    http, dicom = _free_port(), _free_port()
    config = {
        "Name": "sodium-gadgets-test",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": True,
        "Plugins": [],
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "w")  # closed below
    proc = subprocess.Popen([exe, str(root / "orthanc.json")], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/system", timeout=2) as r:
                json.load(r)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail(f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield url, dicom
    proc.terminate()
    proc.wait(20)
    log.close()


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def test_every_instance_reaches_orthanc_unchanged(orthanc, birdcage, tmp_path):
    url, port = orthanc
    raw = birdcage[0] / "tiny_birdcage.h5"
    folder = tmp_path / "kept"
    overrides = {
        "deliver": "folder,pacs",
        "folder": str(folder),
        "pacs_host": "127.0.0.1",
        "pacs_port": str(port),
        "pacs_ae_title": "ORTHANC",
    }
    out = recon_file(raw, tmp_path / "rec", overrides=overrides)
    assert not [t for t in out.texts if "PACS" in t], out.texts  # nothing failed
    local = {}
    for path in sorted(Path(folder).rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        local[str(ds.SOPInstanceUID)] = ds
    assert len(local) == 41  # 40 TSC slices and the QA picture
    ids = json.loads(_get(f"{url}/instances"))
    assert len(ids) == len(local)
    for orthanc_id in ids:
        remote = pydicom.dcmread(io.BytesIO(_get(f"{url}/instances/{orthanc_id}/file")))
        mine = local[str(remote.SOPInstanceUID)]
        assert remote.SOPClassUID == mine.SOPClassUID
        assert remote.PixelData == mine.PixelData
        keys = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
        keys += ("RescaleSlope", "RescaleIntercept", "SeriesInstanceUID", "PatientID")
        for key in keys:
            assert remote.get(key) == mine.get(key), key
