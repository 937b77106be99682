"""Receive profile of a single-channel volume coil, measured once on a uniform phantom.

A birdcage's receive field is nearly uniform but not quite: it falls off towards the ends and
the rungs by a few percent, so reference tubes at the edge of the field of view read low against
the head in the middle and every concentration from them reads high (3T simulated birdcage: 0.94
at the tubes, 1 at the isocentre: +6% in mid-brain, CSF +9 mM). One channel cannot tell its
profile from the object. A uniform phantom can: its image is the profile times one
concentration. At installation the physicist scans a bottle of saline filling most of the coil
(``sodium-gadgets coil-profile``), and a smooth function is fitted to the bottle's interior:

    p(r) = sum_j c_j (x / s)^a_j (y / s)^b_j (z / s)^c_j,     a_j + b_j + c_j <= degree

(patient LPS mm, ``s`` = ``scale_mm``), by least squares over the voxels well inside the
bottle (its edges ring and blur), normalised to 1 at the isocentre. The coil file then divides
every image of that coil by ``p`` (``CoilCombiner.coil_models``). The fit residual (RMS, relative)
is stored with it. Limits: the coil must sit where it sat for the measurement (head coils are
fixed to the table), and the profile only holds inside the volume the bottle filled.

Coil file (JSON): ``{"name": ..., "description": ..., "profile": {"scale_mm": s, "exponents":
[[a, b, c], ...], "coefficients": [...], "fit_rms": ..., "measured_from": ...}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from gadgets.core.receive.coil_identity import CoilIdentity

__all__ = ["exponents", "fit_profile", "ReceiveProfile"]


def exponents(degree: int) -> np.ndarray:
    """All ``(a, b, c)`` with ``a + b + c <= degree``, (T, 3)."""
    if not 0 <= degree <= 6:
        raise ValueError(f"profile degree must be 0-6, not {degree}")
    return np.array(
        [
            (a, b, c)
            for a in range(degree + 1)
            for b in range(degree + 1 - a)
            for c in range(degree + 1 - a - b)
        ]
    )


def _design(points_mm: np.ndarray, powers: np.ndarray, scale_mm: float) -> np.ndarray:
    p = np.asarray(points_mm, np.float64).reshape(-1, 3) / scale_mm
    return np.prod(p[:, None, :] ** powers[None, :, :], axis=-1)


@dataclass(frozen=True)
class ReceiveProfile:
    """A smooth receive profile ``p(r)`` (1 at the isocentre) of a one-channel coil."""

    name: str
    exponents: np.ndarray  # (T, 3)
    coefficients: np.ndarray  # (T,)
    scale_mm: float = 100.0
    fit_rms: float = float("nan")
    measured_from: str = ""
    channels: int = 1
    measured_with: CoilIdentity | None = None  # the coil the file describes (coil_identity)

    def __call__(self, points_mm: np.ndarray) -> np.ndarray:
        """``p`` at patient points (..., 3) mm."""
        shape = np.shape(points_mm)[:-1]
        return (_design(points_mm, self.exponents, self.scale_mm) @ self.coefficients).reshape(
            shape
        )

    def to_json(self, path: str | Path, description: str = "") -> None:
        """The coil file (module docstring), one term per line."""
        terms = ",\n".join(f"   {list(map(int, e))}" for e in self.exponents)
        coefs = ",\n".join(f"   {float(c)!r}" for c in self.coefficients)
        Path(path).write_text(
            "{\n"
            f' "name": {json.dumps(self.name)},\n'
            f' "description": {json.dumps(description)},\n'
            ' "profile": {\n'
            f'  "scale_mm": {self.scale_mm!r},\n'
            f'  "exponents": [\n{terms}\n  ],\n'
            f'  "coefficients": [\n{coefs}\n  ],\n'
            f'  "fit_rms": {self.fit_rms!r},\n'
            f'  "measured_from": {json.dumps(self.measured_from)}\n'
            " }\n}\n"
        )

    @classmethod
    def from_dict(cls, desc: dict, source: str = "") -> ReceiveProfile:
        try:
            prof = desc["profile"]
            powers = np.asarray(prof["exponents"], np.int64).reshape(-1, 3)
            coef = np.asarray(prof["coefficients"], np.float64)
            scale = float(prof.get("scale_mm", 100.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: a profile needs exponents and coefficients") from exc
        if coef.shape != (len(powers),) or not np.all(np.isfinite(coef)) or scale <= 0:
            raise ValueError(f"{source}: one finite coefficient per exponent, scale_mm > 0")
        name = str(desc.get("name", Path(source).stem))
        rms, origin = float(prof.get("fit_rms", "nan")), str(prof.get("measured_from", ""))
        return cls(name, powers, coef, scale, rms, origin)


def fit_profile(
    magnitude: np.ndarray,
    points_mm: np.ndarray,
    name: str,
    degree: int = 2,
    scale_mm: float = 100.0,
    inside_fraction: float = 0.5,
    erode_voxels: int = 3,
    measured_from: str = "",
) -> ReceiveProfile:
    """Fit :class:`ReceiveProfile` to the image ``magnitude`` (nz, ny, nx) of a uniform
    phantom at patient points ``points_mm`` (nz, ny, nx, 3): over the voxels above
    ``inside_fraction`` of the 99th percentile, eroded by ``erode_voxels`` (the phantom's
    edges), the largest connected part; normalised to 1 at the isocentre."""
    mag = np.asarray(magnitude, np.float64)
    mask = mag > inside_fraction * np.percentile(mag, 99)
    mask = ndimage.binary_erosion(mask, iterations=erode_voxels)
    labels, count = ndimage.label(mask)
    if count == 0:
        raise ValueError("no uniform phantom in the image (nothing left inside its edges)")
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    mask = labels == 1 + int(np.argmax(sizes))
    powers = exponents(degree)
    if mask.sum() < 10 * len(powers):
        raise ValueError(f"phantom too small for a degree-{degree} profile ({mask.sum()} voxels)")
    a = _design(points_mm[mask], powers, scale_mm)
    coef, *_ = np.linalg.lstsq(a, mag[mask], rcond=None)
    centre = float((_design(np.zeros((1, 3)), powers, scale_mm) @ coef)[0])
    if centre <= 0:
        raise ValueError("the fitted profile is not positive at the isocentre")
    coef = coef / centre
    rms = float(np.sqrt(np.mean((a @ coef * centre / mag[mask] - 1.0) ** 2)))
    return ReceiveProfile(name, powers, coef, scale_mm, rms, measured_from)
