import io
import socket
import struct
import subprocess
import sys
import threading

import ismrmrd
import numpy as np
import pytest

from gadgets.runtime.chain import ChainError, instantiate, load_chain, parse_chain, resolve_chain
from gadgets.runtime.client import read_raw, recon_file, send_file
from gadgets.runtime.protocol import Close, MessageReader, MessageWriter, Response, Text
from gadgets.runtime.runner import ChainRunner, StepError
from gadgets.runtime.server import SodiumServer
from gadgets.simulator.scan import ScanDescription, simulate


def _external(module, target, props=()):
    p = "".join(f'<property name="{k}" value="{v}"/>' for k, v in props)
    return (
        f'<external><execute name="{module}" target="{target}" type="python"/>'
        f"<configuration>{p}</configuration></external>"
    )


def _chain(*steps):
    return (
        "<configuration><version>2</version><stream>" + "".join(steps) + "</stream></configuration>"
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    simulate(ScanDescription.load("tiny"), out)
    return out / "tiny.h5"


@pytest.fixture(scope="module")
def header_xml(tiny):
    return read_raw(tiny)[0]


@pytest.fixture
def server():
    srv = SodiumServer("127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_both_chain_forms_read_the_same(header_xml):
    v2 = parse_chain(_chain(_external("chain_gadgets", "Scale", [("factor", "2")])))
    legacy = parse_chain(
        _chain(
            "<gadget><name>Scale</name><dll>gadgetron_python</dll><classname>PythonGadget</classname>"
            "<property><name>python_module</name><value>chain_gadgets</value></property>"
            "<property><name>python_class</name><value>Scale</value></property>"
            "<property><name>factor</name><value>2</value></property></gadget>"
        )
    )
    assert v2.steps == legacy.steps
    step = instantiate(v2, ismrmrd.xsd.CreateFromDocument(header_xml))[0][1]
    assert step.factor == 2.0 and step.label == "x"


def test_property_errors_name_chain_step_and_property(header_xml):
    def load(xml, **overrides):
        return ChainRunner(parse_chain(xml, "mychain"), header_xml, overrides)

    with pytest.raises(ChainError, match=r"mychain: step 'Scale': unknown property 'gain'"):
        load(_chain(_external("chain_gadgets", "Scale", [("gain", "2")])))
    with pytest.raises(
        ChainError, match=r"mychain: step 'Scale': property 'factor': expected a number"
    ):
        load(_chain(_external("chain_gadgets", "Scale", [("factor", "big")])))
    with pytest.raises(
        ChainError, match=r"step 'Needs': required property 'tube_concentrations_mM'"
    ):
        load(_chain(_external("chain_gadgets", "Needs")))
    with pytest.raises(ChainError, match=r"step 'Counter': property 'strict': expected a boolean"):
        load(_chain(_external("chain_gadgets", "Counter", [("strict", "maybe")])))
    with pytest.raises(ChainError, match="C\\+\\+ gadget .*only a Gadgetron server"):
        load(
            _chain(
                "<gadget><name>Dicom</name><dll>gadgetron_dicom</dll>"
                "<classname>DicomFinishGadget</classname></gadget>"
            )
        )
    with pytest.raises(ChainError, match="cannot import module"):
        load(_chain(_external("no.such.module", "X")))
    with pytest.raises(ChainError, match="not valid XML"):
        parse_chain("<configuration><stream>", "broken")
    needs = load(_chain(_external("chain_gadgets", "Needs")), tube_concentrations_mM="30,60,90")
    assert needs.steps[0][1].tube_concentrations_mM == (30.0, 60.0, 90.0)


def test_overrides_apply_to_every_step_that_declares_them(header_xml):
    xml = _chain(
        _external("chain_gadgets", "Scale", [("factor", "2")]),
        _external("chain_gadgets", "Scale", [("factor", "3")]),
        _external("chain_gadgets", "Counter"),
    )
    runner = ChainRunner(parse_chain(xml), header_xml, {"factor": "5", "every": "2"})
    assert [s.factor for _, s in runner.steps[:2]] == [5.0, 5.0] and runner.steps[2][1].every == 2
    with pytest.raises(ChainError, match="no step has a property 'fwhm_mm'"):
        ChainRunner(parse_chain(xml), header_xml, {"fwhm_mm": "4"})


def test_runner_order_finish_and_errors(header_xml, tiny):
    xml = _chain(
        _external("chain_gadgets", "Scale", [("factor", "2")]),
        _external("chain_gadgets", "Counter"),
    )
    runner = ChainRunner(parse_chain(xml), header_xml)
    _, items = read_raw(tiny)
    n = sum(len(runner.push(item)) for item in items)
    assert n == 0 and runner.finish() == ["counted 616"]
    bad = ChainRunner(parse_chain(_chain(_external("chain_gadgets", "Explodes"))), header_xml)
    with pytest.raises(StepError) as info:
        bad.push(ismrmrd.Acquisition())
    assert info.value.client_text() == "[Explodes] ERROR: RuntimeError: kaboom"


def test_chain_names_resolve(tmp_path):
    assert resolve_chain("sodium_preview") == resolve_chain("sodium_preview.xml")
    with pytest.raises(ChainError, match="unknown chain 'nope'.*sodium_preview"):
        load_chain("nope")


def _images(path):
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        series = [name for name in sorted(ds.list()) if name.startswith("image_")]
        return [
            ds.read_image(s, i).data.copy() for s in series for i in range(ds.number_of_images(s))
        ]
    finally:
        ds.close()


def test_recon_and_serve_give_the_same_images(tiny, server, tmp_path):
    local = recon_file(tiny, tmp_path / "recon")  # chain chosen by the protocol map
    assert local.images == 3  # uncalibrated (calibration refused), B0 map, QA picture
    result, out = send_file(tiny, tmp_path / "sent", port=server.port, config="default")
    assert result.closed and not result.errors and out.images == 3
    a, b = _images(tmp_path / "recon" / "images.h5"), _images(tmp_path / "sent" / "images.h5")
    assert len(a) == 3 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # both write the QA picture's Secondary Capture file as a PNG too
    assert [p.name for p in local.pngs] == [p.name for p in out.pngs] == ["series050_0001.png"]
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
        ),  # fmt: skip
        "unknown chain": (
            _frames(("config_file", "nope"), ("header", header_xml)),
            "unknown chain 'nope'",
        ),
        "config twice": (good + _frames(("config_file", "x")), "unexpected ConfigFile"),
        "chain by path": (
            _frames(("config_file", "/etc/passwd"), ("header", header_xml)),
            "not by a path",
        ),  # fmt: skip
        "foreign module": (
            _frames(
                ("config_text", _chain(_external("chain_gadgets", "Scale"))), ("header", header_xml)
            ),
            "not allowed on this server",
        ),  # fmt: skip
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
    from gadgets.cli import main

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
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
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
    local = _images(recon_file(tiny, tmp_path / "r", "sodium_preview").path / "images.h5")
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


def test_fast_reader_equals_ismrmrd(tiny):
    xml, items = read_raw(tiny)
    ds = ismrmrd.Dataset(str(tiny), "dataset", create_if_needed=False)
    try:
        theirs_xml = ds.read_xml_header()
        theirs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    finally:
        ds.close()
    assert xml == (theirs_xml.decode() if isinstance(theirs_xml, bytes) else theirs_xml)
    ours = list(items)
    assert len(ours) == len(theirs) == 616
    for a, b in zip(ours, theirs, strict=True):
        assert a.getHead() == b.getHead()
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.traj, b.traj)
    with pytest.raises(FileNotFoundError):
        read_raw(tiny.parent / "missing.h5")
