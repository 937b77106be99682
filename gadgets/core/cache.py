"""On-disk cache for results that depend only on the protocol (density compensation weights,
FFTW wisdom), so that a repeated protocol pays nothing.

Location: ``$SODIUM_GADGETS_CACHE`` if set, else ``$XDG_CACHE_HOME/sodium-gadgets``, else
``~/.cache/sodium-gadgets``. Entries are written atomically (temporary file + rename), so a
crash or two concurrent scans never leave a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["array_key", "cache_dir", "load_arrays", "store_arrays"]


def cache_dir(kind: str) -> Path:
    """The cache folder for one kind of entry, created on first use."""
    root = os.environ.get("SODIUM_GADGETS_CACHE")
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(base) / "sodium-gadgets")
    path = Path(root) / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def array_key(*parts: object) -> str:
    """SHA-256 hex digest of arrays (dtype, shape and bytes) and plain values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            a = np.ascontiguousarray(part)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.hexdigest()


def load_arrays(kind: str, key: str) -> dict[str, np.ndarray] | None:
    """The arrays cached under ``key``, or None if absent or unreadable."""
    path = cache_dir(kind) / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, KeyError):
        return None


def store_arrays(kind: str, key: str, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` atomically under ``key``; returns the file's path."""
    folder = cache_dir(kind)
    path = folder / f"{key}.npz"
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
