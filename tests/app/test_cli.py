import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gadgets.app.cli import main
from gadgets.core.numerics.trajectory import density_adapted_velocity, gradient_T_per_m


def test_trajectory_command_reports_the_design(tmp_path, capsys):
    out = tmp_path / "traj.npy"
    args = ["trajectory", "DA-3DPR", "--projections", "400", "--samples", "256"]
    args += [
        "--readout-ms",
        "10",
        "--p",
        "0.4",
        "--matrix",
        "56",
        "--fov-mm",
        "224",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    report = json.loads(text[: text.rindex("}") + 1])
    assert report["dwell_us"] == pytest.approx(10e3 / 256, abs=1e-3)
    assert report["kmax_reached"] == pytest.approx(0.5, abs=1e-6)
    v0 = density_adapted_velocity(0.4, 255 * 10e-3 / 256)
    assert report["plateau_gradient_mT_per_m"] == pytest.approx(
        1e3 * gradient_T_per_m(v0, 56, 224.0)
    )
    assert report["dcf_sum"] == pytest.approx(np.pi / 6, rel=2e-3)
    assert np.load(out).shape == (400, 256, 3)


def test_phantom_command_reconstructs_the_truth(tmp_path, capsys):
    args = ["phantom", "TPI", "--matrix", "48", "--projections", "5000", "--samples", "96"]
    assert main(args + ["--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "phantom_summary.json").read_text())
    head = summary["rois"][0]
    assert head["true_mM"] == 40.0 and head["voxels"] > 100
    assert head["recon_mM"] == pytest.approx(40.0, abs=0.6)
    ventricle = summary["rois"][1]
    assert ventricle["recon_mM"] == pytest.approx(140.0, abs=4.0)
    image = np.load(tmp_path / "phantom_recon.npy")
    assert image.shape == (48, 48, 48) and np.iscomplexobj(image)
    assert "ROI centre" in capsys.readouterr().out


def test_bad_arguments_give_a_clear_error(tmp_path, capsys, tiny):
    assert main(["phantom", "--p", "0", "--matrix", "16", "--out", str(tmp_path)]) == 2
    assert "p must be in (0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["phantom", "SPIRAL"])
    # a site chains folder that is not one: refused before anything listens
    assert main(["serve", "--port", "0", "--chains", str(tmp_path / "nowhere")]) == 2
    assert "no chain files (*.xml) there" in capsys.readouterr().err
    # results are never written over an earlier run's, and that is said before the scan
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "images.h5").write_bytes(b"earlier")
    capsys.readouterr()
    assert main(["recon", str(tiny), "--out", str(tmp_path / "rec")]) == 2
    assert "images.h5 exists (from an earlier run?)" in capsys.readouterr().err
    assert (tmp_path / "rec" / "images.h5").read_bytes() == b"earlier"


def test_console_script_is_installed():
    # next to the interpreter running the tests (CI runs .venv/bin/python without activating)
    beside = Path(sys.executable).parent / "sodium-gadgets"
    exe = str(beside) if beside.exists() else shutil.which("sodium-gadgets")
    if exe is None:
        pytest.fail("the sodium-gadgets console script is not installed (pip install -e .)")
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "phantom" in done.stdout and "trajectory" in done.stdout


def test_simulate_lists_the_named_scans(capsys):
    assert main(["simulate", "--list"]) == 0
    out = capsys.readouterr().out
    assert "brain_7T_da3dpr_8ch_dualecho" in out and "tiny" in out
    assert main(["simulate", "no_such_scan", "--out", "/nonexistent"]) == 2
    assert "no scan description" in capsys.readouterr().err


def test_chains_lists_and_copies_the_installed_chains(tmp_path, capsys):
    assert main(["chains", "--copy-to", str(tmp_path / "config")]) == 0
    out = capsys.readouterr().out
    assert "sodium_auto" in out and "sodium_tsc_dicomfinish" in out and "Gadgetron only" in out
    copied = sorted(p.name for p in (tmp_path / "config").glob("*.xml"))
    assert "sodium_tsc.xml" in copied and "sodium_tsc_dicomfinish.xml" in copied


def test_an_empty_scan_list_is_an_error(tmp_path, monkeypatch, capsys):
    import gadgets.resources

    monkeypatch.setattr(gadgets.resources, "scans_dir", lambda: tmp_path)
    assert main(["simulate", "--list"]) == 2
    assert "no scan descriptions installed" in capsys.readouterr().err


def test_openrecon_label_command(tmp_path):
    import json

    assert main(["openrecon-label", "sodium_tsc_b0", "--out", str(tmp_path / "l.json")]) == 0
    doc = json.loads((tmp_path / "l.json").read_text())
    ids = [p["id"] for p in doc["parameters"]]
    assert ids[0] == "config" and "b0_max_ppm" in ids and len(ids) == len(set(ids))


def test_fft_wisdom_command_plans_the_chains_ffts_for_a_scan(
    tmp_path, monkeypatch, capsys, caplog, tiny
):
    """``fft-wisdom`` runs the scan's chain (protocol map) on its first readouts with the FFTs
    timed and stores them: before it, the chain's gridder plans by FFTW's estimate and says so;
    after it (in a new process: only what is stored), from the wisdom, silently."""
    import pyfftw

    from gadgets.app.application import application
    from gadgets.core.numerics import fft
    from gadgets.runtime.client import run_file

    def new_process() -> None:
        pyfftw.forget_wisdom()
        monkeypatch.setattr(fft, "_wisdom_stamp", None)

    def recon_says_estimate() -> bool:
        caplog.clear()
        with caplog.at_level("INFO", logger="gadgets.core.numerics.fft"):
            images = [x for x in run_file(tiny, application()) if hasattr(x, "image_series_index")]
        assert images
        return "no FFTW wisdom for the grid" in caplog.text

    monkeypatch.setenv("SODIUM_GADGETS_CACHE", str(tmp_path))
    new_process()
    assert recon_says_estimate()
    new_process()
    assert main(["fft-wisdom", str(tiny), "--effort", "measure"]) == 0
    assert "2 echo(es) planned (measure)" in capsys.readouterr().out
    assert fft.wisdom_path().stat().st_size > 0
    new_process()
    assert not recon_says_estimate()
    with pytest.raises(SystemExit):
        main(["fft-wisdom", str(tiny), "--effort", "exhaustive"])
