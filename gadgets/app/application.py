"""sodium-gadgets as an application of the generic runtime (:mod:`gadgets.runtime`): its name,
its shipped chains, the packages its chains may run, and what a client does with the files it
receives (a PNG beside each QA picture)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from gadgets import GADGET_PACKAGES, __version__
from gadgets.resources import chains_dir
from gadgets.runtime.application import Application

__all__ = ["application", "clean_delivery_folders", "qa_png_hook", "recon_file", "send_file"]


def qa_png_hook(path: Path, data: bytes) -> list[Path]:
    """``<name>.png`` beside a Secondary Capture file (the calibration QA picture) that a client
    wrote; nothing for other SOP classes."""
    import pydicom
    from pydicom.uid import SecondaryCaptureImageStorage

    from gadgets.core.output.dicom_series import picture_from_dataset
    from gadgets.core.output.qa import write_png

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    if ds.get("SOPClassUID") != SecondaryCaptureImageStorage:
        return []
    rgb = picture_from_dataset(pydicom.dcmread(io.BytesIO(data)))
    return [write_png(rgb, path.with_suffix(".png"))]


def clean_delivery_folders(chains_dir: Path) -> list[Path]:
    """Remove what interrupted deliveries left (partial files and series of processes no longer
    running) in every ``folder`` the chains of ``chains_dir`` deliver DICOM to; at start-up."""
    import xml.etree.ElementTree as ET

    from gadgets.core.output.dicom_files import clean_partials

    removed = []
    for chain in sorted(chains_dir.glob("*.xml")):
        try:
            props = list(ET.parse(chain).getroot().iter("property"))
        except (ET.ParseError, OSError):  # the server reports it when the chain is asked for
            continue
        for prop in props:
            if prop.get("name") == "folder" and prop.get("value"):
                removed += clean_partials(prop.get("value"))
    return removed


def application(chains: str | Path | None = None) -> Application:
    """The sodium-gadgets application; ``chains``: a site's own chains folder instead of the
    shipped one (``serve --chains``)."""
    app = Application(
        name="sodium-gadgets",
        version=__version__,
        chains_dir=chains_dir(),
        allowed_modules=GADGET_PACKAGES,
        dicom_hooks=(qa_png_hook,),
    )
    if chains is not None:
        folder = Path(chains).resolve()
        if not any(folder.glob("*.xml")):
            raise FileNotFoundError(
                f"{folder}: no chain files (*.xml) there; sodium-gadgets chains --copy-to "
                f"{folder} puts the shipped ones there to start from"
            )
        app = dataclasses.replace(app, chains_dir=folder)
    return app


def recon_file(
    path: str | Path,
    out_dir: str | Path,
    chain: str | None = None,
    overrides: dict | None = None,
    chains: str | Path | None = None,
):
    """:func:`gadgets.runtime.client.recon_file` with this application's chains and hooks."""
    from gadgets.runtime import client

    return client.recon_file(path, out_dir, application(chains), chain, overrides)


def send_file(path: str | Path, out_dir: str | Path, **kwargs):
    """:func:`gadgets.runtime.client.send_file` writing this application's extra files (the PNG
    of a QA picture) beside the DICOM files."""
    from gadgets.runtime import client

    return client.send_file(path, out_dir, dicom_hooks=application().dicom_hooks, **kwargs)
