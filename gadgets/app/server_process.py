"""``sodium-gadgets serve`` in a child process on a free loopback port: the same code path a site
runs, for the demo and ``benchmarks/latency.py``."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["ServerProcess", "ServerProcessError"]

log = logging.getLogger(__name__)


class ServerProcessError(RuntimeError):
    """The server did not start (it exited, or did not listen in time)."""


class ServerProcess:
    """``sodium-gadgets serve`` in a child process on a free port (``--port 0``): the same code
    path a site runs. The port is read from the line the server prints when it listens;
    ``serve_args`` are further ``serve`` options (``--chains``, the policy's).

    Use as a context manager, or :meth:`start` / :meth:`stop`. ``stop`` interrupts it (SIGINT,
    as Ctrl-C) and waits; ``peak_rss_mb`` is its peak resident memory (``VmHWM``), read just
    before it is stopped. Its log (stderr) goes to ``log_path`` when given."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        log_path: str | Path | None = None,
        verbose: int = 1,
        startup_timeout_s: float = 120.0,
        python_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        serve_args: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.serve_args = serve_args
        self.log_path = Path(log_path) if log_path else None
        self.verbose = verbose
        self.startup_timeout_s = startup_timeout_s
        self.python_args = python_args
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.peak_rss_mb: float | None = None
        self.returncode: int | None = None
        self._lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self._log_file = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self) -> None:
        cmd = [sys.executable, "-u", *self.python_args, "-m", "gadgets.app.cli"]
        cmd += ["-v"] * self.verbose + ["serve", "--host", self.host, "--port", "0"]
        cmd += list(self.serve_args)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "w")  # closed in stop()
        env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file if self._log_file else subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = (
                    f"exited with status {self.proc.returncode}"
                    if self.proc.poll() is not None
                    else f"did not listen within {self.startup_timeout_s:.0f} s"
                )
                self.stop()
                where = f"; its log: {self.log_path}" if self.log_path else ""
                raise ServerProcessError(f"the server ({' '.join(cmd)}) {why}{where}")
        log.info("server pid %d listening on %s:%d", self.proc.pid, self.host, self.port)

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line.rstrip())
            m = re.search(r"serving on (\S+):(\d+)", line)
            if m and not self._ready.is_set():
                self.port = int(m.group(2))
                self._ready.set()

    def read_peak_rss_mb(self) -> float | None:
        """Peak resident memory so far (Linux ``/proc/PID/status`` ``VmHWM``), MB."""
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Interrupt the server (as Ctrl-C) and wait for it; kill it if it does not end."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.peak_rss_mb = self.read_peak_rss_mb()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("server pid %d ignored SIGINT; terminating it", self.proc.pid)
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        if self.peak_rss_mb is None:  # not readable from /proc: children's peak, as rusage has it
            import resource

            self.peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        self.returncode = self.proc.returncode
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.returncode
