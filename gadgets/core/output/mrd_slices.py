"""Maps as a console displays them over MRD: one 2D ``uint16`` image per slice, with a documented
scale, for clients that take ISMRMRD images but no DICOM (the FIRE / OpenRecon reference client,
a scanner console behind Gadgetron, Gadgetron's own DicomFinishGadget).

Scale. A value ``v`` (in the series' unit) is stored as ``round((v - intercept) / slope)``,
clipped to 0..65535. For a quantity, ``slope`` is 0.1 unit per count (TSC and 23NaR: 0.1
mmol/L, so 140 mM is 1400; the B0 map: 0.1 Hz) and ``intercept`` 0, except for a unit whose
values are signed (Hz): -3276.8, so that 0 Hz is 32768. An image in arbitrary units (unit
``1``: the preview, the uncalibrated image) takes its scale from its own range: its 99.5th
percentile is stored as 4000 (12 bits with headroom). The meta says so (``RescaleSlope``,
``RescaleIntercept``, ``Units``) and so does the image comment ("stored = (value - intercept)
/ slope"), and the display window is given in stored counts. Negative concentrations (noise in
the air) are clipped to 0.

Geometry (:mod:`gadgets.core.numerics.geometry`): slice ``k`` of a volume keeps the volume's
directions; its ``position`` is the volume's position moved ``d_z (k - n_z // 2)`` along
``slice_dir`` (the in-plane centre is pixel ``(n_x // 2, n_y // 2)``, as in the volume), its
``field_of_view`` is ``(FOV_x, FOV_y, d_z)``, ``slice = k`` and ``image_index = k + 1``.

Meta, as python-ismrmrd-server's examples set it for the console (``DataRole``,
``ImageProcessingHistory``, ``WindowCenter``/``WindowWidth``, ``SequenceDescriptionAdditional``,
``ImageRowDir``/``ImageColumnDir``, ``ImageComment``) and as Gadgetron's DICOM gadgets read it
(``GADGETRON_ImageNumber``, ``GADGETRON_DataRole``, ``GADGETRON_SeqDescription``,
``GADGETRON_ImageComment``, ``GADGETRON_WindowCenter``/``Width``; Gadgetron's DicomFinishGadget
writes no rescale, so its DICOM pixels are the stored counts, e.g. 10 x TSC).
"""

from __future__ import annotations

from collections.abc import Mapping

import ismrmrd
import numpy as np

from gadgets.core.numerics.geometry import Geometry

__all__ = ["SLOPE", "mrd_slices", "scale_of", "stored_counts"]

#: value per stored count, every series
SLOPE = 0.1
_SIGNED_UNITS = {"Hz"}
_AU_PEAK = 4000.0
_MAX = 65535


def scale_of(unit: str, values: np.ndarray | None = None) -> tuple[float, float]:
    """``(slope, intercept)`` of a series in ``unit`` (see the module docstring); arbitrary
    units (``1``) need the ``values``."""
    if unit == "1":
        finite = np.abs(np.asarray(values, np.float64))
        finite = finite[np.isfinite(finite)]
        peak = float(np.percentile(finite, 99.5)) if finite.size else 0.0
        return (peak / _AU_PEAK if peak > 0 else 1.0), 0.0
    return SLOPE, (-SLOPE * 32768.0 if unit in _SIGNED_UNITS else 0.0)


