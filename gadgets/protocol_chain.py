"""The protocol map inside one step: :class:`ProtocolChain` runs, in-process, the chain that
``protocols.toml`` names for the scan's ``protocolName``, with that entry's property overrides,
exactly as the embedded server does for a client that asks for the ``default`` chain.

This is how the protocol map applies under a real Gadgetron, where the client names a chain file
and the server knows nothing of protocols: ``chains/sodium_auto.xml`` is this one step, so
``gadgetron_ismrmrd_client -C sodium_auto.xml`` gets the map's chain with its settings (the 3T
birdcage protocol its saline tubes and coil profile), its steps in one process (no per-step
serialisation, one numba thread pool). Under the embedded server ``sodium_auto`` is the same as
``default``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import ismrmrd.xsd

from gadgets import GADGET_PACKAGES
from gadgets.resources import chains_dir
from gadgets.runtime.chain import ChainError, load_chain
from gadgets.runtime.gadget import Gadget, Property
from gadgets.runtime.protocol_map import chain_for_protocol
from gadgets.runtime.runner import ChainRunner

__all__ = ["ProtocolChain"]

log = logging.getLogger(__name__)


class ProtocolChain(Gadget):
    """Run the protocol map's chain for this scan (module docstring)."""

    properties = {
        "chains": Property(
            str,
            "",
            "folder of chain files and protocols.toml (empty: the installed chains)",
            location=True,
        ),
        "chain": Property(str, "", "run this chain instead of the protocol map's choice"),
    }
    forwards_properties = True  # any other property is for the chain's steps

    def setup(self) -> None:
        header_xml = ismrmrd.xsd.ToXML(self.header)
        folder = Path(self.chains) if self.chains else chains_dir()
        if self.chain:
            name, overrides = self.chain, {}
        else:
            entry = chain_for_protocol(header_xml, folder)
            name, overrides = entry.chain, entry.overrides
        spec = load_chain(name, folder)
        if any(step.target == type(self).__name__ for step in spec.steps):
            raise ChainError(f"chain {spec.name} runs {type(self).__name__} itself: a loop")
        context = dataclasses.replace(
            self.context, resource_dirs=(folder, *self.context.resource_dirs)
        )
        overrides = {**overrides, **self.forwarded}
        self.runner = ChainRunner(spec, header_xml, overrides, GADGET_PACKAGES, context)
        log.info(
            "protocol map: %s -> chain %s %s",
            self.header.measurementInformation.protocolName
            if self.header.measurementInformation
            else "?",
            spec.name,
            overrides,
        )

    def process(self, item):
        yield from self.runner.push(item)

    def finish(self):
        yield from self.runner.finish_iter()
