"""The Gadgetron / MRD wire protocol: framing of every message the server and the external steps
exchange, byte for byte as Gadgetron 4 does it, with every length checked before memory is
allocated for it.

Every message starts with a little-endian ``uint16`` id:

==========  ==========  ==========================================================================
id          name        payload
==========  ==========  ==========================================================================
1           FILENAME    1024 bytes: the chain (config file) name, NUL-padded
2           CONFIG      uint32 length + chain XML
3           HEADER      uint32 length + ISMRMRD XML header
4           CLOSE       nothing
5           TEXT        uint32 length + text (errors to the client: ``"[step] ERROR: message"``)
6           QUERY       uint64 reserved (0) + uint64 correlation id + uint64 length + query
7           RESPONSE    uint64 correlation id + uint64 length + response
8           ERROR       uint64 length + text (an external step's failure, to Gadgetron)
1008        ACQUISITION ISMRMRD acquisition header + trajectory + data
1018        DICOM       uint32 length + Part-10 file, uint64 length + file name,
                        uint64 length + meta (outbound only)
1022        IMAGE       ISMRMRD image header + uint64 length + attributes + data
1026        WAVEFORM    ISMRMRD waveform header + data
==========  ==========  ==========================================================================

Trailing NULs are stripped from strings. Items are (de)serialised with ismrmrd's own
``serialize_into`` / ``deserialize_from`` (the Gadgetron image ships ismrmrd-python 1.14.0,
without ``ProtocolSerializer``); this module only frames them, and checks the sizes in their
headers against :class:`Limits` first (ismrmrd would otherwise allocate whatever a header says).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import ismrmrd
import numpy as np

__all__ = [
    "FILENAME_BYTES",
    "Close",
    "ConfigFile",
    "ConfigText",
    "DicomFile",
    "Error",
    "Header",
    "Limits",
    "MessageId",
    "MessageReader",
    "MessageWriter",
    "ProtocolError",
    "Query",
    "Response",
    "Text",
]


class MessageId(IntEnum):
    FILENAME = 1
    CONFIG = 2
    HEADER = 3
    CLOSE = 4
    TEXT = 5
    QUERY = 6
    RESPONSE = 7
    ERROR = 8
    ACQUISITION = 1008
    DICOM = 1018
    IMAGE = 1022
    WAVEFORM = 1026


FILENAME_BYTES = 1024


class ProtocolError(ValueError):
    """A malformed, truncated or oversized message."""


@dataclass(frozen=True)
class Limits:
    """Largest message parts accepted (bytes), and what an acquisition may hold: at most
    ``samples`` samples, and exactly ``channels`` channels once the header has said how many
    (None: any). Each is checked from the message's own header, before its payload is read."""

    text: int = 16 << 20  # config, header, text, query, error strings
    item: int = 1 << 30  # one acquisition, image or waveform payload
    dicom: int = 256 << 20
    samples: int = 1 << 16
    channels: int | None = None


# message payloads other than ISMRMRD items
@dataclass(frozen=True)
class ConfigFile:
    name: str


@dataclass(frozen=True)
class ConfigText:
    xml: str


@dataclass(frozen=True)
class Header:
    xml: str


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Query:
    correlation_id: int
    query: str


@dataclass(frozen=True)
class Response:
    correlation_id: int
    response: str


@dataclass(frozen=True)
class Error:
    text: str


@dataclass(frozen=True)
class DicomFile:
    data: bytes
    filename: str
    meta: str = ""


Message = (
    ConfigFile
    | ConfigText
    | Header
    | Close
    | Text
    | Query
    | Response
    | Error
    | DicomFile
    | ismrmrd.Acquisition
    | ismrmrd.Image
    | ismrmrd.Waveform
)

_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_ACQ_HEADER = ctypes.sizeof(ismrmrd.AcquisitionHeader)
_IMG_HEADER = ctypes.sizeof(ismrmrd.ImageHeader)
_WAV_HEADER = ctypes.sizeof(ismrmrd.WaveformHeader)
_IMAGE_ITEMSIZE = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4, 6: 8, 7: 8, 8: 16}  # ismrmrd data_type -> bytes


