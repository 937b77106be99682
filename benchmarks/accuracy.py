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
import resource
import time
from pathlib import Path

import ismrmrd
import numpy as np

from gadgets.core.dicom import Geometry
from gadgets.runtime.client import recon_file
from gadgets.simulator.evaluate import roi_means, table
from gadgets.simulator.scan import ScanDescription, simulate
from gadgets.volumes import read_meta

SCANS = ("brain_3T_tpi_birdcage", "brain_7T_da3dpr_8ch_dualecho", "brain_7T_radial_32ch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scans", nargs="*", default=list(SCANS))
    parser.add_argument("--dir", default="sim", help="where simulated scans are kept")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a chain property (repeatable)")  # fmt: skip
    args = parser.parse_args()
    overrides = dict(pair.split("=", 1) for pair in args.set)
    sim = Path(args.dir)
    for name in args.scans:
        raw = sim / f"{name}.h5"
        if not raw.exists():
            simulate(ScanDescription.load(name), sim)
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
                print(table(roi_means(img.data[0], geom, sim / f"{name}_truth.json")))
            if meta.get("Units") == "Hz":
                names = list(truth["label_names"])
                brain = np.isin(truth["labels"], [names.index(n) for n in
                                                  ("white_matter", "grey_matter")])  # fmt: skip
                err = img.data[0] - truth["b0_hz"]
                print(f"B0 map RMS error in brain: {np.sqrt(np.mean(err[brain] ** 2)):.2f} Hz")
        ds.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
