"""The end-to-end demo behind ``sodium-gadgets demo``: a simulated scan goes through the embedded
server as a scanner would send it, and what the console would receive is checked against the
simulator's truth.

Steps (:func:`run_demo`):

1. simulate the named scan into ``OUT/raw/`` -- or reuse it: a scan simulated before for the same
   description (``NAME.description.json`` beside the raw data records it) is not simulated again;
2. start ``sodium-gadgets serve`` in a child process on a free loopback port
   (:class:`ServerProcess`, also used by ``benchmarks/latency.py``);
3. stream the raw file to it with :func:`gadgets.runtime.client.send_file` (what
   ``sodium-gadgets send`` does), asking for the ``default`` chain, so the server picks the chain
   from ``chains/protocols.toml`` by the header's protocol name;
4. everything the server returns lands in ``OUT/recon/`` (DICOM series, ``images.h5``, and any
   other file the client writes, such as a QA picture);
5. the TSC series is read back from the DICOM files with pydicom (values and geometry), the tube
   fit is parsed from its ``ImageComments`` (or from the warning when calibration was refused),
   ROI means are compared with the truth (:mod:`gadgets.simulator.evaluate`), and
   :func:`format_summary` makes the text of ``OUT/summary.txt``.

Library code: it logs; the command line prints.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__

log = logging.getLogger(__name__)

DEFAULT_SCAN = "brain_3T_tpi_birdcage"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class DemoError(RuntimeError):
    """The demo could not complete; the message says which step and why."""


# --------------------------------------------------------------------------- simulated scan


@dataclass
class CachedScan:
    name: str
    description: str
    raw: Path
    truth_json: Path
    simulated: bool  # False: reused from an earlier run
    seconds: float


def cached_scan(name: str, raw_dir: str | Path, force: bool = False) -> CachedScan:
    """The simulated scan ``name`` (a name in ``simulated_raw/`` or a description .json) in
    ``raw_dir``: simulated unless the files of the same description are already there."""
    from .simulator.scan import ScanDescription, simulate

    desc = ScanDescription.load(name)
    raw_dir = Path(raw_dir)
    raw = raw_dir / f"{desc.name}.h5"
    truth_json = raw_dir / f"{desc.name}_truth.json"
    truth_npz = raw_dir / f"{desc.name}_truth.npz"
    stamp = raw_dir / f"{desc.name}.description.json"
    wanted = json.dumps({"description": asdict(desc), "sodium_gadgets": __version__}, indent=1)
    have = all(p.exists() for p in (raw, truth_json, truth_npz, stamp))
    if have and not force and stamp.read_text() == wanted:
        log.info("%s: reusing the simulated scan in %s", desc.name, raw_dir)
        return CachedScan(desc.name, desc.description, raw, truth_json, False, 0.0)
    stamp.unlink(missing_ok=True)  # written last: only a complete simulation carries it
    t0 = time.perf_counter()
    simulate(desc, raw_dir)
    seconds = time.perf_counter() - t0
    stamp.write_text(wanted)
    log.info("%s simulated in %.1f s", desc.name, seconds)
    return CachedScan(desc.name, desc.description, raw, truth_json, True, seconds)


# --------------------------------------------------------------------------- server process


class ServerProcess:
    """``sodium-gadgets serve`` in a child process on a free port (``--port 0``): the same code
    path a site runs. The port is read from the line the server prints when it listens.

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
    ) -> None:
        self.host = host
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
        cmd = [sys.executable, "-u", *self.python_args, "-m", "gadgets.cli"]
        cmd += ["-v"] * self.verbose + ["serve", "--host", self.host, "--port", "0"]
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
                raise DemoError(f"the server ({' '.join(cmd)}) {why}{where}")
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


# --------------------------------------------------------------------------- DICOM read-back


@dataclass
class Series:
    uid: str
    number: int
    description: str
    sop_class: str
    files: list[Path] = field(default_factory=list)

    @property
    def sop_class_name(self) -> str:
        from pydicom.uid import UID

        return UID(self.sop_class).name

    @property
    def is_mr_image(self) -> bool:
        return self.sop_class == MR_IMAGE_STORAGE

    @property
    def is_tsc(self) -> bool:
        """The quantitative TSC map (MR Image Storage, not a QA picture of it)."""
        d = self.description
        return self.is_mr_image and "TSC" in d and "QA" not in d


