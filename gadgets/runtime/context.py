"""What a step knows about where it runs (:class:`StepContext`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["StepContext"]

log = logging.getLogger(__name__)


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

    def file_error(self, name: str, detail: str, what: str, dirs: Sequence[Path] = ()) -> str:
        """What to say about a file ``name`` that could not be used: ``detail`` if it is a bare
        name or lies in the step's folders (``resource_dirs`` and ``dirs``); otherwise the same
        sentence whatever went wrong, so that the client learns nothing about files elsewhere on
        the server (the detail goes to the server's log)."""
        path = Path(name).expanduser()
        if not path.is_absolute() and len(path.parts) <= 1:
            return detail
        folders = [Path(d).resolve() for d in (*self.resource_dirs, *dirs)]
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            resolved = None
        if resolved is not None and any(resolved.is_relative_to(d) for d in folders):
            return detail
        log.warning("[%s] %s", self.step or self.chain, detail)
        return (
            f"{what} {name!r} is not usable: it is outside this server's folders, or missing, "
            "or not readable, or not valid (the server's log says which)"
        )
