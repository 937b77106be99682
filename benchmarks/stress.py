"""Reliability of the embedded server, tried as a hospital administrator and an attacker on the
network would: ``sodium-gadgets serve`` in a child process (its memory is its own, read from
``/proc``), driven by raw wire-protocol clients. Each part prints its numbers and ``ok`` or
``FAIL``; the exit status is 1 if any part failed.

    python benchmarks/stress.py [--small] [--work DIR] [--only fuzz,concurrent,...] [--seed 0]

Parts (``--small``: the CI size, a few minutes on 2 cores; default: the full size):

* ``fuzz``: mutated streams of a small valid scan (truncated, bit flips, garbage, wrong message
  ids and lengths, broken headers, readouts that contradict the header, NaN and huge samples,
  bad chain names). Every stream must get an answer: an ERROR text for those that break the
  protocol or the header, images or an ERROR for the rest (a flipped bit in a sample is data);
  no failure may reach the server's "unexpected failure" handler; the server's RSS must be back
  within 50 MB of its start afterwards. 10,000 streams (small: 120).
* ``concurrent``: 16 scans at once (small: 4) give bit-identical images and DICOM pixels to a
  solo run.
* ``disconnects``: clients that vanish after 10, 50 and 99 % of their stream; the server serves
  on, and its memory returns.
* ``idle``: 500 connections that send nothing (small: 50); a normal scan still succeeds, and
  the server closes them after the hello timeout. A client that does not read is dropped after
  the send timeout.
* ``fds``: the server's file descriptors run out: logged once, no busy loop (CPU seconds while
  exhausted), and a scan succeeds afterwards.
* ``allow``: a client from 127.0.0.2 against ``--allow-from 127.0.0.1``: closed and logged.
* ``kill``: kill -9 of the server while it writes a series to its delivery folder, then a
  restart: no ``.partial`` left, and every series there is complete (as many files as its
  ``ImagesInAcquisition``). 10 kills (small: 3).
* ``disk``: a full disk (a 4 MB tmpfs filled up; needs root, else skipped): the error names the
  folder, nothing half-written stays, and the next scan succeeds once space is free.
* ``patients``: two patients and a repeat of the first delivered to one folder: every file of
  the first keeps its checksum, none is replaced.
* ``budget``: headers that would need too much memory (a 400^3 and a 1000^3 matrix, 10^9
  projections in the trajectory description, 200 echoes with 256 channels): refused in under
  1 s with under 100 MB allocated (the server's peak RSS, reset before each).
* ``memory``: a session with 200 echoes (a legal header for them); the server's RSS after it
  ends is back within 50 MB of before.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ismrmrd
import numpy as np
import pydicom

from gadgets.app.server_process import ServerProcess
from gadgets.resources import chains_dir, scans_dir
from gadgets.runtime.client import read_raw
from gadgets.runtime.parameters import ACCEPTS_QUERY
from gadgets.runtime.protocol import (
    Close,
    DicomFile,
    MessageId,
    MessageReader,
    MessageWriter,
    ProtocolError,
    Text,
)
from gadgets.simulator.scan import ScanDescription, simulate

SIZES = {
    "full": dict(fuzz=10_000, concurrent=16, disconnects=10, idle=500, kills=10),
    "small": dict(fuzz=120, concurrent=4, disconnects=2, idle=50, kills=3),
}
RSS_TOLERANCE_MB = 50.0
BUDGET_MB = 100.0
FOLDER_CHAIN = "stress_folder"


# ---------------------------------------------------------------- the wire, as a client sees it


def frames(*calls) -> bytes:
    """Messages (a MessageWriter method and its arguments each) as bytes."""
    out = bytearray()
    writer = MessageWriter(out.extend)
    for name, *args in calls:
        getattr(writer, name)(*args)
    return bytes(out)


@dataclass
class Answer:
    """What a server sent back to one client."""

    texts: list[str] = field(default_factory=list)
    images: list[ismrmrd.Image] = field(default_factory=list)
    dicoms: list[bytes] = field(default_factory=list)
    closed: bool = False
    failure: str = ""

    @property
    def errors(self) -> list[str]:
        return [t for t in self.texts if "ERROR" in t]


def exchange(
    port: int,
    data: bytes,
    source: str | None = None,
    timeout_s: float = 120.0,
    read: bool = True,
) -> Answer:
    """Send ``data``, half-close, and read the answer until CLOSE or the end."""
    answer = Answer()
    sock = socket.socket()
    try:
        if source:
            sock.bind((source, 0))
        sock.settimeout(timeout_s)
        sock.connect(("127.0.0.1", port))
        with contextlib.suppress(OSError):  # the server may stop reading after an error
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        if not read:
            return answer
        reader = MessageReader(sock.makefile("rb").read)
        while True:
            msg = reader.read()
            if isinstance(msg, Close):
                answer.closed = True
                break
            if isinstance(msg, Text):
                answer.texts.append(msg.text)
            elif isinstance(msg, ismrmrd.Image):
                answer.images.append(msg)
            elif isinstance(msg, DicomFile):
                answer.dicoms.append(msg.data)
    except (EOFError, OSError, ProtocolError) as exc:
        answer.failure = f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
    return answer


def pixels(answer: Answer) -> list[bytes]:
    """What must not differ between two runs of one scan: image samples and DICOM pixels, in
    a fixed order (UIDs and times do differ)."""
    images = sorted(
        (im.image_series_index, im.slice, im.contrast, im.data.tobytes()) for im in answer.images
    )
    dicoms = []
    for data in answer.dicoms:
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        dicoms.append((int(ds.SeriesNumber), int(ds.InstanceNumber), ds.PixelData))
    return [x[-1] for x in images] + [x[-1] for x in sorted(dicoms)]


def difference(answer: Answer | None, reference: Answer) -> str:
    """Why ``answer`` is not ``reference`` bit for bit ("" when it is), for the report."""
    if answer is None:
        return "no answer"
    if not answer.closed:
        return f"no CLOSE ({answer.failure or 'stream ended'}); texts {answer.texts[:2]}"
    got, want = pixels(answer), pixels(reference)
    if len(got) != len(want):
        return (
            f"{len(answer.images)} images + {len(answer.dicoms)} DICOM files, the solo run "
            f"{len(reference.images)} + {len(reference.dicoms)}; texts {answer.texts[:2]}"
        )
    differing = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    if not differing:
        return ""
    i = differing[0]
    n_img = len(answer.images)
    what = f"image {i}" if i < n_img else f"DICOM file {i - n_img} (sorted by series, instance)"
    a, b = got[i], want[i]
    if len(a) != len(b):
        return f"{len(differing)} arrays differ; {what}: {len(a)} bytes, the solo run {len(b)}"
    dtype = np.uint16  # DICOM pixels
    if i < n_img:
        ordered = sorted(
            answer.images, key=lambda im: (im.image_series_index, im.slice, im.contrast)
        )
        dtype = ordered[i].data.dtype
    x, y = np.frombuffer(a, dtype), np.frombuffer(b, dtype)
    changed = int(np.count_nonzero(x != y))
    delta = float(np.max(np.abs(x.astype(np.complex128) - y.astype(np.complex128))))
    return (
        f"{len(differing)} arrays differ; {what}: {changed} of {x.size} samples, "
        f"largest difference {delta:.3g} (values up to {float(np.max(np.abs(y))):.3g})"
    )


class Scan:
    """A simulated scan as the messages a scanner sends, for a chain."""

    def __init__(self, path: Path) -> None:
        self.xml, items = read_raw(path)
        self.items = list(items)

    def stream(
        self,
        chain: str,
        items: list | None = None,
        xml: str | None = None,
        dicom: bool = True,
    ) -> bytes:
        calls = [("query", 1, f"{ACCEPTS_QUERY}={MessageId.DICOM.value}")] if dicom else []
        calls += [("config_file", chain), ("header", xml or self.xml)]
        calls += [("item", a) for a in (self.items if items is None else items)]
        return frames(*calls, ("close",))

    def with_patient(self, patient_id: str, name: str, study_uid: str) -> str:
        xml = re.sub(r"<patientID>[^<]*<", f"<patientID>{patient_id}<", self.xml)
        xml = re.sub(r"<patientName>[^<]*<", f"<patientName>{name}<", xml)
        return re.sub(r"<studyInstanceUID>[^<]*<", f"<studyInstanceUID>{study_uid}<", xml)


# ---------------------------------------------------------------- the server, from outside


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak(pid: int) -> bool:
    """Reset the peak RSS (``VmHWM``) of ``pid`` to its current RSS (Linux clear_refs 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settled_rss(pid: int, seconds: float = 1.0) -> float:
    """RSS once the server has finished its sessions' clean-up."""
    time.sleep(seconds)
    return rss_mb(pid)


@dataclass
class Part:
    name: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)
        print(f"  {self.name}: {text}", flush=True)

    def check(self, condition: bool, text: str) -> None:
        self.ok &= bool(condition)
        self.say(f"{text} -> {'ok' if condition else 'FAIL'}")


