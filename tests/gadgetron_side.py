"""Gadgetron's side of a chain of ``<external>`` Python steps, played exactly as Gadgetron 4.7
plays it (apps/gadgetron/connection/nodes/External.cpp and common/Serialization.cpp): for each
step, listen on a free port, start ``python -m gadgetron PORT MODULE TARGET``, accept its
connection, send CONFIG (the step's ``<configuration>`` element), HEADER and the items, then
CLOSE; read back until the step's CLOSE. What a step may send Gadgetron is what Gadgetron's
``Serialization::read`` accepts: ISMRMRD items (1008, 1022, 1026), ERROR (8) and CLOSE (4);
anything else (TEXT, DICOM, ...) is "an illegal message id from external peer" and aborts the
stream, so it fails here too. The items of one step are the next step's input, as in a stream.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import ismrmrd

from gadgets.runtime.protocol import Close, Error, MessageReader, MessageWriter

ALLOWED_FROM_EXTERNAL = (ismrmrd.Acquisition, ismrmrd.Image, ismrmrd.Waveform, Error, Close)


@dataclass
class StepRun:
    target: str
    items: list = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    closed: bool = False


def external_steps(chain_text: str) -> list[tuple[str, str, str]]:
    """``(module, target, configuration element text)`` of each ``<external>`` step."""
    root = ET.fromstring(chain_text)
    steps = []
    for node in root.find("stream"):
        assert node.tag == "external", f"not an external step: <{node.tag}>"
        execute = node.find("execute")
        config = node.find("configuration")
        text = ET.tostring(config, encoding="unicode") if config is not None else "<configuration/>"
        steps.append((execute.get("name"), execute.get("target"), text))
    return steps


def run_step(module, target, config, header_xml, items, timeout_s=300.0, env=None) -> StepRun:
    """One external step, Gadgetron's way; raises if the step sends what Gadgetron refuses."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(timeout_s)
    port = srv.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gadgetron", str(port), module, target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    run = StepRun(target)
    chunks: list[bytes] = []

    def receive(conn):  # Gadgetron reads a step's output while it writes its input
        while chunk := conn.recv(1 << 16):
            chunks.append(chunk)

    try:
        conn, _ = srv.accept()
        conn.settimeout(timeout_s)
        reader = threading.Thread(target=receive, args=(conn,), daemon=True)
        reader.start()
        w = MessageWriter(conn.sendall)
        w.config_text(config)
        w.header(header_xml)
        for item in items:
            w.item(item)
        w.close()
        reader.join(timeout_s)
        conn.close()
        proc.wait(60)
    finally:
        proc.kill()
        srv.close()
    raw = b"".join(chunks)
    reader = MessageReader(io.BytesIO(raw).read)
    while True:
        try:
            msg = reader.read()
        except EOFError:
            break
        if not isinstance(msg, ALLOWED_FROM_EXTERNAL):
            raise AssertionError(f"{target} sent {type(msg).__name__}: Gadgetron would abort")
        if isinstance(msg, Error):
            run.errors.append(msg.text)
        elif isinstance(msg, Close):
            run.closed = True
        else:
            run.items.append(msg)
    return run


def run_chain(chain_text: str, header_xml: str, acquisitions) -> list[StepRun]:
    """Every step of the chain in turn, each fed the previous one's items."""
    items = list(acquisitions)
    runs = []
    for module, target, config in external_steps(chain_text):
        run = run_step(module, target, config, header_xml, items)
        runs.append(run)
        items = run.items
    return runs
