"""Encoding DICOM datasets to Part-10 file bytes, fast for a series.

:func:`encode_series` writes exactly what ``pydicom.dcmwrite(..., enforce_file_format=True)``
writes (explicit VR little endian; tested byte for byte), but encodes the runs of elements that
every slice of a series shares once: a 56-slice series in 0.02 s instead of 0.4 s.
"""

from __future__ import annotations

import struct

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian

__all__ = ["encode_series"]

_LONG_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UC", "UR", "UT", "UN"}
_PACKED = {"UL": "<I", "US": "<H", "SL": "<i", "SS": "<h"}


def _plain_bytes(elem: DataElement) -> bytes | None:
    """``elem`` in explicit VR little endian, as pydicom writes it, for the VRs a slice's own
    elements have (UIDs, numbers, pixels); None for any other (pydicom encodes those)."""
    vr, value = elem.VR, elem.value
    if vr in ("UI", "SH", "AE", "CS"):
        text = value if isinstance(value, str) else "\\".join(value)
        raw = text.encode("ascii")
        raw += (b"\0" if vr == "UI" else b" ") * (len(raw) % 2)
    elif vr in ("IS", "DS"):
        items = value if isinstance(value, list | tuple | MultiValue) else [value]
        text = "\\".join(getattr(x, "original_string", None) or str(x) for x in items)
        raw = (text + " " * (len(text) % 2)).encode("ascii")
    elif vr in ("OB", "OW") and isinstance(value, bytes):
        raw = value + b"\0" * (len(value) % 2)
    elif vr in _PACKED and isinstance(value, int):
        raw = struct.pack(_PACKED[vr], value)
    else:
        return None
    group, number = elem.tag.group, elem.tag.element
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, number, vr.encode(), 0, len(raw)) + raw
    return struct.pack("<HH2sH", group, number, vr.encode(), len(raw)) + raw


def _file_meta_bytes(meta: FileMetaDataset) -> bytes | None:
    """The file meta group of a dataset whose meta :func:`pydicom.filewriter.write_file_meta_info`
    has completed once (group length included), re-encoded after a UID change."""
    parts = [_plain_bytes(meta[tag]) for tag in sorted(meta.keys()) if tag != 0x00020000]
    if any(part is None for part in parts):
        return None
    body = b"".join(parts)  # type: ignore[arg-type]
    return struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)) + body


def encode_series(datasets: list[Dataset]) -> list[bytes]:
    """The DICOM file bytes of each dataset, exactly as ``pydicom.dcmwrite(...,
    enforce_file_format=True)`` writes them (explicit VR little endian), fast for a series: the
    runs of elements that every dataset shares (the same objects, as :func:`series_datasets`
    makes them) are encoded once, the others (UIDs, numbers, positions, pixels) by
    :func:`_plain_bytes`. Datasets of a series are not to be changed in place."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import (
        correct_ambiguous_vr_element,
        write_dataset,
        write_file_meta_info,
    )

    if not datasets:
        return []
    first = datasets[0]
    tags = sorted(first.keys())
    # each dataset's elements as a plain dict: Dataset.__getitem__ costs ~3 us a call, and a
    # series asks for every element of every slice
    elements = [dict(d.items()) for d in datasets]
    plain = all(
        d.file_meta.get("TransferSyntaxUID") == ExplicitVRLittleEndian
        and e.keys() == elements[0].keys()
        for d, e in zip(datasets, elements, strict=True)
    )
    if not plain:  # not one series: element by element
        out = []
        for d in datasets:
            buf = DicomBytesIO()
            pydicom.dcmwrite(buf, d, enforce_file_format=True)
            out.append(buf.getvalue())
        return out
    charset = first.get("SpecificCharacterSet", "ISO_IR 6")

    def encoded(ds: Dataset, elems: dict, run: list) -> bytes:
        for tag in run:  # OB or OW, US or SS...: resolved against the whole dataset
            correct_ambiguous_vr_element(elems[tag], ds, True)
        quick = [_plain_bytes(elems[tag]) for tag in run]
        if all(q is not None for q in quick):
            return b"".join(quick)  # type: ignore[arg-type]
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_dataset(buf, Dataset({t: ds[t] for t in run}), parent_encoding=charset)
        return buf.getvalue()

    def meta_bytes(ds: Dataset) -> bytes:
        quick = _file_meta_bytes(ds.file_meta) if 0x00020000 in ds.file_meta else None
        if quick is not None:
            return quick
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_file_meta_info(buf, ds.file_meta, enforce_standard=True)
        return buf.getvalue()

    runs: list[tuple[bool, list]] = []  # (shared by all?, consecutive tags)
    for tag in tags:
        shared = all(e[tag] is elements[0][tag] for e in elements)
        if runs and runs[-1][0] == shared:
            runs[-1][1].append(tag)
        else:
            runs.append((shared, [tag]))
    once = {i: encoded(first, elements[0], run) for i, (shared, run) in enumerate(runs) if shared}
    first_meta = meta_bytes(first)  # completes first's meta (group length, implementation)
    out = []
    for d, elems in zip(datasets, elements, strict=True):
        if d is not first and 0x00020000 not in d.file_meta:  # the slices share its completion
            for tag in first.file_meta.keys():
                if tag != 0x00020003 and tag not in d.file_meta:
                    d.file_meta[tag] = first.file_meta[tag]
        parts = [b"\0" * 128 + b"DICM", first_meta if d is first else meta_bytes(d)]
        parts += [
            once[i] if shared else encoded(d, elems, run) for i, (shared, run) in enumerate(runs)
        ]
        out.append(b"".join(parts))
    return out
