"""The shipped chains in a real Gadgetron (4.7, built from source by the project's
``build_gadgetron.sh``; ``$GADGETRON_HOME``, default ``/opt/gt``), driven by Gadgetron's own
``gadgetron_ismrmrd_client``: every chain returns its images, equal to ``recon``'s; a refused
calibration reaches the client as Gadgetron's ERROR text; Gadgetron's DicomFinishGadget writes
DICOM from the slices. Slow (a server start and one process per step for each run) and only
where such a build exists: ``pytest -m slow``."""

import os
import socket
import subprocess
import time
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest

from gadgets.app.application import recon_file
from gadgets.resources import chains_dir

HOME = Path(os.environ.get("GADGETRON_HOME", "/opt/gt"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (HOME / "bin" / "gadgetron").exists(), reason=f"no Gadgetron build in {HOME}"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gadgetron(tmp_path_factory):
    """A Gadgetron server on a free port; this environment's Python first on PATH (Gadgetron
    starts each external step as ``python -m gadgetron``)."""
    import sys

    port = _free_port()
    env = {
        **os.environ,
        "GADGETRON_HOME": str(HOME),
        "PATH": f"{Path(sys.executable).parent}:{HOME / 'bin'}:{os.environ['PATH']}",
        "LD_LIBRARY_PATH": f"{HOME / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
    }
    log = tmp_path_factory.mktemp("gt") / "gadgetron.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [str(HOME / "bin" / "gadgetron"), "-p", str(port), "--disable_storage", "true"],
            stdout=f,
            stderr=f,
            env=env,
        )
    deadline = time.monotonic() + 30
    while f":{port} " not in subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    yield port, env, log
    proc.terminate()
    proc.wait(20)


def _client(gadgetron, raw: Path, chain: Path, out: Path) -> subprocess.CompletedProcess:
    port, env, _ = gadgetron
    cmd = [str(HOME / "bin" / "gadgetron_ismrmrd_client"), "-p", str(port), "-f", str(raw)]
    cmd += ["-C", str(chain), "-o", str(out)]
    for _ in range(3):  # the client's connect() can lose a wakeup and abort (rc 134): retry
        out.unlink(missing_ok=True)
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=out.parent, timeout=600
        )
        if done.returncode not in (134, -6):  # SIGABRT
            return done
    return done


def _series(out: Path) -> dict[int, np.ndarray]:
    with h5py.File(out, "r") as f:
        group = f[next(iter(f.keys()))]
        return {int(k.split("_")[1]): group[k]["data"][()] for k in group if k.startswith("image_")}


CASES = [
    ("sodium_preview", "tiny"),
    ("sodium_tsc", "birdcage"),
    ("sodium_tsc_b0", "tiny"),
    ("sodium_auto", "birdcage"),
]


@pytest.mark.parametrize("chain,scan", CASES)
def test_shipped_chain_in_a_real_gadgetron(chain, scan, gadgetron, request, tmp_path):
    if scan == "tiny":
        raw = request.getfixturevalue("tiny")
    else:
        raw = request.getfixturevalue("birdcage")[0] / "tiny_birdcage.h5"
    done = _client(gadgetron, raw, chains_dir() / f"{chain}.xml", tmp_path / "out.h5")
    assert done.returncode == 0, done.stdout + done.stderr
    got = _series(tmp_path / "out.h5")
    ref = recon_file(raw, tmp_path / "recon", chain, {"images": "slices"})
    expected = {}
    ds = ismrmrd.Dataset(str(ref.path / "images.h5"), "dataset", create_if_needed=False)
    try:
        for name in ds.list():
            if name.startswith("image_"):
                n = ds.number_of_images(name)
                expected[int(name.split("_")[1])] = np.stack(
                    [ds.read_image(name, i).data for i in range(n)]
                )
    finally:
        ds.close()
    assert sorted(got) == sorted(expected)
    for series, data in got.items():
        diff = np.abs(data.astype(np.int64) - expected[series].astype(np.int64))
        if data.shape[1] == 3:  # the QA picture: a digit of its text may round otherwise
            assert data.shape == expected[series].shape and np.mean(diff > 0) < 0.01
        else:
            assert diff.max() <= 1, (series, diff.max())  # float rounding across processes
    if chain == "sodium_tsc_b0":  # 4 loops without a coil file: refused, said as ERROR text
        assert "WARNING: TSC calibration failed" in done.stdout + done.stderr


def test_gadgetrons_own_dicom_writer(gadgetron, birdcage, tmp_path):
    raw = birdcage[0] / "tiny_birdcage.h5"
    chain = tmp_path / "chain.xml"
    text = (chains_dir() / "gadgetron" / "sodium_tsc_dicomfinish.xml").read_text()
    chain.write_text(text.replace("/tmp/sodium-gadgets-dicom", str(tmp_path / "files")))
    done = _client(gadgetron, raw, chain, tmp_path / "out.h5")
    assert done.returncode == 0 and "ERROR" not in done.stdout + done.stderr, done.stdout
    import pydicom

    written = [pydicom.dcmread(p) for p in sorted(tmp_path.glob("*.dcm"))]
    assert len(written) == 40  # one per TSC slice, from DicomFinishGadget
    ref = recon_file(raw, tmp_path / "recon", "sodium_tsc", {"images": "slices"})
    ds = ismrmrd.Dataset(str(ref.path / "images.h5"), "dataset", create_if_needed=False)
    try:  # the slices DicomFinishGadget was given
        counts = [ds.read_image("image_10", i).data[0, 0] for i in range(40)]
    finally:
        ds.close()
    by_slice = sorted(written, key=lambda d: float(d.ImagePositionPatient[2]))
    diff = [
        np.abs(d.pixel_array.astype(int) - c).max() for d, c in zip(by_slice, counts, strict=True)
    ]
    assert max(diff) <= 1
    assert "stored = (value - 0) / 0.1 mmol/L" in str(by_slice[0].ImageComments)
    # the QA picture, which DicomFinishGadget cannot write, went to the folder
    assert list((tmp_path / "files").glob("*/series050_*/0001.dcm"))  # FOLDER/study/series
