"""A base for the steps that need every echo of the scan at once (B0 correction, calibration)."""

from __future__ import annotations

import ismrmrd

from gadgets.runtime.gadget import Gadget
from gadgets.volume_meta import GriddedVolume

__all__ = ["EchoVolumesGadget"]


class EchoVolumesGadget(Gadget):
    """Base of the steps that need all echoes of the scan at once: echo volumes from the
    gridder (meta ``SodiumBinsHz``) are held until ``encodingLimits.contrast`` of them have
    arrived (or the stream ends), then :meth:`complete` yields the results. Other items pass."""

    def setup(self) -> None:
        limits = self.header.encoding[0].encodingLimits.contrast
        self.necho = int(limits.maximum) + 1 if limits is not None else 1
        self.echoes: dict[int, ismrmrd.Image] = {}

    def process(self, item):
        if not GriddedVolume.describes(item):
            yield item
            return
        self.echoes[int(item.contrast)] = item
        if len(self.echoes) == self.necho:
            yield from self._flush()

    def finish(self):
        if self.echoes:
            yield from self._flush()

    def _flush(self):
        yield from self.complete()
        self.echoes.clear()

    def complete(self):
        raise NotImplementedError
