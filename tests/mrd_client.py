"""A client that behaves like python-ismrmrd-server's ``client.py`` (the reference MRD client of
Siemens FIRE / OpenRecon sites), written from its protocol, not from this project's runtime:
it sends the config name (1), the header (3), the JSON parameters as TEXT (5) when given, every
acquisition (1008) and CLOSE (4); it reads back only what that client knows, 1, 2, 3, 4, 5, 1008,
1022 and 1026, and fails on any other message id ("Received unknown message type"), as the
reference client does. No QUERY is ever sent, so a server must not assume any capability.
"""

from __future__ import annotations

import ctypes
import json
import socket
import struct
import threading
from dataclasses import dataclass, field

import h5py
import ismrmrd
import numpy as np

KNOWN = {1, 2, 3, 4, 5, 1008, 1022, 1026}


class UnknownMessage(RuntimeError):
    pass


@dataclass
class MrdResult:
    images: list[ismrmrd.Image] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    closed: bool = False


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed inside a message ({len(data)} of {n} bytes)")
        data += chunk
    return data


def _send_text_message(sock: socket.socket, mid: int, text: str) -> None:
    raw = (text + "\0").encode()
    sock.sendall(struct.pack("<HI", mid, len(raw)) + raw)


def run(path, port: int, config: str, parameters: dict | None = None, timeout_s=600.0):
    """Send the ISMRMRD file ``path`` to ``localhost:port``; return what came back (read by a
    thread of its own while sending, as the reference client does in a second process)."""
    with h5py.File(path, "r") as f:
        xml = f["dataset/xml"][0]
        xml = xml.decode() if isinstance(xml, bytes) else str(xml)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    result = MrdResult()
    failure: list[BaseException] = []
    receiver = threading.Thread(target=_receive, args=(sock, result, failure), daemon=True)
    receiver.start()
    try:
        sock.sendall(struct.pack("<H", 1) + config.encode().ljust(1024, b"\0"))
        _send_text_message(sock, 3, xml)
        if parameters is not None:
            _send_text_message(sock, 5, json.dumps({"version": "1.1.0", "parameters": parameters}))
        for acq in _acquisitions(path):
            sock.sendall(struct.pack("<H", 1008))
            acq.serialize_into(sock.sendall)
        sock.sendall(struct.pack("<H", 4))
    except OSError:
        pass  # the server closed after an error: what it said is in the result
    receiver.join(timeout_s)
    sock.close()
    if failure:
        raise failure[0]
    return result


def _acquisitions(path):
    """The file's acquisitions, read from the HDF5 records a block at a time (the reference
    client reads them one by one with ismrmrd's Dataset, 20x slower, same bytes)."""
    with h5py.File(path, "r") as f:
        records = f["dataset/data"]
        for start in range(0, records.shape[0], 512):
            for rec in records[start : start + 512]:
                acq = ismrmrd.Acquisition(rec["head"].tobytes())
                acq.data[:] = rec["data"].view(np.complex64).reshape(acq.data.shape)
                if acq.trajectory_dimensions:
                    acq.traj[:] = rec["traj"].reshape(acq.traj.shape)
                yield acq


def _receive(sock: socket.socket, result: MrdResult, failure: list) -> None:
    try:
        while True:
            try:
                head = _read_exact(sock, 2)
            except EOFError:
                return
            (mid,) = struct.unpack("<H", head)
            result.ids.append(mid)
            if mid not in KNOWN:
                raise UnknownMessage(f"Received unknown message type: {mid}")
            if mid == 4:
                result.closed = True
                return
            if mid == 5:
                (n,) = struct.unpack("<I", _read_exact(sock, 4))
                result.texts.append(_read_exact(sock, n).split(b"\0", 1)[0].decode())
            elif mid == 1022:
                result.images.append(_read_image(sock))
            else:
                raise UnknownMessage(f"a server does not send message {mid} to a client")
    except BaseException as exc:  # noqa: BLE001 - reported by run()
        failure.append(exc)


def _read_image(sock: socket.socket) -> ismrmrd.Image:
    """As the reference client reads an image: header, attribute length, attributes, data."""
    header = _read_exact(sock, ctypes.sizeof(ismrmrd.ImageHeader))
    (nattr,) = struct.unpack("<Q", _read_exact(sock, 8))
    attributes = _read_exact(sock, nattr).split(b"\0", 1)[0].decode()
    image = ismrmrd.Image(header, attributes)
    nbytes = image.data.size * image.data.dtype.itemsize
    image.data.ravel()[:] = np.frombuffer(_read_exact(sock, nbytes), image.data.dtype)
    return image
