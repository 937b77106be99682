"""Where returned items go: an output folder holding ``images.h5`` (ISMRMRD images, one group
per series) and DICOM files. Files appear under their final names only when complete
(temporary name, then rename), so a crash or a cut connection never leaves a half-written file
that looks finished. A Secondary Capture file (the calibration QA picture) is also written as a
PNG of its pixels, ``<name>.png`` beside ``<name>.dcm``, for a look without a DICOM viewer."""

from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path

import ismrmrd
import pydicom
from pydicom.uid import SecondaryCaptureImageStorage

from .protocol import DicomFile

log = logging.getLogger(__name__)


class OutputFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._images: ismrmrd.Dataset | None = None
        self._images_tmp = self.path / ".images.h5.partial"
        self.images = 0
        self.dicoms: list[Path] = []
        self.pngs: list[Path] = []
        self.texts: list[str] = []

    def add(self, item: object) -> None:
        if isinstance(item, ismrmrd.Image):
            if self._images is None:
                self._images_tmp.unlink(missing_ok=True)
                self._images = ismrmrd.Dataset(
                    str(self._images_tmp), "dataset", create_if_needed=True
                )
            self._images.append_image(f"image_{item.image_series_index}", item)
            self.images += 1
        elif isinstance(item, DicomFile):
            name = Path(item.filename).name or f"image_{len(self.dicoms):04d}.dcm"
            fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".partial")
            with os.fdopen(fd, "wb") as f:
                f.write(item.data)
            os.replace(tmp, self.path / name)
            self.dicoms.append(self.path / name)
            self._png(item.data, self.path / name)
        elif isinstance(item, str):
            self.texts.append(item)
        else:
            log.warning("ignoring returned %s", type(item).__name__)

    def _png(self, data: bytes, path: Path) -> None:
        """``<name>.png`` of a Secondary Capture file's RGB pixels (other SOP classes: nothing);
        an unreadable picture is logged, never an error (the DICOM file is what counts)."""
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            if ds.get("SOPClassUID") != SecondaryCaptureImageStorage:
                return
            from ..core.dicom import picture_from_dataset
            from ..core.qa import write_png

            png = write_png(picture_from_dataset(pydicom.dcmread(io.BytesIO(data))),
                            path.with_suffix(".png"))  # fmt: skip
        except Exception as exc:
            log.warning("no PNG for %s: %s", path.name, exc)
            return
        self.pngs.append(png)

    def close(self) -> None:
        if self._images is not None:
            self._images.close()
            self._images = None
            os.replace(self._images_tmp, self.path / "images.h5")
