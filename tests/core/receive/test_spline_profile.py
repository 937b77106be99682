"""The measured receive profile: fitted to a synthetic bottle image whose profile is known, held
where the bottle was, stored and read back exactly, and refused when malformed."""

import json

import numpy as np
import pytest
from scipy import ndimage

from gadgets.core.receive.coil_identity import CoilIdentity
from gadgets.core.receive.spline_profile import SplineProfile, fit_spline_profile

N, VOXEL = 48, 5.0


def _points():
    axis = (np.arange(N) - N // 2) * VOXEL
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([x, y, z], axis=-1)  # (nz, ny, nx, 3) patient mm


def _loops(points):
    """A loop-array-like profile: bright beside four 'loops' on a 130 mm circle, 5x the centre."""
    p = np.full(points.shape[:-1], 0.4)
    for a in np.deg2rad([0, 90, 180, 270]):
        c = 130 * np.array([np.cos(a), np.sin(a), 0.0])
        p += 2.0 * np.exp(-np.sum((points - c) ** 2, axis=-1) / (2 * 45.0**2))
    return p


def _bottle(points, radius_mm=100.0):
    r = np.hypot(points[..., 0], points[..., 1])
    inside = (r <= radius_mm) & (np.abs(points[..., 2]) <= 100)
    return ndimage.gaussian_filter(inside.astype(float), 0.8)


def test_the_fitted_profile_is_the_true_one_inside_the_bottle():
    pts = _points()
    rng = np.random.default_rng(1)
    image = 100.0 * _loops(pts) * _bottle(pts) + rng.normal(0, 0.5, pts.shape[:-1])
    profile = fit_spline_profile(image, pts, "synthetic", measured_with=CoilIdentity(4))
    # where tubes and head sit: mid-brain, beside the head, near the bottle's wall
    probe = np.array([[0, 0, 0], [40, -30, 20], [85, 0, 0], [0, -85, 10], [-60, 60, -40]], float)
    ratio = profile(probe) / _loops(probe)
    assert np.all(np.abs(ratio / ratio[0] - 1) < 0.02), ratio / ratio[0]
    assert profile.fit_rms < 0.02
    # the extension past the edge was checked, and the profile holds only near the bottle
    assert np.isfinite(profile.extension_rms)
    assert profile.valid_at(probe).all()
    assert not profile.valid_at(np.array([[0, 0, 150.0], [0, 0, 125.0]])).any()


def test_a_coil_file_reads_back_the_same_profile(tmp_path):
    pts = _points()
    image = 100.0 * _loops(pts) * _bottle(pts)
    made = fit_spline_profile(image, pts, "head4", measured_with=CoilIdentity(4, ("a",) * 4, 7.0))
    path = tmp_path / "head4.json"
    made.to_json(path)
    read = SplineProfile.from_dict(json.loads(path.read_text()), str(path))
    probe = pts[::6, ::6, ::6].reshape(-1, 3)
    inside = made.valid_at(probe)
    np.testing.assert_allclose(read(probe[inside]), made(probe[inside]), rtol=2e-4)
    assert np.array_equal(read.valid_at(probe), inside)
    assert read.measured_with == made.measured_with and read.combination == "adaptive"
    assert path.stat().st_size < 150_000


def test_a_malformed_profile_is_refused():
    good = {"origin_mm": [0, 0, 0], "spacing_mm": 10, "shape": [4, 4, 4], "valid": "1" * 64}
    SplineProfile.from_dict({"spline_profile": {**good, "log_coefficients": [0.0] * 64}})
    with pytest.raises(ValueError, match="x.json: spline profile of the wrong size"):
        SplineProfile.from_dict(
            {"spline_profile": {**good, "log_coefficients": [0.0] * 63}}, "x.json"
        )
    with pytest.raises(ValueError, match="needs origin_mm, spacing_mm"):
        SplineProfile.from_dict({"spline_profile": {"shape": [4, 4, 4]}})
