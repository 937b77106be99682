"""The embedded server: speaks the Gadgetron wire protocol (:mod:`.protocol`) on a TCP port and
runs the requested chain in-process for each connection.

A connection sends its configuration (message 1: a chain name resolved in the application's chains
folder, where ``default`` means "the chain for my protocol" from its ``protocols.toml``; or message
2: the chain XML itself), then the ISMRMRD header (3), optionally the FIRE / OpenRecon JSON
parameters as TEXT (5, :mod:`.parameters`: they set chain properties), then items (1008, 1022,
1026) and CLOSE (4). Queries (6) are answered at any point; a client announces there what it
takes beyond the standard messages (``mrd::client_accepts=1018`` for DICOM files), and nothing
else is sent to it. Each output of the chain is sent back as soon as it is
produced. Anything wrong (a malformed message, an unknown chain, a step that fails) is sent to the
client as ``TEXT "[<where>] ERROR: <message>"`` followed by CLOSE, as Gadgetron does, and logged;
the connection ends, and the server goes on serving the others (one thread per connection).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Iterable

import ismrmrd

from gadgets.runtime.application import Application
from gadgets.runtime.chain import ChainError, check_modules, load_chain, parse_chain
from gadgets.runtime.context import StepContext
from gadgets.runtime.header import HeaderError, parse_header
from gadgets.runtime.notice import Notice
from gadgets.runtime.parameters import ParameterError, accepted_ids, parameters_from_json
from gadgets.runtime.protocol import (
    Close,
    ConfigFile,
    ConfigText,
    DicomFile,
    Header,
    Limits,
    MessageId,
    MessageReader,
    MessageWriter,
    ProtocolError,
    Query,
    Text,
)
from gadgets.runtime.protocol_map import chain_for_protocol
from gadgets.runtime.runner import ChainRunner, StepError

__all__ = ["DEFAULT_PORT", "ReconServer", "answer_query"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 9002
DEFAULT_CHAIN_NAMES = ("", "default", "default.xml")


def answer_query(app: Application, query: str) -> str:
    answers = {
        "gadgetron::version": f"{app.name} {app.version}",
        f"{app.name}::version": app.version,
        "ismrmrd::version": getattr(ismrmrd, "__version__", "unknown"),
    }
    return answers.get(query, "Unknown query")


class _Session:
    """One client connection."""

    def __init__(self, sock: socket.socket, app: Application, limits: Limits) -> None:
        self.app = app
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.reader = MessageReader(self.rfile.read, limits)
        self._send_lock = threading.Lock()
        self.writer = MessageWriter(self._send)
        self.where = "connection"
        self.accepts: frozenset[int] = frozenset()  # message ids beyond the standard ones

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(data)

    def _next(self):
        """The next message that is not a query (queries are answered on the way)."""
        while True:
            msg = self.reader.read()
            if isinstance(msg, Query):
                ids = accepted_ids(msg.query)
                if ids is not None:
                    self.accepts = ids
                    answer = "ok"
                else:
                    answer = answer_query(self.app, msg.query)
                self.writer.response(msg.correlation_id, answer)
                continue
            return msg

    def _send_outputs(self, items: Iterable) -> None:
        for item in items:
            if isinstance(item, DicomFile):  # the chain's choice: deliver=auto or stream
                self.writer.dicom(item.data, item.filename, item.meta)
            elif isinstance(item, Notice):
                log.log(item.level, "[%s] %s", self.where, item.text)
                self.writer.text(item.client_text)
            elif isinstance(item, ismrmrd.Image | ismrmrd.Acquisition | ismrmrd.Waveform):
                self.writer.item(item)
            else:
                raise StepError(
                    self.where, f"produced a {type(item).__name__}, which cannot be sent"
                )

    def run(self) -> None:
        try:
            self._serve()
        except EOFError:
            log.warning("[%s] client disconnected mid-stream; nothing sent back", self.where)
        except (ProtocolError, ChainError, HeaderError, ParameterError, StepError) as exc:
            self._fail(
                exc.client_text() if isinstance(exc, StepError) else f"[{self.where}] ERROR: {exc}"
            )
        except OSError as exc:
            log.warning("[%s] connection lost: %s", self.where, exc)
        except Exception as exc:  # a bug must not take the server down
            log.exception("[%s] unexpected failure", self.where)
            self._fail(f"[{self.where}] ERROR: {type(exc).__name__}: {exc}")
        finally:
            try:
                self.rfile.close()
                self.sock.close()
            except OSError:
                pass

    def _fail(self, text: str) -> None:
        log.error(text)
        try:
            self.writer.text(text)
            self.writer.close()
            self._drain()
        except OSError:
            pass

    def _drain(self, idle_s: float = 10.0) -> None:
        """Half-close, then read what the client still sends until it closes: closing with
        unread input resets the connection, and the client could lose the error text."""
        self.sock.shutdown(socket.SHUT_WR)
        self.sock.settimeout(idle_s)
        try:
            while self.sock.recv(1 << 16):
                pass
        except OSError:
            pass

    def _load(self, chain_name: str):
        """A chain of the server's folder, by name (never a path)."""
        name = chain_name.removesuffix(".xml")
        if "/" in name or "\\" in name or name.startswith("."):
            raise ProtocolError("a chain is named as in the server's chains folder, not by a path")
        return load_chain(chain_name, self.app.chains_dir)

    def _serve(self) -> None:
        first = self._next()
        if isinstance(first, ConfigFile):
            chain_name = first.name.strip()
            spec = None
        elif isinstance(first, ConfigText):
            chain_name, spec = None, parse_chain(first.xml, "<config text>")
            check_modules(spec, self.app.allowed_modules)
        else:
            raise ProtocolError(
                f"the first message must be a configuration (1 or 2), not {type(first).__name__}"
            )
        header = self._next()
        if not isinstance(header, Header):
            got = type(header).__name__
            raise ProtocolError(
                f"the ISMRMRD header (message 3) must follow the configuration, not {got}"
            )
        parse_header(header.xml)  # a broken header is refused before anything else is read
        by_choice = spec is None and chain_name in (*DEFAULT_CHAIN_NAMES, "openrecon")
        if spec is None and not by_choice:  # a named chain: refused now if it is not there
            spec = self._load(chain_name)
        msg = self._next()
        client_props: dict[str, str] = {}
        while isinstance(msg, Text):  # FIRE / OpenRecon parameters, or a note
            if msg.text.lstrip().startswith("{"):
                props, config = parameters_from_json(msg.text)
                client_props.update(props)
                if config and by_choice:
                    chain_name = config
                log.info("[%s] client parameters: %s", self.where, props)
            else:
                log.info("[%s] client says: %s", self.where, msg.text)
            msg = self._next()
        overrides: dict[str, str] = {}
        if spec is None:
            if chain_name in DEFAULT_CHAIN_NAMES or chain_name == "openrecon":
                entry = chain_for_protocol(header.xml, self.app.chains_dir)
                chain_name, overrides = entry.chain, entry.overrides
            spec = self._load(chain_name)
        self.where = spec.name
        takes = {"text"} | ({"dicom"} if MessageId.DICOM in self.accepts else set())
        context = StepContext(resource_dirs=(self.app.chains_dir,), client_takes=frozenset(takes))
        runner = ChainRunner(
            spec, header.xml, {**overrides, **client_props}, self.app.allowed_modules, context
        )
        log.info("[%s] stream started", spec.name)
        while True:
            if isinstance(msg, ismrmrd.Acquisition | ismrmrd.Image | ismrmrd.Waveform):
                self._send_outputs(runner.push(msg))
            elif isinstance(msg, Text):
                log.info("[%s] client says: %s", spec.name, msg.text)
            elif isinstance(msg, Close):
                self._send_outputs(runner.finish_iter())  # each as soon as it is made
                self.writer.close()
                log.info("[%s] stream finished", spec.name)
                return
            else:
                raise ProtocolError(f"unexpected {type(msg).__name__} message inside the stream")
            msg = self._next()


class ReconServer(socketserver.ThreadingTCPServer):
    """The chains of ``app`` served on (host, port) by ``serve_forever()``; one thread per
    connection."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self,
        app: Application,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        limits: Limits | None = None,
    ) -> None:
        self.app = app
        self.limits = limits or Limits()
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(socketserver.BaseRequestHandler):
    server: ReconServer

    def handle(self) -> None:
        log.info("connection from %s:%s", *self.client_address[:2])
        _Session(self.request, self.server.app, self.server.limits).run()
