"""What the administrator decides and no client can change (:mod:`gadgets.runtime.policy`): who
may connect, how many at once and for how long, the memory a scan may take (refused from its
header, before anything is allocated), client chains and the properties that name places on
the server; and the header checked once, with messages that name the field."""

import contextlib
import re
import socket
import struct
import threading
import time

import pytest
from conftest import chain_xml, external_step

from gadgets.app.application import application, send_file
from gadgets.runtime.client import read_raw
from gadgets.runtime.memory_budget import BudgetError, MemoryBudget
from gadgets.runtime.policy import GIB, ServerPolicy, parse_networks
from gadgets.runtime.protocol import Close, MessageReader, MessageWriter, Text
from gadgets.runtime.server import ReconServer


@contextlib.contextmanager
def serving(**policy):
    srv = ReconServer(application(), "127.0.0.1", 0, policy=ServerPolicy(**policy))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _session(port, *calls, source="127.0.0.1", read=True, timeout=30):
    """Send messages (MessageWriter method, args...); the server's answers until CLOSE/EOF."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    w = MessageWriter(sock.sendall)
    with contextlib.suppress(OSError):  # a server that refuses may stop reading
        for name, *args in calls:
            getattr(w, name)(*args)
    got = []
    if read:
        reader = MessageReader(sock.makefile("rb").read)
        with contextlib.suppress(EOFError, OSError):
            while not isinstance(msg := reader.read(), Close):
                got.append(msg)
            got.append(msg)
    sock.close()
    return got


def _texts(got):
    return " | ".join(m.text for m in got if isinstance(m, Text))


def test_only_allowed_addresses_are_served(tiny, caplog, tmp_path):
    assert ServerPolicy().allows("127.0.0.5") and ServerPolicy().allows("::1")
    assert not ServerPolicy().allows("192.168.1.20")
    with pytest.raises(ValueError, match="not an address"):
        parse_networks("scanner")
    with serving(allow_from=parse_networks("127.0.0.1")) as srv:
        refused = _session(srv.port, ("config_file", "sodium_preview"), source="127.0.0.2")
        assert refused == []  # closed at accept: not a byte for it
        assert "refused a connection from 127.0.0.2" in caplog.text
        result, _ = send_file(tiny, tmp_path, port=srv.port, config="sodium_preview")
        assert result.closed and not result.errors


def test_connections_and_sessions_are_bounded_and_silent_clients_dropped(
    tiny, header_xml, tmp_path
):
    policy = dict(max_sessions=1, max_connections=4, hello_timeout_s=4.0, idle_timeout_s=3.0)
    with serving(**policy) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(4)]
        time.sleep(0.2)
        busy = _session(srv.port, ("config_file", "sodium_preview"))
        assert "busy: 4 connections at once (serve --max-connections)" in _texts(busy)
        idle.pop().close()
        time.sleep(0.2)
        result, _ = send_file(tiny, tmp_path, port=srv.port, config="sodium_preview")
        assert result.closed and not result.errors  # silent connections hold no scan slot
        # the silent ones are closed by the server after the hello timeout, with a reason
        first = MessageReader(idle[0].makefile("rb").read).read()
        assert isinstance(first, Text) and "sent nothing for 4 s: closed" in first.text
        for s in idle:
            s.close()
        time.sleep(0.3)
        # a scan that has started holds the one slot: the next configuration is refused
        started = socket.create_connection(("127.0.0.1", srv.port))
        MessageWriter(started.sendall).config_file("sodium_preview")
        MessageWriter(started.sendall).header(header_xml)
        time.sleep(0.3)
        busy = _session(srv.port, ("config_file", "sodium_preview"))
        assert "busy: 1 scans at once (serve --max-sessions)" in _texts(busy)
        started.close()
        deadline = time.monotonic() + 10
        while srv.connections and time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.connections == 0 and srv.sessions == 0
        result, _ = send_file(tiny, tmp_path / "again", port=srv.port, config="sodium_preview")
        assert result.closed and not result.errors  # a normal scan after all that


def test_a_client_that_does_not_read_is_dropped(birdcage, caplog):
    raw = birdcage[0] / "tiny_birdcage.h5"
    xml, items = read_raw(raw)
    with serving(send_timeout_s=1.0) as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.port))
        w = MessageWriter(sock.sendall)
        w.query(1, "mrd::client_accepts=1018")
        w.config_file("sodium_tsc")
        w.header(xml)
        for acq in items:
            w.item(acq)
        w.close()  # and then never read the maps
        deadline = time.monotonic() + 60
        while "read nothing for 1 s: dropped" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text[-2000:]
            time.sleep(0.2)
        sock.close()
        while srv.connections and time.monotonic() < deadline:  # its thread ends just after
            time.sleep(0.1)
        assert srv.connections == 0 and srv.sessions == 0


def test_client_chains_and_locations_are_the_administrators(tiny, header_xml, tmp_path):
    scale = chain_xml(external_step("chain_gadgets", "Scale"))
    with serving() as srv:
        got = _session(srv.port, ("config_text", scale), ("header", header_xml))
        assert "runs its own chains only" in _texts(got)
        params = '{"parameters": {"folder": "/etc/cron.d"}}'
        frames = [("config_file", "sodium_preview"), ("header", header_xml), ("text", params)]
        frames.append(("close",))
        got = _session(srv.port, *frames)
        assert "DicomOutput.folder names a place on this server" in _texts(got)
    with serving(allow_client_chains=True) as srv:
        got = _session(srv.port, ("config_text", scale), ("header", header_xml))
        assert "module 'chain_gadgets' is not allowed on this server" in _texts(got)
        chain = (application().chains_dir / "sodium_preview.xml").read_text()
        to_folder = 'value="folder"/><property name="folder" value="/tmp/x"/>'
        chain = chain.replace('value="auto"/>', to_folder)
        got = _session(srv.port, ("config_text", chain), ("header", header_xml))
        assert "DicomOutput.folder names a place" in _texts(got)
    with serving(allow_client_chains=True, client_locations=True) as srv:
        chain = chain.replace("/tmp/x", str(tmp_path / "allowed"))
        frames = [("config_text", chain), ("header", header_xml)]
        frames += [("item", a) for a in read_raw(tiny)[1]] + [("close",)]
        got = _session(srv.port, *frames)
        assert not [t for t in _texts(got).split(" | ") if "ERROR" in t]
        assert list((tmp_path / "allowed").rglob("0001.dcm"))


def test_a_huge_header_is_refused_before_anything_is_allocated(header_xml):
    matrix = r"<matrixSize>\s*<x>\d+</x>\s*<y>\d+</y>\s*<z>\d+</z>"
    big = re.sub(matrix, "<matrixSize><x>400</x><y>400</y><z>400</z>", header_xml)
    assert big != header_xml
    with serving() as srv:
        t0 = time.perf_counter()
        got = _session(srv.port, ("config_file", "sodium_preview"), ("header", big), ("close",))
        seconds = time.perf_counter() - t0
    text = _texts(got)
    assert "needs" in text and "more than this server gives one scan" in text, text
    assert seconds < 5.0


def test_the_budget_queues_and_refuses_with_numbers():
    budget = MemoryBudget(total=10 * GIB // 10, per_scan=8 * GIB // 10)
    with pytest.raises(BudgetError, match="more than this server gives one scan"):
        with budget.reserve(9 * GIB // 10, "scan", 0.1):
            pass
    done = []
    with budget.reserve(6 * GIB // 10, "first", 0.1):
        with pytest.raises(BudgetError, match=r"busy: 1 scans hold 644 MB"):
            with budget.reserve(6 * GIB // 10, "second", 0.2):
                pass

        def later():
            with budget.reserve(6 * GIB // 10, "third", 5.0):
                done.append(budget.used)

        waiter = threading.Thread(target=later)
        waiter.start()
        time.sleep(0.2)
        assert done == []  # waits for the first to end
    waiter.join(5)
    assert done == [6 * GIB // 10] and budget.used == 0


def _header_without(xml, what):
    fov_x = r"(<reconSpace>.*?<fieldOfView_mm>\s*)<x>[^<]+</x>"
    channels = r"<receiverChannels>\d+</receiverChannels>"
    return {
        "limits": re.sub(r"<encodingLimits>.*?</encodingLimits>", "", xml, flags=re.S),
        "encoding": re.sub(r"<encoding>.*</encoding>", "", xml, flags=re.S),
        "channels": re.sub(channels, "<receiverChannels>0</receiverChannels>", xml),
        "fov": re.sub(fov_x, r"\1<x>0</x>", xml, flags=re.S),
        "nan fov": re.sub(fov_x, r"\1<x>nan</x>", xml, flags=re.S),
        "TE": re.sub(r"<TE>[^<]+</TE>", "", xml),
    }[what]


@pytest.mark.parametrize(
    "what,message",
    [
        ("limits", "<encoding> lacks <encodingLimits>, which the schema requires"),
        ("encoding", "no <encoding>"),
        ("channels", "acquisitionSystemInformation.receiverChannels is 0: it must be a positive"),
        ("fov", "encoding[0].reconSpace.fieldOfView_mm.x is 0.0: it must be a positive"),
        ("nan fov", "encoding[0].reconSpace.fieldOfView_mm.x is nan"),
        ("TE", "sequenceParameters.TE (ms, one per echo) is missing"),
    ],
)
def test_header_checks_name_the_field(what, message, header_xml):
    from gadgets.app.application import application
    from gadgets.runtime.chain import load_chain
    from gadgets.runtime.runner import ChainRunner

    spec = load_chain("sodium_tsc_b0", application().chains_dir)
    with pytest.raises(ValueError) as info:
        ChainRunner(spec, _header_without(header_xml, what))
    assert message in str(info.value)


def test_readouts_that_contradict_the_header_are_refused_unread(tiny, header_xml):
    _, items = read_raw(tiny)
    acq = next(a for a in items if a.trajectory_dimensions == 3)  # an imaging readout
    raw = bytearray()
    MessageWriter(raw.extend).item(acq)
    # 256 channels claimed where the header says 4: refused from the acquisition header alone
    head = bytearray(raw[2 : 2 + 340])
    struct.pack_into("<H", head, 38, 256)  # active_channels
    with serving() as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        w = MessageWriter(sock.sendall)
        w.config_file("sodium_preview")
        w.header(header_xml)
        sock.sendall(struct.pack("<H", 1008) + bytes(head))  # no payload: never read
        reader = MessageReader(sock.makefile("rb").read)
        msg = reader.read()
        sock.close()
    assert "has 256 channels, the header 4" in msg.text
    # an echo index beyond the header's limits
    acq.idx.contrast = 7
    from gadgets.gridding import StreamingGridder
    from gadgets.runtime.header import parse_header

    gridder = StreamingGridder(parse_header(header_xml))
    with pytest.raises(
        ValueError, match=r"echo 7; the header's encodingLimits.contrast allows 0..1"
    ):
        list(gridder.process(acq))


def test_config_names_end_at_their_first_nul(header_xml):
    with serving() as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        sock.sendall(struct.pack("<H", 1) + b"nope\0" + b"\x01" * 1019)
        MessageWriter(sock.sendall).header(header_xml)
        msg = MessageReader(sock.makefile("rb").read).read()
        sock.close()
    assert "unknown chain 'nope' (" in msg.text and "\x00" not in msg.text


def test_file_errors_do_not_tell_whether_a_file_exists(header_xml, tmp_path):
    from gadgets.b0_correction import B0Correction
    from gadgets.coil_combination import CoilCombiner
    from gadgets.runtime.context import StepContext
    from gadgets.runtime.header import parse_header

    header = parse_header(header_xml)
    ctx = StepContext(step="step", resource_dirs=(tmp_path,))

    def map_error(path):
        with pytest.raises(ValueError) as info:
            B0Correction(header, ctx, map_file=path)._map_from_file((4, 4, 4))
        return str(info.value).replace(path, "F")

    def coil_error(path):
        with pytest.raises(ValueError) as info:
            CoilCombiner(header, ctx, coil_models=path)
        return str(info.value).replace(path, "F")

    # a system file that exists, one that does not: one answer
    assert map_error("/etc/passwd") == map_error("/etc/no-such-file") != ""
    assert coil_error("/etc/passwd") == coil_error("/etc/no-such-file")
    assert "outside this server's folders" in coil_error("/etc/passwd")
    # in the chain's own folder the detail helps the administrator
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert "outside" not in map_error(str(tmp_path / "bad.npy"))


def test_a_coil_name_is_not_a_location_but_a_coil_path_is():
    from gadgets.runtime.chain import load_chain, location_properties

    spec = load_chain("sodium_tsc", application().chains_dir)
    assert location_properties(spec, {"coil_models": "birdcage_3T"}) == []
    assert location_properties(spec, {"coil_models": "../x/y.json"}) == ["CoilCombiner.coil_models"]
    auto = load_chain("sodium_auto", application().chains_dir)  # forwards its properties
    found = location_properties(auto, {"folder": "/srv", "min_r2": "0.9"}, packages=("gadgets",))
    assert found == ["ProtocolChain.folder"]
