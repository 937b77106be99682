"""Every shipped chain, as each kind of client meets it: the FIRE / OpenRecon reference client
(a client that knows only the standard MRD messages, :mod:`mrd_client`), Gadgetron's side of a
chain of ``<external>`` steps (:mod:`gadgetron_side`), and ``sodium-gadgets send``. Each gets
images it can display, nothing it cannot read, and values that agree with ``recon``."""

import json

import ismrmrd
import numpy as np
import pytest
from conftest import served
from gadgetron_side import run_chain
from mrd_client import run as mrd_run

from gadgets.app.application import recon_file, send_file
from gadgets.core.numerics.geometry import Geometry
from gadgets.core.output.mrd_slices import scale_of
from gadgets.resources import chains_dir
from gadgets.runtime.client import read_raw
from gadgets.volumes import read_meta

SHIPPED = ("sodium_preview", "sodium_tsc", "sodium_tsc_b0", "sodium_auto")
CONSOLE_META = (
    "SeriesDescription",
    "DataRole",
    "ImageProcessingHistory",
    "WindowCenter",
    "WindowWidth",
    "SequenceDescriptionAdditional",
    "ImageComments",
    "RescaleSlope",
    "RescaleIntercept",
    "GADGETRON_ImageNumber",
)


@pytest.fixture(scope="module")
def server():
    with served() as srv:
        yield srv


@pytest.fixture(scope="module")
def birdcage_raw(birdcage):
    return birdcage[0] / "tiny_birdcage.h5"


def _volumes(out_dir):
    """The recon's volumes by series index."""
    ds = ismrmrd.Dataset(str(out_dir / "images.h5"), "dataset", create_if_needed=False)
    try:
        return {
            int(n.split("_")[1]): ds.read_image(n, 0) for n in ds.list() if n.startswith("image_")
        }
    finally:
        ds.close()


def _check_slices(images, volumes):
    """2D uint16 slices placed slice by slice, with the console's meta and the documented scale,
    equal to the recon's volumes within half a step."""
    by_series: dict[int, list] = {}
    for img in images:
        by_series.setdefault(int(img.image_series_index), []).append(img)
    assert set(by_series) == set(volumes)
    for series, slices in by_series.items():
        volume = volumes[series]
        meta = read_meta(slices[0])
        if meta.get("DataRole") == "QA":  # the RGB picture travels as it is
            assert slices[0].data.shape[0] == 3 and len(slices) == 1
            continue
        assert all(s.data.dtype == np.uint16 and s.data.shape[:2] == (1, 1) for s in slices)
        for key in CONSOLE_META:
            assert key in meta, (series, key)
        unit = str(meta.get("Units", "1"))
        slope, intercept = float(meta["RescaleSlope"]), float(meta["RescaleIntercept"])
        truth = np.abs(volume.data[0]) if np.iscomplexobj(volume.data) else volume.data[0]
        if unit != "1":  # a quantity: the documented fixed scale
            assert (slope, intercept) == scale_of(unit)
        else:  # arbitrary units: its 99.5th percentile at 4000
            assert slope == pytest.approx(np.percentile(truth, 99.5) / 4000, rel=1e-6)
        geom = Geometry.from_image(volume)
        assert [s.slice for s in slices] == list(range(geom.shape[0]))
        step = np.diff([np.asarray(s.position) for s in slices], axis=0)
        assert np.allclose(step, geom.voxel_mm[2] * np.asarray(geom.slice_dir), atol=1e-3)
        values = np.stack([s.data[0, 0] for s in slices]) * slope + intercept
        inside = (truth > intercept) & (truth < intercept + 65535 * slope)
        assert np.max(np.abs(values - truth)[inside]) <= slope / 2 + 1e-3


@pytest.mark.parametrize("chain", SHIPPED)
def test_fire_reference_client_gets_displayable_images(chain, server, tiny, birdcage_raw, tmp_path):
    raw = birdcage_raw if chain in ("sodium_tsc", "sodium_auto") else tiny
    got = mrd_run(raw, server.port, chain)
    assert got.closed and set(got.ids) <= {5, 1022, 4}
    assert not [t for t in got.texts if "ERROR" in t], got.texts
    recon_file(raw, tmp_path, chain, {"images": "volumes"})
    _check_slices(got.images, _volumes(tmp_path))


def test_sodium_auto_is_the_protocol_map(server, birdcage_raw, tmp_path):
    """The one-step chain gives what the protocol map gives: the same images, bit for bit."""
    a = recon_file(birdcage_raw, tmp_path / "auto", "sodium_auto")
    b = recon_file(birdcage_raw, tmp_path / "default")
    va, vb = _volumes(a.path), _volumes(b.path)
    assert sorted(va) == sorted(vb) == [10, 50]
    assert all(np.array_equal(va[s].data, vb[s].data) for s in va)


