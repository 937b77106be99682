import ismrmrd.xsd
import numpy as np
import pytest

from gadgets.core.numerics import trajectory as T


def _header(identifier="DA-3DPR", longs=None, doubles=None, strings=None) -> str:
    longs = {"projections": 300, "samples": 128} if longs is None else longs
    doubles = {"p": 0.4, "readout_duration_ms": 10.0} if doubles is None else doubles
    desc = ismrmrd.xsd.trajectoryDescriptionType(
        identifier=identifier,
        userParameterLong=[
            ismrmrd.xsd.userParameterLongType(name=n, value=v) for n, v in longs.items()
        ],
        userParameterDouble=[
            ismrmrd.xsd.userParameterDoubleType(name=n, value=v) for n, v in doubles.items()
        ],
        userParameterString=[
            ismrmrd.xsd.userParameterStringType(name=n, value=v) for n, v in (strings or {}).items()
        ],
    )
    space = ismrmrd.xsd.encodingSpaceType(
        matrixSize=ismrmrd.xsd.matrixSizeType(x=56, y=56, z=56),
        fieldOfView_mm=ismrmrd.xsd.fieldOfViewMm(x=224, y=224, z=224),
    )
    enc = ismrmrd.xsd.encodingType(
        encodedSpace=space,
        reconSpace=space,
        encodingLimits=ismrmrd.xsd.encodingLimitsType(),
        trajectory=ismrmrd.xsd.trajectoryType.RADIAL,
        trajectoryDescription=desc,
    )
    header = ismrmrd.xsd.ismrmrdHeader(
        experimentalConditions=ismrmrd.xsd.experimentalConditionsType(
            H1resonanceFrequency_Hz=78_800_000
        ),
        encoding=[enc],
    )
    return ismrmrd.xsd.ToXML(header)


@pytest.mark.parametrize("scheme", ["golden_means", "spiral", "wong_roos", "cones"])
def test_directions_cover_the_sphere_uniformly(scheme, rng):
    n = 4000
    d = T.directions(n, scheme)
    assert d.shape == (n, 3)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
    assert np.linalg.norm(d.mean(axis=0)) < 0.01
    # every spherical cap holds its share of directions (area fraction (1 - cos a) / 2)
    for axis in rng.normal(size=(20, 3)):
        axis /= np.linalg.norm(axis)
        for half_angle in (0.3, 0.8, 1.4):
            expected = n * (1 - np.cos(half_angle)) / 2
            count = np.sum(d @ axis > np.cos(half_angle))
            assert abs(count - expected) < 4 * np.sqrt(expected) + 3, (scheme, half_angle)


def test_golden_means_prefix_is_uniform():
    d = T.directions(5000, "golden_means")[:300]  # an interrupted scan
    assert np.linalg.norm(d.mean(axis=0)) < 0.03


def test_unknown_scheme_is_rejected():
    with pytest.raises(ValueError, match="unknown direction scheme"):
        T.directions(10, "random")


def test_radial_3d_is_straight_and_reaches_the_edge():
    k = T.radial_3d(T.directions(50), 64)
    r = np.linalg.norm(k, axis=-1)
    np.testing.assert_allclose(r, np.broadcast_to(np.linspace(0, 0.5, 64), r.shape), atol=1e-6)


def test_density_adapted_profile():
    samples, dwell, p = 256, 40e-6, 0.4
    k = T.da_3dpr(T.directions(20), samples, dwell, p)
    t = np.arange(samples) * dwell
    r = np.linalg.norm(k[0].astype(np.float64), axis=-1)
    assert r[0] == 0.0
    assert r[-1] == pytest.approx(0.5, abs=1e-6)
    assert np.all(np.diff(r) > 0)
    v0 = T.density_adapted_velocity(p, t[-1])
    k0 = 0.2
    lin = t < k0 / v0
    np.testing.assert_allclose(r[lin], v0 * t[lin], rtol=1e-6, atol=1e-7)  # constant gradient
    # beyond k0: |k|^2 d|k|/dt = v0 k0^2, i.e. uniform sampling density (Nagel et al. 2009)
    tt = np.linspace(k0 / v0 + 1e-6, t[-1], 1000)
    rr = T.density_adapted_radius(tt, p, t[-1])
    flux = rr[1:-1] ** 2 * np.gradient(rr, tt)[1:-1]
    np.testing.assert_allclose(flux, v0 * k0**2, rtol=1e-3)
    # all projections share the radial profile and keep their direction
    rr_all = np.linalg.norm(k, axis=-1)
    np.testing.assert_allclose(rr_all, rr_all[:1].repeat(20, 0), atol=1e-6)


