"""Where returned items go: an output folder holding ``images.h5`` (ISMRMRD images, one group per
series) and DICOM files. Files appear under their final names only when complete (temporary name,
then a hard link to the final name), so a crash or a cut connection never leaves a half-written file
that looks finished, and a file already there (an earlier run into the same folder) is never
replaced: writing it again is an error naming it. Each DICOM file written is handed to the
application's hooks (:attr:`gadgets.runtime.application.Application.dicom_hooks`), which may write
more files beside it (sodium-gadgets: a PNG of a QA picture)."""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
from pathlib import Path

import ismrmrd

from gadgets.runtime.application import FileHook
from gadgets.runtime.notice import Notice
from gadgets.runtime.protocol import DicomFile

__all__ = ["BackgroundWriter", "OutputFolder"]

log = logging.getLogger(__name__)


class OutputFolder:
    """Collects a stream's outputs in ``path``; :meth:`close` finishes ``images.h5``."""

    def __init__(self, path: str | Path, dicom_hooks: tuple[FileHook, ...] = ()) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if (self.path / "images.h5").exists():  # said before the scan, not after it
            raise FileExistsError(
                f"{self.path / 'images.h5'} exists (from an earlier run?): write into a new "
                "output folder"
            )
        self.dicom_hooks = dicom_hooks
        self._images: ismrmrd.Dataset | None = None
        self._images_tmp = self.path / ".images.h5.partial"
        self.images = 0
        self.dicoms: list[Path] = []
        self.extra_files: list[Path] = []
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
            final = self.path / name
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.", suffix=".partial")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(item.data)
                os.link(tmp, final)  # fails if the name is taken: never over a file
            except FileExistsError:
                raise FileExistsError(
                    f"{final} exists (from an earlier run?): write into a new output folder"
                ) from None
            finally:
                os.unlink(tmp)
            self.dicoms.append(final)
            self._run_hooks(final, item.data)
        elif isinstance(item, Notice):
            self.texts.append(item.client_text)
        elif isinstance(item, str):
            self.texts.append(item)
        else:
            log.warning("ignoring returned %s", type(item).__name__)

    def _run_hooks(self, path: Path, data: bytes) -> None:
        """A hook that fails is logged, never an error: the DICOM file is what counts."""
        for hook in self.dicom_hooks:
            try:
                self.extra_files.extend(hook(path, data))
            except Exception as exc:
                log.warning("%s: %s", path.name, exc)

    def close(self) -> None:
        if self._images is not None:
            self._images.close()
            self._images = None
            final = self.path / "images.h5"
            if final.exists():
                raise FileExistsError(f"{final} exists (from an earlier run?): not replaced")
            os.replace(self._images_tmp, final)


class BackgroundWriter:
    """An :class:`OutputFolder` written by a thread of its own, so that a client keeps reading
    its socket while files are written (a server never waits on the client's disk). ``add``
    queues an item; :meth:`close` writes the rest, closes the folder and raises the first error
    a write met (later items are not written after one fails)."""

    def __init__(self, folder: OutputFolder) -> None:
        self.folder = folder
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="output-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self.folder.add(item)
                except BaseException as exc:  # raised again by close()
                    self._error = exc

    def add(self, item: object) -> None:
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            self.folder.close()
        finally:
            if self._error is not None:
                raise self._error
