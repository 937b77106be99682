"""The TSC map's standard error against repeated noise realisations of the same scan.

The scan is simulated ``--repeats`` times with the same head, coil and tubes and another noise
(``ScanDescription.noise_seed``), each reconstructed with its protocol's chain and
``output_standard_error=true``. Per ROI of the truth (and over the head's tissue, by the
truth's labels), the observed
spread is the standard deviation over the repeats at each voxel, the predicted one the mean of the
standard-error maps; both are averaged as variances over the ROI's voxels:

    ratio = sqrt(mean over voxels of observed variance / mean of predicted variance)

With ``R`` repeats a variance is known to about ``sqrt(2 / (R - 1))`` per voxel; the ROI's voxels
average that down (less than their count, their noise is correlated). Target: every ratio within
20% of 1, but in the tubes: the fit took its line from their own voxels, so their map's noise is
partly correlated with the fit's, which the standard error treats as independent.

    python benchmarks/uncertainty.py [--scan brain_3T_tpi_birdcage] [--repeats 8] [--dir sim]
                                     [--set key=value ...]

The last line is ``uncertainty: scan=<name> repeats=<R> head_ratio=<r> worst_roi_ratio=<r>
within_20pct=<yes|no>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import ismrmrd
import numpy as np

from gadgets.app.application import application
from gadgets.core.numerics.geometry import Geometry
from gadgets.runtime.client import run_file
from gadgets.simulator.evaluate import roi_means, table
from gadgets.simulator.scan import ScanDescription, simulate
from gadgets.volumes import read_meta

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import print_reference_table, site_settings  # noqa: E402

TSC, SE = "Na23 TSC [mmol/L]", "Na23 TSC standard error [mmol/L]"


def reconstruct(
    raw: Path, overrides: dict[str, str]
) -> tuple[np.ndarray, np.ndarray, Geometry, float]:
    """The TSC map and its standard error (mM) of ``raw`` through its protocol's chain, their
    geometry and the chain's k-space window (Kaiser beta)."""
    settings = {"deliver": "none", "output_standard_error": "true", **overrides}
    out = list(run_file(raw, application(), overrides=settings))
    series = {read_meta(x).get("SeriesDescription"): x for x in out if isinstance(x, ismrmrd.Image)}
    missing = [k for k in (TSC, SE) if k not in series]
    if missing:
        notices = [str(x) for x in out if not isinstance(x, ismrmrd.Image)]
        raise SystemExit(f"{raw.name}: no {', '.join(missing)} (notices: {notices})")
    beta = float(read_meta(series[TSC]).get("SodiumKWindowBeta", 0.0))
    return series[TSC].data[0], series[SE].data[0], Geometry.from_image(series[TSC]), beta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan", default="brain_3T_tpi_birdcage", help="named scan or JSON file")
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--dir", default="sim", help="where the repeats are simulated")
    ap.add_argument("--set", action="append", default=[], help="chain property key=value")
    args = ap.parse_args()
    desc = ScanDescription.load(args.scan)
    # a site-B scan: its own coil file (from its bottle) and tube settings, as accuracy.py
    overrides = {**site_settings(desc, Path(args.dir)), **dict(kv.split("=", 1) for kv in args.set)}
    work = Path(args.dir) / f"{desc.name}_noise_repeats"
    maps, ses = [], []
    truth = geom = None
    for i in range(args.repeats):
        folder = work / f"noise{i:02d}"
        raw = folder / f"{desc.name}.h5"
        if not raw.exists():
            simulate(dataclasses.replace(desc, noise_seed=i), folder)
        tsc, se, geom, beta = reconstruct(raw, overrides)
        maps.append(tsc)
        ses.append(se)
        truth = folder / f"{desc.name}_truth.json"
        print(
            f"repeat {i + 1}/{args.repeats}: median SE {np.median(se[tsc > 20]):.2f} mM", flush=True
        )
    maps_a, ses_a = np.stack(maps), np.stack(ses)
    observed_var = maps_a.var(axis=0, ddof=1)
    predicted_var = np.mean(ses_a.astype(np.float64) ** 2, axis=0)
    pts = geom.points_mm()
    rois = json.loads(truth.read_text())["rois"]
    print(f"\n{desc.name}: {args.repeats} noise realisations")
    print(f"{'ROI':14s} {'voxels':>6s} {'observed SD':>11s} {'predicted SE':>12s} {'ratio':>6s}")
    ratios = []
    for roi in rois:
        inside = np.sum((pts - np.asarray(roi["centre_mm"])) ** 2, axis=-1) <= roi["radius_mm"] ** 2
        if inside.sum() < 3:
            continue
        obs, pred = float(observed_var[inside].mean()), float(predicted_var[inside].mean())
        ratio = np.sqrt(obs / pred)
        tube = roi["name"].startswith("tube")
        if not tube:
            ratios.append(ratio)
        print(
            f"{roi['name']:14s} {int(inside.sum()):6d} {np.sqrt(obs):11.3f} {np.sqrt(pred):12.3f} "
            f"{ratio:6.3f}"
            + ("  (the fit absorbs the tube's own noise: not a target)" if tube else "")
        )
    # the head's tissue by the truth's labels (air and tubes out), and the rest above 20 mM:
    # the tubes and their edges, where undo_tube_blur redraws each tube with its fitted geometry,
    # whose noise the standard error does not carry
    labelled = np.load(truth.with_name(f"{desc.name}_truth.npz"))
    names = [str(n) for n in labelled["label_names"]]
    tissue_ids = [i for i, n in enumerate(names) if n != "air" and not n.startswith("tube")]
    signal = np.mean(maps_a, axis=0) > 20
    head = signal & np.isin(labelled["labels"], tissue_ids)
    head_ratio = float(np.sqrt(observed_var[head].mean() / predicted_var[head].mean()))
    print(f"{'head tissue':14s} {int(head.sum()):6d} {'':11s} {'':12s} {head_ratio:6.3f}")
    rest = signal & ~head
    if rest.any():
        rest_ratio = float(np.sqrt(observed_var[rest].mean() / predicted_var[rest].mean()))
        print(
            f"{'tubes + edges':14s} {int(rest.sum()):6d} {'':11s} {'':12s} {rest_ratio:6.3f}"
            "  (undo_tube_blur's geometry noise is not modelled: not a target)"
        )
    # what no single scan can tell: how much of each ROI's error is bias, not noise
    mean_map = maps_a.mean(axis=0)
    print(f"\nthe mean map of the {args.repeats} realisations (its bias, noise / sqrt(R)):")
    measured = roi_means(mean_map, geom, truth)
    print(table(measured))
    print_reference_table(mean_map, geom, measured, raw, desc, beta)
    worst = max([head_ratio, *ratios], key=lambda r: abs(r - 1.0))
    ok = abs(worst - 1.0) <= 0.2
    print(
        f"uncertainty: scan={desc.name} repeats={args.repeats} head_ratio={head_ratio:.3f} "
        f"worst_roi_ratio={worst:.3f} within_20pct={'yes' if ok else 'no'}"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
