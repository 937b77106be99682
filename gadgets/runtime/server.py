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

What the server allows is its administrator's :class:`~.policy.ServerPolicy`: the peers it
accepts, how many sessions at once and for how long, the memory scans may take (checked from
the header before anything is allocated, :mod:`.memory_budget`), and whether a client may send
its own chain or set properties that name places on the server. After each session the memory
it used is given back to the system (``malloc_trim``), so a long-running server returns to its
baseline.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import gc
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Iterable

import ismrmrd

from gadgets.runtime.application import Application
from gadgets.runtime.chain import (
    ChainError,
    check_modules,
    load_chain,
    location_properties,
    parse_chain,
)
from gadgets.runtime.context import StepContext
from gadgets.runtime.header import HeaderError, parse_header
from gadgets.runtime.memory_budget import BudgetError, MemoryBudget, mb
from gadgets.runtime.notice import Notice
from gadgets.runtime.parameters import ParameterError, accepted_ids, parameters_from_json
from gadgets.runtime.policy import ServerPolicy
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

__all__ = ["DEFAULT_PORT", "ReconServer", "answer_query", "raise_file_limit"]

try:  # glibc: give freed heap memory back to the system after a session
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # pragma: no cover - not glibc
    _malloc_trim = None

log = logging.getLogger(__name__)

DEFAULT_PORT = 9002
DEFAULT_CHAIN_NAMES = ("", "default", "default.xml")


