"""The CoilCombiner gadget: the whitening message it consumes, the coil model it fits, the
receive profile it removes, and the notice when no coil file fits."""

from types import SimpleNamespace

import ismrmrd
import numpy as np
import pytest
from conftest import loop_array_object, loop_array_scan

from gadgets.coil_combination import CoilCombiner
from gadgets.volume_meta import GriddedVolume
from gadgets.volumes import read_meta, volume_image


def _volume(data, meta):
    like = ismrmrd.Image.from_array(np.zeros((1, 1, 1), np.complex64))
    like.position = (0.0, 0.0, 0.0)
    like.read_dir, like.phase_dir, like.slice_dir = (1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)
    return volume_image(data, like, meta)


def test_combiner_gadget_uses_the_whitening_message(loops8):
    rng = np.random.default_rng(11)
    shape = (32, 32, 32)
    rho, pts = loop_array_object(shape, 7.0)
    images, w = loop_array_scan(loops8, rho, pts, rng)
    fov = (32 * 7.0,) * 3
    gridded = GriddedVolume((0.0,), 1e-5, (0.0, 0.5), 0.5, 0.0, readouts=100, coils=8)
    meta = {**gridded.to_meta(), "fov_mm": fov}
    gadget = CoilCombiner(None, coil_models="loops_8ch,loops_32ch")
    white = _volume(
        w[None, None].astype(np.complex64), {"DataRole": "NoiseWhitening", "fov_mm": fov}
    )
    assert list(gadget.process(white)) == []  # consumed
    (out,) = list(gadget.process(_volume(images.astype(np.complex64), meta)))
    # with the header's matrix and FOV the fields are computed when the whitening arrives
    matrix = SimpleNamespace(x=32, y=32, z=32)
    fov_ns = SimpleNamespace(x=fov[0], y=fov[1], z=fov[2])
    recon = SimpleNamespace(matrixSize=matrix, fieldOfView_mm=fov_ns)
    header = SimpleNamespace(encoding=[SimpleNamespace(reconSpace=recon)])
    early = CoilCombiner(header, coil_models="loops_8ch")
    assert list(early.process(white)) == [] and early._fields is not None
    (same,) = list(early.process(_volume(images.astype(np.complex64), meta)))
    assert np.allclose(same.data, out.data, rtol=1e-4, atol=1e-4 * np.abs(out.data).max())
    assert read_meta(out)["SodiumCombination"] == "model:loops_8ch"
    est = np.abs(out.data[0])
    centre = np.linalg.norm(pts, axis=-1) < 8
    tube = np.linalg.norm(pts[..., :2] - [95.0, 0], axis=-1) < 8
    assert est[tube].mean() / est[centre].mean() == pytest.approx(3.0, rel=0.02)
    # no model for 5 channels: adaptive, the profile stays (and a warning in the log)
    plain = CoilCombiner(None, coil_models="loops_8ch")
    meta5 = {**meta, "SodiumCoils": 5}
    warning, out5 = list(plain.process(_volume(images[:5].astype(np.complex64), meta5)))
    assert warning.client_text.startswith(
        "WARNING: no coil file for this coil (5 channels; loops_8ch: 5 channels, the coil file's "
    )
    assert read_meta(out5)["SodiumCombination"] == "adaptive"


def _flat_profile(tmp_path, whitening, channels=8):
    """A coil file whose profile is 1 everywhere, keeping a bottle's ``whitening`` (or none)."""
    from gadgets.core.receive.coil_identity import CoilIdentity
    from gadgets.core.receive.spline_profile import SplineProfile

    shape = (30, 30, 30)
    profile = SplineProfile(
        name="flat",  # both files: the combination is named after the profile
        origin_mm=np.full(3, -170.0),
        spacing_mm=12.0,
        log_coefficients=np.zeros(shape),
        valid=np.ones(shape, bool),
        measured_with=CoilIdentity(channels),
        whitening=whitening,
    )
    path = tmp_path / ("flat.json" if whitening is not None else "flat_no_whitening.json")
    profile.to_json(path)
    return str(path)


