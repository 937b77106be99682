import re

from gadgets.app.cli import main


def test_demo_runs_end_to_end_and_reuses_its_simulation(tmp_path, capsys):
    """``demo`` on a small scan: the server's TSC series is valid DICOM, the summary has the
    tube fit and the ROI table, and a second run reuses the simulated raw data."""
    import pydicom

    out = tmp_path / "demo"
    assert main(["demo", "--scan", "tiny_birdcage", "--out", str(out)]) == 0
    raw = out / "raw" / "tiny_birdcage.h5"
    first_mtime = raw.stat().st_mtime_ns
    files = sorted((out / "recon").glob("series010_*.dcm"))
    assert len(files) == 40  # one per slice of the 40^3 matrix
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.SeriesDescription == "Na23 TSC [mmol/L]" and ds.pixel_array.shape == (40, 40)
    summary = (out / "summary.txt").read_text()
    assert summary == capsys.readouterr().out.split("\n", 1)[1].rsplit("summary written", 1)[0]
    assert "chain: sodium_tsc" in summary and "simulated in" in summary
    fit = re.search(r"R\^2 = ([0-9.]+)", summary)
    assert fit and float(fit.group(1)) >= 0.99
    residuals = re.findall(r"^\s+(30|60|90|120) +([-+][0-9.]+)$", summary, re.M)
    assert [c for c, _ in residuals] == ["30", "60", "90", "120"]
    assert all(abs(float(r)) < 5 for _, r in residuals)
    rows = dict(re.findall(r"^\s+(\w+)\s+[0-9.]+\s+[0-9.]+\s+([-+][0-9.]+)\s+\d+$", summary, re.M))
    assert {"white_matter", "tube0", "tube3"} <= set(rows)
    assert abs(float(rows["white_matter"])) <= 4.0  # as the chain test on the same scan
    for label in ("simulate", "stream", "last readout sent -> last result", "total"):
        assert label in summary

    assert main(["demo", "--scan", "tiny_birdcage", "--out", str(out)]) == 0
    assert raw.stat().st_mtime_ns == first_mtime
    summary = (out / "summary.txt").read_text()
    assert "reused" in summary and "(cached)" in summary
    assert len(sorted((out / "recon").glob("series010_*.dcm"))) == 40


def test_demo_fails_clearly_on_an_unknown_scan(tmp_path, capsys):
    assert main(["demo", "--scan", "no_such_scan", "--out", str(tmp_path)]) == 2
    assert "no scan description" in capsys.readouterr().err