def test_openrecon_parameters_set_chain_properties(server, birdcage_raw, tiny, tmp_path):
    """The JSON parameters set properties exactly as --set does (same maps, same refusals)."""
    smooth = mrd_run(birdcage_raw, server.port, "sodium_tsc", {"smoothing_fwhm_mm": 8})
    overrides = {"smoothing_fwhm_mm": "8", "images": "volumes"}
    recon_file(birdcage_raw, tmp_path, "sodium_tsc", overrides)
    _check_slices(smooth.images, _volumes(tmp_path))
    plain = recon_file(birdcage_raw, tmp_path / "plain", "sodium_tsc", {"images": "volumes"})
    assert not np.allclose(_volumes(plain.path)[10].data, _volumes(tmp_path)[10].data, atol=1)
    # the JSON's "config" picks the chain for the openrecon config name
    picked = mrd_run(tiny, server.port, "openrecon", {"config": "sodium_preview"})
    assert {read_meta(i)["SeriesDescription"] for i in picked.images} == {"Na23 image [a.u.]"}
    # a bad parameter is refused as --set refuses it, and the server serves on
    bad = mrd_run(tiny, server.port, "sodium_tsc", {"tube_class": "gel"})
    assert bad.closed and any("tube_class" in t and "not one of" in t for t in bad.texts)
    unknown = mrd_run(tiny, server.port, "sodium_tsc", {"fwhm": 2})
    assert any("no step has a property 'fwhm'" in t for t in unknown.texts)


def test_send_announces_dicom_and_gets_volumes_and_files(server, tiny, tmp_path):
    result, out = send_file(tiny, tmp_path, port=server.port, config="sodium_preview")
    assert result.closed and not result.errors and len(out.dicoms) == 2 * 20
    assert out.images == 2  # the 3D volumes
    quiet, out2 = send_file(
        tiny, tmp_path / "b", port=server.port, config="sodium_preview", accept_dicom=False
    )
    assert quiet.closed and out2.dicoms == [] and out2.images == 2 * 20  # slices


@pytest.mark.parametrize("scan,chain", [("birdcage_raw", "sodium_tsc"), ("tiny", "sodium_tsc_b0")])
def test_chains_under_gadgetrons_side_of_the_protocol(scan, chain, tmp_path_factory, request):
    """Each step a process of its own, as Gadgetron runs them: only messages Gadgetron accepts,
    never a DICOM file; the images equal the recon's; a refused calibration reaches the client
    as Gadgetron's ERROR text after the images."""
    raw = request.getfixturevalue(scan)
    xml, acquisitions = read_raw(raw)
    runs = run_chain((chains_dir() / f"{chain}.xml").read_text(), xml, acquisitions)
    final = runs[-1]
    assert all(r.closed for r in runs)
    images = [i for i in final.items if isinstance(i, ismrmrd.Image)]
    out = tmp_path_factory.mktemp("gt")
    recon_file(raw, out, chain, {"images": "volumes"})
    _check_slices(images, _volumes(out))
    errors = [e for r in runs for e in r.errors]
    if scan == "tiny":  # 4 loops, no coil file: refused, said as a warning
        assert any(e.startswith("WARNING: ") and "TSC calibration failed" in e for e in errors)
        status = "FAILED"
    else:
        assert errors == []
        status = "OK"
    records = [read_meta(i).get("SodiumCalibration") for i in images]
    assert {json.loads(r)["status"] for r in records if r} == {status}


def test_openrecon_label_defaults_are_accepted_parameters(server, birdcage_raw, tmp_path):
    """The label's parameters are properties of the chain: a console sending every default back
    gets the chain's own result, with no refusal."""
    from gadgets.app.openrecon import label

    doc = label("sodium_tsc", chains_dir())
    assert {"general", "reconstruction", "parameters"} <= set(doc)
    params = {p["id"]: p["default"] for p in doc["parameters"]}
    assert params["config"] == "sodium_tsc" and "folder" not in params and "pacs_host" not in params
    kinds = {p["id"]: p["type"] for p in doc["parameters"]}
    assert kinds["tube_class"] == "choice" and kinds["min_r2"] == "double"
    assert kinds["undo_tube_blur"] == "boolean" and kinds["block"] == "int"
    got = mrd_run(birdcage_raw, server.port, "openrecon", params)
    assert got.closed and not [t for t in got.texts if "ERROR" in t], got.texts
    recon_file(birdcage_raw, tmp_path, "sodium_tsc", {"images": "volumes"})
    _check_slices(got.images, _volumes(tmp_path))
