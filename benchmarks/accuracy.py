"""Full-size accuracy: simulate the named scans (kept in --dir), reconstruct each with the chain
its protocol maps to, and print the per-ROI TSC table against the truth, the calibration, the
B0 map error and the time and peak memory of the reconstruction.

    python benchmarks/accuracy.py [--dir sim] [--set name=value ...] [SCAN ...]

``--set`` overrides chain properties, e.g. the comparisons in chains/README.md: without
receive-bias correction ``--set coil_models= --set min_r2=0``, root sum of squares
``--set method=sos --set coil_models= --set min_r2=0``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import ismrmrd
import numpy as np

from gadgets.app.application import recon_file
from gadgets.core.numerics.geometry import Geometry
from gadgets.simulator.evaluate import psf_limited, roi_means, table
from gadgets.simulator.scan import ScanDescription, simulate
from gadgets.volumes import read_meta

SCANS = ("brain_3T_tpi_birdcage", "brain_7T_da3dpr_8ch_dualecho", "brain_7T_radial_32ch")


def readout_timing(raw: Path) -> tuple[np.ndarray, np.ndarray]:
    """``|k|`` (cycles per pixel) and sample times (s) of the scan's first imaging readout."""
    ds = ismrmrd.Dataset(str(raw), "dataset", create_if_needed=False)
    try:
        for i in range(ds.number_of_acquisitions()):
            acq = ds.read_acquisition(i)
            if not acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                lo, hi = acq.discard_pre, acq.number_of_samples - acq.discard_post
                kr = np.linalg.norm(acq.traj[lo:hi], axis=1)
                return kr, np.arange(kr.size) * acq.sample_time_us * 1e-6
    finally:
        ds.close()
    raise ValueError(f"{raw}: no imaging readout")


def print_reference_table(
    volume, geom: Geometry, measured: list, raw: Path, desc: ScanDescription, k_window_beta: float
) -> None:
    """ROI means of ``volume`` against the PSF-limited reference, with a noise standard error
    per ROI: the std of (map - reference) in the 7^3 voxels around its centre whose reference
    is within 10% of the ROI's (its edges left out) / sqrt(voxels). ``k_window_beta``: the chain's
    apodisation, which the reference carries too."""
    truth_json = raw.with_name(raw.stem + "_truth.json")
    truth = json.loads(truth_json.read_text())
    kr, times = readout_timing(raw)
    ref = psf_limited(desc, kr, times, truth["te_ms"][0] * 1e-3, k_window_beta=k_window_beta)
    residual = volume - ref
    points = geom.points_mm()
    print(
        "against the PSF-limited reference (the phantom through this readout's T2* weighting,"
        f" k_max and apodisation (Kaiser beta {k_window_beta:g}), no noise); noise SE: std of"
        " (map - reference) in the 7^3 voxels around the ROI whose reference is within 10% of"
        " the ROI's, / sqrt(ROI voxels):"
    )
    print(f"{'ROI':14s} {'reference':>9s} {'measured':>9s} {'error':>7s} {'SE':>5s}")
    errs = []
    rois = zip(measured, roi_means(ref, geom, truth_json), truth["rois"], strict=True)
    for m, r, roi in rois:
        errs.append(m.measured_mM - r.measured_mM)
        d2 = np.sum((points - np.asarray(roi["centre_mm"])) ** 2, axis=-1)
        centre = np.unravel_index(int(np.argmin(d2)), d2.shape)
        near = tuple(slice(max(i - 3, 0), i + 4) for i in centre)
        alike = np.abs(ref[near] - r.measured_mM) <= 0.1 * abs(r.measured_mM)  # not its edges
        se = float(residual[near][alike].std()) / np.sqrt(m.voxels)
        print(f"{m.name:14s} {r.measured_mM:9.2f} {m.measured_mM:9.2f} {errs[-1]:+7.2f} {se:5.2f}")
    errs = np.abs(errs)
    print(f"mean absolute error {errs.mean():.2f} mM, worst {errs.max():.2f} mM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scans", nargs="*", default=list(SCANS))
    parser.add_argument("--dir", default="sim", help="where simulated scans are kept")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a chain property (repeatable)",
    )
    args = parser.parse_args()
    overrides = dict(pair.split("=", 1) for pair in args.set)
    sim = Path(args.dir)
    for name in args.scans:
        raw = sim / f"{name}.h5"
        desc = ScanDescription.load(name)
        if not raw.exists():
            simulate(desc, sim)
        t0 = time.perf_counter()
        out = recon_file(raw, sim / f"{name}_recon", overrides=overrides)
        seconds = time.perf_counter() - t0
        print(f"\n== {name}: reconstructed in {seconds:.1f} s")
        for text in out.texts:
            print(text)
        ds = ismrmrd.Dataset(str(out.path / "images.h5"), "dataset", create_if_needed=False)
        truth = np.load(sim / f"{name}_truth.npz")
        for series in sorted(ds.list()):
            if not series.startswith("image_"):
                continue
            img = ds.read_image(series, 0)
            meta = read_meta(img)
            print(f"-- {meta.get('SeriesDescription')}: {meta.get('ImageComments', '')[:400]}")
            if meta.get("Units") == "mmol/L" and "TSC" in meta.get("SeriesDescription", ""):
                geom = Geometry.from_image(img)
                truth_json = sim / f"{name}_truth.json"
                measured = roi_means(img.data[0], geom, truth_json)
                print(table(measured))
                beta = float(meta.get("SodiumKWindowBeta", 0.0))
                print_reference_table(img.data[0], geom, measured, raw, desc, beta)
            if meta.get("Units") == "Hz":
                names = list(truth["label_names"])
                brain = np.isin(
                    truth["labels"], [names.index(n) for n in ("white_matter", "grey_matter")]
                )
                err = img.data[0] - truth["b0_hz"]
                print(f"B0 map RMS error in brain: {np.sqrt(np.mean(err[brain] ** 2)):.2f} Hz")
        ds.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
