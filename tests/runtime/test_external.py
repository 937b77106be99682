import io
import socket
import subprocess
import sys

import ismrmrd
import numpy as np
from conftest import image_arrays

from gadgets.app.application import recon_file
from gadgets.runtime.client import read_raw
from gadgets.runtime.protocol import Close, MessageReader, MessageWriter, Text


def _play_gadgetron(
    tiny,
    header_xml,
    mutate=None,
    config='<configuration><property name="oversampling" value="2"/></configuration>',
):
    """Be Gadgetron's side of an external Python step: listen, start the module the way
    Gadgetron does, send CONFIG / HEADER / acquisitions / CLOSE, return what comes back."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(120)
    port = srv.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gadgetron", str(port), "gadgets.preview", "SumOfSquaresPreview"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        conn, _ = srv.accept()
        w = MessageWriter(conn.sendall)
        w.config_text(config)
        w.header(header_xml)
        for i, acq in enumerate(read_raw(tiny)[1]):
            if mutate:
                mutate(i, acq)
            w.item(acq)
        w.close()
        raw = b""
        while chunk := conn.recv(1 << 16):
            raw += chunk
        conn.close()
        proc.wait(60)
    finally:
        proc.kill()
        srv.close()
    ids = []
    reader = MessageReader(io.BytesIO(raw).read)
    while True:
        try:
            ids.append(reader.read())
        except EOFError:
            return ids


def test_runs_under_a_real_gadgetron_parent(tiny, header_xml, tmp_path):
    got = _play_gadgetron(tiny, header_xml)
    images = [m for m in got if isinstance(m, ismrmrd.Image)]
    assert len(images) == 2 and isinstance(got[-1], Close)
    local = image_arrays(recon_file(tiny, tmp_path / "r", "sodium_preview").path / "images.h5")
    assert np.array_equal(images[0].data, local[0])


def test_failures_under_gadgetron_are_errors_not_text(tiny, header_xml):
    from gadgets.runtime.protocol import Error

    def poison(i, acq):  # corrupt from the 100th message on: far more than max_bad_fraction
        if i >= 100:
            acq.data[:] = np.nan

    got = _play_gadgetron(tiny, header_xml, poison)
    assert not any(isinstance(m, Text) for m in got)  # TEXT would abort Gadgetron's stream
    errors = [m for m in got if isinstance(m, Error)]
    assert errors and "NaN" in errors[0].text and "SumOfSquaresPreview" in errors[0].text
    bad_config = '<configuration><property name="oversampling" value="huge"/></configuration>'
    got = _play_gadgetron(tiny, header_xml, config=bad_config)
    errors = [m for m in got if isinstance(m, Error)]
    assert errors and "oversampling" in errors[0].text
