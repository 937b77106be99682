"""DICOM output: every reconstructed image volume becomes a DICOM series (MR Image Storage, one
file per slice, see :mod:`gadgets.core.output.dicom_series`), delivered (``deliver``, a
comma-separated list)

* ``auto`` (the shipped chains): back over the connection when the client takes DICOM, else not
  at all (see below);
* ``stream``: back to the client over the connection (message 1018) whatever it announced: the
  chain says this client takes DICOM (``gadgetron_ismrmrd_client`` does, without announcing it);
* ``folder``: into ``folder`` (atomic writes: never a half-written file visible);
* ``pacs``: to a PACS by C-STORE (``pacs_host``, ``pacs_port``, AE titles, timeout). A PACS that
  is down is logged and reported as a notice; the files stay in ``folder`` (or, without one, in
  ``$SODIUM_GADGETS_CACHE/undelivered``) and the scan's other outputs are unaffected;
* ``none``: no DICOM (the ISMRMRD images only).

Who takes DICOM (the step's :class:`~gadgets.runtime.context.StepContext`): ``sodium-gadgets
recon`` does; a client of the embedded server does when it announced it (``sodium-gadgets send``
sends the query ``mrd::client_accepts=1018`` first); any other client does not (the FIRE /
OpenRecon reference client fails on an unknown message, and so would a console); a real
Gadgetron never does (its external steps may send ISMRMRD items only). ``stream`` under
Gadgetron is a misconfiguration: it is logged and ignored.

The ISMRMRD images go on too (``pass_images``), as ``images``: ``volumes`` (the 3D float
volumes as made, exact), ``slices`` (one 2D uint16 image per slice with a documented scale and
the console's meta, :mod:`gadgets.core.output.mrd_slices`: what the FIRE client, a console and
Gadgetron's DicomFinishGadget display), or ``auto``: volumes to a client that takes DICOM,
slices to every other.

What a volume is comes from its ISMRMRD meta (``attribute_string``): ``SeriesDescription``,
``Units`` (UCUM: ``mmol/L``, ``Hz``, ``1``), ``WindowCenter``/``WindowWidth``, ``ImageComments``;
without meta it is an uncalibrated sodium image in arbitrary units.

A QA picture (meta ``DataRole=QA``, an RGB image from :func:`gadgets.volumes.picture_image`, made by
``TscCalibration``) becomes one Secondary Capture file (8-bit RGB,
:func:`gadgets.core.output.dicom_series.secondary_capture_dataset`, same patient, study and frame of
reference as the maps), ``seriesNNN_0001.dcm``, delivered like any series; with ``folder`` the
picture is also written as ``seriesNNN_0001.png`` beside it (atomically). ``stream`` clients write
the PNG themselves from the DICOM file (:class:`gadgets.runtime.outputs.OutputFolder`). The
picture itself goes on as the RGB image in both forms.

``parametric_map`` (default ``false``): a quantitative map (meta ``Units=mmol/L`` and
``DataRole=Quantitative``: the TSC map, and the 23NaR map) is also delivered as a DICOM Parametric
Map, the exact float32 values in one multi-frame file
(:func:`gadgets.core.output.dicom_pmap.parametric_map_dataset`), derived from the MR series just
made: series number + 1000 (``series1010_0001.dcm`` for TSC series 10), description + `` float``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import ismrmrd
import numpy as np

from gadgets.core.cache import cache_dir
from gadgets.core.numerics.geometry import Geometry
from gadgets.core.output.dicom_encoder import encode_series
from gadgets.core.output.dicom_files import SeriesWriteError, clean_partials, write_series_folder
from gadgets.core.output.dicom_series import SeriesInfo, secondary_capture_dataset, series_datasets
from gadgets.core.output.mrd_slices import mrd_slices
from gadgets.core.output.qa import png_bytes
from gadgets.runtime.gadget import Gadget, Property
from gadgets.runtime.notice import Notice
from gadgets.runtime.pacs import PacsTarget, c_store
from gadgets.runtime.protocol import DicomFile
from gadgets.volumes import picture_rgb, read_meta

__all__ = ["DicomOutput"]

log = logging.getLogger(__name__)
_DELIVERIES = ("auto", "stream", "folder", "pacs", "none")
# what one step hands a later one (a chain that lacks the later step leaves them here)
_INTERMEDIATE = ("NoiseWhitening", "ReceiveProfileValidity", "NoiseGain")


def _meta(image: ismrmrd.Image) -> dict[str, str]:
    try:
        return {k: str(v) for k, v in read_meta(image).items()}
    except Exception:  # unreadable meta: treat as none
        log.warning("ignoring unreadable image meta")
        return {}


class DicomOutput(Gadget):
    """Turn image volumes into DICOM series and deliver them."""

    properties = {
        "deliver": Property(
            list[str], ("auto",), "where the DICOM goes (comma-separated)", choices=_DELIVERIES
        ),
        "images": Property(
            str,
            "auto",
            "the ISMRMRD images passed on: volumes (3D float), slices (2D uint16, for consoles) "
            "or auto (volumes to clients that take DICOM, else slices)",
            choices=("auto", "volumes", "slices"),
        ),
        "folder": Property(
            str, "", "output folder for deliver=folder (and kept PACS files)", location=True
        ),
        "pacs_host": Property(str, "", "PACS host for deliver=pacs", location=True),
        "pacs_port": Property(int, 104, "PACS port", low=1, high=65535, location=True),
        "pacs_ae_title": Property(str, "PACS", "called AE title", location=True),
        "calling_ae_title": Property(str, "SODIUM", "our AE title", location=True),
        "pacs_timeout_s": Property(
            float, 10.0, "association, message and network timeout, s", low=0.1, high=600.0
        ),
        "pass_images": Property(bool, True, "also pass the ISMRMRD image on"),
        "pass_pictures": Property(
            bool,
            True,
            "pass RGB pictures (the QA picture) on as ISMRMRD images too (off for Gadgetron's "
            "DicomFinishGadget, which cannot write three channels)",
        ),
        "parametric_map": Property(
            bool, False, "also deliver mmol/L quantitative maps as a float32 Parametric Map"
        ),
    }

    def setup(self) -> None:
        takes_dicom = "dicom" in self.context.client_takes
        self.targets = set(self.deliver) - {"auto", "none"}
        if "auto" in self.deliver and takes_dicom:
            self.targets.add("stream")
        if "stream" in self.targets and self.context.host == "gadgetron":
            log.warning(
                "deliver=stream under Gadgetron, whose external steps cannot send DICOM: none is "
                "sent back; use deliver=folder or pacs for DICOM files"
            )
            self.targets.discard("stream")
        self.form = self.images if self.images != "auto" else "volumes" if takes_dicom else "slices"
        if "pacs" in self.targets and not self.pacs_host:
            raise ValueError("deliver=pacs needs pacs_host")
        if "folder" in self.targets and not self.folder:
            raise ValueError("deliver=folder needs folder")
        if self.parametric_map:
            try:  # an optional dependency: pip install 'sodium-gadgets[pmap]'
                import highdicom  # noqa: F401
            except ImportError as exc:
                raise ValueError(
                    "parametric_map needs highdicom: pip install 'sodium-gadgets[pmap]'"
                ) from exc
        if "folder" in self.targets:  # what a process killed while writing left behind
            for path in clean_partials(self.folder):
                log.warning("removed %s, left by an interrupted delivery", path)
        import ismrmrd.xsd

        self.header_xml = ismrmrd.xsd.ToXML(self.header)

    def process(self, item):
        if not isinstance(item, ismrmrd.Image):
            yield item
            return
        meta = _meta(item)
        if meta.get("DataRole") in _INTERMEDIATE:  # for a later step, not for a console
            log.debug("not delivered: an intermediate %s image", meta["DataRole"])
            return
        if meta.get("DataRole") == "QA":
            yield from self._deliver_picture(item, meta)
            return
        unit = meta.get("Units", "1")
        window = None
        if "WindowCenter" in meta and "WindowWidth" in meta:
            window = (float(meta["WindowCenter"]), float(meta["WindowWidth"]))
        volume = np.abs(item.data[0]) if np.iscomplexobj(item.data) else item.data[0]
        geometry = Geometry.from_image(item)
        if self.targets:
            yield from self._deliver_volume(item, volume, geometry, meta, unit, window)
        if not self.pass_images:
            return
        if self.form == "volumes":
            yield item
        else:
            series = int(item.image_series_index)
            yield from mrd_slices(volume, geometry, meta, series_index=series, like=item)

    def _deliver_volume(self, item, volume, geometry, meta, unit, window):
        """The volume's DICOM series (and Parametric Map) to the delivery targets."""
        info = SeriesInfo(
            description=meta.get("SeriesDescription", "Na23 image [a.u.]"),
            series_number=int(item.image_series_index),
            unit=unit,
            label=meta.get("LUTLabel", "Na23"),
            image_type=(meta.get("ImageTypeValue3", "OTHER"),),
            window=window,
            comments=meta.get("ImageComments", ""),
        )
        datasets = series_datasets(volume, geometry, self.header_xml, info)
        yield from self._deliver(datasets, info)
        if self.parametric_map and unit == "mmol/L" and meta.get("DataRole") == "Quantitative":
            from gadgets.core.output.dicom_pmap import parametric_map_dataset

            pmap = parametric_map_dataset(volume, datasets, info)
            pinfo = dataclasses.replace(
                info, series_number=int(pmap.SeriesNumber), description=pmap.SeriesDescription
            )
            yield from self._deliver([pmap], pinfo)

    def _deliver_picture(self, item: ismrmrd.Image, meta: dict[str, str]):
        """A QA picture: one Secondary Capture file, and a PNG beside it in ``folder``."""
        if not self.targets:
            if self.pass_images and self.pass_pictures:
                yield item
            return
        rgb = picture_rgb(item)
        info = SeriesInfo(
            description=meta.get("SeriesDescription", "Na23 TSC QA"),
            series_number=int(item.image_series_index),
            unit="1",
            label="QA",
            image_type=(meta.get("ImageTypeValue3", "QA"),),
            comments=meta.get("ImageComments", ""),
        )
        burned_in = meta.get("BurnedInAnnotation") == "YES"
        datasets = [secondary_capture_dataset(rgb, self.header_xml, info, burned_in)]
        files = "folder" in self.targets or "pacs" in self.targets  # the PNG goes with the file
        yield from self._deliver(datasets, info, {"0001.png": png_bytes(rgb)} if files else None)
        if self.pass_images and self.pass_pictures:
            yield item

    def _deliver(self, datasets: list, info: SeriesInfo, extra: dict[str, bytes] | None = None):
        """Stream, write and/or C-STORE a series' datasets; ``extra`` files go into its folder
        with it (the PNG of a picture)."""
        prefix = f"series{info.series_number:03d}"
        encoded = encode_series(datasets)
        if "stream" in self.targets:
            for i, data in enumerate(encoded, start=1):
                yield DicomFile(data, f"{prefix}_{i:04d}.dcm", info.description)
        files: list[Path] = []
        folder = self.folder if "folder" in self.targets else None
        if "pacs" in self.targets and folder is None:  # kept where it is found if the PACS is down
            folder = str(cache_dir("undelivered"))
        if folder is not None:
            try:
                files = write_series_folder(
                    encoded,
                    folder,
                    str(datasets[0].StudyInstanceUID),
                    info.series_number,
                    str(datasets[0].SeriesInstanceUID),
                    extra,
                )
            except SeriesWriteError as exc:  # nothing of it is kept: say so, never half
                log.error("DicomOutput: %s", exc)
                yield Notice(f"DicomOutput: INCOMPLETE: {exc}", logging.ERROR)
                return
        if "pacs" in self.targets:
            target = PacsTarget(
                self.pacs_host,
                self.pacs_port,
                self.pacs_ae_title,
                self.calling_ae_title,
                self.pacs_timeout_s,
            )
            report = c_store(files, target)
            if report.error:
                yield Notice(f"DicomOutput: {report.error}; files kept in {files[0].parent}")
