"""Sodium tissue properties: concentration, T1 and biexponential T2*, per field strength.

Values are literature ranges (Hagiwara A et al. Sodium MR neuroimaging. AJNR Am J Neuroradiol
2021;42:1920-1926; Madelin G, Regatte RR. J Magn Reson Imaging 2013;38:511-529): brain
tissue TSC 30-56 mM, CSF ~140 mM; tissue T2* biexponential, ~60% short (2-5 ms) and ~40% long
(15-35 ms), shorter at 7T; CSF and vitreous mono-exponential (~55 ms); T1 ~35-40 ms in tissue,
~55-65 ms in fluid. Calibration tubes are saline (free sodium: mono-exponential, long T1) or
agarose gel (2-4%: biexponential like tissue). Everything here is a default: scan description
files may override any value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["TISSUE_NAMES", "TUBE_CLASSES", "Relaxation", "Tissue", "tissue", "tube_tissue"]


# The scanner side's own signal model, on purpose not gadgets.core.numerics.relaxation's: a wrong
# decay or saturation formula in the reconstruction must show up against the truth, not cancel out.
@dataclass(frozen=True)
class Relaxation:
    """``T1`` and T2* components: signal ``sum_i f_i exp(-t / T2*_i)`` with ``sum f_i = 1``."""

    t1_ms: float
    t2s_ms: tuple[float, ...]
    fractions: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.t2s_ms) != len(self.fractions) or not np.isclose(sum(self.fractions), 1.0):
            raise ValueError(f"T2* components and fractions do not match: {self}")

    def decay(self, t_s: np.ndarray | float) -> np.ndarray:
        """Transverse decay at ``t_s`` seconds after excitation."""
        t = np.asarray(t_s, np.float64)
        return sum(
            f * np.exp(-t / (t2 * 1e-3)) for f, t2 in zip(self.fractions, self.t2s_ms, strict=True)
        )

    def saturation(self, tr_ms: float, flip_deg: float) -> float:
        """Steady-state spoiled gradient echo factor ``sin a (1 - E1) / (1 - cos a E1)``."""
        e1 = np.exp(-tr_ms / self.t1_ms)
        a = np.deg2rad(flip_deg)
        return float(np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1))


@dataclass(frozen=True)
class Tissue:
    name: str
    tsc_mM: float
    relaxation: Relaxation


def _biexp(t1, short, long, f_short=0.6):
    return Relaxation(t1, (short, long), (f_short, 1.0 - f_short))


_DEFAULTS = {
    # name: (TSC mM, 3T relaxation, 7T relaxation)
    "air": (0.0, Relaxation(40.0, (30.0,), (1.0,)), Relaxation(40.0, (30.0,), (1.0,))),
    "scalp": (28.0, _biexp(36.0, 3.5, 24.0), _biexp(38.0, 2.8, 20.0)),
    "skull": (10.0, _biexp(30.0, 2.0, 12.0), _biexp(30.0, 1.8, 10.0)),
    "csf": (140.0, Relaxation(60.0, (55.0,), (1.0,)), Relaxation(62.0, (50.0,), (1.0,))),
    "grey_matter": (42.0, _biexp(38.0, 4.0, 28.0), _biexp(40.0, 3.0, 22.0)),
    "white_matter": (33.0, _biexp(36.0, 3.5, 25.0), _biexp(38.0, 2.8, 20.0)),
    "vitreous": (140.0, Relaxation(58.0, (55.0,), (1.0,)), Relaxation(60.0, (50.0,), (1.0,))),
    "edema": (55.0, _biexp(45.0, 4.5, 32.0, 0.5), _biexp(47.0, 3.5, 26.0, 0.5)),
    "tumour": (65.0, _biexp(48.0, 5.0, 35.0, 0.45), _biexp(50.0, 4.0, 30.0, 0.45)),
}

#: Tube classes: relaxation of the phantom material (concentration comes from the protocol).
_TUBES = {
    "saline": (Relaxation(60.0, (55.0,), (1.0,)), Relaxation(62.0, (50.0,), (1.0,))),
    "agarose": (_biexp(40.0, 4.0, 25.0), _biexp(42.0, 3.2, 21.0)),
}

TISSUE_NAMES = tuple(_DEFAULTS)
TUBE_CLASSES = tuple(_TUBES)


def tissue(name: str, field_T: float, **override: float) -> Tissue:
    """Default properties of a tissue class at 3T or 7T (nearest); ``tsc_mM`` may be overridden."""
    if name not in _DEFAULTS:
        raise ValueError(f"unknown tissue {name!r}; known: {', '.join(TISSUE_NAMES)}")
    tsc, at3, at7 = _DEFAULTS[name]
    t = Tissue(name, tsc, at3 if field_T < 5.0 else at7)
    return replace(t, **override) if override else t


def tube_tissue(index: int, tsc_mM: float, tube_class: str, field_T: float) -> Tissue:
    if tube_class not in _TUBES:
        raise ValueError(f"unknown tube class {tube_class!r}; known: {', '.join(TUBE_CLASSES)}")
    at3, at7 = _TUBES[tube_class]
    return Tissue(
        f"tube{index}_{tube_class}_{tsc_mM:g}mM", float(tsc_mM), at3 if field_T < 5.0 else at7
    )
