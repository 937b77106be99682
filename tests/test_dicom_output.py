import socket
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
from conftest import delivered, require_tool
from pydicom.uid import MRImageStorage
from pynetdicom import AE, evt

from gadgets.app.application import recon_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same_content(a: Path, b: Path) -> bool:
    """Identical datasets (the file meta group is each writer's own)."""
    da, db = pydicom.dcmread(a), pydicom.dcmread(b)
    return [e for e in da if e.tag.group != 2] == [e for e in db if e.tag.group != 2]


def test_stream_delivery_returns_valid_series(tiny, tmp_path):
    out = recon_file(tiny, tmp_path, "sodium_preview")
    assert out.images == 2 and len(out.dicoms) == 2 * 20
    ds = pydicom.dcmread(out.dicoms[0])
    assert ds.SeriesDescription == "Na23 image [a.u.]" and ds.Rows == 20
    assert {pydicom.dcmread(p).SeriesInstanceUID for p in out.dicoms[::20]}.__len__() == 2
    assert not list(tmp_path.glob("*.partial"))


def test_folder_delivery_is_atomic_and_complete(tiny, tmp_path):
    folder = tmp_path / "dicom"
    out = recon_file(
        tiny, tmp_path / "rec", "sodium_preview", {"deliver": "folder", "folder": str(folder)}
    )
    assert not out.dicoms  # nothing streamed
    series = delivered(folder)
    assert sorted(series) == [1, 2] and [len(f) for f in series.values()] == [20, 20]
    assert not list(folder.rglob("*.partial"))
    for files in series.values():  # FOLDER/<study UID>/series<NNN>_<series UID>/<NNNN>.dcm
        first = pydicom.dcmread(files[0])
        assert files[0].parent.parent.name == first.StudyInstanceUID
        assert files[0].parent.name.endswith(f"_{first.SeriesInstanceUID}")
        numbers = [int(pydicom.dcmread(f).InstanceNumber) for f in files]
        assert [f.name for f in files] == [f"{n:04d}.dcm" for n in numbers]


def test_cstore_to_dcmtk_storescp(tiny, tmp_path):
    storescp = require_tool("storescp")
    port = _free_port()
    received = tmp_path / "pacs"
    received.mkdir()
    proc = subprocess.Popen(
        [
            storescp,
            "-aet",
            "PACS",
            "-od",
            str(received),
            "--acse-timeout",
            "10",
            "--dimse-timeout",
            "10",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        folder = tmp_path / "sent"
        overrides = {
            "deliver": "folder,pacs",
            "folder": str(folder),
            "pacs_host": "127.0.0.1",
            "pacs_port": str(port),
            "pacs_timeout_s": "10",
        }
        out = recon_file(tiny, tmp_path / "rec", "sodium_preview", overrides)
        assert not out.texts  # no delivery problem reported
    finally:
        proc.terminate()
        proc.wait(10)
    sent = {pydicom.dcmread(p).SOPInstanceUID: p for p in folder.rglob("*.dcm")}
    got = {pydicom.dcmread(p).SOPInstanceUID: p for p in received.iterdir()}
    assert len(sent) == 40 and set(got) == set(sent)
    assert all(_same_content(sent[uid], got[uid]) for uid in sent)


def test_cstore_to_a_pynetdicom_server(tiny, tmp_path):
    stored = []

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        stored.append(ds)
        return 0x0000

    ae = AE(ae_title="PACS")
    ae.add_supported_context(MRImageStorage)
    port = _free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        folder = tmp_path / "sent"
        overrides = {
            "deliver": "folder,pacs",
            "folder": str(folder),
            "pacs_host": "127.0.0.1",
            "pacs_port": str(port),
        }
        recon_file(tiny, tmp_path / "rec", "sodium_preview", overrides)
    finally:
        server.shutdown()
    sent = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in folder.rglob("*.dcm")}
    assert len(stored) == 40
    for ds in stored:
        original = sent[ds.SOPInstanceUID]
        assert [e for e in ds if e.tag.group != 2] == [e for e in original if e.tag.group != 2]


def test_pacs_down_keeps_files_and_the_scan(tiny, tmp_path):
    folder = tmp_path / "kept"
    overrides = {
        "deliver": "folder,pacs",
        "folder": str(folder),
        "pacs_host": "127.0.0.1",
        "pacs_port": str(_free_port()),
        "pacs_timeout_s": "3",
    }
    t0 = time.perf_counter()
    out = recon_file(tiny, tmp_path / "rec", "sodium_preview", overrides)
    assert time.perf_counter() - t0 < 60
    assert out.images == 2  # the scan's other outputs are unaffected
    assert len(list(folder.rglob("*.dcm"))) == 40
    assert out.texts and all("refused or did not answer" in t for t in out.texts)


def test_bad_delivery_settings_are_refused(tiny, tmp_path):
    from gadgets.runtime.chain import ChainError

    with pytest.raises(ChainError, match="deliver=pacs needs pacs_host"):
        recon_file(tiny, tmp_path, "sodium_preview", {"deliver": "pacs"})
    with pytest.raises(ChainError, match="property .deliver.: .email. is not one of auto, stream"):
        recon_file(tiny, tmp_path, "sodium_preview", {"deliver": "email"})


def test_threads_left_running():
    # the pynetdicom server and storescp are stopped by their tests
    assert not any(
        t.name.startswith("AcceptorThread") for t in threading.enumerate() if t.is_alive()
    )
