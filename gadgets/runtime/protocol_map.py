"""The protocol map: which chain (and which property overrides) a radiographer's protocol runs.

``protocols.toml`` in the chains folder::

    [[protocol]]
    match = "sodium_tsc_b0*"        # shell-style pattern on measurementInformation.protocolName
    chain = "sodium_tsc_b0"
    [protocol.set]                  # optional property overrides
    fwhm_mm = "4"

The first matching entry wins; a protocol that matches none is an error (no silent default).
"""

from __future__ import annotations

import fnmatch
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (the Gadgetron image)
    import tomli as tomllib

from gadgets.runtime.chain import ChainError

__all__ = [
    "PROTOCOL_MAP",
    "ProtocolEntry",
    "chain_for_protocol",
    "load_protocol_map",
    "protocol_name",
]

PROTOCOL_MAP = "protocols.toml"


@dataclass(frozen=True)
class ProtocolEntry:
    match: str
    chain: str
    overrides: dict[str, str] = field(default_factory=dict)


def load_protocol_map(chains_dir: Path) -> list[ProtocolEntry]:
    """The entries of ``chains_dir/protocols.toml``, in order."""
    path = chains_dir / PROTOCOL_MAP
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ChainError(f"no protocol map {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ChainError(f"protocol map {path}: {exc}") from exc
    entries = []
    for i, e in enumerate(data.get("protocol", [])):
        if "match" not in e or "chain" not in e:
            raise ChainError(f"protocol map {path}: entry {i + 1} needs match and chain")
        entries.append(
            ProtocolEntry(
                str(e["match"]), str(e["chain"]), {k: str(v) for k, v in e.get("set", {}).items()}
            )
        )
    return entries


def protocol_name(header_xml: str) -> str:
    try:
        root = ET.fromstring(header_xml)
    except ET.ParseError as exc:
        raise ChainError(f"invalid ISMRMRD header: {exc}") from exc
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.endswith("protocolName"):
            return (el.text or "").strip()
    return ""


def chain_for_protocol(header_xml: str, chains_dir: Path) -> ProtocolEntry:
    """The protocol map entry for the header's protocolName."""
    name = protocol_name(header_xml)
    for entry in load_protocol_map(chains_dir):
        if fnmatch.fnmatchcase(name, entry.match):
            return entry
    raise ChainError(
        f"no chain for protocol {name!r}: add it to chains/{PROTOCOL_MAP}"
        if name
        else "the header has no measurementInformation.protocolName to choose a chain by"
    )
