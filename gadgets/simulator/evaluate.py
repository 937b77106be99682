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
