"""What a step knows about where it runs (:class:`StepContext`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["StepContext"]


@dataclass(frozen=True)
class StepContext:
    """Where a step runs: its chain's name and step name, the folders its chain file came from
    (relative resource paths, e.g. coil files, are looked up there first), and the host:
    ``embedded`` (this project's server or ``recon``) or ``gadgetron`` (an ``<external>`` step of
    a real Gadgetron), with what the client takes back beyond ISMRMRD items (``dicom``: message
    1018; ``text``: message 5)."""

    chain: str = ""
    step: str = ""
    resource_dirs: tuple[Path, ...] = ()
    host: str = "embedded"
    client_takes: frozenset[str] = field(default_factory=lambda: frozenset({"dicom", "text"}))
