"""``sodium-gadgets fft-wisdom``: time the FFTs a chain's gridder uses for a kind of scan, once per
machine, and keep them as FFTW wisdom, so that every later scan of that kind plans from the wisdom
(``StreamingGridder.fft_effort=wisdom``, the default) instead of FFTW's estimate: on a 78^3 grid
with 40 channel-bins, 0.05 s per echo (patient) or 0.12 s (measure) instead of 0.19 s, after the
scan's last readout.

The transforms depend on the scan's matrix, channel count and MFI bins and on the chain's
oversampling and kernel, so the command runs the chain itself on the first readouts of a scan of
that protocol (any earlier scan, or a simulated one with the same header) until every echo's grid
is planned, with ``fft_effort`` set to the planning effort; nothing is reconstructed. Run it on the
machine (and with the thread count) the server runs on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import ismrmrd

from gadgets.core.numerics.fft import wisdom_path
from gadgets.runtime.application import Application
from gadgets.runtime.client import file_runner

__all__ = ["WisdomResult", "plan_fft_wisdom"]


@dataclass(frozen=True)
class WisdomResult:
    chain: str
    effort: str
    echoes: int
    seconds: float
    path: Path


def plan_fft_wisdom(
    path: str | Path,
    app: Application,
    chain: str | None = None,
    effort: str = "patient",
    overrides: dict | None = None,
) -> WisdomResult:
    """Plan the FFTs of ``chain`` (the protocol map's choice when None) for scans like ``path``
    with FFTW ``effort`` (``measure`` or ``patient``) and store them as the machine's wisdom."""
    if effort not in ("measure", "patient"):
        raise ValueError(f"planning effort must be measure or patient, got {effort!r}")
    runner, items = file_runner(path, app, chain, {**(overrides or {}), "fft_effort": effort})
    limits = runner.header.encoding[0].encodingLimits
    contrast = limits.contrast if limits is not None else None
    echoes = int(contrast.maximum) + 1 if contrast is not None else 1
    seen: set[int] = set()
    started = time.perf_counter()
    for item in items:  # the noise scans, then the first readout of every echo
        for _ in runner.push(item):
            pass
        if isinstance(item, ismrmrd.Acquisition) and not item.is_flag_set(
            ismrmrd.ACQ_IS_NOISE_MEASUREMENT
        ):
            seen.add(int(item.idx.contrast))
            if len(seen) >= echoes:
                break
    if not seen:
        raise ValueError(f"{path} has no imaging readouts to plan the FFTs for")
    return WisdomResult(
        runner.spec.name, effort, len(seen), time.perf_counter() - started, wisdom_path()
    )
