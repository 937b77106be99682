"""Receive coils: sensitivities and noise covariance, from a scan description's ``coil``
(:class:`CoilSpec`).

* ``birdcage``: one channel, nearly uniform (a mild quadratic fall-off and a constant phase),
  optionally with a linear receive gradient ``gradient_per_100mm`` (relative change per 100 mm
  along x, y, z: a loaded volume coil is rarely symmetric).
* ``loops``: N circular loops of radius ``loop_radius_mm``, normals pointing at the array's
  centre, laid out as

  - ``ring`` (default): on a cylinder of radius ``array_radius_mm`` around the z axis, rings of
    ``per_ring`` loops ``ring_spacing_mm`` apart along z, alternate rings rotated by half a loop;
  - ``helmet``: on a sphere of radius ``array_radius_mm``, rings at the elevations (degrees above
    the sphere's equator) and counts of ``helmet_rings``;

  both around ``centre_mm``. Sensitivity = B1- of each loop, ``(Bx - i By) / 2`` with ``B`` from
  the Biot-Savart law (48 straight segments), plus a cable phase per channel; scaled so that the
  root sum of squares is 1 at the isocentre.

The header names each channel ``<name>:<nn>`` (ISMRMRD ``coilLabel``): the coil's identity, which
a coil file made by ``sodium-gadgets coil-profile`` records and a later scan must match.

Noise: covariance ``Psi = G C G`` with unequal channel gains ``G`` (0.85-1.2) and correlations
``|C_ij|`` about 0.3 between neighbouring loops, falling with distance, with random phases;
positive definite by construction. Cable phases, gains and correlations are drawn from seeds
made from the coil's description (:meth:`CoilSpec.hardware_seeds`), so that a bottle scan and a
patient scan of one coil share them, as they do on a scanner.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields

import numba as nb
import numpy as np

__all__ = ["CoilSpec", "loop_geometry", "noise_covariance", "sensitivities"]

_HELMETS = {  # channels: (elevation deg, loops) per ring
    8: ((0.0, 5), (50.0, 3)),
    16: ((-15.0, 7), (25.0, 6), (65.0, 3)),
    32: ((-20.0, 10), (10.0, 10), (40.0, 8), (70.0, 4)),
}


@dataclass(frozen=True)
class CoilSpec:
    """A simulated receive coil (the module docstring); mm and degrees."""

    kind: str = "birdcage"
    channels: int = 1
    name: str = ""
    layout: str = "ring"
    loop_radius_mm: float = 45.0
    array_radius_mm: float = 130.0
    per_ring: int = 8
    ring_spacing_mm: float = 80.0
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    helmet_rings: tuple[tuple[float, int], ...] = ()
    gradient_per_100mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def from_dict(cls, desc: dict) -> CoilSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(desc) - known
        if unknown:
            raise ValueError(f"coil: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        values = dict(desc)
        for key in ("centre_mm", "gradient_per_100mm"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        if "helmet_rings" in values:
            values["helmet_rings"] = tuple((float(e), int(n)) for e, n in values["helmet_rings"])
        spec = cls(**values)
        if spec.kind not in ("birdcage", "loops"):
            raise ValueError(f"unknown coil {spec.kind!r}: use 'birdcage' or 'loops'")
        if spec.kind == "birdcage" and spec.channels != 1:
            raise ValueError("a birdcage coil has one channel")
        if spec.layout not in ("ring", "helmet"):
            raise ValueError(f"unknown loop layout {spec.layout!r}: use 'ring' or 'helmet'")
        return spec

    @property
    def coil_name(self) -> str:
        return self.name or f"SIM-{self.kind}{self.channels}"

    def hardware_seeds(self) -> list[np.random.SeedSequence]:
        """Seeds of the coil's cable phases and noise coupling, from its description alone
        (the same coil: the same hardware, whichever scan it makes)."""
        return np.random.SeedSequence(zlib.crc32(repr(self).encode())).spawn(2)

    def labels(self) -> list[str]:
        """The channels' names in the header (``coilLabel.coilName``)."""
        return [f"{self.coil_name}:{c:02d}" for c in range(self.channels)]


