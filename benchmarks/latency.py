"""Latency and throughput of the embedded server: a simulated scan replayed through
``sodium-gadgets serve`` (a child process, so its peak memory is its own) over the wire protocol,
as the scanner would send it.

Two runs, each against a fresh server:

(a) **paced**: the noise scans, then the imaging readouts with the first and the last
    ``--paced-seconds`` one TR apart (the header's TR; 100 ms for the 7T dual-echo scan: 30 s =
    300 readouts) and the middle at full speed, then CLOSE (``--paced-mode head``: only the first
    ``--paced-seconds``, a shortened scan).
    Whether the server keeps up is measured with the protocol's own QUERY message: the server
    answers a query only when it reads the next message, i.e. after it has processed every
    readout sent before it, so the query's round trip is the server's backlog in seconds, and
    ``readouts sent - readouts processed`` when the answer arrives is the queue depth. A query
    goes out every second and once right after the last readout ("caught up"). Also reported:
    how long each paced send blocked (the socket buffers full: the server far behind) and how
    late a readout left against its schedule. Sending the whole scan matters: a cut-short scan
    gives an undersampled image on which the calibration behaves differently.
(b) **full speed**: the whole scan as fast as the client can send; throughput is imaging
    readouts over the time from the first readout sent to the server having processed the last
    (its "caught up" answer).

For both: the time from the last readout sent to the last DICOM file received (read whole from
the socket; the client writes its files in a thread of its own, as ``sodium-gadgets send`` does,
so the server never waits on the client's disk), split into the
server catching up and the end-of-scan work (caught up -> last DICOM), and the peak resident
memory of the server (``VmHWM``). With ``--profile``, the same chain is also run in-process on
the whole scan, and the end-of-scan work (``ChainRunner.finish()``) is timed per step and
profiled with cProfile: where the time after the last readout goes.

    python benchmarks/latency.py [--scan brain_7T_da3dpr_8ch_dualecho] [--dir sim]
                                 [--paced-seconds 30] [--profile] [--set NAME=VALUE ...]
    python benchmarks/latency.py --scan siteb_brain_7T_8loops_dualecho --dir sim \
        --set coil_models=sim/siteb_bottle_7T_8loops_coil.json --set tube_radius_mm=13.5 ...
        # a site's own coil file and tube settings (benchmarks/accuracy.py --family b makes it)

The last line is::

    latency: last_readout_to_dicom=<s> full_speed_total=<s> readouts_per_s=<n> peak_rss_mb=<n>

Before the runs it does the install step ``sodium-gadgets fft-wisdom`` on the scan (seconds when
this machine's wisdom has its FFTs already; ``--no-wisdom``: not, FFTW's estimate plans then).

``last_readout_to_dicom`` is the paced run's (the scanner's view: the scan ends, the series
arrives); ``full_speed_total`` is connect -> last DICOM of the full-speed run; ``readouts_per_s``
its throughput; ``peak_rss_mb`` the larger of the two servers' peaks. Targets (2 cores, B0
correction on): last_readout_to_dicom <= 1.0 s, peak RSS <= 2 GB for the 8-channel scan.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import re
import shutil
import socket
import statistics
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import h5py
import ismrmrd
import numpy as np

from gadgets.app.application import application
from gadgets.app.fft_wisdom import plan_fft_wisdom
from gadgets.app.server_process import ServerProcess
from gadgets.runtime.chain import load_chain
from gadgets.runtime.client import read_raw
from gadgets.runtime.header import parse_header
from gadgets.runtime.outputs import BackgroundWriter, OutputFolder
from gadgets.runtime.parameters import ACCEPTS_QUERY
from gadgets.runtime.protocol import (
    Close,
    DicomFile,
    Error,
    MessageReader,
    MessageWriter,
    ProtocolError,
    Response,
    Text,
)
from gadgets.runtime.protocol_map import chain_for_protocol
from gadgets.runtime.runner import ChainRunner
from gadgets.simulator.scan import ScanDescription, simulate

DEFAULT_SCAN = "brain_7T_da3dpr_8ch_dualecho"
CAUGHT_UP = 1 << 40  # id of the query sent right after the last readout


def ensure_scan(name: str, folder: Path) -> Path:
    raw = folder / f"{name}.h5"
    if not raw.exists():
        print(f"simulating {name} into {folder}/ ...", flush=True)
        t0 = time.perf_counter()
        simulate(ScanDescription.load(name), folder)
        print(f"  simulated in {time.perf_counter() - t0:.1f} s", flush=True)
    return raw


def tr_seconds(xml: str) -> float:
    seq = parse_header(xml).sequenceParameters
    if seq is None or not seq.TR:
        raise ValueError("the header has no sequenceParameters.TR to pace the readouts by")
    return float(seq.TR[0]) * 1e-3


class Replay:
    """One connection: send readouts (paced or not) with queries in between, and record when
    everything comes back."""

    def __init__(self, port: int, out_dir: Path, timeout_s: float = 900.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # queries: no Nagle wait
        self.writer = MessageWriter(self.sock.sendall)
        self.rfile = self.sock.makefile("rb")
        self.reader = MessageReader(self.rfile.read)
        self.out = OutputFolder(out_dir, application().dicom_hooks)
        self.files = BackgroundWriter(self.out)  # as sodium-gadgets send: disk off the socket
        self.timeout_s = timeout_s
        self.t_connect = time.perf_counter()
        self.sent = 0  # imaging readouts sent
        self.query_sent: dict[int, tuple[float, int]] = {}  # id -> (time, readouts sent before)
        self.query_answered: dict[int, tuple[float, int]] = {}  # id -> (time, sent by then)
        self.dicom_times: list[float] = []
        self.texts: list[str] = []
        self.errors: list[str] = []
        self.closed = False
        self.t_closed: float | None = None
        self._receiver = threading.Thread(target=self._receive, daemon=True)
        self._receiver.start()

    def _receive(self) -> None:
        try:
            while True:
                msg = self.reader.read()
                now = time.perf_counter()
                if isinstance(msg, Close):
                    self.closed, self.t_closed = True, now
                    return
                if isinstance(msg, Response):
                    self.query_answered[msg.correlation_id] = (now, self.sent)
                elif isinstance(msg, Text | Error):
                    (self.errors if "ERROR" in msg.text else self.texts).append(msg.text)
                elif isinstance(msg, DicomFile):
                    self.dicom_times.append(now)  # received whole (written to disk after)
                    self.files.add(msg)
                elif isinstance(msg, ismrmrd.Image | ismrmrd.Acquisition | ismrmrd.Waveform):
                    self.files.add(msg)
        except (EOFError, ProtocolError, OSError) as exc:
            if not self.closed:
                self.errors.append(f"[client] connection ended without CLOSE: {exc}")

    def query(self, qid: int) -> None:
        self.query_sent[qid] = (time.perf_counter(), self.sent)
        self.writer.query(qid, "sodium-gadgets::version")

    def finish(self) -> None:
        self.writer.close()
        self._receiver.join(self.timeout_s)
        self.rfile.close()
        self.sock.close()
        self.files.close()

    def backlog(self, ids: list[int], cap: int) -> list[tuple[float, float, int]]:
        """For the queries ``ids``: (time since connect, round trip = the server's backlog in
        seconds, queue depth in readouts when the answer came, counting readouts up to ``cap``,
        the end of the part of the scan the queries belong to)."""
        rows = []
        for qid in ids:
            t_sent, n_before = self.query_sent[qid]
            if qid in self.query_answered:
                t_ans, n_by_then = self.query_answered[qid]
                depth = min(n_by_then, cap) - n_before
                rows.append((t_sent - self.t_connect, t_ans - t_sent, depth))
        return rows


def imaging_readouts(raw: Path) -> int:
    """Readouts in the file that are not noise scans (from the headers alone)."""
    noise = np.uint64(1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1))
    with h5py.File(raw, "r") as f:
        flags = f["dataset/data"].fields("head")[:]["flags"]
    return int(np.count_nonzero((flags & noise) == 0))


def replay(
    raw: Path,
    port: int,
    out_dir: Path,
    tr_s: float,
    paced_s: float,
    mode: str,
    parameters: dict[str, str] | None = None,
) -> dict:
    """Send ``raw`` to the server on ``port``, the noise scans first, then the imaging readouts
    (``parameters``: chain properties, sent after the header as ``sodium-gadgets send --set``):

    * ``head``: the first ``paced_s`` seconds of readouts one TR apart, then CLOSE (a shortened
      scan);
    * ``ends``: the whole scan, the first and the last ``paced_s`` seconds one TR apart, the
      middle as fast as possible (the scanner's view of the end of a whole scan, in less time);
    * ``full``: the whole scan as fast as possible.
    """
    xml, items = read_raw(raw)
    total = imaging_readouts(raw)
    n_pace = int(round(paced_s / tr_s)) if mode != "full" else 0
    n_send = min(n_pace, total) if mode == "head" else total
    tail_from = total - n_pace if mode == "ends" else total
    per_second = max(1, int(round(1.0 / tr_s)))
    r = Replay(port, out_dir)
    r.writer.query(1 << 62, f"{ACCEPTS_QUERY}=1018")  # as sodium-gadgets send: DICOM back
    r.writer.config_file("default")
    r.writer.header(xml)
    if parameters:
        r.writer.text(json.dumps({"version": "1.0", "parameters": parameters}))
    blocked: list[float] = []
    late: list[float] = []
    phases: dict[str, list[int]] = {"head": [], "middle": [], "tail": []}
    t_first = t_last = anchor = None
    for acq in items:
        if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            r.writer.item(acq)
            continue
        i = r.sent
        if i >= n_send:
            break
        phase = "head" if i < n_pace else "tail" if i >= tail_from else "middle"
        now = time.perf_counter()
        if phase == "middle":
            anchor = None
        else:
            if anchor is None:
                anchor = (now, i)
            due = anchor[0] + (i - anchor[1]) * tr_s
            if due > now:
                time.sleep(due - now)
                now = time.perf_counter()
            late.append(now - due)
        r.writer.item(acq)
        t_last = time.perf_counter()
        blocked.append(t_last - now)
        t_first = t_first or now
        r.sent += 1
        if r.sent % (per_second if phase != "middle" else 500) == 0:
            r.query(r.sent)
            phases[phase].append(r.sent)
    wall_last = time.time()
    r.query(CAUGHT_UP)  # answered once the server has processed the last readout
    r.finish()
    caught_up = r.query_answered.get(CAUGHT_UP, (float("nan"), 0))[0]
    last_dicom = r.dicom_times[-1] if r.dicom_times else float("nan")
    return {
        "mode": mode,
        "readouts": r.sent,
        "of": total,
        "paced": n_pace,
        "closed": r.closed,
        "errors": r.errors,
        "texts": r.texts,
        "dicoms": len(r.dicom_times),
        "t_send": t_last - t_first,
        "last_to_caught_up": caught_up - t_last,
        "caught_up_to_dicom": last_dicom - caught_up,
        "last_to_dicom": last_dicom - t_last,
        "connect_to_dicom": last_dicom - r.t_connect,
        "first_to_caught_up": caught_up - t_first,
        "blocked": blocked,
        "late": late,
        "backlog": {
            "head": r.backlog(phases["head"], min(n_pace, n_send)),
            "middle": r.backlog(phases["middle"], tail_from),
            "tail": r.backlog(phases["tail"], n_send),
        },
        "wall_last": wall_last,
        "wall_caught_up": wall_last + (caught_up - t_last),
    }


def _server_timeline(log_path: Path, wall_from: float, limit: int = 40) -> list[str]:
    """Server log lines after ``wall_from`` (time.time()), with their offset in seconds."""
    rows = []
    for line in log_path.read_text().splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+): (.*)", line)
        if not m:
            continue
        stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if stamp >= wall_from - 0.002:
            text = m.group(4)
            rows.append(f"  +{stamp - wall_from:6.3f} s  {m.group(3)}: {text[:110]}")
    return rows[:limit]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def _backlog_lines(phase: str, rows: list, tr_s: float, paced: bool) -> list[str]:
    if not rows:
        return []
    rtt = [b for _, b, _ in rows]
    depth = [d for _, _, d in rows]
    lines = [
        f"   backlog, {phase} ({len(rows)} queries): max {max(rtt):.3f} s (queue {max(depth)} "
        f"readouts), median {statistics.median(rtt):.3f} s, last {rtt[-1]:.3f} s"
    ]
    if paced:
        recent = [(b, d) for t, b, d in rows if t > rows[-1][0] - 10.0]
        steady = max(b for b, _ in recent)
        half = len(rtt) // 2
        bounded = steady < 2 * tr_s and max(rtt[half:]) <= max(rtt[: half or 1]) + tr_s
        lines.append(
            f"   keeps up at TR ({phase}): {'yes' if bounded else 'NO'} (last 10 s: backlog max "
            f"{steady * 1e3:.0f} ms = {steady / tr_s:.2f} TR, queue max "
            f"{max(d for _, d in recent)} readouts)"
        )
    step = max(1, len(rows) // 10)
    trace = "  ".join(f"{t:.0f}s:{b * 1e3:.0f}ms/{d}" for t, b, d in rows[::step])
    lines.append(f"   {phase} over time (since connect: round trip/queue): {trace}")
    return lines


def report(title: str, run: dict, tr_s: float, rss: float | None) -> None:
    print(
        f"\n== {title}: {run['readouts']} of {run['of']} imaging readouts sent, "
        f"{run['dicoms']} DICOM files back, closed={run['closed']}"
    )
    for text in run["texts"]:
        print(f"   server: {text[:160]}")
    for text in run["errors"]:
        print(f"   server ERROR: {text[:300]}")
    blocked = run["blocked"]
    print(
        f"   sending: {run['t_send']:.2f} s; send call blocked max {max(blocked) * 1e3:.1f} ms, "
        f"p99 {_pct(blocked, 0.99) * 1e3:.1f} ms, total {sum(blocked):.2f} s"
    )
    if run["late"]:
        print(
            f"   pacing: {run['paced']} readouts one TR ({tr_s * 1e3:.0f} ms) apart at each paced "
            f"part; a readout left late by max {max(run['late']) * 1e3:.1f} ms, median "
            f"{statistics.median(run['late']) * 1e3:.2f} ms"
        )
    for phase, rows in run["backlog"].items():
        for line in _backlog_lines(phase, rows, tr_s, phase != "middle" and run["mode"] != "full"):
            print(line)
    print(
        f"   last readout sent -> server caught up: {run['last_to_caught_up']:.3f} s; caught "
        f"up -> last DICOM: {run['caught_up_to_dicom']:.3f} s; last readout -> last DICOM: "
        f"{run['last_to_dicom']:.3f} s"
    )
    rate = run["readouts"] / run["first_to_caught_up"]
    print(
        f"   connect -> last DICOM: {run['connect_to_dicom']:.2f} s; first readout -> caught up:"
        f" {run['first_to_caught_up']:.2f} s"
        + (f" = {rate:.1f} readouts/s processed" if run["mode"] == "full" else "")
    )
    if rss is not None:
        print(f"   server peak RSS: {rss:.0f} MB")


# --------------------------------------------------------------------------- in-process profile


def profile_finish(raw: Path, overrides: dict[str, str], top: int = 25) -> None:
    """The chain on the whole scan in-process (``overrides``: chain properties, over the protocol
    map's): per-step time during the stream and after the last readout (``finish``), then
    cProfile of ``finish`` in a second, identical run."""
    xml, _ = read_raw(raw)
    chains = application().chains_dir
    entry = chain_for_protocol(xml, chains)

    def run(profiler: cProfile.Profile | None):
        runner = ChainRunner(load_chain(entry.chain, chains), xml, {**entry.overrides, **overrides})
        spent: dict[tuple[str, str], float] = defaultdict(float)
        phase = ["stream"]
        for name, step in runner.steps:
            for method in ("process", "finish"):
                original = getattr(step, method)

                def timed(*args, _f=original, _n=name, _m=method):
                    t = time.perf_counter()
                    out = list(_f(*args))
                    spent[(_n, f"{phase[0]}:{_m}")] += time.perf_counter() - t
                    return out

                setattr(step, method, timed)
        _, items = read_raw(raw)
        t0 = time.perf_counter()
        for item in items:
            runner.push(item)
        t_stream = time.perf_counter() - t0
        phase[0] = "end"
        t0 = time.perf_counter()
        if profiler is None:
            runner.finish()
        else:
            profiler.runcall(runner.finish)
        return t_stream, time.perf_counter() - t0, spent

    t_stream, t_end, spent = run(None)
    print(
        f"\n== in-process profile of {entry.chain} on {raw.name}: stream {t_stream:.1f} s "
        f"(all readouts pushed), end of scan (finish) {t_end:.3f} s"
    )
    print("   per step, exclusive of the steps after it (each step's own process/finish):")
    for (name, what), sec in sorted(spent.items(), key=lambda kv: -kv[1]):
        if sec >= 0.001:
            print(f"   {name:18s} {what:16s} {sec:8.3f} s")
    prof = cProfile.Profile()
    _, t_end_prof, _ = run(prof)
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(r"gadgets|pydicom|scipy", top)
    stats.sort_stats("tottime").print_stats(15)
    print(f"\n== cProfile of finish() (second run: {t_end_prof:.3f} s with the profiler on)")
    keep = False
    for line in buf.getvalue().splitlines():
        if "ncalls" in line:
            keep = True
        if keep and line.strip():
            print("   " + line[:150])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scan", default=DEFAULT_SCAN, help=f"named scan (default {DEFAULT_SCAN})")
    parser.add_argument("--dir", default="sim", help="where simulated scans are kept (default sim)")
    parser.add_argument(
        "--paced-seconds",
        type=float,
        default=30.0,
        help="seconds of readouts sent one TR apart (default 30)",
    )
    parser.add_argument(
        "--paced-mode",
        choices=["ends", "head"],
        default="ends",
        help="ends (default): the whole scan, its first and last --paced-seconds paced, the "
        "middle at full speed; head: only the first --paced-seconds (a shortened scan)",
    )
    parser.add_argument("--skip-full", action="store_true", help="no full-speed run")
    parser.add_argument(
        "--no-wisdom",
        action="store_true",
        help="do not run the install step `sodium-gadgets fft-wisdom` on the scan first (the "
        "FFTs are then planned by FFTW's estimate, unless this machine's wisdom has them)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also time and profile the end-of-scan work in-process (two more "
        "runs of the whole chain)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a chain property, sent with the scan as `sodium-gadgets send --set` does "
        "(repeatable), e.g. a site's coil file: --set coil_models=FILE.json",
    )
    args = parser.parse_args()
    if any("=" not in pair for pair in args.set):
        parser.error("--set takes NAME=VALUE")
    overrides = dict(pair.split("=", 1) for pair in args.set)
    # a coil file named by the client: this benchmark's server is the site's own
    serve_args = ("--client-locations",) if overrides else ()

    sim = Path(args.dir)
    raw = ensure_scan(args.scan, sim)
    xml, _ = read_raw(raw)
    tr_s = tr_seconds(xml)
    entry = chain_for_protocol(xml, application().chains_dir)
    work = sim / f"{args.scan}_latency"
    for old in ("paced", "full"):  # this benchmark's own output of an earlier run
        shutil.rmtree(work / old, ignore_errors=True)
    print(
        f"{args.scan}: chain {entry.chain} (protocol map), TR {tr_s * 1e3:g} ms, "
        f"{imaging_readouts(raw)} imaging readouts, raw {raw} ({raw.stat().st_size / 1e6:.0f} "
        f"MB); server logs in {work}/",
        flush=True,
    )

    if not args.no_wisdom:  # the physicist's once-per-machine install step (README)
        done = plan_fft_wisdom(raw, application())
        print(f"fft-wisdom ({done.effort}): {done.seconds:.1f} s -> {done.path}", flush=True)

    what = (
        f"first and last {args.paced_seconds:g} s paced at TR, middle at full speed"
        if args.paced_mode == "ends"
        else f"shortened scan: first {args.paced_seconds:g} s paced at TR"
    )
    with ServerProcess(log_path=work / "server_paced.log", serve_args=serve_args) as server:
        paced = replay(
            raw, server.port, work / "paced", tr_s, args.paced_seconds, args.paced_mode, overrides
        )
    report(f"(a) {what}", paced, tr_s, server.peak_rss_mb)
    print("   server log after the last readout (times from the last readout sent):")
    print("\n".join(_server_timeline(work / "server_paced.log", paced["wall_last"])), flush=True)
    rss = [server.peak_rss_mb or 0.0]

    full = None
    if not args.skip_full:
        with ServerProcess(log_path=work / "server_full.log", serve_args=serve_args) as server:
            full = replay(raw, server.port, work / "full", tr_s, 0.0, "full", overrides)
        report("(b) full speed, whole scan", full, tr_s, server.peak_rss_mb)
        print("   server log after it caught up with the last readout (times from then):")
        print(
            "\n".join(_server_timeline(work / "server_full.log", full["wall_caught_up"])),
            flush=True,
        )
        rss.append(server.peak_rss_mb or 0.0)

    if args.profile:
        profile_finish(raw, overrides)

    failed = [e for run in (paced, full) if run for e in run["errors"]]
    if failed:
        print("\nserver errors: " + " | ".join(failed))
    total = full["connect_to_dicom"] if full else float("nan")
    per_s = full["readouts"] / full["first_to_caught_up"] if full else float("nan")
    print(
        f"latency: last_readout_to_dicom={paced['last_to_dicom']:.3f} "
        f"full_speed_total={total:.2f} readouts_per_s={per_s:.1f} peak_rss_mb={max(rss):.0f}"
    )


if __name__ == "__main__":
    main()
