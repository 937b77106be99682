"""B0Correction on its own: echo volumes made the way the gridder makes them for a known field
(each MFI bin is the readout's sum of ``exp(2 pi i (f_bin - f) t)``, the echoes differ by the
field's phase over dTE), the field map it finds, the correction it applies, and its refusals."""

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import isocentre_volume

from gadgets.b0_correction import B0Correction
from gadgets.core.numerics.b0 import mfi_frequencies
from gadgets.runtime.context import StepContext
from gadgets.volume_meta import GriddedVolume
from gadgets.volumes import read_meta, volume_image

SHAPE = (16, 16, 16)
TE_S = (0.3e-3, 2.3e-3)
DWELL_S, SAMPLES = 40e-6, 200  # an 8 ms readout


def _header(echoes=2):
    contrast = SimpleNamespace(minimum=0, maximum=echoes - 1)
    enc = SimpleNamespace(encodingLimits=SimpleNamespace(contrast=contrast))
    return SimpleNamespace(encoding=[enc])


def _field():
    z, y, x = np.indices(SHAPE)
    return (30.0 * np.sin(x / 4.0) + 6.0 * (z - 8) / 8).astype(np.float32)  # +-36 Hz


def _echoes(field_hz, bins_hz, rho=None):
    """Bin images ``(bins, *SHAPE)`` per echo, as gridding the demodulated data gives them."""
    rho = np.ones(SHAPE) if rho is None else rho
    t = np.arange(SAMPLES) * DWELL_S
    out = []
    for echo, te in enumerate(TE_S):
        phase = np.exp(-2j * np.pi * field_hz * te)
        blur = np.mean(
            np.exp(
                2j * np.pi * (bins_hz[:, None, None, None, None] - field_hz[None, ..., None]) * t
            ),
            axis=-1,
        )
        info = GriddedVolume(
            tuple(bins_hz),
            DWELL_S,
            tuple(np.linspace(0, 0.5, SAMPLES)),
            0.5,
            0.0,
            1000,
            echo_time_s=te,
            combination="adaptive",
        )
        data = (rho * phase * blur * (0.8 if echo else 1.0)).astype(np.complex64)
        img = volume_image(
            data, isocentre_volume(160.0), info.to_meta(), contrast=echo, series_index=100 + echo
        )
        out.append(img)
    return out


def _run(gadget, images):
    out = []
    for img in images:
        out += list(gadget.process(img))
    return out + list(gadget.finish())


def test_field_map_and_mfi_correction_of_known_field():
    fmap = _field()
    bins = mfi_frequencies(40.0, SAMPLES * DWELL_S)
    gadget = B0Correction(_header(), smoothing_fwhm_vox="1")
    out = _run(gadget, _echoes(fmap, bins))
    echoes = [o for o in out if read_meta(o).get("Units") != "Hz"]
    (field_image,) = [o for o in out if read_meta(o).get("Units") == "Hz"]
    inner = (slice(3, -3),) * 3
    err = field_image.data[0] - fmap
    assert np.sqrt(np.mean(err[inner] ** 2)) < 1.0  # Hz
    assert read_meta(field_image)["SeriesDescription"] == "Na23 B0 map [Hz]"
    first = echoes[0]
    info = GriddedVolume.from_meta(read_meta(first), "test")
    assert info.bins_hz == (0.0,) and info.b0_correction.startswith("echoes 1-2 (dTE 2.00 ms)")
    assert info.combination == "adaptive"  # what earlier steps wrote is kept
    corrected = np.abs(first.data[0])
    uncorrected = np.abs(_echoes(fmap, bins)[0].data[bins.size // 2])
    assert np.max(np.abs(corrected[inner] - 1.0)) < 0.03  # the blur is undone
    assert np.min(uncorrected[inner]) < 0.9  # and there was blur to undo


def test_one_echo_passes_at_its_centre_bin_uncorrected(caplog):
    bins = mfi_frequencies(40.0, SAMPLES * DWELL_S)
    images = _echoes(_field(), bins)[:1]
    out = _run(B0Correction(_header(echoes=1)), images)
    (only,) = out
    assert np.array_equal(only.data[0], images[0].data[bins.size // 2])
    assert GriddedVolume.from_meta(read_meta(only), "test").b0_correction == "none"
    assert "no off-resonance correction" in caplog.text


def test_map_file_of_the_wrong_shape_and_missing_echo_times_are_refused(tmp_path):
    bins = np.zeros(1)
    path = tmp_path / "map.npy"
    np.save(path, np.zeros((4, 4, 4), np.float32))
    site = StepContext(step="B0Correction", resource_dirs=(tmp_path,))
    with pytest.raises(ValueError, match=r"field map \(4, 4, 4\) float32, images \(16, 16, 16\)"):
        _run(B0Correction(_header(), site, map_file=str(path)), _echoes(_field(), bins))
    # the same file outside the server's folders: the client is not told what is wrong with it
    with pytest.raises(ValueError, match="is outside this server's folders, or missing"):
        _run(B0Correction(_header(), map_file=str(path)), _echoes(_field(), bins))
    images = _echoes(_field(), bins)
    for img in images:  # a header without TE: the gridder writes no echo time
        meta = read_meta(img)
        del meta["SodiumEchoTimeS"]
        img.attribute_string = volume_image(
            img.data, isocentre_volume(160.0), meta
        ).attribute_string
    with pytest.raises(ValueError, match="B0Correction needs the echo time"):
        _run(B0Correction(_header()), images)