class Site:
    """A site's chains folder (the shipped chains, plus one that delivers to a folder) and the
    servers run on it."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.chains = work / "site_chains"
        shutil.rmtree(self.chains, ignore_errors=True)
        shutil.copytree(chains_dir(), self.chains, ignore=shutil.ignore_patterns("__*"))
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def folder_chain(self, folder: Path, name: str = FOLDER_CHAIN) -> str:
        """A chain of this site that writes the TSC chain's series to ``folder``."""
        xml = (self.chains / "sodium_tsc.xml").read_text()
        deliver = '<property name="deliver" value="auto"/>'
        assert deliver in xml, "sodium_tsc.xml: DicomOutput deliver=auto expected"
        to_folder = (
            f'<property name="deliver" value="folder"/><property name="folder" value="{folder}"/>'
        )
        (self.chains / f"{name}.xml").write_text(xml.replace(deliver, to_folder))
        return name

    def server(self, *serve_args: str, fresh_cache: bool = False) -> ServerProcess:
        """A server on this site's chains; ``fresh_cache``: with an empty cache folder (no
        FFTW wisdom, no density weights: everything planned and computed by the scans)."""
        self._n += 1
        env = {}
        if fresh_cache:
            cache = self.work / f"cache{self._n}"
            shutil.rmtree(cache, ignore_errors=True)
            env["SODIUM_GADGETS_CACHE"] = str(cache)
        return ServerProcess(
            log_path=self.logs / f"server{self._n}.log",
            serve_args=("--chains", str(self.chains), *serve_args),
            env=env,
        )


