"""End to end, one test per quantitative chain, on small simulated scans with known truth:
the chain chosen by the protocol map, TSC ROI means against the truth, DICOM series and meta,
B0 map accuracy, and the refusal to calibrate when the tubes do not fit."""

import re
import subprocess

import ismrmrd
import numpy as np
import pytest
from conftest import recon_scan, require_tool

from gadgets.app.application import application, recon_file
from gadgets.core.numerics.geometry import Geometry
from gadgets.core.output.dicom_files import read_series
from gadgets.runtime.chain import load_chain
from gadgets.runtime.client import read_raw
from gadgets.runtime.notice import Notice
from gadgets.runtime.protocol_map import chain_for_protocol
from gadgets.runtime.runner import ChainRunner
from gadgets.simulator.evaluate import roi_means
from gadgets.simulator.scan import ScanDescription, simulate
from gadgets.volumes import read_meta

# the `birdcage` (tiny_birdcage, calibrated) and `refused` (tiny, loops) runs are session
# fixtures in conftest.py: tests/test_qa.py looks at the same runs


@pytest.fixture(scope="module")
def dual_echo(tmp_path_factory):
    return recon_scan(tmp_path_factory, "tiny_b0")


def _r2(comments: str) -> float:
    return float(re.search(r"R2 = ([0-9.]+)", comments).group(1))


def _errors(sim, name, img):
    rois = roi_means(img.data[0], Geometry.from_image(img), sim / f"{name}_truth.json")
    return {r.name: r.error_mM for r in rois}


def test_sodium_tsc_on_a_birdcage_scan(birdcage):
    sim, out, images = birdcage
    assert set(images) == {"Na23 TSC [mmol/L]", "Na23 TSC QA"}
    tsc = images["Na23 TSC [mmol/L]"]
    meta = read_meta(tsc)
    assert meta["DataRole"] == "Quantitative" and meta["Units"] == "mmol/L"
    assert meta["GADGETRON_SeqDescription"] == "_TSC"
    assert _r2(meta["ImageComments"]) >= 0.999
    err = _errors(sim, "tiny_birdcage", tsc)
    # tubes: the fitted reference itself; white matter: the birdcage's ~6% fall-off to the
    # tubes is divided out with its measured profile (chains/coils/birdcage_3T.json)
    assert all(abs(err[f"tube{i}"]) <= 4.0 for i in range(4)), err
    assert abs(err["white_matter"]) <= 2.0, err
    # mid-brain CSF (one voxel): +10 mM without the profile, or with a sharp k-space cut-off
    assert abs(err["csf"]) <= 5.0, err
    # the DICOM series: values equal the map within the 16-bit quantisation
    volume, datasets = read_series(sorted(out.path.glob("series010_*.dcm")))
    assert datasets[0].SeriesDescription == "Na23 TSC [mmol/L]"
    assert np.max(np.abs(volume - tsc.data[0])) <= 0.05 + 1e-6


def test_sodium_tsc_b0_on_a_dual_echo_scan(dual_echo):
    sim, out, images = dual_echo
    assert set(images) == {
        "Na23 TSC [mmol/L]",
        "Na23 23NaR [mmol/L eq]",
        "Na23 B0 map [Hz]",
        "Na23 TSC QA",
    }
    truth = np.load(sim / "tiny_b0_truth.npz")
    names = list(truth["label_names"])
    brain = np.isin(truth["labels"], [names.index(n) for n in ("white_matter", "grey_matter")])
    b0 = images["Na23 B0 map [Hz]"].data[0]
    rms = float(np.sqrt(np.mean((b0 - truth["b0_hz"])[brain] ** 2)))
    assert rms <= 3.0, rms
    assert float(np.sqrt(np.mean(truth["b0_hz"][brain] ** 2))) > 3 * rms  # a real field
    tsc = images["Na23 TSC [mmol/L]"]
    assert _r2(read_meta(tsc)["ImageComments"]) >= 0.999
    err = _errors(sim, "tiny_b0", tsc)
    assert abs(err["white_matter"]) <= 3.0, err
    # 23NaR removes the long-T2* fluid signal: CSF/vitreous fall far below brain's share
    nar = images["Na23 23NaR [mmol/L eq]"]
    means = {
        r.name: r.measured_mM
        for r in roi_means(nar.data[0], Geometry.from_image(nar), sim / "tiny_b0_truth.json")
    }
    assert means["vitreous"] < 0.5 * means["white_matter"] * 140 / 33


