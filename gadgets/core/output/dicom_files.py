"""DICOM files on disk: series written whole or not at all, never over another file; reading a
series back.

Layout of a delivery folder (:func:`write_series_folder`)::

    FOLDER/<StudyInstanceUID>/series<NNN>_<SeriesInstanceUID>/0001.dcm, 0002.dcm, ...

so that two patients, two studies or two runs of one protocol can never share a file name: every
series has its own folder, named by its own new UID. A series is first written into a hidden
folder ``.series<NNN>_<UID>.<pid>.partial`` beside its final place, each file flushed to the disk
(``fsync``), and only then renamed to its final name (one atomic rename; the folder's parent is
fsync'ed too). A reader, a PACS import or a person therefore sees a series complete or not at
all. If writing fails (a full disk, a permission), the partial folder is removed and
:class:`SeriesWriteError` says how far it got; a process killed while writing leaves its partial
folder behind, which :func:`clean_partials` removes (only those of processes that are no longer
running) when the next scan, or the server, starts. An existing file or series folder is never
replaced: a name that is taken is an error.

Single files (:func:`write_files`, a client's output folder) are written the same way: a
temporary name, fsync, then a hard link to the final name, which fails if that name exists.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from gadgets.core.output.dicom_encoder import encode_series

__all__ = [
    "SeriesWriteError",
    "clean_partials",
    "place_file",
    "read_series",
    "write_files",
    "write_series",
    "write_series_folder",
]

_PARTIAL = re.compile(r"^\..*\.(\d+)\.partial$")


class SeriesWriteError(OSError):
    """A series that could not be written whole: ``written`` of ``total`` files were, none is
    kept; ``folder`` is where it was to go."""

    def __init__(self, message: str, folder: Path, written: int, total: int) -> None:
        super().__init__(message)
        self.folder, self.written, self.total = folder, written, total


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:  # x: never over an existing file
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def place_file(data: bytes, path: Path) -> Path:
    """Write ``data`` to ``path`` atomically and never over an existing file: a temporary file
    beside it, fsync, then a hard link to ``path`` (``FileExistsError`` if it is taken)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=f".{os.getpid()}.partial"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_files(files: list[bytes], out_dir: str | Path, prefix: str) -> list[Path]:
    """Encoded DICOM files as ``prefix_0001.dcm`` ... in ``out_dir``, each placed with
    :func:`place_file` (an existing name is an error, never replaced)."""
    out_dir = Path(out_dir)
    return [place_file(d, out_dir / f"{prefix}_{i:04d}.dcm") for i, d in enumerate(files, 1)]


def write_series(datasets: list[Dataset], out_dir: str | Path, prefix: str) -> list[Path]:
    """:func:`write_files` of the datasets' encoding."""
    return write_files(encode_series(datasets), out_dir, prefix)


def _safe(uid: str) -> str:
    if not re.fullmatch(r"[0-9.]{1,64}", uid):
        raise ValueError(f"not a DICOM UID: {uid!r}")
    return uid


def write_series_folder(
    files: list[bytes],
    root: str | Path,
    study_uid: str,
    series_number: int,
    series_uid: str,
    extra: dict[str, bytes] | None = None,
) -> list[Path]:
    """Write one series whole (the module docstring) under ``root``; ``extra``: more files of
    the series (e.g. ``0001.png``) written with it. Returns the DICOM files' final paths."""
    study = Path(root) / _safe(study_uid)
    name = f"series{series_number:03d}_{_safe(series_uid)}"
    final = study / name
    study.mkdir(parents=True, exist_ok=True)
    if final.exists():
        raise FileExistsError(f"{final} exists: a series is never written over another")
    partial = study / f".{name}.{os.getpid()}.partial"
    entries = [(f"{i:04d}.dcm", d) for i, d in enumerate(files, 1)] + list((extra or {}).items())
    written = 0
    try:
        partial.mkdir()
        for entry, data in entries:
            _write_synced(partial / entry, data)
            written += 1
        _fsync_dir(partial)
        os.rename(partial, final)  # atomic; refuses a non-empty existing folder
        _fsync_dir(study)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            reason = f"{final} exists"
        raise SeriesWriteError(
            f"series {series_number} could not be written to {study}: {reason} "
            f"({written} of {len(entries)} files written; none is kept)",
            study,
            written,
            len(entries),
        ) from exc
    return [final / entry for entry, _ in entries if entry.endswith(".dcm")]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_partials(root: str | Path, depth: int = 2) -> list[Path]:
    """Remove the partial files and folders (``.NAME.<pid>.partial``) that processes no longer
    running left under ``root`` (down to ``depth`` folder levels); returns what was removed."""
    removed: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return removed
    level = [root]
    for _ in range(depth + 1):
        below = []
        for folder in level:
            for path in folder.iterdir():
                match = _PARTIAL.match(path.name)
                if match and not _running(int(match.group(1))):
                    with contextlib.suppress(OSError):
                        if path.is_dir():
                            shutil.rmtree(path)
                        else:
                            path.unlink()
                        removed.append(path)
                elif path.is_dir() and not match:
                    below.append(path)
        level = below
    return removed


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
