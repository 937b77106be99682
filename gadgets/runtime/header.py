"""The ISMRMRD header of a stream: parsing it, and checking once that it holds what the chain's
steps need, with :class:`HeaderError` naming the field. A leaf module: the runner, the
external-step adapter and the gadgets import it, it imports none of them.

A step declares what it needs as ``header_needs`` (:class:`~.gadget.Gadget`), names from
:data:`NEEDS`; :func:`validate_header` checks the union for the whole chain before any step is
built, so that a header without an encoding, with a zero or NaN field of view, or with no
channels is refused up front with one message naming the field, not by whichever step divides
by it first.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable
from typing import Any

import ismrmrd.xsd

__all__ = ["NEEDS", "HeaderError", "parse_header", "validate_header"]


class HeaderError(ValueError):
    """An ISMRMRD header that is not valid XML of the schema, or lacks what a step needs."""


_MISSING = re.compile(
    r"(\w+?)(?:Type)?\.__init__\(\) missing \d+ required keyword-only argument: '(\w+)'"
)


def parse_header(xml: str) -> Any:
    """The ISMRMRD header object of ``xml``, or :class:`HeaderError` (a value that is not of
    its field's type is an error too, not a warning)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", module="xsdata")
            return ismrmrd.xsd.CreateFromDocument(xml)
    except Exception as exc:  # xsdata raises parser-specific errors
        text = str(exc).strip().replace("\n", " ")
        missing = _MISSING.search(text)
        if missing:
            text = f"<{missing.group(1)}> lacks <{missing.group(2)}>, which the schema requires"
        raise HeaderError(f"invalid ISMRMRD header: {text}") from exc


def _number(value: Any, where: str, *, positive: bool = True, integer: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise HeaderError(f"header: {where} is {value!r}, not a number") from None
    if not math.isfinite(x) or (positive and x <= 0) or (integer and x != int(x)):
        kind = "positive " if positive else ""
        kind += "whole number" if integer else "finite number"
        raise HeaderError(f"header: {where} is {value!r}: it must be a {kind}")
    return x


def _encoding(h) -> Any:
    if not h.encoding:
        raise HeaderError("header: no <encoding>: the chain needs the encoded and recon spaces")
    return h.encoding[0]


def _space(h, name: str) -> None:
    space = getattr(_encoding(h), name)
    for axis in ("x", "y", "z"):
        _number(
            getattr(space.matrixSize, axis), f"encoding[0].{name}.matrixSize.{axis}", integer=True
        )
        _number(getattr(space.fieldOfView_mm, axis), f"encoding[0].{name}.fieldOfView_mm.{axis}")


def _projections(h) -> None:
    enc = _encoding(h)
    limit = enc.encodingLimits.kspace_encoding_step_1 if enc.encodingLimits else None
    if limit is not None:
        _number(
            limit.maximum,
            "encoding[0].encodingLimits.kspace_encoding_step_1.maximum",
            positive=False,
            integer=True,
        )
        return
    desc = enc.trajectoryDescription
    if desc is None or not any(p.name == "projections" for p in desc.userParameterLong or []):
        raise HeaderError(
            "header: neither encodingLimits.kspace_encoding_step_1 nor trajectoryDescription's "
            "'projections' says how many readouts the scan has"
        )


def _channels(h) -> None:
    info = h.acquisitionSystemInformation
    if info is None or info.receiverChannels is None:
        raise HeaderError("header: acquisitionSystemInformation.receiverChannels is missing")
    _number(info.receiverChannels, "acquisitionSystemInformation.receiverChannels", integer=True)


def _echo_times(h) -> None:
    seq = h.sequenceParameters
    if seq is None or not seq.TE:
        raise HeaderError("header: sequenceParameters.TE (ms, one per echo) is missing")
    for i, te in enumerate(seq.TE):
        _number(te, f"sequenceParameters.TE[{i}]", positive=False)


def _field_strength(h) -> None:
    info = h.acquisitionSystemInformation
    value = info.systemFieldStrength_T if info is not None else None
    _number(value, "acquisitionSystemInformation.systemFieldStrength_T")


def _larmor(h) -> None:
    cond = h.experimentalConditions
    _number(
        cond.H1resonanceFrequency_Hz if cond is not None else None,
        "experimentalConditions.H1resonanceFrequency_Hz",
    )


#: what a step may need of the header, and how it is checked
NEEDS = {
    "encoding": _encoding,
    "encoded_space": lambda h: _space(h, "encodedSpace"),
    "recon_space": lambda h: _space(h, "reconSpace"),
    "projections": _projections,
    "channels": _channels,
    "echo_times": _echo_times,
    "field_strength": _field_strength,
    "larmor": _larmor,
}


def validate_header(header: Any, needs: Iterable[str]) -> None:
    """Check that ``header`` holds what ``needs`` names (:data:`NEEDS`); :class:`HeaderError`
    names the first field that is missing or wrong."""
    for need in sorted(set(needs), key=list(NEEDS).index):
        NEEDS[need](header)
