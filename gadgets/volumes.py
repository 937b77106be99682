"""Volumes between gadgets: ``ismrmrd.Image`` (data ``(channels, nz, ny, nx)``) with geometry
copied from the acquisitions and the facts later steps need in its meta (``attribute_string``;
the sodium steps' keys are :mod:`gadgets.volume_meta`), so the same steps can run as separate
``<external>`` processes of a real Gadgetron, where only ISMRMRD types travel between them.

Pictures (the calibration QA picture, meta ``DataRole=QA``) travel as RGB images
(:func:`picture_image`): ``image_type`` ``IMTYPE_RGB``, 3 channels (R, G, B) of ``uint16``
holding 0-255, ``(3, 1, H, W)``, the position and directions of the volume they describe and a
nominal field of view of 1 mm per pixel (a picture has no patient geometry).
"""

from __future__ import annotations

import ismrmrd
import numpy as np

__all__ = ["picture_image", "picture_rgb", "read_meta", "volume_image"]

_GEOMETRY = ("position", "read_dir", "phase_dir", "slice_dir", "patient_table_position")


def volume_image(
    data: np.ndarray,
    like,
    meta: dict[str, object] | None = None,
    *,
    series_index: int = 1,
    contrast: int = 0,
    image_type: int | None = None,
) -> ismrmrd.Image:
    """An image of ``data`` ``(C, nz, ny, nx)`` or ``(nz, ny, nx)`` placed like ``like`` (an
    acquisition or image: position and directions; ``field_of_view`` from ``meta['fov_mm']``
    or from ``like`` when it is an image). The image holds ``data`` itself, not a copy (two
    copies of a 40-channel volume cost 0.05-0.3 s after the last readout)."""
    data = np.ascontiguousarray(data)
    if data.ndim == 3:
        data = data[None]
    img = ismrmrd.Image(data=data)
    img.version = 1
    for key in _GEOMETRY:
        setattr(img, key, tuple(getattr(like, key)))
    meta = dict(meta or {})
    fov = meta.pop("fov_mm", None)
    img.field_of_view = tuple(fov) if fov is not None else tuple(like.field_of_view)
    img.contrast = contrast
    img.image_series_index = series_index
    img.image_index = 1
    if image_type is None:
        image_type = ismrmrd.IMTYPE_COMPLEX if np.iscomplexobj(data) else ismrmrd.IMTYPE_MAGNITUDE
    img.image_type = image_type
    if meta:
        m = ismrmrd.Meta()
        for k, v in meta.items():
            m[k] = [str(x) for x in v] if isinstance(v, list | tuple | np.ndarray) else str(v)
        _set_meta(img, m)
    return img


def _set_meta(img: ismrmrd.Image, meta: ismrmrd.Meta) -> None:
    # ismrmrd's Image keeps its meta parsed and serialises it on every read of
    # attribute_string: setting and reading the parsed meta spares the XML round trips
    # (0.1 s after the last readout with the sample tables in a volume's meta)
    if isinstance(getattr(type(img), "meta", None), property):
        img.meta = meta
    else:
        img.attribute_string = meta.serialize()


def picture_image(
    rgb: np.ndarray, like, meta: dict[str, object] | None = None, *, series_index: int = 50
) -> ismrmrd.Image:
    """An RGB picture ``(H, W, 3)`` ``uint8`` as an ``ismrmrd.Image`` (see the module docstring)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) picture, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    data = np.moveaxis(rgb, 2, 0)[:, None].astype(np.uint16)
    meta = {**(meta or {}), "fov_mm": (float(width), float(height), 1.0)}
    return volume_image(data, like, meta, series_index=series_index, image_type=ismrmrd.IMTYPE_RGB)


def picture_rgb(image: ismrmrd.Image) -> np.ndarray:
    """The ``(H, W, 3)`` ``uint8`` picture of an image made by :func:`picture_image`."""
    data = np.asarray(image.data)
    if data.ndim != 4 or data.shape[0] != 3 or data.shape[1] != 1:
        raise ValueError(f"an RGB picture has data (3, 1, H, W), got {data.shape}")
    return np.clip(np.moveaxis(data[:, 0], 0, 2), 0, 255).astype(np.uint8)


def read_meta(image: ismrmrd.Image) -> dict[str, object]:
    """The meta of an image as a dict of text (lists for multi-valued keys)."""
    meta = getattr(image, "meta", None)
    if meta is None:
        text = image.attribute_string
        meta = ismrmrd.Meta.deserialize(text) if text else {}
    return {k: list(v) if isinstance(v, list) else v for k, v in meta.items()}
