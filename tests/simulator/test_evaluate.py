import numpy as np
import pytest

from gadgets.core.output.dicom_series import Geometry
from gadgets.simulator.evaluate import psf_limited
from gadgets.simulator.scan import ScanDescription


def test_psf_limited_reference():
    """The noise-free reference of a scan: large regions keep their concentration, the tubes
    (whose blur the chains undo) are the truth, and small fluid ROIs ring with a sharp cut-off
    (the 3D Gibbs effect the chains' apodisation is for)."""
    desc = ScanDescription.load("tiny_b0")
    traj = desc.trajectory_description().trajectory()
    kr = np.linalg.norm(traj[0], axis=1)
    times = np.arange(kr.size) * desc.trajectory_description().dwell_s
    grid = desc.grid(desc.matrix)
    geom = Geometry((desc.matrix,) * 3, (desc.fov_mm,) * 3, grid.position_mm, *grid.dirs)
    phantom = desc.phantom()
    rois = {r.name: r for r in phantom.rois}

    def roi_mean(volume, name):
        d = np.linalg.norm(geom.points_mm() - np.asarray(rois[name].centre_mm), axis=-1)
        return volume[(d <= rois[name].radius_mm) | (d == d.min())].mean()

    sharp = psf_limited(desc, kr, times, desc.te_ms[0] * 1e-3)
    tapered = psf_limited(desc, kr, times, desc.te_ms[0] * 1e-3, k_window_beta=3.0)
    for i in range(4):  # + the head's ringing reaching the tubes (< 1 mM)
        assert roi_mean(sharp, f"tube{i}") == pytest.approx(rois[f"tube{i}"].true_mM, abs=1.2)
    assert roi_mean(sharp, "tumour") == pytest.approx(65.0, abs=4.0)
    # the object's integral is kept (apodisation and T2* weighting leave k = 0 alone)
    assert tapered.sum() == pytest.approx(sharp.sum(), rel=1e-6)
    assert abs(roi_mean(tapered, "csf") - roi_mean(sharp, "csf")) > 1.0
