"""Notices: messages from a step for the client (a calibration refused, readouts dropped), as
opposed to items that travel down the chain.

A step yields a :class:`Notice` like an item. The embedded server sends it to the client as TEXT
(message 5) at once; ``recon`` collects it; under a real Gadgetron, whose external steps may not
send TEXT, it is logged (see :mod:`gadgets.runtime.external`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

__all__ = ["Notice"]


@dataclass(frozen=True)
class Notice:
    """``text`` for the client, at a logging ``level`` (WARNING by default)."""

    text: str
    level: int = logging.WARNING

    @property
    def client_text(self) -> str:
        """As the client sees it: ``WARNING: <text>`` (or the level's name)."""
        return f"{logging.getLevelName(self.level)}: {self.text}"
