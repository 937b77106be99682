import socket
import struct
import threading
import time

import ismrmrd
import numpy as np
import pytest
from conftest import chain_xml, external_step, image_arrays, served

from gadgets.app.application import recon_file, send_file
from gadgets.runtime.client import read_raw
from gadgets.runtime.protocol import Close, MessageReader, MessageWriter, Response, Text


@pytest.fixture
def server():
    with served() as srv:
        yield srv


def _raw_session(port, payload: bytes, shutdown=True, timeout=60):
    """Send raw bytes; return the messages the server answers with (until CLOSE or EOF)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(payload)
    if shutdown:
        sock.shutdown(socket.SHUT_WR)
    reader = MessageReader(sock.makefile("rb").read)
    got = []
    try:
        while True:
            msg = reader.read()
            got.append(msg)
            if isinstance(msg, Close):
                break
    except EOFError:
        pass
    sock.close()
    return got


def _frames(*calls):
    chunks = []
    w = MessageWriter(chunks.append)
    for name, *args in calls:
        getattr(w, name)(*args)
    return b"".join(chunks)


def _error_text(got):
    texts = [m.text for m in got if isinstance(m, Text)]
    assert texts and isinstance(got[-1], Close), got
    return texts[0]


def test_recon_and_serve_give_the_same_images(tiny, server, tmp_path):
    local = recon_file(tiny, tmp_path / "recon")  # chain chosen by the protocol map
    assert local.images == 3  # uncalibrated (calibration refused), B0 map, QA picture
    result, out = send_file(tiny, tmp_path / "sent", port=server.port, config="default")
    assert result.closed and not result.errors and out.images == 3
    a, b = (
        image_arrays(tmp_path / "recon" / "images.h5"),
        image_arrays(tmp_path / "sent" / "images.h5"),
    )
    assert len(a) == 3 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # both write the QA picture's Secondary Capture file as a PNG too
    assert (
        [p.name for p in local.extra_files]
        == [p.name for p in out.extra_files]
        == ["series050_0001.png"]
    )
    assert a[0].shape == (1, 20, 20, 20) and a[0].max() > 0


@pytest.mark.parametrize("clients", [2, 8])
def test_concurrent_clients(tiny, server, tmp_path, clients):
    results = [None] * clients

    def go(i):
        results[i] = send_file(tiny, tmp_path / f"c{i}", port=server.port, config="default")

    threads = [threading.Thread(target=go, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(
        r is not None and r[0].closed and not r[0].errors and r[1].images == 3 for r in results
    )


def test_bad_input_gets_a_clear_error_and_the_server_serves_on(tiny, server, tmp_path, header_xml):
    acq = read_raw(tiny)[1].__next__()
    good = _frames(("config_file", "sodium_preview"), ("header", header_xml))
    cases = {
        "wrong first message": (_frames(("item", acq)), "first message must be a configuration"),
        "header before config": (
            _frames(("header", header_xml)),
            "first message must be a configuration",
        ),
        "unknown message id": (good + struct.pack("<H", 999), "unknown message id 999"),
        "truncated acquisition": (
            good + _frames(("item", acq))[:-10],
            "stream ended inside an acquisition",
        ),
        "4 GB length": (good + struct.pack("<HI", 5, 0xFFFFFFFF), "exceeds the limit"),
        "invalid header": (
            _frames(("config_file", "sodium_preview"), ("header", "<ismrmrdHeader>")),
            "invalid ISMRMRD header",
        ),
        "unknown chain": (
            _frames(("config_file", "nope"), ("header", header_xml)),
            "unknown chain 'nope'",
        ),
        "config twice": (good + _frames(("config_file", "x")), "unexpected ConfigFile"),
        "chain by path": (
            _frames(("config_file", "/etc/passwd"), ("header", header_xml)),
            "not by a path",
        ),
        "a name too long for a file": (
            _frames(("config_file", "a" * 1000), ("header", header_xml)),
            "is not a chain name",
        ),
        "no CLOSE (the client half-closed)": (
            good + _frames(("item", acq)),
            "the stream ended before its CLOSE (message 4): nothing was reconstructed",
        ),
        "no readouts": (good + _frames(("close",)), "no imaging readouts arrived"),
        "a client's chain": (
            _frames(
                ("config_text", chain_xml(external_step("chain_gadgets", "Scale"))),
                ("header", header_xml),
            ),
            "runs its own chains only",
        ),
    }
    for name, (payload, expected) in cases.items():
        text = _error_text(_raw_session(server.port, payload))
        assert expected in text and "ERROR" in text, (name, text)
    # a client that disappears mid-stream: the server logs it and goes on
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(good + _frames(("item", acq)))
    sock.close()
    # queries are answered, and a normal scan still works afterwards
    got = _raw_session(server.port, _frames(("query", 7, "gadgetron::version")), shutdown=True)
    assert (
        isinstance(got[0], Response)
        and got[0].correlation_id == 7
        and "sodium-gadgets" in got[0].response
    )
    result, out = send_file(tiny, tmp_path / "after", port=server.port)
    assert result.closed and not result.errors and out.images == 3


def test_send_reports_server_errors(tiny, server, tmp_path, capsys):
    from gadgets.app.cli import main

    assert (
        main(
            [
                "send",
                str(tiny),
                "--port",
                str(server.port),
                "--config",
                "nope",
                "--out",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert "ERROR: unknown chain" in capsys.readouterr().err
    assert main(["send", str(tiny), "--port", str(server.port), "--out", str(tmp_path / "ok")]) == 0


def test_bytes_after_the_close_do_not_cost_the_client_its_answer(tiny, server, caplog):
    """The server reads and ignores what follows a CLOSE, so closing does not reset the
    connection under the client (it would lose the images still in flight and our CLOSE)."""
    header_xml, acqs = read_raw(tiny)
    stream = _frames(
        ("config_file", "sodium_preview"),
        ("header", header_xml),
        *(("item", a) for a in acqs),
        ("close",),
    )
    plain = _raw_session(server.port, stream)
    with caplog.at_level("WARNING", logger="gadgets.runtime.server"):
        got = _raw_session(server.port, stream + b"\x00" * 60_000)
        for _ in range(50):  # logged once the client has closed its side
            if "60000 bytes after the CLOSE were ignored" in caplog.text:
                break
            time.sleep(0.1)
    assert isinstance(got[-1], Close)
    images = [m for m in got if isinstance(m, ismrmrd.Image)]
    assert len(images) == sum(isinstance(m, ismrmrd.Image) for m in plain) > 0
    assert "60000 bytes after the CLOSE were ignored" in caplog.text
