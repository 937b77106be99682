"""Reconstructed maps against the simulator's truth: ROI means (spheres in patient LPS mm from
``NAME_truth.json``) of a volume placed by its :class:`gadgets.core.numerics.geometry.Geometry`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gadgets.core.numerics.apodization import kaiser_window
from gadgets.core.numerics.geometry import Geometry
from gadgets.simulator.head import Grid
from gadgets.simulator.scan import ScanDescription, fine_matrix
from gadgets.simulator.signal import OBJECT_SIGMA

__all__ = ["psf_limited", "roi_means", "RoiResult", "table"]


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
            )
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
    desc: ScanDescription,
    k_radius_cpp: np.ndarray,
    times_s: np.ndarray,
    te_s: float,
    unblurred: tuple[str, ...] = ("tube",),
    k_window_beta: float = 0.0,
) -> np.ndarray:
    """The TSC map (mM, recon grid) an ideal, noise-free reconstruction of the scan ``desc`` would
    show: each tissue of the continuous phantom filtered by its own readout weighting ``H(|k|) =
    decay(TE + t(|k|)) / decay(TE)`` (``k_radius_cpp``, ``times_s``: one readout's ``|k|`` in cycles
    per pixel and sample times), cut at the readout's ``k_max``, times the reconstruction's
    apodisation (``k_window_beta``, :mod:`gadgets.core.numerics.apodization`), summed and sampled at
    the voxel centres. It separates what the scan's point spread function does to small ROIs (finite
    ``k_max``, Gibbs ringing next to fluid, T2* broadening) from what the reconstruction does.
    Tissues starting with one of ``unblurred`` are left unfiltered (the TSC chains undo the tubes'
    blur: band limit, apodisation and T2*).

    The phantom is built as the simulator builds it: on its fine grid from the shapes' analytic
    spectra with the anti-aliasing Gaussian, which is divided out here (the spectra on the
    recon grid's k-space are the continuous object's; a voxel-averaged truth would be
    smoother than the scan and hide half of its ringing)."""
    phantom = desc.phantom()
    n = desc.matrix
    recon = desc.grid(n)
    nfine = fine_matrix(desc)
    fine = Grid((nfine,) * 3, desc.fov_mm / nfine, recon.position_mm, recon.dirs)
    fractions = phantom.composition(fine, smooth_sigma_px=OBJECT_SIGMA * n / nfine)
    freqs = np.fft.fftfreq(n)
    k = np.meshgrid(freqs, freqs, freqs, indexing="ij")
    kr = np.sqrt(sum(a**2 for a in k))
    crop = np.ix_(*[np.round(freqs * n).astype(int) % nfine] * 3)  # recon k-space in the fine
    order = np.argsort(k_radius_cpp)
    k_read, t_read = np.asarray(k_radius_cpp)[order], np.asarray(times_s)[order]
    inside = kr <= k_read[-1]
    t_of_k = np.interp(kr, k_read, t_read)
    window = kaiser_window(kr, k_read[-1], k_window_beta) / np.exp(-(kr**2) / (2 * OBJECT_SIGMA**2))
    out = np.zeros((n,) * 3)
    truth = np.zeros((n,) * 3)
    voxel_fractions = None
    for tissue in phantom.tissues:
        if tissue.name not in fractions or tissue.tsc_mM == 0:
            continue
        if tissue.name.startswith(unblurred):  # the truth itself (voxel averages)
            if voxel_fractions is None:
                voxel_fractions = phantom.composition(recon)
            truth += voxel_fractions[tissue.name] * tissue.tsc_mM
            continue
        spec = np.fft.fftn(np.fft.ifftshift(fractions.pop(tissue.name)))[crop]
        h = np.where(inside, tissue.relaxation.decay(te_s + t_of_k), 0.0)
        h /= float(tissue.relaxation.decay(te_s))
        out += np.fft.ifftn(spec * h * window).real * tissue.tsc_mM
    return np.fft.fftshift(out) * (n / nfine) ** 3 + truth
