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
