"""Relaxation weighting of sodium signal, and its correction between calibration tubes and
tissue classes.

A compartment of concentration ``C`` gives, in a spoiled gradient echo with repetition ``TR`` and
flip ``a``, image amplitude ``S = k C w``, with the weighting

    w = sin(a) (1 - E1) / (1 - cos(a) E1) * sum_i f_i exp(-TE / T2*_i),   E1 = exp(-TR / T1)

(the large structures that matter for concentration are dominated by low k-space, sampled at
``TE`` in a centre-out readout). Calibrating against tubes of one class assumes the tissue
shares their ``w``; where it does not, the concentration is off by ``w_tube / w_tissue``: at 7T,
TR 100 ms, CSF (T1 ~60 ms) measured against agarose tubes reads ~7% low. Two tissue classes are
told apart: ``brain`` (biexponential: ~60% of the signal decays with T2* 3-5 ms) and ``fluid``
(CSF, vitreous: mono-exponential ~50-55 ms, T1 ~60 ms).

* Two echoes: per voxel the echo-1 signal is split into a brain and a fluid part from the echo
  ratio (``x2 = e_b A_b + e_f A_f`` with ``x1 = A_b + A_f``, ``e`` the class's decay from TE1 to
  TE2), then ``C = (A_b / w_b + A_f / w_f) w_tube / k``: linear, partial volume handled.
* One echo: fluid fraction from the uncorrected concentration, a linear ramp between
  ``fluid_from_mM`` and ``fluid_to_mM`` (brain tissue is < 70 mM, fluid ~140 mM).

The simulator keeps its own copy of this signal equation (:mod:`gadgets.simulator.tissues`) on
purpose: a shared error would cancel out in the accuracy tests against its truth.

Units: seconds throughout (``t1_s``, ``t2s_s``, ``tr_s``, ``te_s``), flip angles in degrees.

Defaults are literature values (Madelin G, Regatte RR. Biomedical applications of sodium MRI in
vivo. J Magn Reson Imaging 2013;38:511-529; Hagiwara A et al. Sodium MR neuroimaging. AJNR Am J
Neuroradiol 2021;42:1920-1926); the tube's are starting values that a site replaces with its
own measurement (the calibration gadget's ``tube_t1_ms``, ``tube_t2s_ms``,
``tube_t2s_fractions``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CLASSES",
    "Relaxation",
    "class_correction",
    "fluid_fraction_one_echo",
    "fluid_fraction_two_echo",
    "relaxation",
    "sodium_r",
]


@dataclass(frozen=True)
class Relaxation:
    """T1 (s) and T2* components (s) with their signal fractions (summing to 1)."""

    t1_s: float
    t2s_s: tuple[float, ...]
    fractions: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.t1_s <= 0 or len(self.t2s_s) != len(self.fractions) or not self.t2s_s:
            raise ValueError(f"relaxation needs T1 > 0 and one fraction per T2*: {self}")
        if min(self.t2s_s) <= 0 or min(self.fractions) < 0:
            raise ValueError(f"T2* must be > 0 and fractions >= 0: {self}")
        if abs(sum(self.fractions) - 1.0) > 1e-3:
            raise ValueError(f"T2* fractions must sum to 1, not {sum(self.fractions):g}")

    def decay(self, t_s: float | np.ndarray) -> np.ndarray | float:
        """Transverse decay ``sum_i f_i exp(-t / T2*_i)`` at ``t_s`` after excitation."""
        t = np.asarray(t_s, np.float64)
        return sum(f * np.exp(-t / t2) for f, t2 in zip(self.fractions, self.t2s_s, strict=True))

    def saturation(self, tr_s: float, flip_deg: float) -> float:
        """Spoiled-GRE steady state ``sin a (1 - E1) / (1 - cos a E1)``."""
        e1 = np.exp(-tr_s / self.t1_s)
        a = np.deg2rad(flip_deg)
        return float(np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1))

    def weight(self, tr_s: float, flip_deg: float, te_s: float) -> float:
        """``w`` above: saturation times decay at the echo time."""
        return self.saturation(tr_s, flip_deg) * float(self.decay(te_s))


#: (3T, 7T) defaults per class; tubes: ``saline`` (free sodium) or ``agarose`` (2-4% gel).
CLASSES: dict[str, tuple[Relaxation, Relaxation]] = {
    "brain": (
        Relaxation(37e-3, (3.5e-3, 25e-3), (0.6, 0.4)),
        Relaxation(39e-3, (2.9e-3, 21e-3), (0.6, 0.4)),
    ),
    "fluid": (Relaxation(60e-3, (55e-3,), (1.0,)), Relaxation(61e-3, (50e-3,), (1.0,))),
    "saline": (Relaxation(60e-3, (55e-3,), (1.0,)), Relaxation(61e-3, (50e-3,), (1.0,))),
    "agarose": (
        Relaxation(40e-3, (4e-3, 25e-3), (0.6, 0.4)),
        Relaxation(41e-3, (3.2e-3, 21e-3), (0.6, 0.4)),
    ),
}


def relaxation(name: str, field_T: float) -> Relaxation:
    """Default relaxation of a class at the field strength (3T values below 5T)."""
    if name not in CLASSES:
        raise ValueError(f"unknown relaxation class {name!r}; known: {', '.join(CLASSES)}")
    return CLASSES[name][0 if field_T < 5.0 else 1]


def echo_ratio(cls: Relaxation, te_s: tuple) -> float:
    """A class's signal at the second echo over the first: ``decay(TE2) / decay(TE1)``."""
    return float(cls.decay(te_s[1]) / cls.decay(te_s[0]))


