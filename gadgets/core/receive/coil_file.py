"""Coil files: finding one by name or path, and reading it.

A coil file (JSON) describes one receive coil so that its receive profile can be removed: a
profile measured on a bottle (:mod:`.spline_profile`: ``"spline_profile"``, any coil), a
one-channel coil's polynomial profile (:mod:`.receive_profile`: ``"profile"``) or a loop array's
geometry (:mod:`.loop_model`: ``"loops"``). Its ``"measured_with"`` entry records the coil
(:mod:`.coil_identity`), which a scan must match. A name (``loops_8ch``, with or without
``.json``) is looked up in the ``coils/`` folder of each search folder in turn (the chain's own
folder first, then the shipped chains); a path (absolute, or relative to the working directory)
is used as it is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from gadgets.core.receive.coil_identity import CoilIdentity
from gadgets.core.receive.loop_model import CoilModel
from gadgets.core.receive.receive_profile import ReceiveProfile
from gadgets.core.receive.spline_profile import SplineProfile

__all__ = ["CoilFileError", "coil_files_with_identity", "find_coil_file", "read_coil_file"]

log = logging.getLogger(__name__)
CoilFile = CoilModel | ReceiveProfile | SplineProfile


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


def read_coil_file(path: Path) -> CoilFile:
    """A coil's measured receive profile, or a loop array's geometry."""
    try:
        desc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CoilFileError(f"coil file {path}: {exc}") from exc
    if not isinstance(desc, dict):
        raise CoilFileError(f"coil file {path}: a JSON object is expected")
    if "spline_profile" in desc:
        return SplineProfile.from_dict(desc, str(path))
    identity = CoilIdentity.from_dict(desc, str(path))
    model = (ReceiveProfile if "profile" in desc else CoilModel).from_dict(desc, str(path))
    return dataclasses.replace(model, measured_with=identity)


def coil_files_with_identity(search_dirs: Sequence[Path]) -> list[tuple[Path, CoilFile]]:
    """Every readable coil file in ``DIR/coils/`` of ``search_dirs`` that records its coil
    (``coil_models=auto``), the first folder's first; unreadable ones are logged and left out."""
    found, seen = [], set()
    for folder in search_dirs:
        for path in sorted((Path(folder) / "coils").glob("*.json")):
            if path.name in seen:
                continue
            try:
                model = read_coil_file(path)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("coil file %s left out of coil_models=auto: %s", path, exc)
                continue
            if model.measured_with is not None:
                seen.add(path.name)
                found.append((path, model))
    return found