# ---------------------------------------------------------------- fuzzing

Mutation = Callable[[np.random.Generator], tuple[bytes, bool]]


def mutations(scan: Scan, chain: str) -> dict[str, Mutation]:
    """Named ways to break a valid stream: each returns the bytes and whether an ERROR is due
    (False: the stream may be valid after all, e.g. a flipped bit in a sample)."""
    good = scan.stream(chain)
    head_len = len(frames(("query", 1, f"{ACCEPTS_QUERY}={MessageId.DICOM.value}")))
    head_len += len(frames(("config_file", chain), ("header", scan.xml)))
    imaging = [i for i, a in enumerate(scan.items) if a.trajectory_dimensions]

    def item_bytes(acq) -> bytes:
        return frames(("item", acq))

    def truncated(rng):
        return good[: int(rng.integers(1, len(good) - 2))], True

    def bit_flips(rng):
        raw = bytearray(good)
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(0, len(raw)))
            raw[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(raw), False

    def garbage(rng):
        raw = bytearray(good)
        pos = int(rng.integers(0, len(raw)))
        raw[pos : pos + int(rng.integers(1, 64))] = rng.bytes(int(rng.integers(1, 64)))
        return bytes(raw), False

    def random_bytes(rng):
        return rng.bytes(int(rng.integers(0, 4096))), True

    def wrong_id(rng):
        msg_id = int(rng.choice([0, 7, 9, 1009, 1010, 1023, 4242, 65535]))
        at = int(rng.integers(0, 3))
        calls = [("config_file", chain), ("header", scan.xml)]
        raw = frames(*calls[:at]) + struct.pack("<H", msg_id) + rng.bytes(32)
        return raw, True

    def wrong_length(rng):
        raw = bytearray(frames(("config_file", chain), ("header", scan.xml)))
        length_at = 2 + 1024 + 2  # the header message's uint32 length
        struct.pack_into("<I", raw, length_at, int(rng.choice([0, 2**31, 2**32 - 1, 1 << 28])))
        return bytes(raw), True

    header_breaks = {
        "no limits": (r"<encodingLimits>.*?</encodingLimits>", ""),
        "no encoding": (r"<encoding>.*</encoding>", ""),
        "zero channels": (r"<receiverChannels>\d+<", "<receiverChannels>0<"),
        "zero fov": (r"(<reconSpace>.*?<fieldOfView_mm>\s*<x>)[^<]+", r"\g<1>0"),
        "nan fov": (r"(<reconSpace>.*?<fieldOfView_mm>\s*<x>)[^<]+", r"\g<1>nan"),
        "zero matrix": (r"(<reconSpace>\s*<matrixSize>\s*<x>)\d+", r"\g<1>0"),
        "huge matrix": None,  # encoded and recon space: _header_variant
        "not xml": (r"^.*$", "<ismrmrdHeader><"),
        "no trajectory": (r"<trajectory>[^<]*</trajectory>", ""),
    }

    def bad_header(rng):
        key = list(header_breaks)[int(rng.integers(0, len(header_breaks)))]
        if header_breaks[key] is None:
            xml = _header_variant(scan.xml, "matrix 1000")
        else:
            pattern, repl = header_breaks[key]
            xml = re.sub(pattern, repl, scan.xml, count=1, flags=re.S)
        return scan.stream(chain, xml=xml), True

    def contradicting_readout(rng):
        raw = bytearray(item_bytes(scan.items[imaging[int(rng.integers(0, len(imaging)))]]))
        what = int(rng.integers(0, 4))
        head, idx = ismrmrd.AcquisitionHeader, 2 + ismrmrd.AcquisitionHeader.idx.offset
        if what == 0:
            value = int(rng.choice([0, 7, 256, 65535]))
            struct.pack_into("<H", raw, 2 + head.active_channels.offset, value)
        elif what == 1:
            value = int(rng.choice([0, 3, 4096, 65535]))
            struct.pack_into("<H", raw, 2 + head.number_of_samples.offset, value)
        elif what == 2:
            struct.pack_into("<H", raw, idx + ismrmrd.EncodingCounters.contrast.offset, 200)
        else:
            offset = idx + ismrmrd.EncodingCounters.kspace_encode_step_1.offset
            struct.pack_into("<H", raw, offset, 60000)
        prefix = good[:head_len]
        return prefix + bytes(raw) + frames(("close",)), True

    def nan_samples(rng):
        items = list(scan.items)
        k = imaging[int(rng.integers(0, len(imaging)))]
        acq = items[k]
        bad = ismrmrd.Acquisition(acq.getHead())
        bad.data[:] = acq.data
        bad.traj[:] = acq.traj
        value = rng.choice([np.nan, np.inf, 3e38])
        bad.data.flat[int(rng.integers(0, bad.data.size))] = value
        items[k] = bad
        return scan.stream(chain, items=items), False

    def bad_chain(rng):
        name = rng.choice(
            ["nope", "../../etc/passwd", "/etc/passwd", "a" * 1000, "x\0" * 400, ".hidden", ""]
        )
        return frames(("config_file", str(name)), ("header", scan.xml), ("close",)), True

    def misordered(rng):
        calls = [("header", scan.xml), ("config_file", chain), ("close",)]
        if rng.integers(0, 2):
            calls = [("config_file", chain), ("close",)]
        return frames(*calls), True

    return {
        "truncated": truncated,
        "bit flips": bit_flips,
        "garbage": garbage,
        "random bytes": random_bytes,
        "wrong message id": wrong_id,
        "wrong length": wrong_length,
        "broken header": bad_header,
        "readout contradicts header": contradicting_readout,
        "NaN/huge sample": nan_samples,
        "bad chain name": bad_chain,
        "misordered": misordered,
    }


def part_fuzz(site: Site, scan: Scan, n: int, seed: int) -> Part:
    part = Part("fuzz")
    chain = "sodium_preview"
    kinds = mutations(scan, chain)
    names = list(kinds)
    with site.server("--max-sessions", "8") as srv:
        for _ in range(3):  # warm-up: the first scan compiles the gridding kernels
            exchange(srv.port, scan.stream(chain))
        start = settled_rss(srv.pid)
        outcome: Counter = Counter()
        missing: Counter = Counter()
        lock = threading.Lock()
        t0 = time.perf_counter()
        cases = [(i, names[i % len(names)]) for i in range(n)]

        def worker(my_cases):
            for i, kind in my_cases:
                data, must_fail = kinds[kind](np.random.default_rng([seed, i]))
                answer = exchange(srv.port, data, timeout_s=60)
                errored = bool(answer.errors)
                answered = errored or answer.closed
                with lock:
                    outcome[(kind, "error" if errored else "closed" if answered else "none")] += 1
                    if (must_fail and not errored) or not answered:
                        missing[kind] += 1

        threads = [threading.Thread(target=worker, args=(cases[k::8],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        alive = srv.proc.poll() is None
        end = settled_rss(srv.pid, 2.0)
        unexpected = srv.log_path.read_text().count("unexpected failure")
    for kind in names:
        counts = {o: outcome[(kind, o)] for o in ("error", "closed", "none")}
        part.say(
            f"{kind:28s} ERROR {counts['error']:5d}   reconstructed {counts['closed']:5d}   "
            f"no answer {counts['none']:3d}"
        )
    part.say(f"{n} streams in {seconds:.0f} s ({n / seconds:.0f}/s), 8 clients at once")
    part.check(alive, "server alive")
    part.check(
        sum(missing.values()) == 0,
        f"streams without the answer due: {sum(missing.values())}"
        + (f" ({dict(missing)})" if missing else ""),
    )
    part.check(unexpected == 0, f"failures that reached 'unexpected failure': {unexpected}")
    part.check(
        end - start <= RSS_TOLERANCE_MB,
        f"RSS {start:.0f} MB after warm-up, {end:.0f} MB after ({end - start:+.0f} MB)",
    )
    return part


# ---------------------------------------------------------------- concurrency, disconnects


def part_concurrent(site: Site, scan: Scan, n: int) -> Part:
    part = Part("concurrent")
    data = scan.stream("default")
    # cold: the concurrent scans are the server's first, so they also plan their FFTs and
    # compute their kernels at the same time; the solo run comes after, alone
    with site.server("--max-sessions", str(max(n, 8)), fresh_cache=True) as srv:
        answers: list[Answer | None] = [None] * n
        t0 = time.perf_counter()

        def go(i):
            answers[i] = exchange(srv.port, data, timeout_s=600)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        peak = rss_mb(srv.pid, "VmHWM")
        solo = exchange(srv.port, data)
        reference = pixels(solo)
    reasons = [difference(a, solo) for a in answers]
    same = sum(not r for r in reasons) if reference else 0
    part.say(
        f"solo: {len(solo.images)} images, {len(solo.dicoms)} DICOM files; "
        f"{n} at once in {seconds:.1f} s, server peak {peak:.0f} MB"
    )
    for i, reason in enumerate(reasons):
        if reason:
            part.say(f"scan {i + 1} of {n} differs: {reason}")
    part.check(bool(reference) and same == n, f"{same} of {n} identical to the solo run")
    return part


def part_disconnects(site: Site, scan: Scan, repeats: int) -> Part:
    part = Part("disconnects")
    data = scan.stream("default")
    with site.server() as srv:
        exchange(srv.port, data)
        start = settled_rss(srv.pid)
        for fraction in (0.10, 0.50, 0.99):
            for _ in range(repeats):
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
                sock.sendall(data[: int(fraction * len(data))])
                # vanish: a reset, not a polite close
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            time.sleep(0.5)
        after = exchange(srv.port, data)
        end = settled_rss(srv.pid, 2.0)
        log_text = srv.log_path.read_text()
    logged = log_text.count("stream ended before its CLOSE") + log_text.count("connection lost")
    part.say(f"{3 * repeats} clients vanished at 10/50/99 %; {logged} logged as such")
    part.check(after.closed and not after.errors and after.dicoms, "the next scan succeeds")
    part.check(logged >= 3 * repeats, "every disconnect is in the log")
    part.check(
        end - start <= RSS_TOLERANCE_MB,
        f"RSS {start:.0f} MB before, {end:.0f} MB after ({end - start:+.0f} MB)",
    )
    return part


# ---------------------------------------------------------------- connections


def part_idle(site: Site, scan: Scan, n: int) -> Part:
    part = Part("idle")
    hello_s, send_s = 5.0, 2.0
    with site.server("--hello-timeout", f"{hello_s:g}", "--send-timeout", f"{send_s:g}") as srv:
        t0 = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=60) for _ in range(n)]
        scan_answer = exchange(srv.port, scan.stream("default"))
        during = time.monotonic() - t0
        closed_with_reason = 0
        for sock in idle:
            try:
                sock.settimeout(hello_s + 30)
                msg = MessageReader(sock.makefile("rb").read).read()
                closed_with_reason += isinstance(msg, Text) and "sent nothing for" in msg.text
            except (OSError, EOFError, ProtocolError):
                pass
            sock.close()
        waited = time.monotonic() - t0
        part.check(
            scan_answer.closed and not scan_answer.errors and scan_answer.dicoms,
            f"{n} idle connections open, a normal scan succeeds ({during:.1f} s)",
        )
        part.check(
            closed_with_reason == n,
            f"{closed_with_reason} of {n} closed by the server with a reason after the "
            f"{hello_s:g} s hello timeout (all within {waited:.1f} s)",
        )
        # a client that sends a whole scan and never reads what comes back
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.port))
        sock.sendall(scan.stream("sodium_tsc"))
        sent = time.monotonic()
        deadline = sent + 120
        text = ""
        while "read nothing for" not in text and time.monotonic() < deadline:
            time.sleep(0.2)
            text = srv.log_path.read_text()
        dropped_after = time.monotonic() - sent
        sock.close()
        part.check(
            "read nothing for" in text,
            f"a client that does not read is dropped {dropped_after:.1f} s after its scan "
            f"(send timeout {send_s:g} s, plus the reconstruction)",
        )
    return part


