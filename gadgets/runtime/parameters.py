"""Chain properties set by the client: the JSON text a FIRE / OpenRecon client sends after the
ISMRMRD header (python-ismrmrd-server's ``configAdditional``), and the capabilities a client
announces.

``{"version": "...", "parameters": {"NAME": value, ...}}``: each parameter sets the chain
property of that name, parsed and checked as ``--set NAME=VALUE`` is (an unknown name or a bad
value is refused with the same message). Values may be JSON booleans, numbers, lists (a
comma-separated list) or text. Three names belong to the FIRE protocol, not to a chain:
``config`` (the chain to run, when the client named none, or ``default`` / ``openrecon``),
``customconfig`` and ``sendoriginal`` (ignored).

A client that can take DICOM files (message 1018) says so with the query
``mrd::client_accepts=1018`` (any list of message ids, comma-separated); the server answers
``ok``. Without it nothing but the standard MRD messages is sent back.
"""

from __future__ import annotations

import json

__all__ = [
    "ACCEPTS_QUERY",
    "FIRE_KEYS",
    "ParameterError",
    "accepted_ids",
    "parameters_from_json",
]

ACCEPTS_QUERY = "mrd::client_accepts"
FIRE_KEYS = ("config", "customconfig", "sendoriginal")


class ParameterError(ValueError):
    """Client parameters that are not the JSON described above."""


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def parameters_from_json(text: str) -> tuple[dict[str, str], str]:
    """``(properties, chain)`` from a client's JSON parameter text: the chain properties as
    ``--set`` text, and the ``config`` parameter ("" if none)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParameterError(f"client parameters are not JSON: {exc}") from exc
    params = doc.get("parameters") if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise ParameterError('client parameters: expected {"parameters": {"name": value, ...}}')
    chain = _text(params.get("config") or "")
    props = {str(k): _text(v) for k, v in params.items() if k not in FIRE_KEYS and v is not None}
    return props, chain


def accepted_ids(query: str) -> frozenset[int] | None:
    """The message ids of a capability query, or None if ``query`` is not one."""
    name, sep, ids = query.partition("=")
    if name.strip() != ACCEPTS_QUERY or not sep:
        return None
    try:
        return frozenset(int(i) for i in ids.split(",") if i.strip())
    except ValueError:
        return None
