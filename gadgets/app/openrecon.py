"""``sodium-gadgets openrecon-label CHAIN``: the OpenRecon UI description of a chain.

Siemens OpenRecon shows a reconstruction's parameters on the console from a JSON label that
ships inside its image: ``general`` (name, version, vendor, information), ``reconstruction`` (the
MRD transfer protocol, the port, what goes in and comes out, the resources it needs) and
``parameters`` (one entry per UI control: ``id``, ``label``, ``type`` -- ``boolean``, ``int``,
``double``, ``string`` or ``choice`` with its ``values`` --, ``default``, ``information``, and
``minimum`` / ``maximum`` for numbers). The console sends the chosen values back as the JSON
parameters after the ISMRMRD header, which set the chain properties of the same ``id``
(:mod:`gadgets.runtime.parameters`).

Here the parameters are the chain's declared properties (:class:`gadgets.runtime.gadget.Property`:
type, default, doc, choices, bounds), one per name; a ``config`` choice names the chain. A
property that names a place on the server (a folder, a host, a port: ``Property.location``) is
left out: the site's administrator sets those, not the console.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from gadgets import __version__
from gadgets.runtime.chain import import_target, load_chain
from gadgets.runtime.gadget import Property

__all__ = ["label", "parameter", "write_label"]

_TYPES = {bool: "boolean", int: "int", float: "double", str: "string"}


def parameter(name: str, prop: Property, step: str) -> dict:
    """One OpenRecon parameter for property ``name`` of ``step``."""
    default = prop.default
    entry: dict = {"id": name, "label": {"en": name}}
    if prop.type is str and prop.choices:
        entry["type"] = "choice"
        entry["values"] = [{"id": c, "name": {"en": c}} for c in prop.choices]
    elif prop.type in _TYPES:
        entry["type"] = _TYPES[prop.type]
    else:  # lists: comma-separated text, as for --set
        entry["type"] = "string"
        default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    entry["default"] = default
    if prop.type in (int, float):
        if prop.low is not None:
            entry["minimum"] = prop.low
        if prop.high is not None:
            entry["maximum"] = prop.high
    entry["information"] = {"en": f"{step}: {prop.doc}" if prop.doc else step}
    return entry


def label(chain: str | Path, chains_dir: Path, port: int = 9002) -> dict:
    """The OpenRecon label (module docstring) of ``chain`` from ``chains_dir``."""
    spec = load_chain(chain, chains_dir)
    params = [
        {
            "id": "config",
            "label": {"en": "chain"},
            "type": "choice",
            "values": [{"id": spec.name, "name": {"en": spec.name}}],
            "default": spec.name,
            "information": {"en": "the sodium-gadgets chain that reconstructs the scan"},
        }
    ]
    seen = {"config"}
    for step in spec.steps:
        if step.cpp:
            continue
        cls = import_target(step.module, step.target, f"chain {spec.name}: step {step.name!r}")
        for name, prop in cls.properties.items():
            if name in seen or prop.location:
                continue
            seen.add(name)
            default = step.properties.get(name)
            if default is not None:  # the chain's own value is the console's default
                prop = dataclasses.replace(prop, default=prop.parse(default))
            params.append(parameter(name, prop, step.name))
    return {
        "general": {
            "name": {"en": f"sodium-gadgets {spec.name}"},
            "version": __version__,
            "vendor": "sodium-gadgets",
            "information": {
                "en": "Sodium-23 MRI: tissue sodium concentration maps calibrated against "
                "reference tubes, returned while the patient is on the table"
            },
            "id": f"sodium-gadgets-{spec.name}".replace("_", "-"),
        },
        "reconstruction": {
            "transfer_protocol": {"protocol": "ISMRMRD", "version": "1.4.1"},
            "port": port,
            "emitter": "image",
            "injector": "raw",
            "can_process_adjustment_data": False,
            "can_use_gpu": False,
            "min_count_required_gpus": 0,
            "min_required_gpu_memory": 0,
            "min_required_memory": 4096,
            "min_count_required_cpu_cores": 2,
            "content_qualification_type": "RESEARCH",
        },
        "parameters": params,
    }


def write_label(chain: str, chains_dir: Path, out: Path | None) -> str:
    """The label as JSON text, written to ``out`` when given."""
    text = json.dumps(label(chain, chains_dir), indent=2) + "\n"
    if out is not None:
        Path(out).write_text(text)
    return text