def test_a_patient_scan_is_combined_as_if_whitened_like_its_bottle(loops8, tmp_path):
    """Two scans of one coil estimate its noise covariance each; an adaptive combination leaves
    ``|W s|`` in the image, so the bottle's profile holds for a patient only with the bottle's
    ``W``. The coil file keeps it, and with ``rewhiten_to_bottle`` the combination of the
    patient's channels (whitened with their own ``W``) is the one of the channels whitened with
    the bottle's, to 1e-4; without it they differ by ~1%. A scan with no whitening, or a channel
    whose noise doubled, is said."""
    from gadgets.core.numerics.channel_combination import walsh_weights
    from gadgets.core.numerics.noise import noise_covariance, whitening_matrix

    rng = np.random.default_rng(5)
    shape = (32, 32, 32)
    rho, pts = loop_array_object(shape, 7.0)
    sens = loops8.fields(pts.reshape(-1, 3), 1) * np.exp(2j * np.pi * rng.random(8))[:, None]
    raw = (sens * rho.reshape(-1)).reshape((8, *shape))
    a = rng.normal(size=(8, 8)) + 1j * rng.normal(size=(8, 8))
    psi = a @ a.conj().T / 8 + np.eye(8)

    def estimate(n_samples=12288, boost=1.0):
        scaled = psi.copy()
        scaled[3, :] *= boost
        scaled[:, 3] *= boost
        white = rng.normal(size=(8, n_samples)) + 1j * rng.normal(size=(8, n_samples))
        return whitening_matrix(noise_covariance(np.linalg.cholesky(scaled) @ white))

    w_bottle, w_scan = estimate(), estimate()
    bottle_white = np.einsum("cd,d...->c...", w_bottle, raw)
    expected = np.abs(np.sum(walsh_weights(bottle_white).conj() * bottle_white, axis=0))
    fov = (32 * 7.0,) * 3
    meta = {
        **GriddedVolume((0.0,), 1e-5, (0.0, 0.5), 0.5, 0.0, readouts=100, coils=8).to_meta(),
        "fov_mm": fov,
    }
    inside = rho > 0

    def combined(coil_file, w, rewhiten=True):
        gadget = CoilCombiner(None, coil_models=coil_file, rewhiten_to_bottle=str(rewhiten).lower())
        if w is not None:
            message = {"DataRole": "NoiseWhitening", "fov_mm": fov}
            assert list(gadget.process(_volume(w[None, None].astype(np.complex64), message))) == []
        data = np.einsum("cd,d...->c...", w if w is not None else np.eye(8), raw)
        *notices, out = list(gadget.process(_volume(data.astype(np.complex64), meta)))
        assert read_meta(out)["SodiumCombination"] == "profile:flat"
        ratio = np.abs(out.data[0])[inside] / expected[inside]
        texts = [n.client_text for n in notices if hasattr(n, "client_text")]
        return ratio / ratio.mean(), texts

    ratio, notices = combined(_flat_profile(tmp_path, w_bottle), w_scan)
    np.testing.assert_allclose(ratio, 1.0, atol=1e-4)
    assert notices == []
    plain, _ = combined(_flat_profile(tmp_path, None), w_scan)
    assert np.ptp(plain) > 0.005, np.ptp(plain)  # what keeping the bottle's whitening is for
    off, _ = combined(_flat_profile(tmp_path, w_bottle), w_scan, rewhiten=False)  # the default
    np.testing.assert_allclose(off, plain, atol=1e-5)

    _, notices = combined(_flat_profile(tmp_path, w_bottle), None)
    assert any("this scan sent none" in n for n in notices), notices
    changed = estimate(boost=4.0)
    for rewhiten in (True, False):  # said whether or not it is rewhitened
        _, notices = combined(_flat_profile(tmp_path, w_bottle), changed, rewhiten)
        assert any("channel noise differs from the bottle's" in n for n in notices), notices
    assert combined(_flat_profile(tmp_path, w_bottle), None, rewhiten=False)[1] == []
