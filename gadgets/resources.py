"""The files installed with the package: chain files, the protocol map, coil files and the
simulated scans' description files.

In the repository they live at the top level (``chains/``, ``chains/coils/``,
``simulated_raw/``); ``pyproject.toml`` installs them as the packages ``gadgets.chains`` and
``gadgets.simulated_raw``, so an editable install and a wheel find them the same way, through
:mod:`importlib.resources`. setuptools installs packages as plain folders, so each is a real
directory (:class:`pathlib.Path`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["chains_dir", "coils_dir", "scans_dir"]


def _folder(package: str) -> Path:
    path = Path(str(resources.files(package)))
    if not path.is_dir():  # pragma: no cover - a zipped install, which setuptools never makes
        raise FileNotFoundError(f"{package} is not installed as a folder ({path})")
    return path


def chains_dir() -> Path:
    """The shipped chain files (``*.xml``) and ``protocols.toml``."""
    return _folder("gadgets.chains")


def coils_dir() -> Path:
    """The shipped coil files (``*.json``)."""
    return chains_dir() / "coils"


def scans_dir() -> Path:
    """The simulated scans' description files (``*.json``)."""
    return _folder("gadgets.simulated_raw")