def loop_geometry(spec: CoilSpec) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 3) and unit normals (N, 3) of the loops, mm."""
    n = spec.channels
    centre = np.asarray(spec.centre_mm, np.float64)
    centres, normals = [], []
    if spec.layout == "helmet":
        rings = spec.helmet_rings or _HELMETS.get(n, ())
        if sum(count for _, count in rings) != n:
            raise ValueError(f"helmet rings {rings} do not hold {n} loops: give helmet_rings")
        for ring, (elevation, count) in enumerate(rings):
            el = np.deg2rad(elevation)
            for j in range(count):
                phi = 2 * np.pi * j / count + (np.pi / count) * (ring % 2)
                u = np.array([np.cos(el) * np.cos(phi), np.cos(el) * np.sin(phi), np.sin(el)])
                centres.append(centre + spec.array_radius_mm * u)
                normals.append(-u)
        return np.array(centres), np.array(normals)
    per_ring = min(spec.per_ring, n)
    rings = int(np.ceil(n / per_ring))
    zs = (np.arange(rings) - (rings - 1) / 2) * spec.ring_spacing_mm
    for i in range(n):
        ring, j = divmod(i, per_ring)
        phi = 2 * np.pi * j / per_ring + (np.pi / per_ring) * (ring % 2)
        u = np.array([np.cos(phi), np.sin(phi), 0.0])
        centres.append(centre + spec.array_radius_mm * u + np.array([0, 0, zs[ring]]))
        normals.append(-u)
    return np.array(centres), np.array(normals)


@nb.njit(cache=True, parallel=True)
def _biot_savart_b1minus(points, seg_mid, seg_dl, out):
    """out[j] = sum over segments of (dl x r) / |r|^3, as Bx - i By (unit current)."""
    for j in nb.prange(points.shape[0]):
        bx = 0.0
        by = 0.0
        for s in range(seg_mid.shape[0]):
            rx = points[j, 0] - seg_mid[s, 0]
            ry = points[j, 1] - seg_mid[s, 1]
            rz = points[j, 2] - seg_mid[s, 2]
            r2 = max(rx * rx + ry * ry + rz * rz, 25.0)  # keep finite next to the wire
            inv = 1.0 / (r2 * np.sqrt(r2))
            bx += (seg_dl[s, 1] * rz - seg_dl[s, 2] * ry) * inv
            by += (seg_dl[s, 2] * rx - seg_dl[s, 0] * rz) * inv
        out[j] = complex(bx, -by)


def _loop_segments(centre: np.ndarray, normal: np.ndarray, radius_mm: float, nseg: int = 48):
    u = np.cross(normal, [0.0, 0.0, 1.0])
    if np.linalg.norm(u) < 1e-6:
        u = np.cross(normal, [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    a = 2 * np.pi * np.arange(nseg + 1) / nseg
    ring = centre + radius_mm * (np.cos(a)[:, None] * u + np.sin(a)[:, None] * v)
    return 0.5 * (ring[1:] + ring[:-1]), ring[1:] - ring[:-1]


def sensitivities(spec: CoilSpec, points_mm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Complex sensitivities (C, ...) at patient points (..., 3) mm."""
    shape = points_mm.shape[:-1]
    pts = np.ascontiguousarray(points_mm.reshape(-1, 3), np.float64)
    if spec.kind == "birdcage":
        rho2 = (pts[:, 0] ** 2 + pts[:, 1] ** 2) / 150.0**2
        z2 = pts[:, 2] ** 2 / 150.0**2
        ramp = 1.0 + pts @ np.asarray(spec.gradient_per_100mm, np.float64) / 100.0
        s = (1.0 - 0.15 * rho2 - 0.10 * z2) * ramp * np.exp(1j * 0.4)
        return s.reshape((1,) + shape).astype(np.complex64)
    nch = spec.channels
    centres, normals = loop_geometry(spec)
    cable = np.exp(2j * np.pi * rng.random(nch))
    iso = np.zeros((1, 3))
    out = np.empty((nch, pts.shape[0]), np.complex128)
    at_iso = np.empty(nch, np.complex128)
    for c in range(nch):
        mid, dl = _loop_segments(centres[c], normals[c], spec.loop_radius_mm)
        _biot_savart_b1minus(pts, mid, dl, out[c])
        tmp = np.empty(1, np.complex128)
        _biot_savart_b1minus(iso, mid, dl, tmp)
        at_iso[c] = tmp[0]
        out[c] *= cable[c]
        at_iso[c] *= cable[c]
    out /= np.sqrt(np.sum(np.abs(at_iso) ** 2))
    return out.reshape((nch,) + shape).astype(np.complex64)


def noise_covariance(spec: CoilSpec, rng: np.random.Generator) -> np.ndarray:
    """Normalised channel noise covariance (C, C), Hermitian positive definite."""
    if spec.kind == "birdcage":
        return np.ones((1, 1), np.complex128)
    nchannels = spec.channels
    centres, _ = loop_geometry(spec)
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    nearest = np.min(d + 1e9 * np.eye(nchannels), axis=1).min()
    mag = 0.3 * np.exp(-1.2 * (d / nearest - 1.0))
    phase = rng.uniform(-np.pi, np.pi, (nchannels, nchannels))
    phase = np.triu(phase, 1) - np.triu(phase, 1).T
    corr = mag * np.exp(1j * phase)
    np.fill_diagonal(corr, 1.0)
    lam = np.linalg.eigvalsh(corr).min()
    if lam < 0.2:  # keep it comfortably positive definite
        corr = (corr + (0.2 - lam) * np.eye(nchannels)) / (1.0 + 0.2 - lam)
    gains = rng.uniform(0.85, 1.2, nchannels)
    return gains[:, None] * corr * gains[None, :]
