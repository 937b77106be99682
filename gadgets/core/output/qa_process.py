"""QA pictures drawn in a helper process: after a scan's last readout, the picture (~25 ms with
:mod:`gadgets.core.output.raster`; 0.2-0.3 s when it was matplotlib) is drawn on the second core
while the maps are encoded and sent, instead of before them.

One helper per process, started by the first chain that draws pictures (:func:`start`, at chain
setup: its imports and the fonts' warm-up happen during the scan) and shared by every
connection. It is a plain child process, ``python -m gadgets.core.output.qa_process``, not a
``multiprocessing`` one: a spawned ``multiprocessing`` child re-imports the parent's main
script, and a user's script without a ``__main__`` guard would run its reconstruction again.
Requests ``(CalibrationQa, size_px)`` and answers ``(ok, picture or error text)`` are pickles,
8-byte length first, over the child's stdin and stdout; one thread here sends them one at a time.

Nothing here can lose a picture: without a helper (it could not start, died, or did not answer
in time) the picture is drawn in-process, with a warning in the log.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gadgets.core.output.qa import CalibrationQa, render_qa

__all__ = ["main", "picture", "render_async", "start"]

log = logging.getLogger(__name__)

_SIZE = (1200, 450)


def _write(stream: BinaryIO, obj: object) -> None:
    data = pickle.dumps(obj, protocol=5)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def _read(stream: BinaryIO) -> object:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the QA helper's pipe closed")
    size = int.from_bytes(head, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the QA helper's pipe closed mid-message")
    return pickle.loads(data)


class _Helper:
    """The child process and the thread that talks to it."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # the child imports the same package as this process
        package_root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.requests: queue.Queue = queue.Queue()
        self.alive = True
        threading.Thread(target=self._serve, name="qa-helper", daemon=True).start()

    def submit(self, qa: CalibrationQa, size_px: tuple[int, int]) -> Future:
        future: Future = Future()
        self.requests.put((qa, size_px, future))
        return future

    def _serve(self) -> None:
        while True:
            qa, size_px, future = self.requests.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                _write(self.proc.stdin, (qa, size_px))
                ok, value = _read(self.proc.stdout)
            except Exception as exc:  # died, killed, pipe closed: every later request fails too
                self.alive = False
                future.set_exception(exc)
                self.proc.kill()
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(RuntimeError(value))


_helper: _Helper | None = None
_lock = threading.Lock()


def start() -> None:
    """Start the helper unless one is running (a dead one is replaced)."""
    global _helper
    with _lock:
        if _helper is not None and _helper.alive and _helper.proc.poll() is None:
            return
        if not sys.executable:
            log.warning("no Python executable to start the QA helper: pictures drawn in-process")
            return
        try:
            _helper = _Helper()
        except OSError as exc:
            _helper = None
            log.warning("no QA helper process (%s): pictures are drawn in-process", exc)


def render_async(
    qa: CalibrationQa, size_px: tuple[int, int] = _SIZE, use_helper: bool = True
) -> Future:
    """Start drawing ``qa`` (:func:`~gadgets.core.output.qa.render_qa`) in the helper; without a
    helper (or ``use_helper`` off), draw it now. Collect it with :func:`picture`."""
    with _lock:
        helper = _helper if use_helper and _helper is not None and _helper.alive else None
    if helper is not None:
        return helper.submit(qa, size_px)
    done: Future = Future()
    done.set_result(render_qa(qa, size_px))
    return done


def picture(
    future: Future, qa: CalibrationQa, size_px: tuple[int, int] = _SIZE, timeout_s: float = 60.0
) -> np.ndarray:
    """The picture of a :func:`render_async` call: ``uint8`` RGB ``(H, W, 3)``. Drawn in-process
    when the helper failed or did not answer within ``timeout_s`` (then it is replaced at the
    next :func:`start`)."""
    started = time.perf_counter()
    try:
        rgb = future.result(timeout=timeout_s)
        log.debug("QA picture: waited %.3f s for the helper", time.perf_counter() - started)
        return rgb
    except Exception as exc:
        log.warning(
            "QA helper failed (%s: %s): drawing the picture in-process", type(exc).__name__, exc
        )
        with _lock:
            if _helper is not None:
                _helper.alive = False
                _helper.proc.kill()
        return render_qa(qa, size_px)


def main() -> None:
    """The helper's loop: requests from stdin, pictures to stdout, until stdin closes."""
    from gadgets.core.output.qa import warm_up

    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stdout carries answers only: a stray print would corrupt them
    warm_up()
    while True:
        try:
            qa, size_px = _read(requests)
        except EOFError:
            return  # the parent has gone
        try:
            answer = (True, render_qa(qa, size_px))
        except Exception as exc:  # the parent draws it itself and logs this
            answer = (False, f"{type(exc).__name__}: {exc}")
        _write(answers, answer)


if __name__ == "__main__":
    main()
