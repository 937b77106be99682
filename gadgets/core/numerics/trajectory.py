"""Sodium k-space trajectories: density-adapted 3D radial, 3D radial, twisted projection imaging,
projection directions on the sphere, 2D golden-angle radial, and the trajectory described by an
ISMRMRD header.

Conventions:

* k in cycles per pixel (``|k| = 0.5`` is the edge of k-space of the N-matrix); physical
  ``k [1/m] = k * N / FOV``. Columns are ``(kx, ky, kz)`` along the acquisition's
  ``read_dir``, ``phase_dir``, ``slice_dir``.
* Readouts are centre-out. Sample ``i`` (``i = 0 .. S-1``) is acquired ``t_i = i * dwell_s``
  after the start of the readout; the readout (ADC) duration is ``S * dwell_s``. Gradient
  waveforms are designed so that the last sample lies on ``|k| = kmax``.
* Arrays are ``(projections, samples, 3)`` float32 (``(spokes, samples, 2)`` in 2D).
* ``velocity`` means ``gamma * G`` expressed in cycles/pixel per second; the physical gradient is
  ``G [T/m] = velocity * N / FOV_m / gamma``.

References: Nagel et al., MRM 62:1565 (2009) (DA-3DPR); Boada et al., MRM 37:706 (1997) (TPI);
Saff & Kuijlaars, Math. Intell. 19:5 (1997); Wong & Roos, MRM 32:778 (1994); Chan et al.,
MRM 61:354 (2009) (multidimensional golden means).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DIRECTION_SCHEMES",
    "GAMMA_NA23_HZ_PER_T",
    "GOLDEN_MEANS",
    "IDENTIFIERS",
    "cone_directions",
    "da_3dpr",
    "density_adapted_radius",
    "density_adapted_velocity",
    "directions",
    "golden_angle_2d",
    "gradient_T_per_m",
    "radial_3d",
    "sample_times",
    "tpi",
    "trajectory_description",
    "TrajectoryDescription",
]

#: 23Na gyromagnetic ratio / 2 pi, Hz per tesla.
GAMMA_NA23_HZ_PER_T = 11.262e6

#: The 2D golden means of Chan et al. 2009: g2 is the real root of x^3 + x - 1 = 0, g1 = g2^2.
GOLDEN_MEANS = (0.465571231876768, 0.682327803828019)

IDENTIFIERS = ("DA-3DPR", "3DPR", "TPI")
DIRECTION_SCHEMES = ("golden_means", "spiral", "wong_roos", "cones")


# --------------------------------------------------------------------------------------------
# projection directions


def directions(n: int, scheme: str = "spiral") -> np.ndarray:
    """``n`` unit vectors (n, 3) covering the sphere uniformly.

    * ``golden_means``: ``z = 2 frac(i g1) - 1``, ``phi = 2 pi frac(i g2)`` (Chan et al. 2009);
      any prefix of the sequence is itself near-uniform (good for interrupted scans).
    * ``spiral``: Saff-Kuijlaars generalized spiral, ``z_i = -1 + 2 i / (n - 1)``,
      ``phi_i = phi_{i-1} + 3.6 / sqrt(n (1 - z_i^2))``.
    * ``wong_roos``: ``z_i = (2 i - n + 1) / n``, ``phi_i = sqrt(n pi) arcsin(z_i)``.
    * ``cones``: TPI cones (see :func:`cone_directions`).
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"need at least one projection, got {n}")
    i = np.arange(n, dtype=np.float64)
    if scheme == "golden_means":
        z = 2.0 * np.mod(i * GOLDEN_MEANS[0], 1.0) - 1.0
        phi = 2.0 * np.pi * np.mod(i * GOLDEN_MEANS[1], 1.0)
    elif scheme == "spiral":
        z = -1.0 + 2.0 * i / max(n - 1, 1)
        step = np.zeros(n)
        inner = slice(1, n - 1)
        step[inner] = 3.6 / np.sqrt(n * (1.0 - z[inner] ** 2))
        phi = np.mod(np.cumsum(step), 2.0 * np.pi)
    elif scheme == "wong_roos":
        z = (2.0 * i - n + 1.0) / n
        phi = np.sqrt(n * np.pi) * np.arcsin(z)
    elif scheme == "cones":
        return cone_directions(n)[0]
    else:
        raise ValueError(f"unknown direction scheme {scheme!r}; use one of {DIRECTION_SCHEMES}")
    r = np.sqrt(np.clip(1.0 - z**2, 0.0, None))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def cone_directions(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Initial directions of ``n`` projections on cones (TPI) and each one's polar angle.

    ``n_c = round(sqrt(pi n / 4))`` cones at ``theta_c = (c + 1/2) pi / n_c``, with a number of
    projections proportional to ``sin theta_c`` (largest remainder), equally spaced in azimuth
    and staggered by half a step between neighbouring cones.
    """
    n = int(n)
    ncones = max(1, int(round(np.sqrt(np.pi * n / 4.0))))
    theta_c = (np.arange(ncones) + 0.5) * np.pi / ncones
    share = np.sin(theta_c) / np.sin(theta_c).sum() * n
    counts = np.floor(share).astype(int)
    counts[np.argsort(-(share - counts))[: n - counts.sum()]] += 1
    theta = np.repeat(theta_c, counts)
    phi = np.concatenate(
        [2.0 * np.pi * (np.arange(m) + 0.5 * (c % 2)) / max(m, 1) for c, m in enumerate(counts)]
    )
    dirs = np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=1
    )
    return dirs, theta


# --------------------------------------------------------------------------------------------
# radial profiles |k|(t)


def sample_times(samples: int, dwell_s: float) -> np.ndarray:
    """``t_i = i * dwell_s`` (s) for the ``samples`` samples of a centre-out readout."""
    if samples < 2 or dwell_s <= 0:
        raise ValueError(f"need >= 2 samples and a positive dwell, got {samples}, {dwell_s}")
    return np.arange(samples) * float(dwell_s)


def density_adapted_velocity(p: float, duration_s: float, kmax: float = 0.5) -> float:
    """``gamma G0`` (cycles/pixel/s) of a density-adapted readout reaching ``kmax`` at
    ``duration_s``: constant gradient to ``k0 = p kmax`` (time ``t0 = k0 / v0``), then
    ``|k|^3 = 3 v0 k0^2 (t - t0) + k0^3``, so ``v0 T = k0 + (kmax^3 - k0^3) / (3 k0^2)``."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"density-adaptation fraction p must be in (0, 1], got {p}")
    k0 = p * kmax
    return (k0 + (kmax**3 - k0**3) / (3.0 * k0**2)) / duration_s


def density_adapted_radius(t_s: np.ndarray, p: float, duration_s: float, kmax: float = 0.5):
    """``|k|(t)`` of DA-3DPR (Nagel et al. 2009), cycles/pixel, for ``0 <= t <= duration_s``."""
    v0 = density_adapted_velocity(p, duration_s, kmax)
    k0 = p * kmax
    t0 = k0 / v0
    t = np.asarray(t_s, dtype=np.float64)
    adapted = np.cbrt(3.0 * v0 * k0**2 * np.maximum(t - t0, 0.0) + k0**3)
    return np.where(t <= t0, v0 * t, adapted)


def gradient_T_per_m(velocity: float, matrix: int, fov_mm: float) -> float:
    """Physical gradient for a k-space velocity in cycles/pixel/s (23Na)."""
    return velocity * matrix / (fov_mm * 1e-3) / GAMMA_NA23_HZ_PER_T


# --------------------------------------------------------------------------------------------
# 3D trajectories


def radial_3d(dirs: np.ndarray, samples: int, kmax: float = 0.5) -> np.ndarray:
    """Plain centre-out 3D radial (kooshball): ``k = kmax * i / (S - 1) * direction``."""
    radius = np.linspace(0.0, kmax, int(samples))
    return (dirs[:, None, :] * radius[None, :, None]).astype(np.float32)


def da_3dpr(
    dirs: np.ndarray, samples: int, dwell_s: float, p: float, kmax: float = 0.5
) -> np.ndarray:
    """Density-adapted 3D radial: straight spokes with :func:`density_adapted_radius`."""
    t = sample_times(samples, dwell_s)
    radius = density_adapted_radius(t, p, t[-1], kmax)
    return (dirs[:, None, :] * radius[None, :, None]).astype(np.float32)


def tpi(projections: int, samples: int, dwell_s: float, p: float, kmax: float = 0.5) -> np.ndarray:
    """Twisted projection imaging (Boada et al. 1997) on cones.

    Radial at constant gradient to ``k0 = p kmax``; beyond, the gradient magnitude stays
    ``v0`` and the radius grows as in DA-3DPR (``k_r^2 dk_r/dt = v0 k0^2``, uniform density),
    the rest of the speed turning the trajectory about the cone axis:
    ``phi(k_r) = [sqrt(k_r^4 - k0^4) - k0^2 arccos(k0^2 / k_r^2)] / (2 k0^2 sin theta)``.
    """
    dirs, theta = cone_directions(projections)
    t = sample_times(samples, dwell_s)
    radius = density_adapted_radius(t, p, t[-1], kmax)
    k0 = p * kmax
    r_out = np.maximum(radius, k0)
    twist = np.sqrt(np.maximum(r_out**4 - k0**4, 0.0)) - k0**2 * np.arccos(
        np.clip(k0**2 / r_out**2, -1.0, 1.0)
    )
    sin_theta = np.maximum(np.sin(theta), 1e-6)
    phi0 = np.arctan2(dirs[:, 1], dirs[:, 0])
    phi = phi0[:, None] + twist[None, :] / (2.0 * k0**2 * sin_theta[:, None])
    st = np.sin(theta)[:, None]
    k = np.stack(
        [
            radius[None, :] * st * np.cos(phi),
            radius[None, :] * st * np.sin(phi),
            radius[None, :] * np.cos(theta)[:, None] * np.ones_like(phi),
        ],
        axis=-1,
    )
    return k.astype(np.float32)


def golden_angle_2d(spokes: int, samples: int, kmax: float = 0.5, centre_out: bool = True):
    """2D golden-angle radial, (spokes, samples, 2). Centre-out spokes advance by
    ``pi (3 - sqrt 5)`` (137.5 deg, covering 2 pi); full diameters by ``pi / phi`` (111.2 deg)."""
    n = np.arange(int(spokes))
    if centre_out:
        angle = n * np.pi * (3.0 - np.sqrt(5.0))
        radius = np.linspace(0.0, kmax, int(samples))
    else:
        angle = n * np.pi * 2.0 / (1.0 + np.sqrt(5.0))
        radius = np.linspace(-kmax, kmax, int(samples), endpoint=False)
    d = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (d[:, None, :] * radius[None, :, None]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# trajectory from an ISMRMRD header


_NS = {"m": "http://www.ismrm.org/ISMRMRD"}


@dataclass(frozen=True)
class TrajectoryDescription:
    """A trajectory as described in ``encoding[0].trajectoryDescription`` of an ISMRMRD header.

    ``userParameterLong``: ``projections``, ``samples``; ``userParameterDouble``: ``p``
    (DA-3DPR, TPI), ``readout_duration_ms``; optional ``userParameterString`` ``directions``
    (default ``spiral`` for radial, ``cones`` for TPI). ``dwell_s = readout_duration / samples``.
    """

    identifier: str
    projections: int
    samples: int
    readout_duration_ms: float
    p: float = 1.0
    directions: str = "spiral"

    def __post_init__(self) -> None:
        if self.identifier not in IDENTIFIERS:
            raise ValueError(f"unknown trajectory identifier {self.identifier!r} ({IDENTIFIERS})")
        if self.projections < 1 or self.samples < 2 or self.readout_duration_ms <= 0:
            raise ValueError(f"invalid trajectory description {self}")
        if self.directions not in DIRECTION_SCHEMES:
            raise ValueError(f"unknown direction scheme {self.directions!r}")

    @property
    def dwell_s(self) -> float:
        return self.readout_duration_ms * 1e-3 / self.samples

    def velocity(self) -> float:
        """``gamma G0`` in cycles/pixel/s (the plateau gradient)."""
        duration = (self.samples - 1) * self.dwell_s
        p = 1.0 if self.identifier == "3DPR" else self.p
        return density_adapted_velocity(p, duration)

    def trajectory(self) -> np.ndarray:
        """All readouts, (projections, samples, 3) float32, cycles/pixel."""
        if self.identifier == "TPI":
            return tpi(self.projections, self.samples, self.dwell_s, self.p)
        dirs = directions(self.projections, self.directions)
        if self.identifier == "3DPR":
            return radial_3d(dirs, self.samples)
        return da_3dpr(dirs, self.samples, self.dwell_s, self.p)


def _header_root(header: object) -> ET.Element:
    if isinstance(header, ET.Element):
        return header
    if not isinstance(header, (str, bytes)):
        import ismrmrd.xsd  # the object model of ismrmrd-python

        header = ismrmrd.xsd.ToXML(header)
    try:
        return ET.fromstring(header)
    except ET.ParseError as exc:
        raise ValueError(f"ISMRMRD header is not valid XML: {exc}") from exc


def trajectory_description(header: object) -> TrajectoryDescription | None:
    """The :class:`TrajectoryDescription` of an ISMRMRD header (XML text or ``ismrmrdHeader``),
    or None if the header has no ``trajectoryDescription``. Raises ``ValueError`` naming what is
    missing when the description is incomplete."""
    root = _header_root(header)
    desc = root.find("m:encoding/m:trajectoryDescription", _NS)
    if desc is None:
        return None
    ident = (desc.findtext("m:identifier", default="", namespaces=_NS) or "").strip()

    def params(kind: str) -> dict[str, str]:
        return {
            (p.findtext("m:name", default="", namespaces=_NS) or "").strip(): (
                p.findtext("m:value", default="", namespaces=_NS) or ""
            ).strip()
            for p in desc.findall(f"m:{kind}", _NS)
        }

    longs, doubles, strings = (
        params("userParameterLong"),
        params("userParameterDouble"),
        params("userParameterString"),
    )
    required = [("projections", longs), ("samples", longs), ("readout_duration_ms", doubles)]
    if ident in ("DA-3DPR", "TPI"):
        required.append(("p", doubles))
    missing = [name for name, table in required if name not in table]
    if missing:
        raise ValueError(f"trajectoryDescription {ident!r} lacks {', '.join(missing)}")
    default_dirs = "cones" if ident == "TPI" else "spiral"
    try:
        return TrajectoryDescription(
            identifier=ident,
            projections=int(longs["projections"]),
            samples=int(longs["samples"]),
            readout_duration_ms=float(doubles["readout_duration_ms"]),
            p=float(doubles.get("p", 1.0)),
            directions=strings.get("directions", default_dirs),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid trajectoryDescription: {exc}") from exc