def test_physical_gradient_of_a_7t_protocol():
    # N 56, FOV 224 mm (4 mm), 10 ms readout, p 0.4: gamma G0 T = k0 + (kmax^3 - k0^3)/(3 k0^2)
    v0 = T.density_adapted_velocity(0.4, 10e-3)
    assert v0 == pytest.approx((0.2 + (0.125 - 0.008) / 0.12) / 10e-3)
    g = T.gradient_T_per_m(v0, 56, 224.0)
    assert g == pytest.approx(v0 * 56 / 0.224 / 11.262e6)
    assert 1e-3 < g < 10e-3  # a few mT/m, as in the literature


def test_tpi_constant_gradient_on_cones():
    # fine time steps: finite differences measure chords, short of the arc by dphi^2 / 24
    samples, dwell, p = 4000, 2.5e-6, 0.3
    k = T.tpi(300, samples, dwell, p).astype(np.float64)
    t = np.arange(samples) * dwell
    r = np.linalg.norm(k, axis=-1)
    # same radial profile as DA-3DPR
    np.testing.assert_allclose(r[0], T.density_adapted_radius(t, p, t[-1]), atol=1e-6)
    # constant gradient magnitude: |dk/dt| = v0 at every step
    v0 = T.density_adapted_velocity(p, t[-1])
    speed = np.linalg.norm(np.diff(k, axis=1), axis=-1) / dwell
    np.testing.assert_allclose(speed, v0, rtol=1e-3)
    # each readout stays on its cone (constant polar angle) and twists beyond k0
    polar = np.arccos(np.clip(k[:, 1:, 2] / r[:, 1:], -1, 1))
    np.testing.assert_allclose(polar, polar[:, :1].repeat(samples - 1, 1), atol=1e-4)
    azimuth = np.unwrap(np.arctan2(k[:, 1:, 1], k[:, 1:, 0]), axis=1)
    assert np.all(np.abs(azimuth[:, -1] - azimuth[:, 0]) > 0.5)


def test_golden_angle_2d():
    k = T.golden_angle_2d(100, 32)
    assert k.shape == (100, 32, 2)
    angles = np.arctan2(k[:, -1, 1], k[:, -1, 0])
    step = np.mod(np.diff(angles), 2 * np.pi)
    np.testing.assert_allclose(step, np.pi * (3 - np.sqrt(5)), atol=1e-5)
    full = T.golden_angle_2d(10, 64, centre_out=False)
    np.testing.assert_allclose(full[:, 32], 0.0, atol=1e-7)


def test_trajectory_from_header_matches_direct_design():
    xml = _header()
    desc = T.trajectory_description(xml)
    assert desc == T.TrajectoryDescription("DA-3DPR", 300, 128, 10.0, 0.4, "spiral")
    assert desc.dwell_s == pytest.approx(10e-3 / 128)
    direct = T.da_3dpr(T.directions(300, "spiral"), 128, 10e-3 / 128, 0.4)
    np.testing.assert_array_equal(desc.trajectory(), direct)
    # the object model and the XML text give the same answer
    assert T.trajectory_description(ismrmrd.xsd.CreateFromDocument(xml)) == desc


def test_header_variants():
    tpi = T.trajectory_description(_header("TPI", doubles={"p": 0.3, "readout_duration_ms": 10.0}))
    assert tpi.directions == "cones"
    assert tpi.trajectory().shape == (300, 128, 3)
    radial = T.trajectory_description(
        _header(
            "3DPR", doubles={"readout_duration_ms": 5.0}, strings={"directions": "golden_means"}
        )
    )
    np.testing.assert_array_equal(
        radial.trajectory(), T.radial_3d(T.directions(300, "golden_means"), 128)
    )


def test_header_errors_name_what_is_missing():
    with pytest.raises(ValueError, match="lacks p"):
        T.trajectory_description(_header(doubles={"readout_duration_ms": 10.0}))
    with pytest.raises(ValueError, match="lacks projections"):
        T.trajectory_description(_header(longs={"samples": 128}))
    with pytest.raises(ValueError, match="unknown trajectory identifier"):
        T.trajectory_description(_header("SPIRAL"))
    with pytest.raises(ValueError, match="not valid XML"):
        T.trajectory_description("<ismrmrdHeader><encoding>")


def test_header_without_description():
    minimal = (
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding></encoding></ismrmrdHeader>'
    )
    assert T.trajectory_description(minimal) is None
