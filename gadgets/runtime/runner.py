"""The embedded runner: a chain's steps instantiated in-process, items passed between them as
Python objects (no serialisation), errors attributed to the step that raised them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from .chain import ChainError, ChainSpec, instantiate
from .gadget import Gadget

log = logging.getLogger(__name__)


class StepError(RuntimeError):
    """A step failed while processing; ``step`` names it (Gadgetron: ``[step] ERROR: msg``)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step

    def client_text(self) -> str:
        return f"[{self.step}] ERROR: {self}"


def parse_header(xml: str) -> Any:
    """The ISMRMRD header object, or :class:`ChainError` if the XML is not a valid header."""
    import ismrmrd.xsd

    try:
        return ismrmrd.xsd.CreateFromDocument(xml)
    except Exception as exc:  # xsdata raises parser-specific errors
        raise ChainError(f"invalid ISMRMRD header: {exc}") from exc


class ChainRunner:
    """Runs one chain for one stream: :meth:`push` each item, then :meth:`finish` once."""

    def __init__(
        self,
        spec: ChainSpec,
        header_xml: str,
        overrides: dict[str, str] | None = None,
        allowed_modules: tuple[str, ...] | None = None,
    ):
        self.spec = spec
        self.header_xml = header_xml
        self.header = parse_header(header_xml)
        self.steps: list[tuple[str, Gadget]] = instantiate(
            spec, self.header, overrides, allowed_modules
        )
        self.items_in = 0
        self.started = time.perf_counter()
        log.info("chain %s: %s", spec.name, " -> ".join(name for name, _ in self.steps))

    def _run(self, start: int, items: Iterable[Any]) -> list[Any]:
        current = list(items)
        for name, step in self.steps[start:]:
            produced: list[Any] = []
            try:
                for item in current:
                    produced.extend(step.process(item))
            except StepError:
                raise
            except Exception as exc:
                log.exception("step %s failed", name)
                raise StepError(name, f"{type(exc).__name__}: {exc}") from exc
            current = produced
        return current

    def push(self, item: Any) -> list[Any]:
        """Outputs of the last step for one input item."""
        self.items_in += 1
        return self._run(0, [item])

    def finish(self) -> list[Any]:
        """End of stream: each step's last items flow through the steps after it."""
        out: list[Any] = []
        for i, (name, step) in enumerate(self.steps):
            try:
                last = list(step.finish())
            except Exception as exc:
                log.exception("step %s failed at the end of the stream", name)
                raise StepError(name, f"{type(exc).__name__}: {exc}") from exc
            out.extend(self._run(i + 1, last))
        log.info(
            "chain %s: %d items in %.2f s", self.spec.name, self.items_in,
            time.perf_counter() - self.started,
        )  # fmt: skip
        return out
