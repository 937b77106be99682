"""DICOM series (MR Image Storage, one file per slice) from a 3D map, its geometry and the scan's
ISMRMRD header: what the console and the PACS show.

Pixels are signed 16-bit; ``RescaleSlope`` (intercept 0) is the smallest of 0.001 ... 0.1 units
per stored value that holds the map's range, so a value is stored to within half a slope
(<= 0.05 mM for TSC). A Real World Value Mapping item states the same mapping with its UCUM unit
(``mmol/L`` for TSC, ``Hz`` for B0 maps, ``1`` for arbitrary units).

Geometry. The volume is ``(nz, ny, nx)``, x fastest; voxel index ``i_a`` sits at
``r_a = i_a - n_a // 2`` voxels from the volume centre, which is the ISMRMRD ``position`` (patient
LPS mm); ``x``, ``y``, ``z`` run along ``read_dir``, ``phase_dir``, ``slice_dir`` with voxel
sizes ``d_a = FOV_a / n_a``. File ``k`` holds slice ``iz = k``; its rows run along y and its
columns along x, so::

    ImageOrientationPatient = read_dir (along a row), phase_dir (down a column)
    ImagePositionPatient    = position + d_x (0 - nx//2) read_dir + d_y (0 - ny//2) phase_dir
                                       + d_z (k - nz//2) slice_dir          (centre of pixel 0,0)
    PixelSpacing            = [d_y, d_x]        (row spacing first)
    SliceThickness = SpacingBetweenSlices = d_z
    SliceLocation           = ImagePositionPatient . (read_dir x phase_dir)
    Rows = ny, Columns = nx

Identity (patient, study, frame of reference, protocol) comes from the ISMRMRD header, so the
series lands in the scanner's study beside the proton images; every series gets a new UID
(``2.25.<UUID>``, no vendor root).

Pictures (the calibration QA picture of :mod:`gadgets.core.qa`) are Secondary Capture Image
Storage instances, one file, 8-bit RGB, with the same identity
(:func:`secondary_capture_dataset`).
"""

from __future__ import annotations

import datetime as _dt
import os
import struct
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import (
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

_NS = "{http://www.ismrm.org/ISMRMRD}"
_SLOPES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)

#: UCUM code, meaning: the units of the maps this project writes
UNITS = {
    "mmol/L": "millimole per liter",
    "Hz": "hertz",
    "1": "no units",
}


