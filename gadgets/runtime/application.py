"""What an application tells the runtime about itself: its name and version, where its chains
live, which packages chain steps may come from, and what to do with the files a client writes.

The runtime knows nothing of sodium; the application (:mod:`gadgets.app.application` for
sodium-gadgets) builds one :class:`Application` and hands it to the server and the clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Application", "FileHook"]

#: called with each DICOM file a client wrote (its path and bytes); returns extra files it wrote
FileHook = Callable[[Path, bytes], list[Path]]


@dataclass(frozen=True)
class Application:
    """``name`` and ``version`` answer the ``gadgetron::version`` query and name the server in
    the log; ``chains_dir`` holds the chain files named by clients and the protocol map;
    ``allowed_modules`` are the packages whose gadgets a chain may run (importing a module runs
    its code); ``dicom_hooks`` run on every DICOM file a client writes to its output folder."""

    name: str
    version: str
    chains_dir: Path
    allowed_modules: tuple[str, ...]
    dicom_hooks: tuple[FileHook, ...] = ()