def part_fds(site: Site, scan: Scan) -> Part:
    part = Part("fds")
    import resource

    with site.server("--max-connections", "5000", "--hello-timeout", "30") as srv:
        soft, hard = resource.prlimit(srv.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (256, hard))
        socks, stopped = [], "400 made"
        for _ in range(400):
            try:
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
            except OSError as exc:  # the server's backlog full: it stopped accepting
                stopped = f"the next one: {exc}"
                break
        time.sleep(1.0)
        c0, t0 = cpu_s(srv.pid), time.monotonic()
        time.sleep(3.0)
        busy = (cpu_s(srv.pid) - c0) / (time.monotonic() - t0)
        for s in socks:
            s.close()
        time.sleep(1.0)
        resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (soft, hard))
        answer = exchange(srv.port, scan.stream("default"))
        logged = srv.log_path.read_text().count("no file descriptors left")
    part.say(f"{len(socks)} connections against a limit of 256 descriptors ({stopped})")
    part.check(logged == 1, f"exhaustion logged {logged} time(s)")
    part.check(busy < 0.2, f"server CPU while exhausted: {100 * busy:.0f} % of a core")
    part.check(answer.closed and not answer.errors, "a scan succeeds afterwards")
    return part


def part_allow(site: Site, scan: Scan) -> Part:
    part = Part("allow")
    with site.server("--allow-from", "127.0.0.1") as srv:
        outsider = exchange(srv.port, scan.stream("default"), source="127.0.0.2")
        insider = exchange(srv.port, scan.stream("default"), source="127.0.0.1")
        text = srv.log_path.read_text()
    part.check(
        not outsider.texts and not outsider.images and not outsider.closed,
        "127.0.0.2 against --allow-from 127.0.0.1: closed without a byte",
    )
    part.check("refused a connection from 127.0.0.2" in text, "and logged with its address")
    part.check(insider.closed and not insider.errors, "127.0.0.1 is served")
    return part


