"""Full-size accuracy: simulate the named scans (kept in --dir), reconstruct each with the chain
its protocol maps to, and print the per-ROI TSC table against the truth, the calibration, the
B0 map error and the time and peak memory of the reconstruction. Against the PSF-limited
reference too, and what a reconstruction without error of its own would score against the
truth: the reference with each tissue read through the chain's relaxation class (its T1 and T2*
defaults, not the tissue's own), i.e. the error the resolution and the class model leave.

    python benchmarks/accuracy.py [--dir sim] [--set name=value ...] [SCAN ...]
    python benchmarks/accuracy.py --family b     # the second family (SITE_B), never tuned on

A scan of a site's own coil (its description's ``site``: the bottle scan of that coil and the
protocol's settings) is reconstructed as that site would: the bottle is simulated and measured
with ``sodium-gadgets coil-profile`` first, and the coil file it writes is named with
``coil_models``, with the site's tube settings beside it.

``--set`` overrides chain properties, e.g. the comparisons in chains/README.md: without
receive-bias correction ``--set coil_models= --set min_r2=0``, root sum of squares
``--set method=sos --set coil_models= --set min_r2=0``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import ismrmrd
import numpy as np

from gadgets.app.application import recon_file
from gadgets.core.numerics import relaxation as rx
from gadgets.core.numerics.geometry import Geometry
from gadgets.simulator.evaluate import psf_limited, roi_means, table
from gadgets.simulator.scan import ScanDescription, simulate
from gadgets.volumes import read_meta

SCANS = ("brain_3T_tpi_birdcage", "brain_7T_da3dpr_8ch_dualecho", "brain_7T_radial_32ch")
SITE_B = (
    "siteb_brain_7T_8loops_dualecho",
    "siteb_brain_3T_birdcage_gradient",
    "siteb_brain_7T_16helmet_tpi",
)


def site_settings(desc: ScanDescription, sim: Path) -> dict[str, str]:
    """The chain settings a site would use for ``desc``: its coil file, measured from its own
    bottle scan by ``coil-profile`` (made once, kept in ``sim``), and its tube settings."""
    from gadgets.app.coil_profile import measure_coil_profile

    site = desc.site or {}
    settings = {k: str(v) for k, v in site.get("set", {}).items()}
    bottle = site.get("bottle")
    if bottle:
        raw = sim / f"{bottle}.h5"
        if not raw.exists():
            simulate(ScanDescription.load(bottle), sim)
        coil_file = sim / f"{bottle}_coil.json"
        if not coil_file.exists():
            profile = measure_coil_profile(raw, coil_file, chain=site.get("chain", "sodium_tsc"))
            print(
                f"coil file {coil_file.name}: fit RMS {100 * profile.fit_rms:.2f}%, extension "
                f"check RMS {100 * profile.extension_rms:.2f}%"
            )
        settings["coil_models"] = str(coil_file)
    return settings


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
    ref_rois = roi_means(ref, geom, truth_json)
    for m, r, roi in zip(measured, ref_rois, truth["rois"], strict=True):
        errs.append(m.measured_mM - r.measured_mM)
        d2 = np.sum((points - np.asarray(roi["centre_mm"])) ** 2, axis=-1)
        centre = np.unravel_index(int(np.argmin(d2)), d2.shape)
        near = tuple(slice(max(i - 3, 0), i + 4) for i in centre)
        alike = np.abs(ref[near] - r.measured_mM) <= 0.1 * abs(r.measured_mM)  # not its edges
        se = float(residual[near][alike].std()) / np.sqrt(m.voxels)
        print(f"{m.name:14s} {r.measured_mM:9.2f} {m.measured_mM:9.2f} {errs[-1]:+7.2f} {se:5.2f}")
    errs = np.abs(errs)
    print(f"mean absolute error {errs.mean():.2f} mM, worst {errs.max():.2f} mM")
    ideal = [
        r.measured_mM * class_model_error(truth, roi["name"]) - roi["true_mM"]
        for r, roi in zip(ref_rois, truth["rois"], strict=True)
    ]
    ideal = np.abs(ideal)
    print(
        "a reconstruction without error of its own (the reference, each tissue read through the"
        " chain's relaxation class, not its own T1 and T2*) against the truth: mean absolute error"
        f" {ideal.mean():.2f} mM, worst {ideal.max():.2f} mM"
    )


def class_model_error(truth: dict, roi: str) -> float:
    """The factor by which the chain's relaxation classes misread tissue ``roi``: its own
    weighting ``w`` (the truth's T1 and T2*) over its class's (``fluid`` for CSF and vitreous,
    ``brain`` otherwise; :mod:`gadgets.core.numerics.relaxation`); 1 for a tube, which the fit
    calibrates with its own medium. One class per ROI: with two echoes the chain may split a
    tissue whose T2* is not the brain class's (a tumour) between the two, which this ignores."""
    own = dict(truth["tissues"]).get(roi)
    if own is None or roi.startswith("tube"):
        return 1.0
    tr_s, flip, te_s = truth["tr_ms"] * 1e-3, truth["flip_deg"], truth["te_ms"][0] * 1e-3
    tissue = rx.Relaxation(
        own["t1_ms"] * 1e-3, tuple(t * 1e-3 for t in own["t2s_ms"]), tuple(own["fractions"])
    )
    cls = rx.relaxation("fluid" if roi in ("csf", "vitreous") else "brain", truth["field_T"])
    return tissue.weight(tr_s, flip, te_s) / cls.weight(tr_s, flip, te_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scans", nargs="*")
    parser.add_argument("--family", choices=("a", "b"), default="a", help="a: ours, b: SITE_B")
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
    for name in args.scans or (SCANS if args.family == "a" else SITE_B):
        raw = sim / f"{name}.h5"
        desc = ScanDescription.load(name)
        if not raw.exists():
            simulate(desc, sim)
        settings = {**site_settings(desc, sim), **overrides}
        if settings:
            print(f"\n{name}: " + " ".join(f"--set {k}={v}" for k, v in settings.items()))
        folder = sim / f"{name}_recon"
        shutil.rmtree(folder, ignore_errors=True)  # this benchmark's own output of a past run
        t0 = time.perf_counter()
        out = recon_file(raw, folder, overrides=settings)
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
