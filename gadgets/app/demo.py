"""The end-to-end demo behind ``sodium-gadgets demo``: a simulated scan goes through the embedded
server as a scanner would send it, and what the console would receive is checked against the
simulator's truth.

Steps (:func:`run_demo`):

1. simulate the named scan into ``OUT/raw/``, or reuse it (:mod:`.scan_cache`);
2. start ``sodium-gadgets serve`` in a child process on a free loopback port
   (:class:`~.server_process.ServerProcess`, also used by ``benchmarks/latency.py``);
3. stream the raw file to it with :func:`gadgets.runtime.client.send_file` (what
   ``sodium-gadgets send`` does), asking for the ``default`` chain, so the server picks the chain
   from the protocol map by the header's protocol name;
4. everything the server returns lands in ``OUT/recon/`` (DICOM series, ``images.h5``, and the
   PNG of the QA picture);
5. the TSC series is read back from the DICOM files with pydicom (values and geometry,
   :mod:`.dicom_readback`), the calibration is read as data from the images' meta
   (``SodiumCalibration``, also when it was refused), ROI means are compared with the truth
   (:mod:`gadgets.simulator.evaluate`), and :func:`format_summary` makes the text of
   ``OUT/summary.txt``.

Library code: it logs; the command line prints.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from gadgets import __version__
from gadgets.app.application import application
from gadgets.app.dicom_readback import Series, dicom_series, read_volume
from gadgets.app.scan_cache import CachedScan, cached_scan
from gadgets.app.server_process import ServerProcess

__all__ = ["DEFAULT_SCAN", "CalibrationRecord", "DemoResult", "format_summary", "run_demo"]

log = logging.getLogger(__name__)

DEFAULT_SCAN = "brain_3T_tpi_birdcage"


@dataclass(frozen=True)
class CalibrationRecord:
    """The calibration as the calibration step reported it (image meta ``SodiumCalibration``):
    status, reason, the line ``S = a C + b`` and each tube's residual (mM)."""

    status: str
    reason: str
    slope: float | None = None
    intercept: float | None = None
    r2: float | None = None
    residuals_mM: tuple[tuple[float, float], ...] = ()  # (tube concentration, residual)

    @classmethod
    def from_json(cls, text: str) -> CalibrationRecord:
        d = json.loads(text)
        tubes = tuple((t["concentration_mM"], t["residual_mM"]) for t in d.get("tubes", []))
        return cls(
            d["status"], d.get("reason", ""), d.get("slope"), d.get("intercept"), d.get("r2"), tubes
        )


def read_calibration(images_h5: Path) -> CalibrationRecord | None:
    """The calibration record carried by the returned images (TSC or uncalibrated series)."""
    import ismrmrd

    from gadgets.volumes import read_meta

    if not images_h5.exists():
        return None
    ds = ismrmrd.Dataset(str(images_h5), "dataset", create_if_needed=False)
    try:
        for name in sorted(ds.list()):
            if name.startswith("image_"):
                meta = read_meta(ds.read_image(name, 0))
                if "SodiumCalibration" in meta:
                    return CalibrationRecord.from_json(str(meta["SodiumCalibration"]))
    finally:
        ds.close()
    return None


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
    calibration: CalibrationRecord | None = None
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
    evaluate what it returned. Raises :class:`~.server_process.ServerProcessError` when the
    server does not start; a server that reports an error is in the result (``errors``,
    ``ok``)."""
    from gadgets.runtime.client import read_raw, send_file
    from gadgets.runtime.protocol_map import chain_for_protocol, protocol_name
    from gadgets.simulator.scan import ScanDescription

    ScanDescription.load(scan)  # an unknown scan fails here, before a server is started
    app = application()
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
        entry = chain_for_protocol(xml, app.chains_dir)
        _clear_previous_results(recon_dir)
        log.info("streaming %s to port %d (chain %s)", cached.raw, server.port, entry.chain)
        t0 = time.perf_counter()
        result, _ = send_file(
            cached.raw,
            recon_dir,
            host="127.0.0.1",
            port=server.port,
            timeout_s=timeout_s,
            dicom_hooks=app.dicom_hooks,
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

    demo.calibration = read_calibration(recon_dir / "images.h5")
    tsc = demo.tsc_series
    if tsc is not None and cached.truth_json.exists():
        from gadgets.simulator.evaluate import roi_means, table

        volume, geom, _ = read_volume(tsc.files)
        demo.rois = roi_means(volume, geom, cached.truth_json)
        demo.roi_table = table(demo.rois)
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
        f"chain: {demo.chain} (protocol '{demo.protocol}' in the protocol map"
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
    cal = demo.calibration
    if cal is None:
        lines.append("tube calibration: none reported")
    else:
        verdict = "OK" if cal.status == "OK" else f"REFUSED: {cal.reason}"
        lines.append(f"tube calibration S = a C + b ({verdict}):")
        if cal.slope is not None:
            lines.append(
                f"  a = {cal.slope:.6g} per mM, b = {cal.intercept:.6g}, R^2 = {cal.r2:.5f}"
            )
        if cal.residuals_mM:
            lines.append(f"  {'tube mM':>8s} {'residual mM':>12s}")
            for c, r in cal.residuals_mM:
                lines.append(f"  {c:8g} {r:+12.2f}")
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
