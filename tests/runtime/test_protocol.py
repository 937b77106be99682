import io
import struct

import ismrmrd
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ismrmrd.serialization import ConfigFile as MrdConfigFile
from ismrmrd.serialization import ConfigText as MrdConfigText
from ismrmrd.serialization import ProtocolDeserializer, ProtocolSerializer

from gadgets.runtime import protocol as P

HEADER_XML = (
    '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
    "<experimentalConditions><H1resonanceFrequency_Hz>78834000</H1resonanceFrequency_Hz>"
    "</experimentalConditions><encoding><encodedSpace><matrixSize><x>8</x><y>8</y><z>8</z>"
    "</matrixSize><fieldOfView_mm><x>200</x><y>200</y><z>200</z></fieldOfView_mm></encodedSpace>"
    "<reconSpace><matrixSize><x>8</x><y>8</y><z>8</z></matrixSize><fieldOfView_mm><x>200</x>"
    "<y>200</y><z>200</z></fieldOfView_mm></reconSpace><encodingLimits/>"
    "<trajectory>radial</trajectory></encoding></ismrmrdHeader>"
)


def _acquisition(rng, channels=3, samples=16):
    data = rng.standard_normal((channels, samples)) + 1j * rng.standard_normal((channels, samples))
    acq = ismrmrd.Acquisition.from_array(
        data.astype(np.complex64), rng.uniform(-0.5, 0.5, (samples, 3)).astype(np.float32)
    )
    acq.idx.kspace_encode_step_1 = 7
    acq.sample_time_us = 12.5
    acq.set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    return acq


def _image(rng):
    img = ismrmrd.Image.from_array(rng.standard_normal((2, 3, 4, 5)).astype(np.complex64))
    img.attribute_string = (
        '<?xml version="1.0"?><ismrmrdMeta><meta><name>Units</name><value>mM</value></meta>'
        "</ismrmrdMeta>"
    )
    img.image_series_index = 3
    return img


def _waveform(rng):
    wf = ismrmrd.Waveform.from_array(rng.integers(0, 2**31, (2, 10)).astype(np.uint32))
    wf.waveform_id = 5
    return wf


def _ours(messages) -> bytes:
    buf = io.BytesIO()
    w = P.MessageWriter(buf.write)
    for m in messages:
        w.message(m)
    return buf.getvalue()


def _read_all(raw: bytes, limits: P.Limits | None = None):
    r = P.MessageReader(io.BytesIO(raw).read, limits or P.Limits())
    out = []
    while True:
        try:
            out.append(r.read())
        except EOFError:
            return out


def _same(a, b):
    if isinstance(a, ismrmrd.Acquisition):
        return (
            a.getHead() == b.getHead()
            and np.array_equal(a.data, b.data)
            and np.array_equal(a.traj, b.traj)
        )
    if isinstance(a, ismrmrd.Image):
        return (
            bytes(a.getHead()) == bytes(b.getHead())
            and np.array_equal(a.data, b.data)
            and a.attribute_string == b.attribute_string
        )
    if isinstance(a, ismrmrd.Waveform):
        return bytes(a.getHead()) == bytes(b.getHead()) and np.array_equal(a.data, b.data)
    return a == b


def test_bytes_identical_to_ismrmrd_serializer(rng):
    acq, img, wf = _acquisition(rng), _image(rng), _waveform(rng)
    theirs = io.BytesIO()
    s = ProtocolSerializer(theirs)
    s.serialize(MrdConfigFile("sodium_tsc.xml"))
    s.serialize(MrdConfigText("<configuration/>"))
    s.serialize(ismrmrd.xsd.CreateFromDocument(HEADER_XML))
    s.serialize("hello")
    for item in (acq, img, wf):
        s.serialize(item)
    s.close()
    header_xml = ismrmrd.xsd.ToXML(ismrmrd.xsd.CreateFromDocument(HEADER_XML))
    ours = _ours(
        [
            P.ConfigFile("sodium_tsc.xml"),
            P.ConfigText("<configuration/>"),
            P.Header(header_xml),
            P.Text("hello"),
            acq,
            img,
            wf,
            P.Close(),
        ]
    )
    assert ours == theirs.getvalue()


