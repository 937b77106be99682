"""Reading back what a console would receive: the DICOM series in a folder, and a single-frame
MR series' values and geometry from its files alone (what a viewer sees)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MR_IMAGE_STORAGE", "Series", "dicom_series", "read_volume"]

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass
class Series:
    uid: str
    number: int
    description: str
    sop_class: str
    files: list[Path] = field(default_factory=list)

    @property
    def sop_class_name(self) -> str:
        from pydicom.uid import UID

        return UID(self.sop_class).name

    @property
    def is_mr_image(self) -> bool:
        return self.sop_class == MR_IMAGE_STORAGE

    @property
    def is_tsc(self) -> bool:
        """The quantitative TSC map (MR Image Storage, not a QA picture of it)."""
        d = self.description
        return self.is_mr_image and "TSC" in d and "QA" not in d


def dicom_series(folder: str | Path) -> list[Series]:
    """The DICOM series in ``folder`` (every ``*.dcm`` read with pydicom), by series number."""
    import pydicom

    found: dict[str, Series] = {}
    for path in sorted(Path(folder).glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uid = str(ds.SeriesInstanceUID)
        if uid not in found:
            found[uid] = Series(
                uid,
                int(ds.get("SeriesNumber", 0) or 0),
                str(ds.get("SeriesDescription", "")),
                str(ds.SOPClassUID),
            )
        found[uid].files.append(path)
    return sorted(found.values(), key=lambda s: (s.number, s.description))


def read_volume(paths: list[Path]):
    """Real-world values ``(nz, ny, nx)`` of a single-frame MR series, its
    :class:`~gadgets.core.numerics.geometry.Geometry` and datasets, all from the DICOM files alone
    (pixel data, rescale, position, orientation, spacing): what a viewer sees."""
    from gadgets.core.numerics.geometry import Geometry
    from gadgets.core.output.dicom_files import read_series

    volume, datasets = read_series(paths)
    return volume, Geometry.from_datasets(datasets), datasets