# ---------------------------------------------------------------- delivery folders


def series_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*") if p.is_dir() and not p.name.startswith("."))


def incomplete_series(root: Path) -> list[str]:
    """Series folders whose files are fewer than their ImagesInAcquisition, or unreadable."""
    bad = []
    for folder in series_folders(root):
        files = sorted(folder.glob("*.dcm"))
        try:
            expected = int(pydicom.dcmread(files[0], stop_before_pixels=True).ImagesInAcquisition)
            for f in files:
                pydicom.dcmread(f)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the finding
            bad.append(f"{folder.name}: {exc}")
            continue
        if len(files) != expected:
            bad.append(f"{folder.name}: {len(files)} of {expected} files")
    return bad


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".partial")]


def part_kill(site: Site, scan: Scan, kills: int, seed: int) -> Part:
    part = Part("kill")
    folder = site.work / "kill_folder"
    shutil.rmtree(folder, ignore_errors=True)
    chain = site.folder_chain(folder)
    data = scan.stream(chain)
    rng = np.random.default_rng(seed)
    in_delivery = 0
    for k in range(kills):
        srv = site.server()
        srv.start()
        client = threading.Thread(target=exchange, args=(srv.port, data), daemon=True)
        client.start()
        # kill while a series is being written if possible, else at a random moment
        deadline = time.monotonic() + 60 + float(rng.uniform(0, 0.5))
        hit = False
        while time.monotonic() < deadline:
            if partials(folder):
                time.sleep(float(rng.uniform(0, 0.02)))
                hit = True
                break
            time.sleep(0.0005)
        os.kill(srv.pid, signal.SIGKILL)
        srv.stop()
        client.join(10)
        in_delivery += hit
        left = len(partials(folder))
        part.say(
            f"kill {k + 1}: {'while writing a series' if hit else 'before delivery'}; "
            f"{left} partial folder(s) left behind"
        )
    restarted = site.server()
    with restarted:
        answer = exchange(restarted.port, data)
    left = partials(folder)
    bad = incomplete_series(folder)
    part.say(
        f"{in_delivery} of {kills} kills hit a series being written; "
        f"{len(series_folders(folder))} series in the folder after the restart"
    )
    part.check(not left, f"after the restart: {len(left)} .partial left")
    part.check(not bad, f"series that look complete but are not: {len(bad)} {bad[:3]}")
    part.check(answer.closed and not answer.errors, "the scan after the restart succeeds")
    return part


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m"):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def part_disk(site: Site, scan: Scan) -> Part:
    part = Part("disk")
    with small_disk(site.work / "small_disk") as disk:
        if disk is None:
            part.say("skipped: cannot mount a tmpfs here (needs root)")
            return part
        folder = disk / "site"
        chain = site.folder_chain(folder, "stress_disk")
        with site.server() as srv:
            filler = disk / "filler"
            with contextlib.suppress(OSError), open(filler, "wb") as f:  # fill the disk up
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            free = shutil.disk_usage(disk).free
            full = exchange(srv.port, scan.stream(chain))
            errors = " | ".join(full.errors)
            half = incomplete_series(folder) if folder.exists() else []
            stray = partials(disk)
            filler.unlink()
            after = exchange(srv.port, scan.stream(chain))
        part.say(f"disk full ({free} bytes free): {errors[:300]}")
        part.check(
            str(folder) in errors and "INCOMPLETE" in errors.upper(),
            "the error names the folder and says the series is incomplete",
        )
        part.check(not half and not stray, "nothing half-written is left")
        part.check(
            after.closed
            and not after.errors
            and not incomplete_series(folder)
            and series_folders(folder),
            "the next scan succeeds once space is free",
        )
    return part


def checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def part_patients(site: Site, scan: Scan) -> Part:
    part = Part("patients")
    folder = site.work / "patients_folder"
    shutil.rmtree(folder, ignore_errors=True)
    chain = site.folder_chain(folder, "stress_patients")
    a = scan.with_patient("PAT-A", "Alpha^Anna", "1.2.826.0.1.3680043.10.1.1")
    b = scan.with_patient("PAT-B", "Beta^Bert", "1.2.826.0.1.3680043.10.1.2")
    with site.server() as srv:
        first = exchange(srv.port, scan.stream(chain, xml=a))
        before = checksums(folder)
        second = exchange(srv.port, scan.stream(chain, xml=b))
        repeat = exchange(srv.port, scan.stream(chain, xml=a))
        after = checksums(folder)
    kept = all(after.get(k) == v for k, v in before.items())
    patients = Counter(
        str(pydicom.dcmread(folder / k, stop_before_pixels=True).PatientID)
        for k in after
        if k.endswith(".dcm")
    )
    ok = all(x.closed and not x.errors for x in (first, second, repeat))
    part.say(
        f"files: {len(before)} after patient A, {len(after)} after B and A again; "
        f"by patient: {dict(patients)}"
    )
    part.check(ok, "three deliveries succeed")
    part.check(
        kept and len(after) == 3 * len(before) > 0,
        "every file of the first delivery keeps its checksum; none replaced",
    )
    return part


