"""The embedded runner: a chain's steps instantiated in-process, items passed between them as
Python objects (no serialisation), errors attributed to the step that raised them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from gadgets.runtime.chain import ChainSpec, instantiate
from gadgets.runtime.context import StepContext
from gadgets.runtime.gadget import Gadget
from gadgets.runtime.header import parse_header

__all__ = ["ChainRunner", "StepError"]

log = logging.getLogger(__name__)


class StepError(RuntimeError):
    """A step failed while processing; ``step`` names it (Gadgetron: ``[step] ERROR: msg``)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step

    def client_text(self) -> str:
        return f"[{self.step}] ERROR: {self}"


class ChainRunner:
    """Runs one chain for one stream: :meth:`push` each item, then :meth:`finish` once."""

    def __init__(
        self,
        spec: ChainSpec,
        header_xml: str,
        overrides: dict[str, str] | None = None,
        allowed_modules: tuple[str, ...] | None = None,
        context: StepContext | None = None,
    ):
        self.spec = spec
        self.header_xml = header_xml
        self.header = parse_header(header_xml)
        self.steps: list[tuple[str, Gadget]] = instantiate(
            spec, self.header, overrides, allowed_modules, context
        )
        self.items_in = 0
        self.started = time.perf_counter()
        log.info("chain %s: %s", spec.name, " -> ".join(name for name, _ in self.steps))

    def _outputs(self, start: int, item: Any) -> Iterator[Any]:
        """What ``item`` becomes after steps ``start``...: depth first, so that each output of a
        step reaches the end of the chain (and the client) before the step makes its next one."""
        if start == len(self.steps):
            yield item
            return
        name, step = self.steps[start]
        produced = self._guarded(name, lambda: iter(step.process(item)))
        while True:
            try:
                out = next(produced)
            except StopIteration:
                return
            except StepError:
                raise
            except Exception as exc:
                raise self._error(name, exc) from exc
            yield from self._outputs(start + 1, out)

    def _guarded(self, name: str, call):
        try:
            return call()
        except StepError:
            raise
        except Exception as exc:
            raise self._error(name, exc) from exc

    @staticmethod
    def _error(name: str, exc: Exception, when: str = "") -> StepError:
        log.exception("step %s failed%s", name, when)
        return StepError(name, f"{type(exc).__name__}: {exc}")

    def memory_bytes(self) -> int:
        """What the chain's steps will hold at most (bytes): their
        :meth:`~gadgets.runtime.gadget.Gadget.memory_bytes`, summed."""
        return sum(int(step.memory_bytes()) for _, step in self.steps)

    def push(self, item: Any) -> list[Any]:
        """Outputs of the last step for one input item."""
        self.items_in += 1
        return list(self._outputs(0, item))

    def finish_iter(self) -> Iterator[Any]:
        """End of stream: each step's last items flow through the steps after it, and every
        output is yielded as soon as it leaves the last step (the server sends the first maps
        while the later ones are still being computed)."""
        for i, (name, step) in enumerate(self.steps):
            last = self._guarded(name, lambda step=step: iter(step.finish()))
            while True:
                try:
                    out = next(last)
                except StopIteration:
                    break
                except StepError:
                    raise
                except Exception as exc:
                    raise self._error(name, exc, " at the end of the stream") from exc
                yield from self._outputs(i + 1, out)
        log.info(
            "chain %s: %d items in %.2f s",
            self.spec.name,
            self.items_in,
            time.perf_counter() - self.started,
        )

    def finish(self) -> list[Any]:
        """:meth:`finish_iter` as a list."""
        return list(self.finish_iter())
