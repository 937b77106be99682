"""Memory for concurrent scans: each scan reserves what its steps will hold before anything is
allocated, and gives it back when it ends; a scan that does not fit waits for others to end, up
to a timeout, then is refused with the numbers (:class:`BudgetError`)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

__all__ = ["BudgetError", "MemoryBudget", "mb"]


class BudgetError(RuntimeError):
    """A scan that needs more memory than the server may give it."""


def mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.0f} MB"


class MemoryBudget:
    """``total`` bytes shared by scans, none of them above ``per_scan``."""

    def __init__(self, total: int, per_scan: int) -> None:
        self.total, self.per_scan = int(total), int(per_scan)
        self.used = 0
        self.scans = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int, what: str, timeout_s: float) -> Iterator[None]:
        """Hold ``nbytes`` for the ``with`` block (``what`` names the scan in errors)."""
        nbytes = int(nbytes)
        if nbytes > self.per_scan or nbytes > self.total:
            limit = min(self.per_scan, self.total)
            raise BudgetError(
                f"{what} needs {mb(nbytes)}, more than this server gives one scan ({mb(limit)}; "
                "serve --max-scan-memory): check the header's matrix, channels, echoes and "
                "projections"
            )
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.used + nbytes > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BudgetError(
                        f"the server is busy: {self.scans} scans hold {mb(self.used)} of "
                        f"{mb(self.total)} (serve --max-total-memory) and {what} needs "
                        f"{mb(nbytes)}; waited {timeout_s:g} s: try again"
                    )
                self._cond.wait(left)
            self.used += nbytes
            self.scans += 1
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self.scans -= 1
                self._cond.notify_all()