@dataclass(frozen=True)
class Geometry:
    """Where a ``(nz, ny, nx)`` volume sits in the patient (LPS mm)."""

    shape: tuple[int, int, int]
    fov_mm: tuple[float, float, float]  # (x, y, z)
    position_mm: tuple[float, float, float]
    read_dir: tuple[float, float, float]
    phase_dir: tuple[float, float, float]
    slice_dir: tuple[float, float, float]

    @property
    def voxel_mm(self) -> np.ndarray:
        nz, ny, nx = self.shape
        return np.array(self.fov_mm, np.float64) / np.array([nx, ny, nz])

    def slice_position(self, k: int) -> np.ndarray:
        nz, ny, nx = self.shape
        dx, dy, dz = self.voxel_mm
        return (
            np.asarray(self.position_mm, np.float64)
            + dx * (0 - nx // 2) * np.asarray(self.read_dir)
            + dy * (0 - ny // 2) * np.asarray(self.phase_dir)
            + dz * (k - nz // 2) * np.asarray(self.slice_dir)
        )

    def points_mm(self) -> np.ndarray:
        """``(nz, ny, nx, 3)`` patient LPS mm of every voxel centre."""
        nz, ny, nx = self.shape
        dx, dy, dz = self.voxel_mm
        iz, iy, ix = np.meshgrid(
            np.arange(nz) - nz // 2, np.arange(ny) - ny // 2, np.arange(nx) - nx // 2,
            indexing="ij",
        )  # fmt: skip
        return (
            np.asarray(self.position_mm)
            + (dx * ix)[..., None] * np.asarray(self.read_dir)
            + (dy * iy)[..., None] * np.asarray(self.phase_dir)
            + (dz * iz)[..., None] * np.asarray(self.slice_dir)
        )

    @classmethod
    def from_datasets(cls, datasets: list[Dataset]) -> Geometry:
        """From a single-frame series sorted by InstanceNumber, by the DICOM attributes alone
        (ImagePositionPatient, ImageOrientationPatient, PixelSpacing): the inverse of the
        formulas above, i.e. what a viewer sees."""
        first = datasets[0]
        iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
        read_dir, phase_dir = iop[:3], iop[3:]
        dy, dx = (float(v) for v in first.PixelSpacing)
        nz, ny, nx = len(datasets), int(first.Rows), int(first.Columns)
        ipp = np.asarray([[float(v) for v in d.ImagePositionPatient] for d in datasets])
        if nz > 1:
            step = (ipp[-1] - ipp[0]) / (nz - 1)
            dz = float(np.linalg.norm(step))
            slice_dir = step / dz
        else:
            dz = float(first.get("SliceThickness", 1.0))
            slice_dir = np.cross(read_dir, phase_dir)
        centre = ipp[0] + dx * (nx // 2) * read_dir + dy * (ny // 2) * phase_dir
        centre = centre + dz * (nz // 2) * slice_dir
        return cls(
            (nz, ny, nx), (nx * dx, ny * dy, nz * dz), tuple(map(float, centre)),
            tuple(map(float, read_dir)), tuple(map(float, phase_dir)),
            tuple(map(float, slice_dir)),
        )  # fmt: skip

    @classmethod
    def from_image(cls, image) -> Geometry:
        """From an ``ismrmrd.Image`` of the whole volume (data (1, nz, ny, nx))."""
        nz, ny, nx = image.data.shape[-3:]
        return cls(
            (nz, ny, nx), tuple(map(float, image.field_of_view)), tuple(map(float, image.position)),
            tuple(map(float, image.read_dir)), tuple(map(float, image.phase_dir)),
            tuple(map(float, image.slice_dir)),
        )  # fmt: skip


@dataclass(frozen=True)
class SeriesInfo:
    """What a series is: its description (e.g. ``Na23 TSC [mmol/L]``), number, UCUM unit,
    the label of its value mapping, ImageType values 3 and 4, and the display window."""

    description: str
    series_number: int
    unit: str = "mmol/L"
    label: str = "TSC"
    image_type: tuple[str, ...] = ("TSC",)
    window: tuple[float, float] | None = None  # centre, width in the unit
    comments: str = ""
    echo_time_ms: float | None = None
    extra: dict = field(default_factory=dict)


def _header_fields(xml: str) -> dict[str, str]:
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


def _all(xml: str, leaf: str) -> list[str]:
    root = ET.fromstring(xml)
    return [(e.text or "").strip() for e in root.iter(f"{_NS}{leaf}")]


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6e}"


def _slope(volume: np.ndarray) -> float:
    peak = float(np.nanmax(np.abs(volume))) if volume.size else 0.0
    for slope in _SLOPES:
        if peak / slope <= 32767:
            return slope
    raise ValueError(f"values up to {peak:g} do not fit 16 bits at <= 0.1 per step")


@dataclass(frozen=True)
class _Identity:
    """What every series of one scan shares (patient, study, frame of reference, equipment:
    the header's ``fields``), the time the series is made and its new series UID."""

    fields: dict[str, str]
    now: _dt.datetime
    study_uid: str
    frame_uid: str
    series_uid: str


def _identity(header_xml: str) -> _Identity:
    h = _header_fields(header_xml)
    return _Identity(
        fields=h,
        now=_dt.datetime.now(),
        study_uid=h.get("studyInformation/studyInstanceUID") or generate_uid(prefix=None),
        frame_uid=h.get("measurementInformation/frameOfReferenceUID") or generate_uid(prefix=None),
        series_uid=generate_uid(prefix=None),
    )


def _new_dataset(sop_class: str) -> Dataset:
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


def _set_identity(ds: Dataset, ident: _Identity, info: SeriesInfo) -> None:
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
    ds.SeriesNumber = info.series_number
    ds.SeriesDescription = info.description[:64]
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


def series_datasets(
    volume: np.ndarray, geometry: Geometry, header_xml: str, info: SeriesInfo
) -> list[Dataset]:
    """One MR Image Storage dataset per slice of ``volume`` (nz, ny, nx), in ``info.unit``."""
    volume = np.asarray(volume, np.float64)
    if volume.shape != geometry.shape:
        raise ValueError(f"volume {volume.shape} does not match its geometry {geometry.shape}")
    if info.unit not in UNITS:
        raise ValueError(f"unknown unit {info.unit!r}; known: {sorted(UNITS)}")
    finite = np.where(np.isfinite(volume), volume, 0.0)
    slope = _slope(finite)
    stored = np.clip(np.round(finite / slope), -32768, 32767).astype(np.int16)
    ident = _identity(header_xml)
    h = ident.fields
    te, tr, flip = (_all(header_xml, leaf) for leaf in ("TE", "TR", "flipAngle_deg"))
    echo_ms = info.echo_time_ms
    if echo_ms is None and te:
        echo_ms = float(te[0])
    normal = np.cross(geometry.read_dir, geometry.phase_dir)
    dx, dy, dz = geometry.voxel_mm
    nz, ny, nx = geometry.shape
    window = info.window or (float(np.percentile(finite, 50)), float(np.ptp(finite)) or 1.0)
    now = ident.now
    ds = _new_dataset(MRImageStorage)
    # slice 0 in full; the others share its constant elements (_slice_of)
    _set_identity(ds, ident, info)
    ds.PositionReferenceIndicator = ""
    # image
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "PRIMARY", *info.image_type]
    if info.comments:
        ds.ImageComments = info.comments[:10240]
    ds.ImageOrientationPatient = [_ds(v) for v in (*geometry.read_dir, *geometry.phase_dir)]
    ipp = geometry.slice_position(0)
    ds.ImagePositionPatient = [_ds(v) for v in ipp]
    ds.SliceLocation = _ds(float(ipp @ normal))
    ds.PixelSpacing = [_ds(dy), _ds(dx)]
    ds.SliceThickness = _ds(dz)
    ds.SpacingBetweenSlices = _ds(dz)
    # MR acquisition
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "SP"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.RepetitionTime = _ds(float(tr[0])) if tr else ""
    ds.EchoTime = _ds(echo_ms) if echo_ms is not None else ""
    ds.EchoTrainLength = 1
    if flip:
        ds.FlipAngle = _ds(float(flip[0]))
    ds.ImagedNucleus = "23NA"
    field_t = h.get("acquisitionSystemInformation/systemFieldStrength_T")
    if field_t:
        ds.MagneticFieldStrength = _ds(float(field_t))
    freq = h.get("experimentalConditions/H1resonanceFrequency_Hz")
    if freq:
        ds.ImagingFrequency = _ds(float(freq) / 1e6)
    ds.SequenceName = h.get("measurementInformation/sequenceName", "")[:16]
    # pixels and their meaning
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.PixelData = stored[0].tobytes()
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = _ds(slope)
    ds.RescaleType = "US" if info.unit != "Hz" else "HZ"
    ds.WindowCenter = _ds(window[0])
    ds.WindowWidth = _ds(max(window[1], slope))
    mapping = Dataset()
    mapping.LUTExplanation = info.description[:64]
    mapping.LUTLabel = info.label[:16]
    mapping.RealWorldValueFirstValueMapped = -32768
    mapping.RealWorldValueLastValueMapped = 32767
    mapping.RealWorldValueIntercept = 0.0
    mapping.RealWorldValueSlope = slope
    unit = Dataset()
    unit.CodeValue = info.unit
    unit.CodingSchemeDesignator = "UCUM"
    unit.CodeMeaning = UNITS[info.unit]
    mapping.MeasurementUnitsCodeSequence = [unit]
    ds.RealWorldValueMappingSequence = [mapping]
    for key, value in info.extra.items():
        setattr(ds, key, value)
    out = [ds]
    for k in range(1, nz):
        out.append(_slice_of(ds, k + 1, geometry.slice_position(k), normal, stored[k]))
    return out


def _slice_of(first: Dataset, number: int, ipp: np.ndarray, normal, pixels) -> Dataset:
    """Another slice of ``first``'s series: the same element objects (so that
    :func:`encode_series` encodes them once) but for its UID, number, position and pixels.
    Built from element dicts, not attribute by attribute: the values are ours and valid, and
    pydicom's per-attribute checks cost more than the rest of the series."""
    sop_uid = generate_uid(prefix=None)

    def element(tag: int, vr: str, value) -> DataElement:
        return DataElement(tag, vr, value, validation_mode=config.IGNORE)

    elements = dict(first.items())
    elements[Tag(0x00080018)] = element(0x00080018, "UI", sop_uid)  # SOPInstanceUID
    elements[Tag(0x00200013)] = element(0x00200013, "IS", number)  # InstanceNumber
    elements[Tag(0x00200032)] = element(0x00200032, "DS", [_ds(v) for v in ipp])  # IPP
    elements[Tag(0x00201041)] = element(0x00201041, "DS", _ds(float(ipp @ normal)))
    elements[Tag(0x7FE00010)] = element(0x7FE00010, "OW", pixels.tobytes())  # PixelData
    meta = dict(first.file_meta.items())
    meta[Tag(0x00020003)] = element(0x00020003, "UI", sop_uid)  # MediaStorageSOPInstanceUID
    ds = Dataset(elements)
    ds.file_meta = FileMetaDataset(meta)
    return ds


_LONG_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UC", "UR", "UT", "UN"}
_PACKED = {"UL": "<I", "US": "<H", "SL": "<i", "SS": "<h"}


def _plain_bytes(elem: DataElement) -> bytes | None:
    """``elem`` in explicit VR little endian, as pydicom writes it, for the VRs a slice's own
    elements have (UIDs, numbers, pixels); None for any other (pydicom encodes those)."""
    vr, value = elem.VR, elem.value
    if vr in ("UI", "SH", "AE", "CS"):
        text = value if isinstance(value, str) else "\\".join(value)
        raw = text.encode("ascii")
        raw += (b"\0" if vr == "UI" else b" ") * (len(raw) % 2)
    elif vr in ("IS", "DS"):
        items = value if isinstance(value, list | tuple | MultiValue) else [value]
        text = "\\".join(getattr(x, "original_string", None) or str(x) for x in items)
        raw = (text + " " * (len(text) % 2)).encode("ascii")
    elif vr in ("OB", "OW") and isinstance(value, bytes):
        raw = value + b"\0" * (len(value) % 2)
    elif vr in _PACKED and isinstance(value, int):
        raw = struct.pack(_PACKED[vr], value)
    else:
        return None
    group, number = elem.tag.group, elem.tag.element
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, number, vr.encode(), 0, len(raw)) + raw
    return struct.pack("<HH2sH", group, number, vr.encode(), len(raw)) + raw


def _file_meta_bytes(meta: FileMetaDataset) -> bytes | None:
    """The file meta group of a dataset whose meta :func:`pydicom.filewriter.write_file_meta_info`
    has completed once (group length included), re-encoded after a UID change."""
    parts = [_plain_bytes(meta[tag]) for tag in sorted(meta.keys()) if tag != 0x00020000]
    if any(part is None for part in parts):
        return None
    body = b"".join(parts)  # type: ignore[arg-type]
    return struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)) + body


