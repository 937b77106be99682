"""DICOM Parametric Map (``1.2.840.10008.5.1.4.1.1.30``) of a quantitative map: the TSC map as
32-bit floats, one multi-frame file, made with highdicom.

Why. The MR Image Storage series of :mod:`gadgets.core.output.dicom_series` is what every viewer
shows, but it stores 16-bit integers with a ``RescaleSlope`` (<= 0.05 mM error for TSC). A
Parametric Map stores the values themselves (``FloatPixelData``, float32), so analysis software
reads exactly what the reconstruction computed, with no rescale quantisation; its Real World Value
Mapping (identity, slope 1, intercept 0) states the UCUM unit (``mmol/L``) and the quantity (DCM
122093 "Concentration").

What. The already generated MR series is the ``source_images``: patient, study, frame of
reference, plane positions, orientation and pixel spacing come from it, so both series sit in
the same place in the same study. Each frame is one slice with its own ``PlanePositionSequence``
and a reference to its MR file (``DerivationImageSequence``); highdicom orders the frames along
the slice normal, which can be the reverse of the slice index ``k`` (e.g. an axial volume:
highest ``z`` first), so a reader places frames by their position, not by their number. The map
gets a new series UID, ``SeriesNumber`` = the MR series number + 1000 (series 10 -> 1010, so it
sorts after the scanner's and this project's series; ``Modality`` is highdicom's ``OT``),
``SeriesDescription`` = the MR description + `` float`` (e.g. ``Na23 TSC [mmol/L] float``),
``ContentLabel`` from the series label (``TSC``), and the MR series' display window.
"""

from __future__ import annotations

import numpy as np
from highdicom import ContentQualificationValues
from highdicom.content import VOILUTTransformation
from highdicom.pm import ParametricMap, RealWorldValueMapping
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from gadgets.core.output.dicom_series import UNITS, SeriesInfo

__all__ = ["SERIES_NUMBER_OFFSET", "parametric_map_dataset"]

#: added to the MR series number to number the Parametric Map series
SERIES_NUMBER_OFFSET = 1000
_CONCENTRATION = CodedConcept("122093", "DCM", "Concentration")


def parametric_map_dataset(
    volume_mM: np.ndarray, source: list[Dataset], info: SeriesInfo
) -> Dataset:
    """A Parametric Map of ``volume_mM`` (nz, ny, nx; stored as float32) derived from ``source``,
    the MR series that :func:`gadgets.core.output.dicom_series.series_datasets` made of the same
    volume with ``info`` (one dataset per slice)."""
    volume = np.asarray(volume_mM, np.float32)
    if volume.ndim != 3:
        raise ValueError(f"expected a (nz, ny, nx) volume, got shape {volume.shape}")
    if info.unit not in UNITS:
        raise ValueError(f"unknown unit {info.unit!r}; known: {sorted(UNITS)}")
    source = sorted(source, key=lambda d: int(d.InstanceNumber))
    nz, ny, nx = volume.shape
    if len(source) != nz or any((int(d.Rows), int(d.Columns)) != (ny, nx) for d in source):
        raise ValueError(f"{len(source)} source images do not match the volume {volume.shape}")
    volume = np.where(np.isfinite(volume), volume, np.float32(0.0))
    low, high = float(volume.min()), float(volume.max())
    unit = CodedConcept(info.unit, "UCUM", UNITS[info.unit])
    mapping = RealWorldValueMapping(
        lut_label=info.label[:16],
        lut_explanation=info.description[:64],
        unit=unit,
        value_range=(low, high if high > low else low + 1.0),
        slope=1.0,
        intercept=0.0,
        quantity_definition=_CONCENTRATION if info.unit == "mmol/L" else None,
    )
    first = source[0]
    pmap = ParametricMap(
        source_images=source,
        pixel_array=volume,
        series_instance_uid=generate_uid(prefix=None),
        series_number=info.series_number + SERIES_NUMBER_OFFSET,
        sop_instance_uid=generate_uid(prefix=None),
        instance_number=1,
        manufacturer=str(first.get("Manufacturer", "")) or "sodium-gadgets",
        manufacturer_model_name=str(first.get("ManufacturerModelName", "")) or "sodium-gadgets",
        software_versions="sodium-gadgets",
        device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            VOILUTTransformation(
                window_center=float(first.WindowCenter),
                window_width=float(first.WindowWidth),
                window_explanation=info.label[:64],
            )
        ],
        content_label=info.label.upper().replace(" ", "_")[:16] or "MAP",
        content_description=info.description[:64],
        content_qualification=ContentQualificationValues.RESEARCH,
    )
    pmap.SeriesDescription = f"{info.description} float"[:64]
    if "BodyPartExamined" in first:  # not copied by highdicom; dciodvfy then wants Laterality
        pmap.BodyPartExamined = first.BodyPartExamined
    return pmap
