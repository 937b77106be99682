"""``sodium-gadgets coil-profile``: a receive coil's profile measured on a uniform bottle scan,
written as a coil file.

The bottle scan runs through the patient chain's own steps up to and including its coil
combination (prewhitening, gridding, the same combination method and block), with no coil file,
so that the profile measured is exactly the one that combination leaves in a patient's image.
Then :func:`gadgets.core.receive.spline_profile.fit_spline_profile` fits it (any coil: arrays of
any channel count, volume coils) out to the bottle's wall, through the blur this readout gives a
saline bottle (the image's k-space radii and sample times, the gridder's window, saline's
relaxation at the scan's field; ``blur_model=False``: only the bottle's interior) and keeps the
scan's prewhitening matrix, to which patients' channels are rewhitened; or, with
``degree``, the polynomial of
:mod:`gadgets.core.receive.receive_profile` (one-channel coils only). The file records the coil's
identity from the header (channels, coil labels, field), which every later scan must match.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import ismrmrd
import numpy as np

from gadgets.app.application import application
from gadgets.core.calibration.tube_templates import readout_blur
from gadgets.core.numerics.geometry import Geometry
from gadgets.core.numerics.relaxation import relaxation
from gadgets.core.receive.coil_identity import CoilIdentity
from gadgets.core.receive.receive_profile import ReceiveProfile, fit_profile
from gadgets.core.receive.spline_profile import SPACINGS_MM, SplineProfile, fit_spline_profile
from gadgets.runtime.chain import load_chain
from gadgets.runtime.client import read_raw
from gadgets.runtime.context import StepContext
from gadgets.runtime.runner import ChainRunner
from gadgets.volume_meta import GriddedVolume
from gadgets.volumes import read_meta

__all__ = ["combined_bottle_image", "measure_coil_profile"]

log = logging.getLogger(__name__)
_COMBINER = "CoilCombiner"


def combined_bottle_image(
    raw: str | Path, chain: str = "sodium_tsc", overrides: dict[str, str] | None = None
) -> tuple[ismrmrd.Image, dict[str, str], CoilIdentity, np.ndarray | None]:
    """The first echo's combined image (0 Hz bin) of ``raw`` through ``chain`` up to its coil
    combination; the combiner's properties; the scan's coil identity; its prewhitening matrix
    (None without noise scans or ``send_whitening``)."""
    app = application()
    spec = load_chain(chain, app.chains_dir)
    at = next((i for i, s in enumerate(spec.steps) if s.target == _COMBINER), None)
    if at is None:
        raise ValueError(f"chain {spec.name} has no {_COMBINER} step to measure a profile for")
    spec = dataclasses.replace(spec, steps=spec.steps[: at + 1])
    header_xml, acquisitions = read_raw(raw)
    context = StepContext(resource_dirs=(app.chains_dir,))
    runner = ChainRunner(
        spec, header_xml, {"coil_models": "", **(overrides or {})}, app.allowed_modules, context
    )
    images, channels = [], 0
    for acq in acquisitions:
        channels = channels or int(acq.active_channels)
        images += [x for x in runner.push(acq) if isinstance(x, ismrmrd.Image)]
    images += [x for x in runner.finish() if isinstance(x, ismrmrd.Image)]
    volumes = [x for x in images if GriddedVolume.describes(x)]
    if not volumes:
        raise ValueError(f"{raw}: no image reconstructed")
    first = min(volumes, key=lambda x: x.contrast)
    info = GriddedVolume.from_meta(read_meta(first), "coil-profile")
    combiner = runner.steps[at][1]
    props = {"method": combiner.method, "block": str(combiner.block)}
    coil = CoilIdentity.from_header(runner.header, channels)
    return first, {**props, "centre_bin": str(info.centre_bin)}, coil, combiner.whitening


def measure_coil_profile(
    raw: str | Path,
    out: str | Path,
    name: str | None = None,
    degree: int | None = None,
    description: str | None = None,
    chain: str = "sodium_tsc",
    spacing_mm: float | Sequence[float] = SPACINGS_MM,
    extend_mm: float = 10.0,
    blur_model: bool = True,
) -> SplineProfile | ReceiveProfile:
    """Reconstruct the bottle scan ``raw`` as ``chain`` combines a patient's channels, fit its
    profile and write the coil file ``out`` (its name: ``name``, else the file's stem)."""
    image, combiner, coil, whitening = combined_bottle_image(raw, chain)
    magnitude = np.abs(image.data[int(combiner["centre_bin"])])
    points = Geometry.from_image(image).points_mm()
    name = name or Path(out).stem
    source = Path(raw).name
    if degree is not None:
        if coil.channels != 1:
            raise ValueError(
                f"a polynomial profile (--degree) is for one-channel coils; this scan has "
                f"{coil.channels} channels (leave --degree out)"
            )
        profile = fit_profile(magnitude, points, name, degree, measured_from=source)
        profile.to_json(
            out,
            description
            or f"receive profile of a one-channel coil, degree {degree}, fitted to a uniform "
            f"phantom ({source}) with sodium-gadgets coil-profile",
        )
        return profile
    blur = None
    if blur_model:
        # the bottle's own blur: saline's T2* during the readout, the gridder's window
        info = GriddedVolume.from_meta(read_meta(image), "coil-profile")
        medium = relaxation("saline", coil.field_T or 3.0)
        kfilter = info.readout_filter(medium.decay, info.echo_time_s or 0.0)

        def blur(volume: np.ndarray, upsampling: int) -> np.ndarray:
            return readout_blur(volume, kfilter, upsampling)

    profile = fit_spline_profile(
        magnitude,
        points,
        name,
        blur=blur,
        spacing_mm=spacing_mm,
        extend_mm=extend_mm,
        measured_from=source,
        measured_with=coil,
        combination=combiner["method"],
        block=int(combiner["block"]),
        whitening=whitening if coil.channels > 1 else None,
        description=description
        or f"receive profile of {coil.describe()} through {chain}'s {combiner['method']} "
        f"combination, fitted to a uniform bottle ({source}) with sodium-gadgets coil-profile",
    )
    profile.to_json(out)
    return profile
