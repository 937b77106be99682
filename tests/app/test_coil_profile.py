"""A one-channel coil's receive profile: fitted from a uniform phantom's image (synthetic, then
a simulated bottle through the command line), its coil file, and its use in coil combination."""

import dataclasses

import numpy as np

from gadgets.app.cli import main
from gadgets.core.receive.coil_file import read_coil_file
from gadgets.core.receive.coil_identity import CoilIdentity
from gadgets.simulator.receive_coils import CoilSpec, sensitivities
from gadgets.simulator.scan import ScanDescription, simulate

# where it matters: the tubes of the simulated heads, mid-brain, the eyes
POINTS = np.array([[88, 35, 0], [-88, -35, 0], [0, 0, 0], [-13, 2, 14], [-32, -76, -30]], float)


def test_coil_profile_command_measures_the_simulated_birdcage(tmp_path, capsys):
    """The installation step on a reduced simulated bottle: the profile it writes is the
    simulator's birdcage within 1% where tubes and head sit."""
    desc = ScanDescription.load("uniform_bottle_3T")
    small = dict(projections=2000, samples=128, readout_ms=10.0)
    desc = dataclasses.replace(desc, matrix=32, trajectory={**desc.trajectory, **small})
    simulate(desc, tmp_path)
    out = tmp_path / "cage.json"
    assert main(["coil-profile", str(tmp_path / f"{desc.name}.h5"), "--out", str(out)]) == 0
    assert "fit RMS" in capsys.readouterr().out
    profile = read_coil_file(out)
    assert profile.measured_with == CoilIdentity(1, ("SIM-birdcage1:00",), 3.0)
    truth = np.abs(sensitivities(CoilSpec("birdcage", 1), POINTS, np.random.default_rng(0))[0])
    ratio = profile(POINTS) / truth
    np.testing.assert_allclose(ratio / ratio[2], 1.0, atol=0.01)
