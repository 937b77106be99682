"""The gadget interface: one class per job, configured by typed properties from the chain XML.

A gadget is built from the scan's ISMRMRD header and its properties (then :meth:`Gadget.setup`
runs); :meth:`Gadget.process` takes one item (an ISMRMRD acquisition, image or waveform, or any
Python object an earlier step produced) and yields zero or more items; :meth:`Gadget.finish` is
called once at the end of the stream and may yield the last items. A :class:`~.notice.Notice`
yielded by a step is a message for the client, not an item. The same class runs in the embedded
runner and, through :mod:`gadgets.runtime.external`, as an ``<external>`` step of a real
Gadgetron::

    class Scale(Gadget):
        \"\"\"Multiply every readout by a factor.\"\"\"

        properties = {"factor": Property(float, 1.0, "multiplier", low=0)}

        def process(self, item):
            if isinstance(item, ismrmrd.Acquisition):
                item.data[:] *= self.factor
            yield item

Property types: ``bool``, ``int``, ``float``, ``str``, and ``list[float]`` / ``list[str]``
(comma-separated, parsed to a tuple); ``choices`` limits a text to a set (every element of a
list), ``low`` / ``high`` bound a number (inclusive; every element of a list), ``length`` the
number of elements of a list. A value that breaks them is refused when the chain is loaded, with
a message naming the property.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from gadgets.runtime.context import StepContext
from gadgets.runtime.external import serve_gadgetron_connection

__all__ = ["Gadget", "Property", "PropertyError", "StepContext"]

_MISSING = object()
_FLOATS = list[float]
_TEXTS = list[str]


class PropertyError(ValueError):
    """A property that is unknown, of the wrong type, out of its range, or missing."""


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


def _parse_texts(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


_PARSERS = {
    bool: _parse_bool,
    int: int,
    float: float,
    str: str,
    _FLOATS: _parse_floats,
    _TEXTS: _parse_texts,
}
_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "text",
    _FLOATS: "list of numbers",
    _TEXTS: "list of words",
}


@dataclass(frozen=True)
class Property:
    """A gadget property: its type (see the module docstring), default (omit it for a required
    property), what it means (with its unit), and its allowed values."""

    type: Any
    default: Any = _MISSING
    doc: str = ""
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    length: tuple[int, int] | None = None  # lists: fewest and most elements
    #: the value names a place on the server (a path, a host, a port): set by the site's
    #: administrator, not by a client (:mod:`gadgets.runtime.server` can lock it). ``"paths"``:
    #: only a value that is a path (``/``, ``\\``, ``~`` or a leading ``.``), not a bare name
    #: looked up in the server's own folders
    location: bool | str = False

    def __post_init__(self) -> None:
        if self.type not in _PARSERS:
            raise TypeError(f"unsupported property type {self.type!r}")
        if self.location not in (True, False, "paths"):
            raise TypeError(f"location is True, False or 'paths', not {self.location!r}")

    def names_location(self, text: str) -> bool:
        """Whether ``text``, as this property's value, names a place on the server."""
        if self.location == "paths":
            return any(c in text for c in "/\\~") or text.lstrip().startswith(".")
        return bool(self.location)

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    def parse(self, text: str) -> Any:
        """The value of ``text``, checked; :class:`PropertyError` says what is wrong."""
        try:
            value = _PARSERS[self.type](text)
        except (ValueError, TypeError) as exc:
            article = "an" if self.type_name[0] in "aeiou" else "a"
            raise PropertyError(f"expected {article} {self.type_name}, got {text!r}") from exc
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """Refuse a value outside ``choices``, ``low``/``high`` or ``length``."""
        if self.choices is not None:
            for word in value if self.type == _TEXTS else (value,):
                if word not in self.choices:
                    raise PropertyError(f"{word!r} is not one of {', '.join(self.choices)}")
        numbers = value if self.type == _FLOATS else (value,)
        if self.type in (int, float, _FLOATS):
            for x in numbers:
                if x != x:  # NaN passes no comparison
                    raise PropertyError("NaN is not a value")
                if self.low is not None and x < self.low:
                    raise PropertyError(f"{x:g} is below the minimum {self.low:g}")
                if self.high is not None and x > self.high:
                    raise PropertyError(f"{x:g} is above the maximum {self.high:g}")
        if self.length is not None and not self.length[0] <= len(value) <= self.length[1]:
            lo, hi = self.length
            raise PropertyError(f"{lo} to {hi} values are needed, got {len(value)}")


class Gadget:
    """Base class of all gadgets. Subclasses declare ``properties`` and override
    :meth:`process` (default: pass the item on) and :meth:`finish` (default: nothing)."""

    properties: ClassVar[dict[str, Property]] = {}
    #: a step that runs other steps (e.g. a whole chain): properties it does not declare are
    #: kept, unparsed, in ``self.forwarded`` for those steps, instead of being refused
    forwards_properties: ClassVar[bool] = False
    #: what the step needs of the ISMRMRD header (names of :data:`~.header.NEEDS`), checked
    #: once for the whole chain before any step is built
    header_needs: ClassVar[tuple[str, ...]] = ()
    context: StepContext

    def __init__(
        self, header: Any = None, context: StepContext | None = None, **values: str
    ) -> None:
        self.header = header
        self.context = context or StepContext(step=type(self).__name__)
        if header is None and not values:
            return  # built by a real Gadgetron's loader, which then calls handle()
        unknown = sorted(set(values) - set(self.properties))
        self.forwarded = {k: values[k] for k in unknown} if self.forwards_properties else {}
        if unknown and not self.forwards_properties:
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
        not ``__init__``: a real Gadgetron constructs gadgets without arguments). Nothing large
        is allocated here: :meth:`memory_bytes` is checked first."""

    def memory_bytes(self) -> int:
        """What the step will hold at most for this scan (bytes), from the header and its
        properties: the server refuses a scan whose steps together need more than its budget,
        before anything is allocated."""
        return 0

    def process(self, item: Any) -> Iterator[Any] | Iterable[Any]:
        yield item

    def finish(self) -> Iterator[Any] | Iterable[Any]:
        return ()

    def handle(self, connection: Any) -> None:
        """Entry point under a real Gadgetron (``python -m gadgetron <port> <module> <class>``):
        see :mod:`gadgets.runtime.external`."""
        serve_gadgetron_connection(type(self), connection)
