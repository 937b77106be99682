"""Running a gadget as an ``<external>`` step of a real Gadgetron server.

Gadgetron starts ``python -m gadgetron <port> <module> <target>``; the ``gadgetron`` package
connects back, reads CONFIG (message 2: the step's ``<configuration>`` element) and HEADER (3),
constructs ``target()`` without arguments and calls its ``handle(connection)``, and sends CLOSE
when that returns. :meth:`Gadget.handle` lands here: the gadget is built from the header and the
configuration's properties, items are read and the outputs written with this project's framing
(:mod:`.protocol`) on the same socket, and any failure is reported as ERROR (message 8) so that
Gadgetron stops the stream with the message. Never TEXT (5): Gadgetron treats TEXT from an
external step as an illegal message. (The ``gadgetron`` package alone would just close,
hiding the failure.)

Notices (:class:`~.notice.Notice`: a calibration refused, readouts dropped) have no message of
their own in that protocol. They are logged, and those at WARNING or above go to Gadgetron as
one ERROR after the step's last item: Gadgetron passes every item on and then sends the client
``[<step>] ERROR: WARNING: <notice>`` as TEXT at the end of the stream, the one way a client of
Gadgetron hears of them (the images are complete; the wording says it is a warning).

The step's process logs at INFO (gadgetron-python's default is DEBUG, which lets numba print
thousands of lines while it compiles), unless ``GADGETRON_EXTERNAL_LOG_LEVEL`` says otherwise.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET

import ismrmrd

from gadgets.runtime.context import StepContext
from gadgets.runtime.header import parse_header, validate_header
from gadgets.runtime.notice import Notice
from gadgets.runtime.protocol import Close, MessageReader, MessageWriter, ProtocolError

__all__ = ["properties_from_config", "serve_gadgetron_connection"]

log = logging.getLogger(__name__)


def properties_from_config(config: ET.Element | None) -> dict[str, str]:
    """``<property name="x" value="y"/>`` (or ``<property><name>x</name><value>y</value>``)."""
    props: dict[str, str] = {}
    if config is None:
        return props
    for p in config.iter("property"):
        name = p.get("name") or (p.findtext("name") or "").strip()
        value = (
            p.get("value") if p.get("value") is not None else (p.findtext("value") or "").strip()
        )
        if name:
            props[name] = value
    return props


def serve_gadgetron_connection(cls: type, connection) -> None:
    """Run gadget class ``cls`` on a connection opened by the ``gadgetron`` package."""
    _quiet_logging()
    sock = connection.socket.socket  # the package's wrapper loops forever at end of stream
    sock.settimeout(None)
    writer = MessageWriter(sock.sendall)
    reader = MessageReader(sock.makefile("rb").read)
    name = cls.__name__
    try:
        header_xml = connection.raw_bytes.header
        header_xml = header_xml.decode("utf-8") if isinstance(header_xml, bytes) else header_xml
        context = StepContext(step=name, host="gadgetron", client_takes=frozenset())
        header = parse_header(header_xml.rstrip("\0"))
        validate_header(header, cls.header_needs)
        gadget = cls(header, context, **properties_from_config(connection.config))
        notices: list[Notice] = []
        while True:
            try:
                msg = reader.read()
            except EOFError:
                log.warning("%s: Gadgetron closed the stream without CLOSE", name)
                return
            if isinstance(msg, Close):
                notices += _send(writer, gadget.finish(), name)
                warnings = [n.client_text for n in notices if n.level >= logging.WARNING]
                if warnings:  # after every item: Gadgetron tells the client at the end
                    writer.error("; ".join(warnings))
                return
            if not isinstance(msg, ismrmrd.Acquisition | ismrmrd.Image | ismrmrd.Waveform):
                raise ProtocolError(f"unexpected {type(msg).__name__} from Gadgetron")
            notices += _send(writer, gadget.process(msg), name)
    except Exception as exc:
        log.exception("%s failed", name)
        try:
            writer.error(f"{name}: {type(exc).__name__}: {exc}")
            _drain(reader, sock)
        except OSError:
            pass


def _drain(reader: MessageReader, sock, timeout_s: float = 30.0) -> None:
    """After an ERROR, read (and drop) what Gadgetron still sends until its CLOSE: closing a
    socket with unread input resets the connection, and the ERROR could be lost with it."""
    sock.settimeout(timeout_s)
    try:
        while not isinstance(reader.read(), Close):
            pass
    except (EOFError, ProtocolError, OSError):
        pass


def _send(writer: MessageWriter, items, name: str) -> list[Notice]:
    """Write the ISMRMRD items; return the notices (logged here)."""
    notices = []
    for item in items:
        if isinstance(item, Notice):  # Gadgetron takes no TEXT from an external step
            log.log(item.level, "%s: %s", name, item.text)
            notices.append(item)
            continue
        if not isinstance(item, ismrmrd.Acquisition | ismrmrd.Image | ismrmrd.Waveform):
            raise TypeError(f"{name} produced a {type(item).__name__}, which Gadgetron cannot take")
        writer.item(item)
    return notices


def _quiet_logging() -> None:
    """INFO for the step's process, WARNING for numba, unless Gadgetron's variable is set."""
    if os.environ.get("GADGETRON_EXTERNAL_LOG_LEVEL"):
        return
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("numba").setLevel(logging.WARNING)
