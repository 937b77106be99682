"""Sending DICOM files to a PACS by C-STORE (pynetdicom).

Every SOP class in the batch is proposed explicitly as a presentation context (Explicit VR
Little Endian, plus Implicit VR Little Endian as a fallback): MR Image Storage for the maps,
Secondary Capture Image Storage for the calibration QA picture, Parametric Map Storage
(``1.2.840.10008.5.1.4.1.1.30``) for the float maps of ``DicomOutput.parametric_map``; a file
whose SOP class the PACS did not accept is reported as failed, like a rejected one. The
association, its messages and the network each have a timeout, so a PACS that is down or silent
costs seconds, not the scan. Failures are returned (and logged), never raised: the caller keeps
its files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

__all__ = ["PacsTarget", "StoreReport", "c_store"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PacsTarget:
    host: str
    port: int = 104
    called_ae: str = "PACS"
    calling_ae: str = "STORESCU"
    timeout_s: float = 10.0


@dataclass
class StoreReport:
    stored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    error: str | None = None


def c_store(files: list[Path], target: PacsTarget) -> StoreReport:
    """C-STORE each file; returns what was stored and what failed."""
    report = StoreReport()
    datasets = [(Path(f), pydicom.dcmread(f)) for f in files]
    ae = AE(ae_title=target.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = target.timeout_s
    for sop in sorted({str(ds.SOPClassUID) for _, ds in datasets}):
        ae.add_requested_context(sop, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    try:
        assoc = ae.associate(target.host, target.port, ae_title=target.called_ae)
    except Exception as exc:  # a bad address raises before any association exists
        assoc = None
        report.error = f"cannot reach PACS {target.called_ae}@{target.host}:{target.port}: {exc}"
    if assoc is None or not assoc.is_established:
        report.error = report.error or (
            f"PACS {target.called_ae}@{target.host}:{target.port} refused or did not answer"
        )
        report.failed = [str(p) for p, _ in datasets]
        log.error("%s; %d files kept locally", report.error, len(datasets))
        return report
    try:
        for path, ds in datasets:
            try:
                status = assoc.send_c_store(ds)
            except (ValueError, RuntimeError) as exc:  # e.g. no accepted context for its class
                log.error("C-STORE of %s: %s", path.name, exc)
                status = None
            if status and getattr(status, "Status", 0xFFFF) == 0x0000:
                report.stored.append(str(path))
            else:
                report.failed.append(str(path))
    finally:
        assoc.release()
    if report.failed:
        report.error = f"PACS rejected {len(report.failed)} of {len(datasets)} files"
        log.error(report.error)
    else:
        log.info(
            "stored %d files on %s@%s:%d",
            len(report.stored),
            target.called_ae,
            target.host,
            target.port,
        )
    return report