def _decode(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", errors="replace")


class MessageReader:
    """Reads messages from ``read(n)`` (a file's or a socket file's ``read``: returns fewer bytes
    only at the end of the stream). Raises :class:`ProtocolError` on anything malformed, and
    ``EOFError`` when the stream ends cleanly between messages."""

    def __init__(self, read: Callable[[int], bytes], limits: Limits | None = None) -> None:
        self._read = read
        self.limits = limits or Limits()

    def _exact(self, n: int, what: str) -> bytes:
        data = self._read(n) if n else b""
        if len(data) != n:
            raise ProtocolError(f"stream ended inside {what}: {len(data)} of {n} bytes")
        return data

    def _length(self, fmt: struct.Struct, limit: int, what: str) -> int:
        (n,) = fmt.unpack(self._exact(fmt.size, f"the length of {what}"))
        if n > limit:
            raise ProtocolError(f"{what} of {n} bytes exceeds the limit of {limit} bytes")
        return n

    def _string(self, fmt: struct.Struct, what: str) -> str:
        return _decode(self._exact(self._length(fmt, self.limits.text, what), what))

    def read_id(self) -> int:
        first = self._read(2)
        if not first:
            raise EOFError("stream closed")
        if len(first) != 2:
            raise ProtocolError("stream ended inside a message id")
        return _U16.unpack(first)[0]

    def read(self) -> Message:
        """The next message."""
        mid = self.read_id()
        if mid == MessageId.FILENAME:  # a C string in a fixed field: up to its first NUL
            raw = self._exact(FILENAME_BYTES, "a config file name").split(b"\0", 1)[0]
            return ConfigFile(_decode(raw))
        if mid == MessageId.CONFIG:
            return ConfigText(self._string(_U32, "a chain configuration"))
        if mid == MessageId.HEADER:
            return Header(self._string(_U32, "an ISMRMRD header"))
        if mid == MessageId.CLOSE:
            return Close()
        if mid == MessageId.TEXT:
            return Text(self._string(_U32, "a text message"))
        if mid == MessageId.QUERY:
            reserved, corr = struct.unpack("<QQ", self._exact(16, "a query"))
            if reserved:
                raise ProtocolError("query with non-zero reserved field")
            return Query(corr, self._string(_U64, "a query"))
        if mid == MessageId.RESPONSE:
            (corr,) = _U64.unpack(self._exact(8, "a response"))
            return Response(corr, self._string(_U64, "a response"))
        if mid == MessageId.ERROR:
            return Error(self._string(_U64, "an error message"))
        if mid == MessageId.ACQUISITION:
            return self._acquisition()
        if mid == MessageId.IMAGE:
            return self._image()
        if mid == MessageId.WAVEFORM:
            return self._waveform()
        if mid == MessageId.DICOM:
            size = self._length(_U32, self.limits.dicom, "a DICOM file")
            data = self._exact(size, "a DICOM file")
            name = self._string(_U64, "a DICOM file name")
            return DicomFile(data, name, self._string(_U64, "DICOM meta"))
        raise ProtocolError(f"unknown message id {mid}")

    def _item(self, prefix: bytes, size: int, what: str, deserialize):
        """Read an item's payload of ``size`` bytes (checked first) and let ismrmrd parse
        ``prefix + payload``."""
        if size > self.limits.item:
            raise ProtocolError(f"{what} of {size} bytes exceeds the limit of {self.limits.item}")
        body = self._exact(size, what)
        try:
            return deserialize(_Chunks([prefix, body]).read)
        except Exception as exc:  # ismrmrd parses attributes as UTF-8 XML: bad bytes raise anything
            raise ProtocolError(f"malformed {what}: {exc}") from exc

    def _acquisition(self) -> ismrmrd.Acquisition:
        raw = self._exact(_ACQ_HEADER, "an acquisition header")
        h = ismrmrd.AcquisitionHeader.from_buffer_copy(raw)
        channels = self.limits.channels
        if channels is not None and h.active_channels != channels:
            raise ProtocolError(
                f"acquisition {h.scan_counter} has {h.active_channels} channels, the header "
                f"{channels} (acquisitionSystemInformation.receiverChannels)"
            )
        if h.number_of_samples > self.limits.samples:
            raise ProtocolError(
                f"acquisition {h.scan_counter} has {h.number_of_samples} samples, more than "
                f"{self.limits.samples}"
            )
        size = h.number_of_samples * (h.trajectory_dimensions * 4 + h.active_channels * 8)
        return self._item(raw, size, "an acquisition", ismrmrd.Acquisition.deserialize_from)

    def _image(self) -> ismrmrd.Image:
        raw = self._exact(_IMG_HEADER, "an image header")
        h = ismrmrd.ImageHeader.from_buffer_copy(raw)
        if h.data_type not in _IMAGE_ITEMSIZE:
            raise ProtocolError(f"image with unknown data type {h.data_type}")
        nattr = self._length(_U64, self.limits.text, "image attributes")
        prefix = raw + _U64.pack(nattr) + self._exact(nattr, "image attributes")
        nvox = int(np.prod([int(m) for m in h.matrix_size], dtype=np.int64)) * int(h.channels)
        size = nvox * _IMAGE_ITEMSIZE[h.data_type]
        return self._item(prefix, size, "an image", ismrmrd.Image.deserialize_from)

    def _waveform(self) -> ismrmrd.Waveform:
        raw = self._exact(_WAV_HEADER, "a waveform header")
        h = ismrmrd.WaveformHeader.from_buffer_copy(raw)
        size = int(h.channels) * int(h.number_of_samples) * 4
        return self._item(raw, size, "a waveform", ismrmrd.Waveform.deserialize_from)


class _Chunks:
    """``read(n)`` over byte strings already read (and size-checked)."""

    def __init__(self, parts: list[bytes]) -> None:
        self._data = memoryview(b"".join(parts))
        self._pos = 0

    def read(self, n: int) -> bytes:
        out = self._data[self._pos : self._pos + n].tobytes()
        self._pos += len(out)
        return out


class MessageWriter:
    """Writes messages through ``write(bytes)`` (a file's write or a socket's ``sendall``), one
    call per message: a socket sends it in as few segments as it can, and a message is never
    interleaved with another writer's."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write

    def _send(self, mid: MessageId, *parts: bytes) -> None:
        self._write(b"".join((_U16.pack(mid), *parts)))

    @staticmethod
    def _string(fmt: struct.Struct, text: str) -> bytes:
        raw = text.encode("utf-8")
        return fmt.pack(len(raw)) + raw

    def config_file(self, name: str) -> None:
        raw = name.encode("utf-8")
        if len(raw) >= FILENAME_BYTES:
            raise ValueError(f"config file name longer than {FILENAME_BYTES - 1} bytes")
        self._send(MessageId.FILENAME, raw, b"\0" * (FILENAME_BYTES - len(raw)))

    def config_text(self, xml: str) -> None:
        self._send(MessageId.CONFIG, self._string(_U32, xml))

    def header(self, xml: str) -> None:
        self._send(MessageId.HEADER, self._string(_U32, xml))

    def close(self) -> None:
        self._send(MessageId.CLOSE)

    def text(self, text: str) -> None:
        self._send(MessageId.TEXT, self._string(_U32, text))

    def query(self, correlation_id: int, query: str) -> None:
        self._send(
            MessageId.QUERY, struct.pack("<QQ", 0, correlation_id), self._string(_U64, query)
        )

    def response(self, correlation_id: int, response: str) -> None:
        self._send(MessageId.RESPONSE, _U64.pack(correlation_id), self._string(_U64, response))

    def error(self, text: str) -> None:
        self._send(MessageId.ERROR, self._string(_U64, text))

    def dicom(self, data: bytes, filename: str, meta: str = "") -> None:
        self._send(
            MessageId.DICOM,
            _U32.pack(len(data)),
            data,
            self._string(_U64, filename),
            self._string(_U64, meta),
        )

    def item(self, item: ismrmrd.Acquisition | ismrmrd.Image | ismrmrd.Waveform) -> None:
        if isinstance(item, ismrmrd.Acquisition):
            mid = MessageId.ACQUISITION
        elif isinstance(item, ismrmrd.Image):
            mid = MessageId.IMAGE
        elif isinstance(item, ismrmrd.Waveform):
            mid = MessageId.WAVEFORM
        else:
            raise TypeError(f"cannot send {type(item).__name__} on the wire")
        chunks: list[bytes] = []
        item.serialize_into(chunks.append)
        self._send(mid, *chunks)

    def message(self, msg: Message) -> None:
        """Write any message object that :class:`MessageReader` returns."""
        if isinstance(msg, ConfigFile):
            self.config_file(msg.name)
        elif isinstance(msg, ConfigText):
            self.config_text(msg.xml)
        elif isinstance(msg, Header):
            self.header(msg.xml)
        elif isinstance(msg, Close):
            self.close()
        elif isinstance(msg, Text):
            self.text(msg.text)
        elif isinstance(msg, Query):
            self.query(msg.correlation_id, msg.query)
        elif isinstance(msg, Response):
            self.response(msg.correlation_id, msg.response)
        elif isinstance(msg, Error):
            self.error(msg.text)
        elif isinstance(msg, DicomFile):
            self.dicom(msg.data, msg.filename, msg.meta)
        else:
            self.item(msg)