def raise_file_limit(wanted: int) -> int:
    """Raise this process's soft limit of open files towards ``wanted`` (within the hard
    limit), so that ``max_connections`` clients fit; returns the limit now."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        return int(soft)
    except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
        return -1


def answer_query(app: Application, query: str) -> str:
    answers = {
        "gadgetron::version": f"{app.name} {app.version}",
        f"{app.name}::version": app.version,
        "ismrmrd::version": getattr(ismrmrd, "__version__", "unknown"),
    }
    return answers.get(query, "Unknown query")


class _Session:
    """One client connection."""

    def __init__(self, sock: socket.socket, server: ReconServer, peer: str) -> None:
        self.server = server
        self.app, self.policy, self.budget = server.app, server.policy, server.budget
        self.sock = sock
        self.peer = peer
        self.rfile = sock.makefile("rb")
        self.reader = MessageReader(self.rfile.read, server.limits)
        self._send_lock = threading.Lock()
        self.writer = MessageWriter(self._send)
        self.where = "connection"
        self.accepts: frozenset[int] = frozenset()  # message ids beyond the standard ones
        self.sent_bytes = 0
        self.send_s = 0.0  # in sendall: the client reading slower than the chain makes results

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.settimeout(self.policy.send_timeout_s)
            started = time.perf_counter()
            try:
                self.sock.sendall(data)
                self.sent_bytes += len(data)
                self.send_s += time.perf_counter() - started
            except TimeoutError:
                raise _Dropped(
                    f"the client at {self.peer} read nothing for "
                    f"{self.policy.send_timeout_s:g} s: dropped"
                ) from None

    def _next(self, timeout_s: float | None = None):
        """The next message that is not a query (queries are answered on the way), within
        ``timeout_s`` (default: the idle timeout)."""
        timeout_s = self.policy.idle_timeout_s if timeout_s is None else timeout_s
        while True:
            self.sock.settimeout(timeout_s)
            try:
                msg = self.reader.read()
            except TimeoutError:
                raise _Dropped(
                    f"the client at {self.peer} sent nothing for {timeout_s:g} s: closed"
                ) from None
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
            first = self._next(self.policy.hello_timeout_s)
            if not self.server.start_session():
                raise _Busy(
                    f"the server is busy: {self.policy.max_sessions} scans at once "
                    "(serve --max-sessions); try again when a scan has finished"
                )
            try:
                self._serve(first)
            finally:
                self.server.end_session()
            self._linger()
        except _Dropped as exc:
            log.warning("[%s] %s", self.where, exc)
            self._fail(f"[{self.where}] ERROR: {exc}", drain=False)
        except EOFError:  # the client may have only half-closed: it can still read why
            self._fail(
                f"[{self.where}] ERROR: the stream ended before its CLOSE (message 4): "
                "nothing was reconstructed",
                drain=False,
            )
        except (
            ProtocolError,
            ChainError,
            HeaderError,
            ParameterError,
            BudgetError,
            StepError,
            _Busy,
        ) as exc:
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

    def _fail(self, text: str, drain: bool = True) -> None:
        log.error(text)
        try:
            self.writer.text(text)
            self.writer.close()
            if drain:
                self._drain()
        except (OSError, _Dropped):
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

    def _linger(self, idle_s: float = 2.0) -> None:
        """After our CLOSE: bytes the client sent after its CLOSE are read and ignored, since
        closing with unread input resets the connection and the client could lose our CLOSE."""
        self.sock.shutdown(socket.SHUT_WR)
        self.sock.settimeout(idle_s)
        extra = 0
        try:
            while chunk := self.rfile.read1(1 << 16):  # what the reader holds, then the socket
                extra += len(chunk)
        except OSError:
            pass
        if extra:
            log.warning("[%s] %d bytes after the CLOSE were ignored", self.where, extra)

    def _refuse_locations(self, locked: list[str]) -> None:
        """Properties naming places on the server, set by the client: refused (the policy)."""
        if locked and not self.policy.client_locations:
            raise ProtocolError(
                f"{', '.join(locked)} names a place on this server (a folder, a file, a host): "
                "a client may not set it (serve --client-locations allows it)"
            )

    def _load(self, chain_name: str):
        """A chain of the server's folder, by name (never a path)."""
        name = chain_name.removesuffix(".xml")
        if "/" in name or "\\" in name or name.startswith("."):
            raise ProtocolError("a chain is named as in the server's chains folder, not by a path")
        if not re.fullmatch(r"[\w.+-]{1,128}", name):
            shown = repr(name[:60]) + ("..." if len(name) > 60 else "")
            raise ProtocolError(
                f"{shown} is not a chain name (letters, digits, '_', '-', '.', '+'; at most 128)"
            )
        return load_chain(chain_name, self.app.chains_dir)

    def _serve(self, first) -> None:
        if isinstance(first, ConfigFile):
            chain_name = first.name.strip()
            spec = None
        elif isinstance(first, ConfigText):
            if not self.policy.allow_client_chains:
                raise ProtocolError(
                    "this server runs its own chains only: a chain sent by the client (message "
                    "2) is refused (the administrator allows them with serve --allow-client-chains)"
                )
            chain_name, spec = None, parse_chain(first.xml, "<config text>")
            check_modules(spec, self.app.allowed_modules)
            self._refuse_locations(
                location_properties(spec, {}, in_chain_text=True, packages=self.app.allowed_modules)
            )
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
        parsed = parse_header(header.xml)  # a broken header is refused before anything else
        info = parsed.acquisitionSystemInformation
        if info is not None and info.receiverChannels:  # readouts must have as many
            self.reader.limits = dataclasses.replace(
                self.reader.limits, channels=int(info.receiverChannels)
            )
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
        self._refuse_locations(
            location_properties(spec, client_props, packages=self.app.allowed_modules)
        )
        takes = {"text"} | ({"dicom"} if MessageId.DICOM in self.accepts else set())
        context = StepContext(resource_dirs=(self.app.chains_dir,), client_takes=frozenset(takes))
        runner = ChainRunner(
            spec, header.xml, {**overrides, **client_props}, self.app.allowed_modules, context
        )
        need = runner.memory_bytes()
        with self.budget.reserve(need, f"this scan ({spec.name})", self.policy.queue_timeout_s):
            log.info("[%s] stream started (%s reserved)", spec.name, mb(need))
            self._stream(runner, msg)

    def _stream(self, runner: ChainRunner, msg) -> None:
        spec = runner.spec
        while True:
            if isinstance(msg, ismrmrd.Acquisition | ismrmrd.Image | ismrmrd.Waveform):
                self._send_outputs(runner.push(msg))
            elif isinstance(msg, Text):
                log.info("[%s] client says: %s", spec.name, msg.text)
            elif isinstance(msg, Close):
                self._send_outputs(runner.finish_iter())  # each as soon as it is made
                self.writer.close()
                log.info(
                    "[%s] stream finished: %.1f MB sent, %.2f s of it waiting on the client",
                    spec.name,
                    self.sent_bytes / 1e6,
                    self.send_s,
                )
                return
            else:
                raise ProtocolError(f"unexpected {type(msg).__name__} message inside the stream")
            msg = self._next()


