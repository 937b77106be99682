"""The ISMRMRD header of a stream: parsing it, with :class:`HeaderError` for one that is not
valid. A leaf module: the runner, the external-step adapter and the gadgets import it, it
imports none of them."""

from __future__ import annotations

from typing import Any

import ismrmrd.xsd

__all__ = ["HeaderError", "parse_header"]


class HeaderError(ValueError):
    """An ISMRMRD header that is not valid XML of the schema, or lacks what a step needs."""


def parse_header(xml: str) -> Any:
    """The ISMRMRD header object of ``xml``, or :class:`HeaderError`."""
    try:
        return ismrmrd.xsd.CreateFromDocument(xml)
    except Exception as exc:  # xsdata raises parser-specific errors
        raise HeaderError(f"invalid ISMRMRD header: {exc}") from exc
