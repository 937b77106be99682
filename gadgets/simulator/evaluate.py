"""Reconstructed maps against the simulator's truth: ROI means (spheres in patient LPS mm from
``NAME_truth.json``) of a volume placed by its :class:`gadgets.core.dicom.Geometry`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.dicom import Geometry


@dataclass(frozen=True)
class RoiResult:
    name: str
    true_mM: float
    measured_mM: float
    voxels: int

    @property
    def error_mM(self) -> float:
        return self.measured_mM - self.true_mM


def roi_means(volume: np.ndarray, geom: Geometry, truth_json: str | Path) -> list[RoiResult]:
    """Mean of ``volume`` in every truth ROI (voxel centres inside the sphere; the nearest voxel
    for a sphere smaller than a voxel)."""
    truth = json.loads(Path(truth_json).read_text())
    pts = geom.points_mm()
    out = []
    for roi in truth["rois"]:
        dist2 = np.sum((pts - np.asarray(roi["centre_mm"])) ** 2, axis=-1)
        inside = dist2 <= roi["radius_mm"] ** 2
        if not inside.any():  # a ROI smaller than a voxel: its nearest voxel
            inside = dist2 == dist2.min()
        out.append(
            RoiResult(
                roi["name"], float(roi["true_mM"]), float(volume[inside].mean()), int(inside.sum())
            )  # fmt: skip
        )
    return out


def table(results: list[RoiResult]) -> str:
    """A printable per-ROI table with the mean absolute and worst error."""
    lines = [f"{'ROI':14s} {'true mM':>8s} {'measured':>9s} {'error':>7s} {'voxels':>6s}"]
    for r in results:
        lines.append(
            f"{r.name:14s} {r.true_mM:8.1f} {r.measured_mM:9.2f} {r.error_mM:+7.2f} {r.voxels:6d}"
        )
    errs = np.abs([r.error_mM for r in results])
    lines.append(f"mean absolute error {errs.mean():.2f} mM, worst {errs.max():.2f} mM")
    return "\n".join(lines)


def psf_limited(
    truth_npz: str | Path,
    truth_json: str | Path,
    k_radius_cpp: np.ndarray,
    times_s: np.ndarray,
    te_s: float,
    unblurred: tuple[str, ...] = ("tube",),
) -> np.ndarray:
    """The TSC map (mM, recon grid) an ideal, noise-free reconstruction of this acquisition
    would show: each tissue's truth filtered by its own readout weighting
    ``H(|k|) = decay(TE + t(|k|)) / decay(TE)`` (``k_radius_cpp``, ``times_s``: one readout's
    ``|k|`` in cycles per pixel and sample times), cut at the readout's ``k_max``, and summed.
    It separates what the scan's point spread function does to small ROIs (finite ``k_max``,
    T2* broadening) from what the reconstruction does. Labels starting with one of
    ``unblurred`` are only cut at ``k_max`` (the TSC chains undo the tubes' T2* blur)."""
    truth = np.load(truth_npz)
    info = json.loads(Path(truth_json).read_text())
    tsc, labels = truth["tsc_mM"].astype(np.float64), truth["labels"]
    names = list(truth["label_names"])
    shape = tsc.shape
    k = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    kr = np.sqrt(sum(a**2 for a in k))
    order = np.argsort(k_radius_cpp)
    k_read, t_read = np.asarray(k_radius_cpp)[order], np.asarray(times_s)[order]
    t_of_k = np.interp(kr, k_read, t_read)
    inside = kr <= k_read[-1]
    out = np.zeros(shape)
    for i, name in enumerate(names):
        part = np.where(labels == i, tsc, 0.0)
        if name not in info["tissues"] or not part.any():
            out += part  # air: nothing to filter
            continue
        tissue = info["tissues"][name]
        t2s = np.asarray(tissue["t2s_ms"], np.float64) * 1e-3
        frac = np.asarray(tissue["fractions"], np.float64)

        def decay(t, t2s=t2s, frac=frac):
            return np.sum(frac * np.exp(-np.asarray(t)[..., None] / t2s), axis=-1)

        h = np.where(inside, decay(te_s + t_of_k) / decay(te_s), 0.0)
        if name.startswith(unblurred):
            h = inside.astype(np.float64)
        out += np.fft.ifftn(np.fft.fftn(part) * h).real
    return out