def encode_series(datasets: list[Dataset]) -> list[bytes]:
    """The DICOM file bytes of each dataset, exactly as ``pydicom.dcmwrite(...,
    enforce_file_format=True)`` writes them (explicit VR little endian), fast for a series: the
    runs of elements that every dataset shares (the same objects, as :func:`series_datasets`
    makes them) are encoded once, the others (UIDs, numbers, positions, pixels) by
    :func:`_plain_bytes`. Datasets of a series are not to be changed in place."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import (
        correct_ambiguous_vr_element,
        write_dataset,
        write_file_meta_info,
    )

    if not datasets:
        return []
    first = datasets[0]
    tags = sorted(first.keys())
    plain = all(
        d.file_meta.get("TransferSyntaxUID") == ExplicitVRLittleEndian and sorted(d.keys()) == tags
        for d in datasets
    )
    if not plain:  # not one series: element by element
        out = []
        for d in datasets:
            buf = DicomBytesIO()
            pydicom.dcmwrite(buf, d, enforce_file_format=True)
            out.append(buf.getvalue())
        return out
    charset = first.get("SpecificCharacterSet", "ISO_IR 6")

    def encoded(ds: Dataset, run: list) -> bytes:
        for tag in run:  # OB or OW, US or SS...: resolved against the whole dataset
            correct_ambiguous_vr_element(ds[tag], ds, True)
        quick = [_plain_bytes(ds[tag]) for tag in run]
        if all(q is not None for q in quick):
            return b"".join(quick)  # type: ignore[arg-type]
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_dataset(buf, Dataset({t: ds[t] for t in run}), parent_encoding=charset)
        return buf.getvalue()

    def meta_bytes(ds: Dataset) -> bytes:
        quick = _file_meta_bytes(ds.file_meta) if 0x00020000 in ds.file_meta else None
        if quick is not None:
            return quick
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_file_meta_info(buf, ds.file_meta, enforce_standard=True)
        return buf.getvalue()

    runs: list[tuple[bool, list]] = []  # (shared by all?, consecutive tags)
    for tag in tags:
        shared = all(d[tag] is first[tag] for d in datasets)
        if runs and runs[-1][0] == shared:
            runs[-1][1].append(tag)
        else:
            runs.append((shared, [tag]))
    once = {i: encoded(first, run) for i, (shared, run) in enumerate(runs) if shared}
    first_meta = meta_bytes(first)  # completes first's meta (group length, implementation)
    out = []
    for d in datasets:
        if d is not first and 0x00020000 not in d.file_meta:  # the slices share its completion
            for tag in first.file_meta.keys():
                if tag != 0x00020003 and tag not in d.file_meta:
                    d.file_meta[tag] = first.file_meta[tag]
        parts = [b"\0" * 128 + b"DICM", first_meta if d is first else meta_bytes(d)]
        parts += [once[i] if shared else encoded(d, run) for i, (shared, run) in enumerate(runs)]
        out.append(b"".join(parts))
    return out


def secondary_capture_dataset(rgb: np.ndarray, header_xml: str, info: SeriesInfo) -> Dataset:
    """A Secondary Capture Image Storage instance of an ``(H, W, 3)`` ``uint8`` RGB picture (a QA
    picture, :mod:`gadgets.core.qa`): ``PhotometricInterpretation`` RGB, 8 bits, colour-by-pixel
    (``PlanarConfiguration`` 0), ``ConversionType`` WSD, in the scan's patient, study and frame
    of reference (the header's identity, as :func:`series_datasets`), a new series UID,
    ``info.series_number`` and ``info.description``. The picture has no patient identity drawn
    in it (``BurnedInAnnotation`` NO) and no patient geometry (``PatientOrientation`` empty)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) picture, got {rgb.dtype} {rgb.shape}")
    ident = _identity(header_xml)
    now = ident.now
    ds = _new_dataset(SecondaryCaptureImageStorage)
    _set_identity(ds, ident, info)
    ds.ConversionType = "WSD"
    ds.DateOfSecondaryCapture = now.strftime("%Y%m%d")
    ds.TimeOfSecondaryCapture = now.strftime("%H%M%S")
    ds.SecondaryCaptureDeviceManufacturer = "sodium-gadgets"
    ds.SecondaryCaptureDeviceSoftwareVersions = "sodium-gadgets"
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "SECONDARY", *info.image_type]
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    if info.comments:
        ds.ImageComments = info.comments[:10240]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    data = np.ascontiguousarray(rgb).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)  # even length
    for key, value in info.extra.items():
        setattr(ds, key, value)
    return ds


