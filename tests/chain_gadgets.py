"""Small gadgets for the runtime tests (importable as ``chain_gadgets``)."""

import ismrmrd

from gadgets.runtime.gadget import Gadget, Property


class Scale(Gadget):
    properties = {
        "factor": Property(float, 1.0, "multiplier"),
        "label": Property(str, "x"),
    }

    def process(self, item):
        if isinstance(item, ismrmrd.Acquisition):
            item.data[:] *= self.factor
        yield item


class Counter(Gadget):
    """Counts items; at the end emits one text line, then passes nothing else."""

    properties = {
        "every": Property(int, 1),
        "strict": Property(bool, False),
        "levels": Property(list[float], (1.0,)),
    }

    def setup(self):
        self.seen = 0

    def process(self, item):
        self.seen += 1
        return ()

    def finish(self):
        yield f"counted {self.seen}"


class Needs(Gadget):
    properties = {"tube_concentrations_mM": Property(list[float])}


class Explodes(Gadget):
    def process(self, item):
        raise RuntimeError("kaboom")
