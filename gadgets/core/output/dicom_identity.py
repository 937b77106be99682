"""Who and what a DICOM series belongs to, from the scan's ISMRMRD header: patient, study,
frame of reference, protocol and equipment, so that the series this project writes land in the
scanner's study beside the proton images. Every series gets a new UID (``2.25.<UUID>``, no
vendor root)."""

from __future__ import annotations

import datetime as _dt
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = [
    "ScanIdentity",
    "header_fields",
    "header_values",
    "new_dataset",
    "scan_identity",
    "set_identity",
]

_NS = "{http://www.ismrm.org/ISMRMRD}"


def header_fields(xml: str) -> dict[str, str]:
    """Flat ``{path/leaf: text}`` of the ISMRMRD header (first occurrence of each)."""
    root = ET.fromstring(xml)
    out: dict[str, str] = {}

    def walk(el: ET.Element, path: str) -> None:
        for child in el:
            tag = child.tag.replace(_NS, "")
            p = f"{path}/{tag}" if path else tag
            if len(child):
                walk(child, p)
            elif p not in out:
                out[p] = (child.text or "").strip()

    walk(root, "")
    return out


def header_values(xml: str, leaf: str) -> list[str]:
    root = ET.fromstring(xml)
    return [(e.text or "").strip() for e in root.iter(f"{_NS}{leaf}")]


@dataclass(frozen=True)
class ScanIdentity:
    """What every series of one scan shares (patient, study, frame of reference, equipment:
    the header's ``fields``), the time the series is made and its new series UID."""

    fields: dict[str, str]
    now: _dt.datetime
    study_uid: str
    frame_uid: str
    series_uid: str


def scan_identity(header_xml: str) -> ScanIdentity:
    h = header_fields(header_xml)
    return ScanIdentity(
        fields=h,
        now=_dt.datetime.now(),
        study_uid=h.get("studyInformation/studyInstanceUID") or generate_uid(prefix=None),
        frame_uid=h.get("measurementInformation/frameOfReferenceUID") or generate_uid(prefix=None),
        series_uid=generate_uid(prefix=None),
    )


def new_dataset(sop_class: str) -> Dataset:
    """An empty instance of ``sop_class`` with its file meta and a new SOP instance UID."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop_uid = generate_uid(prefix=None)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    return ds


def set_identity(ds: Dataset, ident: ScanIdentity, series_number: int, description: str) -> None:
    """Patient, study, series, frame of reference and equipment attributes from the scan."""
    h, now = ident.fields, ident.now
    # patient and study: from the scan
    ds.PatientName = h.get("subjectInformation/patientName", "")
    ds.PatientID = h.get("subjectInformation/patientID", "")
    ds.PatientBirthDate = h.get("subjectInformation/patientBirthdate", "").replace("-", "")
    sex = h.get("subjectInformation/patientGender", "")
    ds.PatientSex = sex if sex in ("M", "F", "O") else ""
    ds.StudyInstanceUID = ident.study_uid
    ds.StudyDate = h.get("studyInformation/studyDate", "").replace("-", "") or now.strftime(
        "%Y%m%d"
    )
    ds.StudyTime = h.get("studyInformation/studyTime", "").replace(":", "") or now.strftime(
        "%H%M%S"
    )
    ds.StudyID = h.get("studyInformation/studyID", "")[:16]
    ds.AccessionNumber = h.get("studyInformation/accessionNumber", "")[:16]
    ds.ReferringPhysicianName = h.get("studyInformation/referringPhysicianName", "")
    if h.get("studyInformation/studyDescription"):
        ds.StudyDescription = h["studyInformation/studyDescription"][:64]
    # series
    ds.Modality = "MR"
    ds.SeriesInstanceUID = ident.series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description[:64]
    ds.SeriesDate = now.strftime("%Y%m%d")
    ds.SeriesTime = now.strftime("%H%M%S")
    ds.ProtocolName = h.get("measurementInformation/protocolName", "")[:64]
    ds.BodyPartExamined = (h.get("studyInformation/bodyPartExamined") or "HEAD")[:16]
    position = h.get("measurementInformation/patientPosition", "")
    if position:
        ds.PatientPosition = position
    ds.FrameOfReferenceUID = ident.frame_uid
    ds.Manufacturer = h.get("acquisitionSystemInformation/systemVendor", "")[:64]
    ds.ManufacturerModelName = h.get("acquisitionSystemInformation/systemModel", "")[:64]
    if h.get("acquisitionSystemInformation/institutionName"):
        ds.InstitutionName = h["acquisitionSystemInformation/institutionName"][:64]
    ds.SoftwareVersions = "sodium-gadgets"
