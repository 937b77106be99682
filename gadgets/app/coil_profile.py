"""``sodium-gadgets coil-profile``: a coil's receive profile measured on a uniform bottle scan
(:mod:`gadgets.core.receive.receive_profile`), written as a coil file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import ismrmrd
import numpy as np

from gadgets.app.application import recon_file
from gadgets.core.numerics.geometry import Geometry
from gadgets.core.receive.receive_profile import ReceiveProfile, fit_profile

__all__ = ["measure_coil_profile"]


def measure_coil_profile(
    raw: str | Path,
    out: str | Path,
    name: str | None = None,
    degree: int = 2,
    description: str | None = None,
) -> ReceiveProfile:
    """Reconstruct the bottle scan ``raw`` and write the fitted profile to the coil file ``out``
    (its name: ``name``, else the file's stem)."""
    with tempfile.TemporaryDirectory() as tmp:
        # a strong window: the bottle's edges ring into the interior the fit looks at
        result = recon_file(raw, tmp, "sodium_preview", {"k_window_beta": "6"})
        ds = ismrmrd.Dataset(str(result.path / "images.h5"), "dataset", create_if_needed=False)
        try:
            series = sorted(s for s in ds.list() if s.startswith("image_"))
            if not series:
                raise ValueError(f"{raw}: no image reconstructed")
            image = ds.read_image(series[0], 0)
        finally:
            ds.close()
    points = Geometry.from_image(image).points_mm()
    name = name or Path(out).stem
    profile = fit_profile(np.abs(image.data[0]), points, name, degree, measured_from=Path(raw).name)
    description = description or (
        f"receive profile of a one-channel coil, degree {degree}, fitted to a uniform "
        f"phantom ({Path(raw).name}) with sodium-gadgets coil-profile"
    )
    profile.to_json(out, description)
    return profile
