"""Which coil a scan was made with, as its ISMRMRD header says, and whether a coil file was
measured with that coil.

A receive profile belongs to one coil: a file measured with another coil of the same channel
count corrects the image with the wrong profile, silently (tubes 2-4x off beside the loops). So a
coil file records what it was measured with, and a scan is matched against it before it is used:

* channel count (``acquisitionSystemInformation.receiverChannels``, else the readouts'): equal;
* coil labels (``coilLabel`` names, in channel order): equal, when both record them;
* field strength (``systemFieldStrength_T``): within 0.2 T, when both record it.

Labels are compared after whitespace is stripped, case kept (vendors spell element names
exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CoilIdentity", "SINGLE_CHANNEL"]

#: the coil combination's name for a one-channel coil without a coil file (its profile, a few
#: percent, stays in the image: a warning, where an array's is refused)
SINGLE_CHANNEL = "single channel"

_FIELD_TOLERANCE_T = 0.2


@dataclass(frozen=True)
class CoilIdentity:
    """A receive coil as a header describes it: channel count, element labels, field (T)."""

    channels: int
    labels: tuple[str, ...] = ()
    field_T: float | None = None

    @classmethod
    def from_header(cls, header: Any, channels: int | None = None) -> CoilIdentity:
        """From a parsed ISMRMRD header; ``channels`` (the readouts') when it has none."""
        info = getattr(header, "acquisitionSystemInformation", None)
        declared = getattr(info, "receiverChannels", None) if info is not None else None
        labels = tuple(
            str(c.coilName).strip()
            for c in sorted(getattr(info, "coilLabel", None) or [], key=lambda c: int(c.coilNumber))
        )
        field = getattr(info, "systemFieldStrength_T", None) if info is not None else None
        count = int(declared) if declared else int(channels or len(labels) or 1)
        return cls(count, labels, float(field) if field else None)

    @classmethod
    def from_dict(cls, desc: dict, source: str = "") -> CoilIdentity | None:
        """The ``"measured_with"`` entry of a coil file, or None when it has none."""
        entry = desc.get("measured_with")
        if entry is None:
            return None
        try:
            field = entry.get("field_T")
            return cls(
                int(entry["channels"]),
                tuple(str(x).strip() for x in entry.get("labels", [])),
                None if field is None else float(field),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"{source}: measured_with needs channels (and may give labels, field_T)"
            ) from exc

    def to_dict(self) -> dict:
        return {"channels": self.channels, "labels": list(self.labels), "field_T": self.field_T}

    def mismatch(self, scan: CoilIdentity) -> str:
        """Why ``scan`` was not made with this coil ('' when it may have been)."""
        if scan.channels != self.channels:
            return f"{scan.channels} channels, the coil file's coil has {self.channels}"
        if self.labels and scan.labels and scan.labels != self.labels:
            pairs = enumerate(zip(scan.labels, self.labels, strict=False))
            diff = next(
                (i for i, (a, b) in pairs if a != b), min(len(scan.labels), len(self.labels))
            )
            got = scan.labels[diff] if diff < len(scan.labels) else "none"
            want = self.labels[diff] if diff < len(self.labels) else "none"
            return f"coil labels differ (channel {diff}: scan {got!r}, coil file {want!r})"
        if (
            self.field_T is not None
            and scan.field_T is not None
            and abs(scan.field_T - self.field_T) > _FIELD_TOLERANCE_T
        ):
            return f"field {scan.field_T:g} T, the coil file was measured at {self.field_T:g} T"
        return ""

    def describe(self) -> str:
        first = f", labels {self.labels[0]}..." if self.labels else ""
        field = f", {self.field_T:g} T" if self.field_T is not None else ""
        return f"{self.channels} channels{first}{field}"
