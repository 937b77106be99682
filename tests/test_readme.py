"""The README's commands work as written: every ```bash block is run literally (in a temporary
folder, with this environment's ``sodium-gadgets`` on the PATH), every ``sodium-gadgets`` line
parses with the real argument parser, the test command is the one ``.ci/run`` runs, and the
Python example defines a working gadget."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import ismrmrd
import pytest

from gadgets.app.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(bash|python)\n(.*?)```", README, re.S)
BASH = [text for kind, text in BLOCKS if kind == "bash"]


def _commands(text: str) -> list[str]:
    lines = text.replace("\\\n", " ").splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_first_block_is_install_demo_and_the_ci_test_command():
    install, tests = _commands(BASH[0])
    assert install.endswith("sodium-gadgets demo --out demo")
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_every_sodium_gadgets_line_parses():
    parser = build_parser()
    lines = [c for block in BASH for c in _commands(block) for c in c.split("&&")]
    # and the ones quoted inline, e.g. the administrator's serve command
    lines += [span for span in re.findall(r"`([^`\n]+)`", README.replace("\n  ", " "))]
    invocations = [c.strip() for c in lines if re.match(r"\s*(\S*/)?sodium-gadgets ", c)]
    assert len(invocations) >= 10
    for line in invocations:
        argv = shlex.split(line.split("sodium-gadgets", 1)[1].split("2>")[0].rstrip("& "))
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code == 0:  # --help
                continue
            pytest.fail(f"README command does not parse ({exc}): {line}")


def _run(script: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    wrapped = f"set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}"
    return subprocess.run(
        ["bash", "-c", wrapped], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_readme_demo_command(tmp_path):
    """The main job exactly as the README's first command runs it (without the install)."""
    install, _ = _commands(BASH[0])
    demo = "sodium-gadgets " + install.split("sodium-gadgets ", 1)[1]
    done = _run(demo, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = (tmp_path / "demo" / "summary.txt").read_text()
    assert "R^2" in summary or "R2" in summary
    assert sorted((tmp_path / "demo" / "recon").glob("series010_*.dcm"))
    assert (tmp_path / "demo" / "recon" / "series050_0001.png").exists()


@pytest.mark.parametrize("index", range(1, len(BASH)))
def test_readme_bash_block_runs(index, tmp_path):
    block = BASH[index]
    done = _run(block, tmp_path)
    assert done.returncode == 0, f"README block {index} failed:\n{block}\n{done.stderr[-3000:]}"


def test_readme_python_gadget_example():
    (code,) = [text for kind, text in BLOCKS if kind == "python"]
    namespace: dict = {}
    exec(code, namespace)
    gadget = namespace["Scale"](None, factor="2")
    acq = ismrmrd.Acquisition.from_array(__import__("numpy").ones((1, 4), "complex64"))
    (out,) = list(gadget.process(acq))
    assert out.data[0, 0] == 2
