"""DICOM files on disk: writing encoded series atomically, reading a series back."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from gadgets.core.output.dicom_encoder import encode_series

__all__ = ["read_series", "write_files", "write_series"]


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
