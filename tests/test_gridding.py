"""StreamingGridder on its own, on the tiny simulated scan: the streamed echo volumes equal a
batch adjoint NUFFT of the whole scan with the analytic density weights (an independent path
through :class:`~gadgets.core.numerics.nufft.Nufft`), what it tells later steps
(:class:`~gadgets.volume_meta.GriddedVolume`), readouts without ``traj``, repeated projections,
MFI bins, and degraded input."""

import ismrmrd
import numpy as np
import pytest
from conftest import relative_error

from gadgets.core.numerics.density import radial_dcf
from gadgets.core.numerics.nufft import Nufft
from gadgets.gridding import StreamingGridder
from gadgets.runtime.client import read_raw
from gadgets.runtime.header import parse_header
from gadgets.runtime.notice import Notice
from gadgets.volume_meta import GriddedVolume
from gadgets.volumes import read_meta


def _readouts(path):
    xml, items = read_raw(path)
    return xml, [a for a in items if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]


def _grid(xml, readouts, **props):
    gadget = StreamingGridder(parse_header(xml), oversampling="2", kernel_width="6", **props)
    for acq in readouts:
        assert list(gadget.process(acq)) == []  # everything is held until the end
    out = list(gadget.finish())
    images = {int(o.contrast): o for o in out if isinstance(o, ismrmrd.Image)}
    return images, [o for o in out if isinstance(o, Notice)]


def test_streamed_volumes_equal_a_batch_adjoint_and_say_what_they_are(tiny_dir):
    xml, readouts = _readouts(tiny_dir / "tiny.h5")
    images, notices = _grid(xml, readouts)
    assert sorted(images) == [0, 1] and notices == []
    header = parse_header(xml)
    for echo, image in images.items():
        mine = [a for a in readouts if a.idx.contrast == echo]
        traj = np.stack([a.traj for a in mine])  # (P, S, 3)
        data = np.concatenate([a.data for a in mine], axis=1)  # (C, P * S)
        ref = Nufft(traj.reshape(-1, 3), (20, 20, 20), 2.0, 6).adjoint(
            data, radial_dcf(traj).reshape(-1)
        )
        assert relative_error(ref, image.data) < 1e-4
        info = GriddedVolume.from_meta(read_meta(image), "test")
        assert info.coils == 4 and info.bins_hz == (0.0,) and info.readouts == 300
        assert info.dwell_s == pytest.approx(mine[0].sample_time_us * 1e-6)
        assert info.samples == 48
        assert info.k_max_cpp == pytest.approx(np.linalg.norm(traj[0], axis=1).max(), abs=1e-6)
        assert info.echo_time_s == pytest.approx(header.sequenceParameters.TE[echo] * 1e-3)
        assert image.image_series_index == 100 + echo
        assert np.allclose(image.field_of_view, (224.0, 224.0, 224.0))


def test_readouts_without_traj_use_the_header_and_repeats_are_averaged(tiny_dir):
    xml, readouts = _readouts(tiny_dir / "tiny.h5")
    ref, _ = _grid(xml, readouts)
    xml2, bare = _readouts(tiny_dir / "tiny_notraj.h5")
    assert bare[0].trajectory_dimensions == 0
    described, _ = _grid(xml2, bare)
    assert relative_error(ref[0].data, described[0].data) < 1e-5
    twice, _ = _grid(xml, readouts + readouts)  # a second average of every projection
    assert relative_error(ref[1].data, twice[1].data) < 1e-6
    assert GriddedVolume.from_meta(read_meta(twice[1]), "test").readouts == 600


def test_mfi_bins_are_extra_channels(tiny_dir):
    xml, readouts = _readouts(tiny_dir / "tiny.h5")
    images, _ = _grid(xml, readouts[:40], b0_max_ppm="1", max_bad_fraction="1")
    info = GriddedVolume.from_meta(read_meta(images[0]), "test")
    bins = np.asarray(info.bins_hz)
    assert bins.size >= 3 and 0.0 in bins and bins[-1] == pytest.approx(78.9, abs=1)  # 1 ppm, 7T
    assert images[0].data.shape[0] == 4 * bins.size


def test_degraded_input_is_reported_or_refused(tiny_dir):
    xml, readouts = _readouts(tiny_dir / "tiny.h5")
    images, notices = _grid(xml, readouts[: len(readouts) // 2])
    assert any("only 150 of 300 projections" in n.text for n in notices)
    bad = [a for a in readouts]
    for i in (3, 7):  # within 1% of 600 readouts: dropped with a notice
        bad[i].data[:, 2] = np.nan
    images, notices = _grid(xml, bad)
    assert any("2 readouts with NaN" in n.text for n in notices)
    for i in range(10, 20):
        bad[i].data[:, 2] = np.inf
    with pytest.raises(ValueError, match="the raw data are corrupt"):
        _grid(xml, bad)


def test_bad_properties_are_refused_when_the_chain_loads(tiny_dir):
    xml, _ = _readouts(tiny_dir / "tiny.h5")
    header = parse_header(xml)
    for props, reason in (
        ({"dcf": "voronoi"}, "not one of analytic, pipe_menon"),
        ({"k_window_beta": "-1"}, "below the minimum 0"),
        ({"oversampling": "0.5"}, "below the minimum 1"),
        ({"kernel_width": "2.5"}, "expected an integer"),
    ):
        with pytest.raises(ValueError, match=reason):
            StreamingGridder(header, **props)
