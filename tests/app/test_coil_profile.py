"""A one-channel coil's receive profile: fitted from a uniform phantom's image (synthetic, then
a simulated bottle through the command line), its coil file, and its use in coil combination."""

import dataclasses
import json

import numpy as np

from gadgets.app.cli import main
from gadgets.core.receive.receive_profile import ReceiveProfile
from gadgets.simulator.receive_coils import sensitivities
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
    profile = ReceiveProfile.from_dict(json.loads(out.read_text()), str(out))
    truth = np.abs(sensitivities("birdcage", 1, POINTS, np.random.default_rng(0))[0])
    np.testing.assert_allclose(profile(POINTS), truth / truth[2], rtol=0.01)
