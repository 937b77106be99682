import numpy as np
import pytest

from gadgets.simulator.head import Cylinder, Ellipsoid, Grid, smooth_indicator, volume_fraction

N = 24


FOV = 192.0  # 8 mm voxels


FINE = 60  # 2.5 x


def _grids():
    return Grid((N,) * 3, FOV / N), Grid((FINE,) * 3, FOV / FINE)


def test_partial_volume_is_exact_enough():
    _, fine = _grids()
    r = 37.0
    vol = volume_fraction(Ellipsoid((5.0, -3.0, 11.0), (r, r, r)), fine).sum() * fine.voxel_mm**3
    assert vol == pytest.approx(4 / 3 * np.pi * r**3, rel=1e-3)
    cyl = volume_fraction(Cylinder((20.0, 4.0, -6.0), 12.0, 50.0), fine).sum() * fine.voxel_mm**3
    assert cyl == pytest.approx(np.pi * 12.0**2 * 50.0, rel=1e-3)


@pytest.mark.parametrize(
    "shape_obj",
    [
        Cylinder((20.0, 4.0, -6.0), 12.0, 50.0, axis=(0.0, 0.6, 0.8)),
        Ellipsoid((9.0, -5.0, 3.0), (30, 45, 20)),
    ],
    ids=["cylinder", "ellipsoid"],
)
def test_truth_rasteriser_and_simulated_object_agree(shape_obj):
    # the recon-grid truth (voxel averages) and the simulator's object (analytic transform under
    # a narrow Gaussian) describe the same shape: same voxels, same orientation
    _, fine = _grids()
    exact = volume_fraction(shape_obj, fine)
    smooth = smooth_indicator(shape_obj, fine, 1.0)  # sigma 1 cycle/voxel: a slight blur only
    assert np.abs(exact - smooth).mean() < 0.01
    inside = exact > 0.99
    assert smooth[inside].min() > 0.8 and smooth[exact < 0.01].max() < 0.2
