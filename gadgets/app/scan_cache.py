"""Simulated scans kept on disk and reused: a scan simulated before for the same description
(``NAME.description.json`` beside the raw data records it) is not simulated again."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gadgets import __version__

__all__ = ["CachedScan", "cached_scan"]

log = logging.getLogger(__name__)


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
    from gadgets.simulator.scan import ScanDescription, simulate

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
