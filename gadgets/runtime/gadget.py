"""The gadget interface: one class per job, configured by typed properties from the chain XML.

A gadget is built from the scan's ISMRMRD header and its properties (then :meth:`Gadget.setup`
runs); :meth:`Gadget.process`
takes one item (an ISMRMRD acquisition, image or waveform, or any Python object an earlier step
produced) and yields zero or more items; :meth:`Gadget.finish` is called once at the end of the
stream and may yield the last items. The same class runs in the embedded runner and, through
:mod:`gadgets.runtime.external`, as an ``<external>`` step of a real Gadgetron::

    class Scale(Gadget):
        \"\"\"Multiply every readout by a factor.\"\"\"

        properties = {"factor": Property(float, 1.0, "multiplier")}

        def process(self, item):
            if isinstance(item, ismrmrd.Acquisition):
                item.data[:] *= self.factor
            yield item
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

_MISSING = object()


class PropertyError(ValueError):
    """A property that is unknown, of the wrong type, or missing."""


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _parse_floats(text: str) -> tuple[float, ...]:
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    return tuple(float(p) for p in parts)


_PARSERS = {bool: _parse_bool, int: int, float: float, str: str, tuple: _parse_floats}
_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "text",
    tuple: "list of numbers",
}


@dataclass(frozen=True)
class Property:
    """A gadget property: its type (bool, int, float, str, or ``tuple`` for a comma-separated
    list of numbers), default (omit for a required property) and what it means."""

    type: type
    default: Any = _MISSING
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def parse(self, text: str) -> Any:
        try:
            return _PARSERS[self.type](text)
        except (KeyError, ValueError, TypeError) as exc:
            raise PropertyError(
                f"expected a {_TYPE_NAMES.get(self.type, self.type)}, got {text!r}"
            ) from exc


class Gadget:
    """Base class of all gadgets. Subclasses declare ``properties`` and override
    :meth:`process` (default: pass the item on) and :meth:`finish` (default: nothing)."""

    properties: ClassVar[dict[str, Property]] = {}

    def __init__(self, header: Any = None, **values: str) -> None:
        self.header = header
        if header is None and not values:
            return  # built by a real Gadgetron's loader, which then calls handle()
        unknown = sorted(set(values) - set(self.properties))
        if unknown:
            raise PropertyError(
                f"unknown property {unknown[0]!r} (known: {sorted(self.properties)})"
            )
        for name, prop in self.properties.items():
            if name in values:
                try:
                    value = prop.parse(values[name])
                except PropertyError as exc:
                    raise PropertyError(f"property {name!r}: {exc}") from exc
            elif prop.required:
                raise PropertyError(f"required property {name!r} is missing")
            else:
                value = prop.default
            setattr(self, name, value)
        self.setup()

    def setup(self) -> None:
        """Prepare for the stream, from ``self.header`` and the properties (override this,
        not ``__init__``: a real Gadgetron constructs gadgets without arguments)."""

    def process(self, item: Any) -> Iterator[Any] | Iterable[Any]:
        yield item

    def finish(self) -> Iterator[Any] | Iterable[Any]:
        return ()

    def handle(self, connection: Any) -> None:
        """Entry point under a real Gadgetron (``python -m gadgetron <port> <module> <class>``):
        see :mod:`gadgets.runtime.external`."""
        from .external import serve_gadgetron_connection

        serve_gadgetron_connection(type(self), connection)
