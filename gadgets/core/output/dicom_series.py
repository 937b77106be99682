"""DICOM series (MR Image Storage, one file per slice) from a 3D map, its geometry and the scan's
ISMRMRD header: what the console and the PACS show.

Pixels are signed 16-bit; ``RescaleSlope`` (intercept 0) is the smallest of 0.001, 0.002, 0.005,
0.01 ... units per stored value (1-2-5 steps) that holds the map's range, so a value is stored to
within half a slope (<= 0.05 mM for TSC up to 3276 mM). A map with larger values (an uncalibrated
image in arbitrary units, a failed calibration) is still written, at a coarser slope; for a quantity
(mM, Hz) coarser than 0.1 per step the series says so in its ImageComments and the log warns. A Real
World Value Mapping item states the same mapping with its UCUM unit (``mmol/L`` for TSC, ``Hz`` for
B0 maps, ``1`` for arbitrary units).

Geometry (:mod:`gadgets.core.numerics.geometry`: voxel ``i_a`` at ``r_a = i_a - n_a // 2`` voxels
from the ISMRMRD ``position``, along ``read_dir``, ``phase_dir``, ``slice_dir``, ``d_a = FOV_a /
n_a``). File ``k`` holds slice ``iz = k``; its rows run along y and its columns along x, so::

    ImageOrientationPatient = read_dir (along a row), phase_dir (down a column)
    ImagePositionPatient    = position + d_x (0 - nx//2) read_dir + d_y (0 - ny//2) phase_dir
                                       + d_z (k - nz//2) slice_dir          (centre of pixel 0,0)
    PixelSpacing            = [d_y, d_x]        (row spacing first)
    SliceThickness = SpacingBetweenSlices = d_z
    SliceLocation           = ImagePositionPatient . (read_dir x phase_dir)
    Rows = ny, Columns = nx

Identity (patient, study, frame of reference, protocol) comes from the ISMRMRD header
(:mod:`gadgets.core.output.dicom_identity`). Files are encoded by
:mod:`gadgets.core.output.dicom_encoder` and written by :mod:`gadgets.core.output.dicom_files`.

Pictures (the calibration QA picture of :mod:`gadgets.core.output.qa`) are Secondary Capture Image
Storage instances, one file, 8-bit RGB, with the same identity
(:func:`secondary_capture_dataset`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import MRImageStorage, SecondaryCaptureImageStorage, generate_uid

from gadgets.core.numerics.geometry import Geometry
from gadgets.core.output.dicom_identity import (
    header_values,
    new_dataset,
    scan_identity,
    set_identity,
)

__all__ = [
    "UNITS",
    "SeriesInfo",
    "picture_from_dataset",
    "secondary_capture_dataset",
    "series_datasets",
    "storage_slope",
]

log = logging.getLogger(__name__)

_FINEST_EXPONENT = -3  # 0.001 per step at best
_PRECISE_SLOPE = 0.1  # a quantity stored more coarsely is flagged

#: UCUM code, meaning: the units of the maps this project writes
UNITS = {
    "mmol/L": "millimole per liter",
    "Hz": "hertz",
    "1": "no units",
}


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


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6e}"


def storage_slope(peak: float) -> float:
    """The smallest 1-2-5 step (>= 0.001) with which ``|values| <= peak`` fit signed 16 bits."""
    exponent = _FINEST_EXPONENT
    while True:
        for mantissa in (1, 2, 5):
            slope = mantissa * 10.0**exponent
            if peak <= 32767 * slope:
                return slope
        exponent += 1


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
    peak = float(np.max(np.abs(finite))) if finite.size else 0.0
    slope = storage_slope(peak)
    comments = info.comments
    if slope > _PRECISE_SLOPE * 1.0001 and info.unit != "1":
        coarse = f"values up to {peak:.4g} {info.unit}: stored at {slope:g} {info.unit} per step"
        log.warning("%s: %s", info.description, coarse)
        comments = f"{comments}; {coarse}" if comments else coarse
    stored = np.clip(np.round(finite / slope), -32768, 32767).astype(np.int16)
    ident = scan_identity(header_xml)
    h = ident.fields
    te, tr, flip = (header_values(header_xml, leaf) for leaf in ("TE", "TR", "flipAngle_deg"))
    echo_ms = info.echo_time_ms
    if echo_ms is None and te:
        echo_ms = float(te[0])
    normal = np.cross(geometry.read_dir, geometry.phase_dir)
    dx, dy, dz = geometry.voxel_mm
    nz, ny, nx = geometry.shape
    window = info.window or (float(np.percentile(finite, 50)), float(np.ptp(finite)) or 1.0)
    now = ident.now
    ds = new_dataset(MRImageStorage)
    # slice 0 in full; the others share its constant elements (_slice_of)
    set_identity(ds, ident, info.series_number, info.description)
    ds.PositionReferenceIndicator = ""
    # image
    ds.InstanceNumber = 1
    ds.ImagesInAcquisition = nz  # a reader can tell a complete series
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "PRIMARY", *info.image_type]
    if comments:
        ds.ImageComments = comments[:10240]
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


def secondary_capture_dataset(
    rgb: np.ndarray, header_xml: str, info: SeriesInfo, burned_in: bool = False
) -> Dataset:
    """A Secondary Capture Image Storage instance of an ``(H, W, 3)`` ``uint8`` RGB picture (a QA
    picture, :mod:`gadgets.core.output.qa`): ``PhotometricInterpretation`` RGB, 8 bits,
    colour-by-pixel (``PlanarConfiguration`` 0), ``ConversionType`` WSD, in the scan's patient,
    study and frame of reference (the header's identity, as :func:`series_datasets`), a new series
    UID, ``info.series_number`` and ``info.description``. ``burned_in``: the patient's identity is
    drawn in the picture (``BurnedInAnnotation`` YES; the QA picture's is); it has no patient
    geometry (``PatientOrientation`` empty)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) picture, got {rgb.dtype} {rgb.shape}")
    ident = scan_identity(header_xml)
    now = ident.now
    ds = new_dataset(SecondaryCaptureImageStorage)
    set_identity(ds, ident, info.series_number, info.description)
    ds.ConversionType = "WSD"
    ds.DateOfSecondaryCapture = now.strftime("%Y%m%d")
    ds.TimeOfSecondaryCapture = now.strftime("%H%M%S")
    ds.SecondaryCaptureDeviceManufacturer = "sodium-gadgets"
    ds.SecondaryCaptureDeviceSoftwareVersions = "sodium-gadgets"
    ds.InstanceNumber = 1
    ds.ImagesInAcquisition = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "SECONDARY", *info.image_type]
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
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