class _Dropped(OSError):
    """A client that stayed silent, or did not read, past the policy's timeouts."""


class _Busy(RuntimeError):
    """All the policy's sessions are running scans."""


class ReconServer(socketserver.ThreadingTCPServer):
    """The chains of ``app`` served on (host, port) by ``serve_forever()``; one thread per
    connection, within ``policy`` (:class:`~.policy.ServerPolicy`)."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False  # stopping never waits for sessions, idle or running
    request_queue_size = 1024  # a burst of connections waits in the kernel, not dropped SYNs

    def __init__(
        self,
        app: Application,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        limits: Limits | None = None,
        policy: ServerPolicy | None = None,
    ) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.policy = policy or ServerPolicy()
        self.budget = MemoryBudget(self.policy.max_total_memory, self.policy.max_scan_memory)
        self.sessions = 0  # scans running
        self.connections = 0  # open connections, scans among them
        self._lock = threading.Lock()
        self._refusing = 0  # threads telling refused clients why
        self._fd_warned = 0.0
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def verify_request(self, request, client_address) -> bool:
        """Only the policy's peers; anyone else is closed at once, and logged."""
        if self.policy.allows(client_address[0]):
            return True
        log.warning("refused a connection from %s (not in --allow-from)", client_address[0])
        return False

    def process_request(self, request, client_address) -> None:
        with self._lock:
            full = self.connections >= self.policy.max_connections
            if not full:
                self.connections += 1
        if full:
            self._refuse_busy(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connection_ended()
            raise

    def start_session(self) -> bool:
        """A scan slot for a connection that has sent its configuration, if one is free."""
        with self._lock:
            if self.sessions >= self.policy.max_sessions:
                return False
            self.sessions += 1
            return True

    def end_session(self) -> None:
        with self._lock:
            self.sessions -= 1

    def _connection_ended(self) -> None:
        with self._lock:
            self.connections -= 1

    def _refuse_busy(self, request: socket.socket, client_address) -> None:
        text = (
            f"[server] ERROR: the server is busy: {self.policy.max_connections} connections at "
            "once (serve --max-connections); try again later"
        )
        log.warning("%s (refused %s)", text, client_address[0])
        with self._lock:
            spare = self._refusing < 64
            self._refusing += spare
        if not spare:  # a flood: closed at once
            self.shutdown_request(request)
            return
        threading.Thread(target=self._tell_and_close, args=(request, text), daemon=True).start()

    def _tell_and_close(self, request: socket.socket, text: str) -> None:
        """Send the refusal, then read what the client still sends for a moment before
        closing: closing with unread input would reset the connection and lose the text."""
        try:
            request.settimeout(2.0)
            writer = MessageWriter(request.sendall)
            writer.text(text)
            writer.close()
            request.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and request.recv(1 << 16):
                pass
        except OSError:
            pass
        finally:
            request.close()
            with self._lock:
                self._refusing -= 1

    def _handle_request_noblock(self) -> None:
        """As socketserver's, but running out of file descriptors is logged (once a minute)
        and waited out briefly, instead of a silent busy loop on the listening socket."""
        try:
            request, client_address = self.get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                now = time.monotonic()
                if now - self._fd_warned > 60:
                    log.error("no file descriptors left (%s): new connections wait", exc)
                    self._fd_warned = now
                time.sleep(0.2)
            return
        if self.verify_request(request, client_address):
            try:
                self.process_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
                self.shutdown_request(request)
        else:
            self.shutdown_request(request)


class _Handler(socketserver.BaseRequestHandler):
    server: ReconServer

    def handle(self) -> None:
        peer = str(self.client_address[0])
        log.info("connection from %s:%s", peer, self.client_address[1])
        try:
            _Session(self.request, self.server, peer).run()
        finally:
            self.server._connection_ended()
            gc.collect()
            if _malloc_trim is not None:
                _malloc_trim(0)
