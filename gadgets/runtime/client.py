"""Sending a raw file to a server (``sodium-gadgets send``), and running a chain on a file
in-process (``sodium-gadgets recon``). Both write what comes back into an output folder
(:class:`gadgets.runtime.outputs.OutputFolder`: ``images.h5``, the DICOM files, and a PNG of each
Secondary Capture file -- the calibration QA picture -- beside it)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import ismrmrd
import numpy as np

from gadgets.runtime.application import Application
from gadgets.runtime.chain import load_chain
from gadgets.runtime.context import StepContext
from gadgets.runtime.outputs import BackgroundWriter, OutputFolder
from gadgets.runtime.parameters import ACCEPTS_QUERY
from gadgets.runtime.protocol import (
    Close,
    DicomFile,
    Error,
    MessageId,
    MessageReader,
    MessageWriter,
    ProtocolError,
    Text,
)
from gadgets.runtime.protocol_map import chain_for_protocol
from gadgets.runtime.runner import ChainRunner

__all__ = ["SendResult", "file_runner", "read_raw", "recon_file", "run_file", "send_file"]

log = logging.getLogger(__name__)


_H5_LOCK = threading.Lock()  # HDF5 handles of one file are shared within a process
_BLOCK = 256


def read_raw(path: str | Path) -> tuple[str, Iterator]:
    """The XML header and an iterator over the acquisitions of an ISMRMRD file.

    Readouts are read a block at a time straight from the HDF5 records (ismrmrd's
    ``read_acquisition`` makes three HDF5 reads per readout: 4 ms each, 20x the cost of
    gridding it), and the file is open only while a block is read, under a process-wide lock:
    threads reading one file must not share HDF5 handles, which close together.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    with _H5_LOCK, h5py.File(path, "r") as f:
        if "dataset/xml" not in f:
            raise ValueError(f"{path} is not an ISMRMRD file (no dataset/xml)")
        raw_xml = f["dataset/xml"][0]
        total = f["dataset/data"].shape[0] if "dataset/data" in f else 0
    xml = raw_xml.decode("utf-8") if isinstance(raw_xml, bytes) else str(raw_xml)

    def items():
        for start in range(0, total, _BLOCK):
            with _H5_LOCK, h5py.File(path, "r") as f:
                records = f["dataset/data"][start : min(total, start + _BLOCK)]
            for rec in records:
                acq = ismrmrd.Acquisition(rec["head"].tobytes())
                acq.data[:] = rec["data"].view(np.complex64).reshape(acq.data.shape)
                if acq.trajectory_dimensions:
                    acq.traj[:] = rec["traj"].reshape(acq.traj.shape)
                yield acq

    return xml.rstrip("\0"), items()


def recon_file(
    path: str | Path,
    out_dir: str | Path,
    app: Application,
    chain: str | None = None,
    overrides: dict | None = None,
) -> OutputFolder:
    """Run a chain (by name or path; the protocol map's choice when None) on a file in-process,
    with the chains of ``app``; what comes back lands in ``out_dir``."""
    out = OutputFolder(out_dir, app.dicom_hooks)
    try:
        for result in run_file(path, app, chain, overrides):
            out.add(result)
    finally:
        out.close()
    return out


def file_runner(
    path: str | Path,
    app: Application,
    chain: str | None = None,
    overrides: dict | None = None,
) -> tuple[ChainRunner, Iterator]:
    """The in-process runner of a chain (by name or path; the protocol map's choice, with its
    settings, when None; ``overrides`` on top) for a file, and the file's acquisitions."""
    xml, items = read_raw(path)
    overrides = dict(overrides or {})
    if chain is None:
        entry = chain_for_protocol(xml, app.chains_dir)
        chain, overrides = entry.chain, {**entry.overrides, **overrides}
    runner = ChainRunner(load_chain(chain, app.chains_dir), xml, overrides, context=StepContext())
    return runner, items


def run_file(
    path: str | Path,
    app: Application,
    chain: str | None = None,
    overrides: dict | None = None,
) -> Iterator:
    """What a chain (by name or path; the protocol map's choice when None, its settings under
    ``overrides``) returns for a file, in-process, as it comes."""
    runner, items = file_runner(path, app, chain, overrides)
    for item in items:
        yield from runner.push(item)
    yield from runner.finish_iter()


class SendResult:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.texts: list[str] = []
        self.closed = False
        self.seconds_after_last_send: float | None = None


def _connect(host: str, port: int, timeout_s: float, retry_s: float = 10.0) -> socket.socket:
    """Connect, retrying for ``retry_s`` while the connection is refused (a server that is
    still starting, e.g. ``serve ... &`` just before ``send``)."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            return socket.create_connection((host, port), timeout=timeout_s)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def send_file(
    path: str | Path,
    out_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 9002,
    config: str | None = None,
    config_file: str | Path | None = None,
    timeout_s: float = 600.0,
    dicom_hooks: tuple = (),
    parameters: dict[str, str] | None = None,
    accept_dicom: bool = True,
) -> tuple[SendResult, OutputFolder]:
    """Stream a file's acquisitions to a server, like ``gadgetron_ismrmrd_client``, and collect
    what comes back (images, DICOM files, text) while sending; ``dicom_hooks`` run on each
    DICOM file written (:class:`~gadgets.runtime.outputs.OutputFolder`). ``parameters`` are sent
    as the FIRE / OpenRecon JSON text after the header (chain properties, :mod:`.parameters`);
    ``accept_dicom`` announces that DICOM files (message 1018) are welcome."""
    xml, items = read_raw(path)
    sock = _connect(host, port, timeout_s)
    out = OutputFolder(out_dir, dicom_hooks)
    files = BackgroundWriter(out)  # the socket is read on while files are written
    result = SendResult()
    writer = MessageWriter(sock.sendall)
    rfile = sock.makefile("rb")
    reader = MessageReader(rfile.read)
    last_sent = [0.0]

    def receive() -> None:
        try:
            while True:
                msg = reader.read()
                if isinstance(msg, Close):
                    result.closed = True
                    break
                if isinstance(msg, Text | Error):
                    text = msg.text
                    (result.errors if "ERROR" in text else result.texts).append(text)
                    log.log(logging.ERROR if "ERROR" in text else logging.INFO, "server: %s", text)
                elif isinstance(
                    msg, DicomFile | ismrmrd.Image | ismrmrd.Acquisition | ismrmrd.Waveform
                ):
                    files.add(msg)
                result.seconds_after_last_send = time.perf_counter() - last_sent[0]
        except (EOFError, ProtocolError, OSError) as exc:
            if not result.closed:
                result.errors.append(f"[client] ERROR: connection ended without CLOSE: {exc}")

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    try:
        if accept_dicom:
            writer.query(1, f"{ACCEPTS_QUERY}={MessageId.DICOM.value}")
        if config_file is not None:
            writer.config_text(Path(config_file).read_text())
        else:
            writer.config_file(config or "default")
        writer.header(xml)
        if parameters:
            writer.text(json.dumps({"version": "1.0", "parameters": parameters}))
        for item in items:
            writer.item(item)
        last_sent[0] = time.perf_counter()
        writer.close()
    except OSError as exc:  # the server may have closed after an error: keep what it said
        log.warning("sending stopped: %s", exc)
    receiver.join(timeout_s)
    try:
        rfile.close()
        sock.close()
    finally:
        files.close()
    return result, out
