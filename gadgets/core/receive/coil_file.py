"""Coil files: finding one by name or path, and reading it.

A coil file (JSON) describes one receive coil so that its receive profile can be removed: a loop
array's geometry (:mod:`.loop_model`: ``"loops"``) or a measured receive profile
(:mod:`.receive_profile`: ``"profile"``). A name (``loops_8ch``, with or without ``.json``) is
looked up in the ``coils/`` folder of each search folder in turn (the chain's own folder first,
then the shipped chains); a path (absolute, or relative to the working directory) is used as
it is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from gadgets.core.receive.loop_model import CoilModel
from gadgets.core.receive.receive_profile import ReceiveProfile

__all__ = ["CoilFileError", "find_coil_file", "read_coil_file"]


class CoilFileError(ValueError):
    """A coil file that cannot be found or read."""


def find_coil_file(name: str, search_dirs: Sequence[Path]) -> Path:
    """The coil file ``name``: a path that exists, else ``DIR/coils/NAME.json`` for the first of
    ``search_dirs`` that has it."""
    path = Path(name)
    if path.suffix != ".json":
        path = path.with_suffix(".json")
    if path.exists() and (path.is_absolute() or len(path.parts) > 1):
        return path
    if not path.is_absolute():
        for folder in search_dirs:
            candidate = Path(folder) / "coils" / path
            if candidate.exists():
                return candidate
    known = sorted({p.stem for d in search_dirs for p in (Path(d) / "coils").glob("*.json")})
    where = ", ".join(str(Path(d) / "coils") for d in search_dirs)
    raise CoilFileError(
        f"coil file {name!r} not found (looked in {where}; coils there: {', '.join(known)})"
    )


def read_coil_file(path: Path) -> CoilModel | ReceiveProfile:
    """A loop array's geometry, or a coil's measured receive profile."""
    try:
        desc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CoilFileError(f"coil file {path}: {exc}") from exc
    if not isinstance(desc, dict):
        raise CoilFileError(f"coil file {path}: a JSON object is expected")
    if "profile" in desc:
        return ReceiveProfile.from_dict(desc, str(path))
    return CoilModel.from_dict(desc, str(path))