def test_we_read_what_ismrmrd_writes(rng):
    items = [_acquisition(rng), _image(rng), _waveform(rng), _acquisition(rng, 1, 1)]
    theirs = io.BytesIO()
    s = ProtocolSerializer(theirs)
    s.serialize(MrdConfigFile("a.xml"))
    s.serialize(MrdConfigText("<c/>"))
    s.serialize("text")
    for item in items:
        s.serialize(item)
    s.close()
    got = _read_all(theirs.getvalue())
    assert got[:3] == [P.ConfigFile("a.xml"), P.ConfigText("<c/>"), P.Text("text")]
    assert all(_same(a, b) for a, b in zip(items, got[3:7], strict=True))
    assert got[-1] == P.Close()


def test_ismrmrd_reads_what_we_write(rng):
    items = [_acquisition(rng), _image(rng), _waveform(rng)]
    raw = _ours([P.Text("t"), *items, P.Close()])
    got = list(ProtocolDeserializer(io.BytesIO(raw)).deserialize())
    assert got[0] == "t" and len(got) == 4
    assert all(_same(a, b) for a, b in zip(items, got[1:], strict=True))


def test_gadgetron_only_messages_have_gadgetron_layout():
    # from Gadgetron's QueryHandler / ResponseWriter / external Serialization
    raw = _ours([P.Query(42, "gadgetron::version"), P.Response(42, "4.x"), P.Error("boom")])
    q = struct.pack("<HQQQ", 6, 0, 42, 18) + b"gadgetron::version"
    r = struct.pack("<HQQ", 7, 42, 3) + b"4.x"
    e = struct.pack("<HQ", 8, 4) + b"boom"
    assert raw == q + r + e
    assert _read_all(raw) == [
        P.Query(42, "gadgetron::version"),
        P.Response(42, "4.x"),
        P.Error("boom"),
    ]
    dicom = P.DicomFile(b"DICM" * 10, "tsc_001.dcm", "<meta/>")
    raw = _ours([dicom])
    assert raw[:6] == struct.pack("<HI", 1018, 40) and _read_all(raw) == [dicom]


def test_trailing_nuls_are_stripped():
    raw = struct.pack("<HI", 5, 6) + b"abc\0\0\0"
    assert _read_all(raw) == [P.Text("abc")]
    assert _read_all(_ours([P.ConfigFile("x.xml")])) == [P.ConfigFile("x.xml")]


@pytest.mark.parametrize(
    "raw, match",
    [
        (struct.pack("<H", 999), "unknown message id 999"),
        (struct.pack("<HI", 5, 10) + b"abc", "stream ended inside a text message"),
        (struct.pack("<HI", 5, 0xFFFFFFFF), "exceeds the limit"),  # a 4 GB length field
        (struct.pack("<HQQQ", 6, 1, 2, 0), "reserved"),
        (b"\x05", "inside a message id"),
        (struct.pack("<H", 1008) + b"\0" * 20, "stream ended inside an acquisition header"),
    ],
)
def test_bad_input_raises_protocol_errors(raw, match):
    with pytest.raises(P.ProtocolError, match=match):
        _read_all(raw)


def test_absurd_item_sizes_are_refused_before_allocation(rng):
    acq = _acquisition(rng)
    raw = bytearray(_ours([acq]))
    head = ismrmrd.AcquisitionHeader.from_buffer_copy(bytes(raw[2 : 2 + P._ACQ_HEADER]))
    head.number_of_samples, head.active_channels = 65535, 65535  # claims 34 GB
    raw[2 : 2 + P._ACQ_HEADER] = bytes(head)
    with pytest.raises(P.ProtocolError, match="exceeds the limit"):
        _read_all(bytes(raw))
    truncated = _ours([acq])[:-5]
    with pytest.raises(P.ProtocolError, match="stream ended inside an acquisition"):
        _read_all(truncated)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=600))
def test_fuzzed_bytes_never_escape_as_other_errors(raw):
    # whatever arrives, the reader either parses it or says ProtocolError / EOFError, with
    # limits small enough that no fuzz case can make it allocate much
    try:
        _read_all(raw, P.Limits(text=4096, item=1 << 20, dicom=4096))
    except P.ProtocolError:
        pass


@settings(max_examples=1500, deadline=None)
@given(st.integers(0, 2000), st.binary(min_size=1, max_size=8))
def test_fuzzed_corruptions_of_valid_streams(position, garbage):
    rng = np.random.default_rng(0)
    raw = bytearray(_ours([P.Header(HEADER_XML), _acquisition(rng), _image(rng), P.Close()]))
    position %= len(raw)
    raw[position : position + len(garbage)] = garbage
    try:
        _read_all(bytes(raw), P.Limits(text=1 << 16, item=1 << 20, dicom=1 << 16))
    except P.ProtocolError:
        pass