def picture_from_dataset(ds: Dataset) -> np.ndarray:
    """The ``(H, W, 3)`` ``uint8`` RGB picture of a Secondary Capture dataset (8-bit RGB, as
    :func:`secondary_capture_dataset` writes it)."""
    if ds.get("SamplesPerPixel") != 3 or ds.get("PhotometricInterpretation") != "RGB":
        raise ValueError("not an RGB picture")
    return np.asarray(ds.pixel_array, np.uint8).reshape(int(ds.Rows), int(ds.Columns), 3)


def write_series(datasets: list[Dataset], out_dir: str | Path, prefix: str) -> list[Path]:
    """Write each dataset as ``prefix_0001.dcm`` ... atomically (temporary file, then rename)."""
    return write_files(encode_series(datasets), out_dir, prefix)


def write_files(files: list[bytes], out_dir: str | Path, prefix: str) -> list[Path]:
    """Write encoded DICOM files (:func:`encode_series`) as ``prefix_0001.dcm`` ... atomically
    (temporary file, then rename: a reader never sees half a file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(files, start=1):
        path = out_dir / f"{prefix}_{i:04d}.dcm"
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(path)
    return paths


def read_series(paths: list[Path]) -> tuple[np.ndarray, list[Dataset]]:
    """Real-world values (nz, ny, nx) and the datasets of a series, sorted by InstanceNumber."""
    datasets = sorted((pydicom.dcmread(p) for p in paths), key=lambda d: int(d.InstanceNumber))
    volume = np.stack(
        [
            d.pixel_array.astype(np.float64) * float(d.RescaleSlope) + float(d.RescaleIntercept)
            for d in datasets
        ]
    )
    return volume, datasets