# ---------------------------------------------------------------- memory


def _header_variant(xml: str, what: str) -> str:
    enc = r"(<encodedSpace>\s*<matrixSize>\s*)<x>\d+</x>\s*<y>\d+</y>\s*<z>\d+</z>"
    rec = r"(<reconSpace>\s*<matrixSize>\s*)<x>\d+</x>\s*<y>\d+</y>\s*<z>\d+</z>"
    if what.startswith("matrix "):
        n = int(what.split()[1])
        cube = rf"\g<1><x>{n}</x><y>{n}</y><z>{n}</z>"
        return re.sub(rec, cube, re.sub(enc, cube, xml, flags=re.S), flags=re.S)
    if what == "projections 10^9":
        out = re.sub(
            r"(<name>projections</name>\s*<value>)\d+", r"\g<1>1000000000", xml, flags=re.S
        )
        return re.sub(
            r"(<kspace_encoding_step_1>.*?<maximum>)\d+", r"\g<1>999999999", out, flags=re.S
        )
    if what == "200 echoes, 256 channels":
        return _many_echoes(re.sub(r"<receiverChannels>\d+<", "<receiverChannels>256<", xml), 200)
    raise ValueError(what)


def _many_echoes(xml: str, echoes: int) -> str:
    xml = re.sub(r"(<contrast>.*?<maximum>)\d+", rf"\g<1>{echoes - 1}", xml, count=1, flags=re.S)
    tes = "".join(f"<TE>{0.3 + 0.05 * e:.2f}</TE>" for e in range(echoes))
    return re.sub(r"(<TE>[^<]*</TE>\s*)+", tes, xml, count=1)


def part_budget(site: Site, scan: Scan) -> Part:
    part = Part("budget")
    with site.server() as srv:
        exchange(srv.port, scan.stream("default"))  # imports and kernels: not the header's
        for what in ("matrix 400", "matrix 1000", "projections 10^9", "200 echoes, 256 channels"):
            xml = _header_variant(scan.xml, what)
            assert xml != scan.xml, what
            base = settled_rss(srv.pid, 0.5)
            reset = reset_peak(srv.pid)
            t0 = time.perf_counter()
            # the header alone (with readouts, the 256 channels would be refused on the first)
            answer = exchange(srv.port, scan.stream("default", items=[], xml=xml))
            seconds = time.perf_counter() - t0
            grown = rss_mb(srv.pid, "VmHWM") - base if reset else float("nan")
            message = answer.errors[0] if answer.errors else "(no error)"
            part.check(
                bool(answer.errors) and seconds < 1.0 and grown < BUDGET_MB,
                f"{what}: refused in {seconds:.2f} s, peak +{grown:.0f} MB: {message[:160]}",
            )
    return part


