"""The reliability suite (``benchmarks/stress.py``) at its CI size: fuzzing, concurrent scans
bit for bit, disconnects, idle and non-reading clients, file-descriptor exhaustion, the
allow-list, kill -9 during delivery, a full disk, two patients in one folder, the memory budget
and memory after a session. Each part checks its own numbers against the targets; this test
fails if any part does, and shows the report. Marked slow (2-3 minutes on 2 cores): CI runs it
on its own, after the default suite (.ci/run)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_reliability_suite_passes_at_ci_size(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "stress.py"),
            "--small",
            "--work",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = done.stdout + done.stderr[-4000:]
    assert done.returncode == 0, report
    last = done.stdout.strip().splitlines()[-1]
    assert last == "stress: 11 of 11 parts ok", report
    for needed in ("server alive -> ok", "identical to the solo run -> ok", "refused in"):
        assert needed in done.stdout, report
