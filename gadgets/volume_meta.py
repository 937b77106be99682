"""The contract between the sodium steps: what the gridder tells later steps about each echo
volume, written once as a dataclass and carried in the image meta (``attribute_string``).

Only ISMRMRD types travel between ``<external>`` steps of a real Gadgetron, so the facts a later
step needs (readout timing for the tube templates and MFI, the MFI bins, the apodisation, the
echo time) ride along in the image meta. :class:`GriddedVolume` lists every key, its unit and
which step writes it; :meth:`GriddedVolume.from_meta` refuses a volume that lacks a required key
with a message naming the step that should have written it.

===========================  =================================================  ================
meta key                     meaning                                            written by
===========================  =================================================  ================
``SodiumBinsHz`` (list)      demodulation frequency of each MFI bin, Hz;        StreamingGridder
                             channels are ``coil * n_bins + bin`` before coil   (B0Correction:
                             combination, ``bin`` after it                      ``[0]`` after MFI)
``SodiumDwellS``             readout sample spacing, s                          StreamingGridder
``SodiumKRadius`` (list)     ``|k|`` of each sample of a readout, cycles/pixel  StreamingGridder
``SodiumKMax``               the largest ``|k|``, cycles/pixel                  StreamingGridder
``SodiumKWindowBeta``        Kaiser apodisation beta (0: none)                  StreamingGridder
``SodiumReadouts``           readouts gridded into this echo                    StreamingGridder
``SodiumEchoTimeS``          echo time of this echo, s (absent: the header has  StreamingGridder
                             no TE for it)
``SodiumNoiseWeights``       per sample of a readout, ``sum over readouts of    StreamingGridder
(list)                       u^2`` (``u`` the sample's density weight times
                             window, over the averages): one channel's image
                             noise variance is their sum for unit-variance
                             (prewhitened) samples; between MFI bins ``l, m``
                             the covariance is ``sum_s U_s e^(2 pi i (f_l -
                             f_m) t_s)`` (:func:`~gadgets.core.numerics.noise.
                             bin_noise_covariance`)
``SodiumCoils``              coils before combination (absent after it)         StreamingGridder
``SodiumCombination``        how the coils were combined, e.g.                  CoilCombiner
                             ``model:loops_8ch``, ``adaptive``
``SodiumReceiveCorrected``   1: the coil's receive profile was removed (a        CoilCombiner
                             coil file matched the scan), 0: it is still in
                             the image
``SodiumB0Correction``       where the field map came from, or ``none``         B0Correction
===========================  =================================================  ================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import ismrmrd
import numpy as np

from gadgets.core.calibration.tube_templates import readout_filter
from gadgets.core.numerics.apodization import kaiser_window
from gadgets.volumes import read_meta

__all__ = ["GriddedVolume", "MetaError"]

_WRITER = "StreamingGridder"


class MetaError(ValueError):
    """An image whose meta lacks what a step needs (the message names who writes it)."""


def _floats(meta: dict, key: str) -> tuple[float, ...]:
    value = meta[key]
    return tuple(float(v) for v in (value if isinstance(value, list) else [value]))


@dataclass(frozen=True)
class GriddedVolume:
    """What the gridder tells later steps about one echo volume (the module's table)."""

    bins_hz: tuple[float, ...]
    dwell_s: float
    k_radius_cpp: tuple[float, ...]
    k_max_cpp: float
    k_window_beta: float
    readouts: int
    echo_time_s: float | None = None
    coils: int | None = None
    combination: str = ""
    b0_correction: str = ""
    receive_corrected: bool | None = None
    noise_weights: tuple[float, ...] | None = None

    @property
    def noise_power(self) -> float | None:
        """One channel's image noise variance per unit sample noise variance (None: unknown)."""
        return None if self.noise_weights is None else float(np.sum(self.noise_weights))

    @property
    def samples(self) -> int:
        """Samples per readout."""
        return len(self.k_radius_cpp)

    @property
    def sample_times_s(self) -> np.ndarray:
        """Time of each sample after the readout's start, s."""
        return np.arange(self.samples) * self.dwell_s

    def readout_filter(self, decay, te_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This volume's readout weighting of a medium whose transverse decay is ``decay(t_s)``,
        at echo time ``te_s``, with the gridder's apodisation (what a tube template or a
        bottle's blur carries: :func:`gadgets.core.calibration.tube_templates.readout_filter`)."""
        kr = np.asarray(self.k_radius_cpp)
        beta = self.k_window_beta
        window = kaiser_window(kr, self.k_max_cpp, beta) if beta > 0 else None
        return readout_filter(kr, self.sample_times_s, decay, te_s, window)

    @property
    def centre_bin(self) -> int:
        """Index of the MFI bin nearest 0 Hz (the only one without MFI)."""
        return int(np.argmin(np.abs(np.asarray(self.bins_hz))))

    def with_(self, **changes) -> GriddedVolume:
        """A copy with ``changes`` (what a later step adds or removes)."""
        return dataclasses.replace(self, **changes)

    def require_echo_time(self, step: str) -> float:
        """The echo time, s; a :class:`MetaError` naming ``step`` if the header had none."""
        if self.echo_time_s is None:
            raise MetaError(
                f"{step} needs the echo time of every echo: the header's "
                "sequenceParameters lack TE for this one"
            )
        return self.echo_time_s

    def to_meta(self) -> dict[str, object]:
        """The meta entries (text, lists as lists) of this volume."""
        meta: dict[str, object] = {
            "SodiumBinsHz": list(self.bins_hz),
            "SodiumDwellS": self.dwell_s,
            "SodiumKRadius": [f"{k:.5f}" for k in self.k_radius_cpp],
            "SodiumKMax": self.k_max_cpp,
            "SodiumKWindowBeta": self.k_window_beta,
            "SodiumReadouts": self.readouts,
        }
        if self.echo_time_s is not None:
            meta["SodiumEchoTimeS"] = self.echo_time_s
        if self.coils is not None:
            meta["SodiumCoils"] = self.coils
        if self.combination:
            meta["SodiumCombination"] = self.combination
        if self.b0_correction:
            meta["SodiumB0Correction"] = self.b0_correction
        if self.receive_corrected is not None:
            meta["SodiumReceiveCorrected"] = int(self.receive_corrected)
        if self.noise_weights is not None:
            meta["SodiumNoiseWeights"] = [f"{u:.6g}" for u in self.noise_weights]
        return meta

    @classmethod
    def from_meta(cls, meta: dict[str, object], step: str) -> GriddedVolume:
        """The volume described by ``meta`` (:func:`gadgets.volumes.read_meta`); ``step``, the
        step asking, is named in the error when a required key is missing."""
        required = (
            "SodiumBinsHz",
            "SodiumDwellS",
            "SodiumKRadius",
            "SodiumKMax",
            "SodiumKWindowBeta",
            "SodiumReadouts",
        )
        missing = [k for k in required if k not in meta]
        if missing:
            raise MetaError(
                f"{step}: the volume's meta lacks {', '.join(missing)}, which {_WRITER} writes: "
                f"put {_WRITER} before {step} in the chain"
            )
        try:
            return cls(
                bins_hz=_floats(meta, "SodiumBinsHz"),
                dwell_s=float(meta["SodiumDwellS"]),
                k_radius_cpp=_floats(meta, "SodiumKRadius"),
                k_max_cpp=float(meta["SodiumKMax"]),
                k_window_beta=float(meta["SodiumKWindowBeta"]),
                readouts=int(float(meta["SodiumReadouts"])),
                echo_time_s=(float(meta["SodiumEchoTimeS"]) if "SodiumEchoTimeS" in meta else None),
                coils=int(float(meta["SodiumCoils"])) if "SodiumCoils" in meta else None,
                combination=str(meta.get("SodiumCombination", "")),
                b0_correction=str(meta.get("SodiumB0Correction", "")),
                receive_corrected=(
                    bool(int(float(meta["SodiumReceiveCorrected"])))
                    if "SodiumReceiveCorrected" in meta
                    else None
                ),
                noise_weights=(
                    _floats(meta, "SodiumNoiseWeights") if "SodiumNoiseWeights" in meta else None
                ),
            )
        except (TypeError, ValueError) as exc:
            raise MetaError(f"{step}: unreadable volume meta: {exc}") from exc

    @staticmethod
    def describes(image: ismrmrd.Image) -> bool:
        """Whether ``image`` is a gridder volume (it carries the MFI bins)."""
        return isinstance(image, ismrmrd.Image) and "SodiumBinsHz" in read_meta(image)