def part_memory(site: Site, scan: Scan) -> Part:
    """200 echoes in a legal header: each echo a few copies of readouts, on the preview chain."""
    part = Part("memory")
    echoes = 200
    xml = _many_echoes(scan.xml, echoes)
    imaging = [a for a in scan.items if a.trajectory_dimensions and a.idx.contrast == 0][:30]
    items = [a for a in scan.items if not a.trajectory_dimensions]
    for e in range(echoes):
        for acq in imaging:
            copy = ismrmrd.Acquisition(acq.getHead())
            copy.data[:] = acq.data
            copy.traj[:] = acq.traj
            copy.idx.contrast = e
            items.append(copy)
    data = scan.stream("sodium_preview", items=items, xml=xml)
    with site.server() as srv:
        exchange(srv.port, scan.stream("sodium_preview"))
        before = settled_rss(srv.pid)
        answer = exchange(srv.port, data, timeout_s=600)
        peak = rss_mb(srv.pid, "VmHWM")
        after = settled_rss(srv.pid, 2.0)
    part.say(
        f"{echoes} echoes: {len(answer.images)} images, {len(answer.dicoms)} DICOM files, "
        f"server peak {peak:.0f} MB; errors: {answer.errors[:1]}"
    )
    part.check(answer.closed, "the session completes")
    part.check(
        after - before <= RSS_TOLERANCE_MB,
        f"RSS {before:.0f} MB before, {after:.0f} MB after ({after - before:+.0f} MB)",
    )
    return part


# ---------------------------------------------------------------- main


def scans(work: Path) -> tuple[Scan, Scan]:
    """The ``tiny`` scan, and a smaller one (the fuzzing seed: 60 projections, 12^3)."""
    tiny = work / "tiny.h5"
    if not tiny.exists():
        simulate(ScanDescription.load("tiny"), work)
    small_json = work / "fuzz_seed.json"
    small = work / "fuzz_seed.h5"
    if not small.exists():
        desc = json.loads((scans_dir() / "tiny.json").read_text())
        desc.update(name="fuzz_seed", matrix=12, write_notraj=False, noise_readouts=4)
        desc["trajectory"]["projections"] = 60
        desc["trajectory"]["samples"] = 24
        small_json.write_text(json.dumps(desc))
        simulate(ScanDescription.load(small_json), work)
    return Scan(tiny), Scan(small)


PARTS = (
    "fuzz",
    "concurrent",
    "disconnects",
    "idle",
    "fds",
    "allow",
    "kill",
    "disk",
    "patients",
    "budget",
    "memory",
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="the CI size (a few minutes)")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    ap.add_argument("--only", help=f"comma-separated parts of: {','.join(PARTS)}")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    size = SIZES["small" if args.small else "full"]
    chosen = args.only.split(",") if args.only else list(PARTS)
    unknown = set(chosen) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    with contextlib.ExitStack() as stack:
        work = (
            Path(args.work)
            if args.work
            else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )
        work.mkdir(parents=True, exist_ok=True)
        tiny, seed_scan = scans(work)
        site = Site(work)
        runs = {
            "fuzz": lambda: part_fuzz(site, seed_scan, size["fuzz"], args.seed),
            "concurrent": lambda: part_concurrent(site, tiny, size["concurrent"]),
            "disconnects": lambda: part_disconnects(site, tiny, size["disconnects"]),
            "idle": lambda: part_idle(site, tiny, size["idle"]),
            "fds": lambda: part_fds(site, tiny),
            "allow": lambda: part_allow(site, tiny),
            "kill": lambda: part_kill(site, tiny, size["kills"], args.seed),
            "disk": lambda: part_disk(site, tiny),
            "patients": lambda: part_patients(site, tiny),
            "budget": lambda: part_budget(site, tiny),
            "memory": lambda: part_memory(site, seed_scan),
        }
        results = []
        for name in chosen:
            t0 = time.perf_counter()
            print(f"{name} ({'small' if args.small else 'full'} size)", flush=True)
            part = runs[name]()
            results.append(part)
            print(
                f"  {name}: {'ok' if part.ok else 'FAIL'} in {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
    failed = [p.name for p in results if not p.ok]
    print(
        f"stress: {len(results) - len(failed)} of {len(results)} parts ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