def dicom_series(folder: str | Path) -> list[Series]:
    """The DICOM series in ``folder`` (every ``*.dcm`` read with pydicom), by series number."""
    import pydicom

    found: dict[str, Series] = {}
    for path in sorted(Path(folder).glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uid = str(ds.SeriesInstanceUID)
        if uid not in found:
            found[uid] = Series(
                uid,
                int(ds.get("SeriesNumber", 0) or 0),
                str(ds.get("SeriesDescription", "")),
                str(ds.SOPClassUID),
            )
        found[uid].files.append(path)
    return sorted(found.values(), key=lambda s: (s.number, s.description))


def read_volume(paths: list[Path]):
    """Real-world values ``(nz, ny, nx)`` of a single-frame MR series, its
    :class:`~gadgets.core.dicom.Geometry` and datasets, all from the DICOM files alone (pixel
    data, rescale, position, orientation, spacing): what a viewer sees."""
    from .core.dicom import Geometry, read_series

    volume, datasets = read_series(paths)
    return volume, Geometry.from_datasets(datasets), datasets


# --------------------------------------------------------------------------- calibration text


@dataclass
class CalibrationFit:
    """``S = a C + b`` as the calibration step reports it."""

    slope: float
    intercept: float
    r2: float
    residuals_mM: list[tuple[float, float]]  # (tube concentration, residual) in mM


def parse_calibration(text: str) -> CalibrationFit | None:
    """The fit in a TSC series' ImageComments or in a refused calibration's warning, e.g.
    ``S = 0.01234 C + 0.001, R2 = 0.99990, 4 tubes, residuals [mM] 30 mM: +0.12, ...``;
    None when the text holds no fit."""
    m = re.search(rf"S = ({_NUMBER}) C \+ ({_NUMBER}), R2 = ({_NUMBER})", text)
    if m is None:
        return None
    residuals = []
    tail = text[m.end() :]
    if "residuals" in tail:
        tail = tail.split("residuals", 1)[1]
        for c, r in re.findall(rf"({_NUMBER}) mM: ({_NUMBER})", tail):
            residuals.append((float(c), float(r)))
    return CalibrationFit(float(m.group(1)), float(m.group(2)), float(m.group(3)), residuals)


# --------------------------------------------------------------------------- the demo


@dataclass
class DemoResult:
    scan: CachedScan
    chain: str
    protocol: str
    overrides: dict
    out_dir: Path
    recon_dir: Path
    port: int
    series: list[Series]
    other_files: list[Path]
    texts: list[str]
    errors: list[str]
    closed: bool
    calibration_source: str = ""
    calibration_text: str = ""
    fit: CalibrationFit | None = None
    rois: list = field(default_factory=list)
    roi_table: str = ""
    server_returncode: int | None = None
    server_peak_rss_mb: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def tsc_series(self) -> Series | None:
        return next((s for s in self.series if s.is_tsc), None)

    @property
    def ok(self) -> bool:
        """The stream completed without a server error and DICOM images came back."""
        return self.closed and not self.errors and any(s.is_mr_image for s in self.series)


def _clear_previous_results(recon_dir: Path) -> None:
    """A rerun must not show the last run's files as this run's: remove what the client writes."""
    if not recon_dir.is_dir():
        return
    for pattern in ("*.dcm", "*.png", "images.h5", "*.partial", ".images.h5.partial"):
        for path in recon_dir.glob(pattern):
            if path.is_file():
                path.unlink()


def run_demo(
    out_dir: str | Path,
    scan: str = DEFAULT_SCAN,
    raw_dir: str | Path | None = None,
    resimulate: bool = False,
    timeout_s: float = 600.0,
) -> DemoResult:
    """Simulate (or reuse) ``scan``, stream it through a ``serve`` child process, read back and
    evaluate what it returned. Raises :class:`DemoError` when a step cannot run; a server that
    reports an error is in the result (``errors``, ``ok``)."""
    from .runtime.client import read_raw, send_file
    from .runtime.protocols import chain_for_protocol, protocol_name
    from .simulator.scan import ScanDescription

    ScanDescription.load(scan)  # an unknown scan fails here, before a server is started
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_dir = Path(raw_dir) if raw_dir else out_dir / "raw"
    recon_dir = out_dir / "recon"
    seconds: dict[str, float] = {}

    with ServerProcess(log_path=out_dir / "server.log") as server:
        # the server starts (imports) while the scan is simulated
        cached = cached_scan(scan, raw_dir, force=resimulate)
        seconds["simulate"] = cached.seconds
        xml, _ = read_raw(cached.raw)
        entry = chain_for_protocol(xml)
        _clear_previous_results(recon_dir)
        log.info("streaming %s to port %d (chain %s)", cached.raw, server.port, entry.chain)
        t0 = time.perf_counter()
        result, _ = send_file(
            cached.raw, recon_dir, host="127.0.0.1", port=server.port, timeout_s=timeout_s
        )
        t_send = time.perf_counter() - t0
        wall_done = time.time()
        after = result.seconds_after_last_send
        seconds["stream"] = t_send - (after or 0.0)
        seconds["send_total"] = t_send
        seconds["last_readout_to_last_result"] = after if after is not None else float("nan")
        # the last DICOM file's time of writing, against the last readout's: the client reports
        # only the time from the last readout to its last message (CLOSE follows it at once)
        written = [p.stat().st_mtime for p in recon_dir.glob("*.dcm")]
        if written and after is not None:
            seconds["last_readout_to_last_dicom"] = max(written) - (wall_done - after)
    t_eval = time.perf_counter()

    series = dicom_series(recon_dir)
    dicoms = {p for s in series for p in s.files}
    other = sorted(
        p
        for p in recon_dir.iterdir()
        if p.is_file() and p not in dicoms and not p.name.endswith(".partial")
    )
    demo = DemoResult(
        scan=cached,
        chain=entry.chain,
        protocol=protocol_name(xml),
        overrides=dict(entry.overrides),
        out_dir=out_dir,
        recon_dir=recon_dir,
        port=server.port,
        series=series,
        other_files=other,
        texts=list(result.texts),
        errors=list(result.errors),
        closed=result.closed,
        server_returncode=server.returncode,
        server_peak_rss_mb=server.peak_rss_mb,
    )

    tsc = demo.tsc_series
    if tsc is not None:
        volume, geom, datasets = read_volume(tsc.files)
        demo.calibration_source = f"ImageComments of series {tsc.number} '{tsc.description}'"
        demo.calibration_text = str(datasets[0].get("ImageComments", ""))
        demo.fit = parse_calibration(demo.calibration_text)
        if cached.truth_json.exists():
            from .simulator.evaluate import roi_means, table

            demo.rois = roi_means(volume, geom, cached.truth_json)
            demo.roi_table = table(demo.rois)
    else:
        refused = [t for t in demo.texts + demo.errors if "calibration" in t.lower()]
        if refused:
            demo.calibration_source = "the server's warning (calibration refused)"
            demo.calibration_text = refused[0]
            demo.fit = parse_calibration(refused[0])
    seconds["evaluate"] = time.perf_counter() - t_eval
    seconds["total"] = time.perf_counter() - t_start
    demo.seconds = seconds
    return demo


def format_summary(demo: DemoResult) -> str:
    """The text of ``summary.txt``."""
    s = demo.seconds
    lines = [f"sodium-gadgets {__version__} demo: {demo.scan.name}"]
    if demo.scan.description:
        lines.append(f"  {demo.scan.description}")
    how = (
        f"simulated in {demo.scan.seconds:.1f} s"
        if demo.scan.simulated
        else "reused: simulated by an earlier run for the same description"
    )
    lines.append(f"raw data: {demo.scan.raw} ({how})")
    sets = ", ".join(f"{k}={v}" for k, v in demo.overrides.items())
    lines.append(
        f"chain: {demo.chain} (protocol '{demo.protocol}' in chains/protocols.toml"
        + (f"; sets {sets})" if sets else ")")
    )
    lines.append(
        f"server: sodium-gadgets serve on 127.0.0.1:{demo.port}, stopped with status "
        f"{demo.server_returncode}"
        + (
            f", peak memory {demo.server_peak_rss_mb:.0f} MB"
            if demo.server_peak_rss_mb is not None
            else ""
        )
    )
    lines.append(f"returned to {demo.recon_dir}/:")
    for ser in demo.series:
        n = len(ser.files)
        lines.append(
            f"  series {ser.number:3d} '{ser.description}': {n} DICOM file{'s' * (n != 1)} "
            f"({ser.sop_class_name})"
        )
    for path in demo.other_files:
        lines.append(f"  {path.name} ({path.stat().st_size} bytes)")
    if not demo.series:
        lines.append("  no DICOM series")
    for text in demo.texts:
        lines.append(f"server says: {text}")
    for text in demo.errors:
        lines.append(f"server ERROR: {text}")

    lines.append("")
    if demo.fit is not None:
        f = demo.fit
        lines.append(f"tube calibration S = a C + b (from the {demo.calibration_source}):")
        lines.append(f"  a = {f.slope:.6g} per mM, b = {f.intercept:.6g}, R^2 = {f.r2:.5f}")
        if f.residuals_mM:
            lines.append(f"  {'tube mM':>8s} {'residual mM':>12s}")
            for c, r in f.residuals_mM:
                lines.append(f"  {c:8g} {r:+12.2f}")
    elif demo.calibration_text:
        lines.append(f"tube calibration: {demo.calibration_text}")
    else:
        lines.append("tube calibration: none reported")
    if demo.tsc_series is None:
        lines.append("no TSC map was returned (see the server's messages above)")

    lines.append("")
    if demo.roi_table:
        lines.append("ROI mean TSC read back from the DICOM series vs the simulator's truth:")
        lines.extend("  " + row for row in demo.roi_table.splitlines())
    elif demo.tsc_series is not None:
        lines.append("ROI table: no truth for this scan")

    lines.append("")
    lines.append("timings:")
    sim = f"{s.get('simulate', 0.0):.1f} s" if demo.scan.simulated else "0.0 s (cached)"
    lines.append(f"  simulate                                   {sim}")
    lines.append(f"  stream (connect -> last readout sent)      {s.get('stream', 0.0):.1f} s")
    if "last_readout_to_last_dicom" in s:
        lines.append(
            f"  last readout sent -> last DICOM received   {s['last_readout_to_last_dicom']:.2f} s"
        )
    lines.append(
        "  last readout sent -> last result received  "
        f"{s.get('last_readout_to_last_result', float('nan')):.2f} s"
    )
    lines.append(f"  read back and evaluate                     {s.get('evaluate', 0.0):.1f} s")
    lines.append(f"  total                                      {s.get('total', 0.0):.1f} s")
    return "\n".join(lines) + "\n"