@pytest.fixture(scope="module")
def array32(tmp_path_factory):
    return recon_scan(tmp_path_factory, "tiny_32ch")


def test_sodium_tsc_on_a_32_channel_loop_array(array32):
    """Protocol sodium_tsc_32ch: the coil file's loops remove the receive profile, the tubes fit
    a straight line and the brain reads right; without the coil file the scan is refused."""
    sim, out, images = array32
    assert set(images) == {"Na23 TSC [mmol/L]", "Na23 TSC QA"}
    tsc = images["Na23 TSC [mmol/L]"]
    assert _r2(read_meta(tsc)["ImageComments"]) >= 0.999
    err = _errors(sim, "tiny_32ch", tsc)
    assert abs(err["white_matter"]) <= 5.0 and abs(err["tumour"]) <= 5.0, err
    assert abs(err["vitreous"]) <= 6.0, err
    dciodvfy = require_tool("dciodvfy")
    for path in [*sorted(out.path.glob("series010_*.dcm"))[::10], out.path / "series050_0001.dcm"]:
        done = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        errors = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, (path.name, errors)
    assert (out.path / "series050_0001.png").stat().st_size > 10_000
    plain = recon_file(sim / "tiny_32ch.h5", sim / "plain", overrides={"coil_models": ""})
    assert any("TSC calibration failed" in t for t in plain.texts), plain.texts


def _run_chain(path, keep=lambda i, acq: acq):
    """The protocol's chain on a file in-process, each readout through ``keep`` (None: not
    sent): the returned images by series description, and the texts for the client."""
    xml, items = read_raw(path)
    chains = application().chains_dir
    entry = chain_for_protocol(xml, chains)
    runner = ChainRunner(load_chain(entry.chain, chains), xml, entry.overrides)
    out = []
    for i, acq in enumerate(items):
        acq = keep(i, acq)
        if acq is not None:
            out += runner.push(acq)
    out += runner.finish()
    images = {read_meta(m)["SeriesDescription"]: m for m in out if isinstance(m, ismrmrd.Image)}
    return images, [m.text for m in out if isinstance(m, Notice)]


def test_degraded_input_nan_readouts_and_a_cut_short_scan(birdcage):
    """A few readouts with NaNs are dropped with a warning, the map is still right; a scan cut
    off half way still returns its series, with a warning to the client."""
    sim = birdcage[0]

    def nan_some(i, acq):
        if i in (40, 500, 1700):
            acq.data[:, 5] = np.nan
        return acq

    images, texts = _run_chain(sim / "tiny_birdcage.h5", nan_some)
    assert any("3 readouts with NaN" in t for t in texts), texts
    err = _errors(sim, "tiny_birdcage", images["Na23 TSC [mmol/L]"])
    assert abs(err["white_matter"]) <= 4.0, err
    images, texts = _run_chain(sim / "tiny_birdcage.h5", lambda i, a: a if i < 1260 else None)
    assert any(re.search(r"only 12\d\d of 2500 projections", t) for t in texts), texts
    assert "Na23 TSC QA" in images and len(images) >= 2


def test_loop_array_without_bias_correction_is_refused_not_wrong(refused):
    """A loop array with no coil file for it: the receive profile makes tubes near the loops
    brighter than brain, so no map is made; the scan returns the uncalibrated image and says
    why (the combination's warning names every coil file and why it does not fit)."""
    sim, out, images = refused
    assert "Na23 TSC [mmol/L]" not in images
    assert "Na23 uncalibrated [a.u.]" in images
    assert any("TSC calibration failed" in t for t in out.texts)
    cause = "no coil file for this coil (4 channels, labels SIM-loops4:00..., 7 T; birdcage_3T: "
    assert any(t.startswith(f"WARNING: {cause}") for t in out.texts), out.texts
    meta = read_meta(images["Na23 uncalibrated [a.u.]"])
    assert meta["Units"] == "1" and "DataRole" not in meta


def test_bad_chain_properties_are_refused_with_their_reason(tmp_path_factory):
    sim = tmp_path_factory.mktemp("bad")
    simulate(ScanDescription.load("tiny"), sim)
    for overrides, reason in (
        ({"tube_concentrations_mM": "30"}, "2 to 8 values"),
        ({"method": "magic"}, "not one of adaptive, sos, roemer"),
        ({"dcf": "voronoi"}, "not one of analytic, pipe_menon"),
    ):
        with pytest.raises(Exception, match=reason):
            recon_file(sim / "tiny.h5", sim / "out", "sodium_tsc_b0", overrides)