def fluid_fraction_two_echo(
    echo1: np.ndarray, echo2: np.ndarray, brain: Relaxation, fluid: Relaxation, te_s: tuple
) -> np.ndarray:
    """Fraction of the echo-1 signal from the fluid class, from the echo ratio (clipped 0..1).
    Magnitudes (or phase-aligned real parts) of the two echoes, already smoothed."""
    e_b, e_f = echo_ratio(brain, te_s), echo_ratio(fluid, te_s)
    safe = np.where(np.abs(echo1) > 0, echo1, 1.0)
    ratio = np.where(np.abs(echo1) > 0, echo2 / safe, e_b)
    return np.clip((ratio - e_b) / (e_f - e_b), 0.0, 1.0).astype(np.float32)


def fluid_fraction_one_echo(tsc_mM: np.ndarray, from_mM: float, to_mM: float) -> np.ndarray:
    """Fluid fraction as a linear ramp of the (uncorrected) concentration."""
    return np.clip((tsc_mM - from_mM) / (to_mM - from_mM), 0.0, 1.0).astype(np.float32)


def class_correction(fluid_fraction: np.ndarray, w_tube: float, w_brain: float, w_fluid: float):
    """Per-voxel factor turning tube-calibrated concentration into the tissue's own:
    ``w_tube ((1 - f) / w_brain + f / w_fluid)``."""
    return w_tube * ((1.0 - fluid_fraction) / w_brain + fluid_fraction / w_fluid)


def sodium_r(echo1: np.ndarray, echo2: np.ndarray, te_s: tuple, t2s_csf_s: float = 56e-3):
    """Relaxation-weighted 23NaR image ``I(TE1) - exp[(TE2 - TE1)/T2*_CSF] I(TE2)``, which
    removes the fluid's long-T2* signal and keeps the fast-decaying (bound) part (Mueller HP,
    Nagel AM et al. Relaxation-weighted 23Na magnetic resonance imaging maps regional patterns of
    abnormal sodium concentrations in amyotrophic lateral sclerosis. Ther Adv Chronic Dis
    2022;13:20406223221109480: T2*_CSF 56 ms)."""
    factor = np.exp((te_s[1] - te_s[0]) / t2s_csf_s)
    return echo1 - factor * echo2