def stored_counts(values: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """``values`` as the stored ``uint16`` counts of ``slope`` and ``intercept``."""
    finite = np.where(np.isfinite(values), values, intercept)
    counts = np.rint((np.asarray(finite, np.float64) - intercept) / slope)
    return np.clip(counts, 0, _MAX).astype(np.uint16)


def _slice_meta(
    meta: Mapping[str, object], unit: str, scale: tuple[float, float], k: int, geometry: Geometry
) -> ismrmrd.Meta:
    slope, intercept = scale
    out = ismrmrd.Meta()
    for key, value in meta.items():
        out[key] = value if isinstance(value, list) else str(value)
    description = str(meta.get("SeriesDescription", "Na23 image [a.u.]"))
    out["SeriesDescription"] = description
    role = str(meta.get("DataRole", "Image"))
    comment = str(meta.get("ImageComments", ""))
    scale_note = f"stored = (value - {intercept:g}) / {slope:g} {unit}"
    comment = f"{comment}; {scale_note}" if comment else scale_note
    window = [float(meta[k2]) for k2 in ("WindowCenter", "WindowWidth") if k2 in meta]
    if len(window) == 2:
        centre, width = (window[0] - intercept) / slope, window[1] / slope
    else:  # arbitrary units: the stored range
        centre, width = _AU_PEAK / 2, _AU_PEAK
    out["WindowCenter"], out["WindowWidth"] = f"{centre:g}", f"{width:g}"
    out["GADGETRON_WindowCenter"], out["GADGETRON_WindowWidth"] = f"{centre:g}", f"{width:g}"
    out["RescaleSlope"], out["RescaleIntercept"] = f"{slope:g}", f"{intercept:g}"
    out["Units"] = unit
    out["DataRole"] = role
    out["ImageProcessingHistory"] = ["SODIUM-GADGETS", "PYTHON"]
    out["SequenceDescriptionAdditional"] = str(meta.get("SequenceDescriptionAdditional", "Na23"))
    out["ImageComments"] = comment
    out["ImageComment"] = [comment]  # the spelling python-ismrmrd-server's mrd2dicom reads
    out["ImageRowDir"] = [f"{v:.18f}" for v in geometry.read_dir]
    out["ImageColumnDir"] = [f"{v:.18f}" for v in geometry.phase_dir]
    out["GADGETRON_ImageNumber"] = str(k + 1)
    out["GADGETRON_DataRole"] = role
    out["GADGETRON_SeqDescription"] = str(meta.get("GADGETRON_SeqDescription", description))
    out["GADGETRON_ImageComment"] = comment
    return out


def mrd_slices(
    volume: np.ndarray,
    geometry: Geometry,
    meta: Mapping[str, object],
    *,
    series_index: int,
    like: object | None = None,
) -> list[ismrmrd.Image]:
    """The ``(nz, ny, nx)`` ``volume`` (values in ``meta['Units']``, default ``1``) as one
    ``uint16`` image per slice (the module docstring); ``meta`` is the volume's (its series
    description, window, comments), ``like`` an image whose other header fields (time stamps,
    measurement uid) are kept."""
    volume = np.asarray(volume)
    if volume.shape != geometry.shape:
        raise ValueError(f"volume {volume.shape} does not match its geometry {geometry.shape}")
    unit = str(meta.get("Units", "1"))
    scale = scale_of(unit, volume)
    counts = stored_counts(volume, *scale)
    nz = volume.shape[0]
    dz = float(geometry.voxel_mm[2])
    centre = np.asarray(geometry.position_mm, np.float64)
    slice_dir = np.asarray(geometry.slice_dir, np.float64)
    out = []
    for k in range(nz):
        img = ismrmrd.Image.from_array(counts[k][None, None], transpose=False)
        if like is not None:
            for field in ("measurement_uid", "acquisition_time_stamp", "physiology_time_stamp"):
                setattr(img, field, getattr(like, field))
        img.version = 1
        img.image_type = ismrmrd.IMTYPE_MAGNITUDE
        img.position = tuple(centre + dz * (k - nz // 2) * slice_dir)
        img.read_dir, img.phase_dir = tuple(geometry.read_dir), tuple(geometry.phase_dir)
        img.slice_dir = tuple(geometry.slice_dir)
        img.field_of_view = (float(geometry.fov_mm[0]), float(geometry.fov_mm[1]), dz)
        img.slice = k
        img.image_index = k + 1
        img.image_series_index = series_index
        img.attribute_string = _slice_meta(meta, unit, scale, k, geometry).serialize()
        out.append(img)
    return out
