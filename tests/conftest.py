"""Shared test helpers: exact references that do not go through the gridding code, and the
end-to-end chain runs that several test modules look at (session-scoped: each runs once)."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy.special import j1


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the DCF / FFTW cache of the test run out of the user's cache."""
    old = os.environ.get("SODIUM_GADGETS_CACHE")
    os.environ["SODIUM_GADGETS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("SODIUM_GADGETS_CACHE", None)
    else:
        os.environ["SODIUM_GADGETS_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tiny`` scan (4 loops, dual echo, 300 projections) simulated once per session:
    ``tiny.h5``, ``tiny_notraj.h5`` and the truth. Tests read it, never change it."""
    from gadgets.simulator.scan import ScanDescription, simulate

    out = tmp_path_factory.mktemp("tiny")
    simulate(ScanDescription.load("tiny"), out)
    return out


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path) -> Path:
    return tiny_dir / "tiny.h5"


@pytest.fixture(scope="session")
def header_xml(tiny: Path) -> str:
    from gadgets.runtime.client import read_raw

    return read_raw(tiny)[0]


def external_step(module: str, target: str, props=()) -> str:
    """A chain's ``<external>`` Python step with ``props`` (name, value) pairs."""
    p = "".join(f'<property name="{k}" value="{v}"/>' for k, v in props)
    return (
        f'<external><execute name="{module}" target="{target}" type="python"/>'
        f"<configuration>{p}</configuration></external>"
    )


def chain_xml(*steps: str) -> str:
    """A chain (Gadgetron stream configuration, version 2) of these steps."""
    return (
        "<configuration><version>2</version><stream>" + "".join(steps) + "</stream></configuration>"
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261121)


def constant_fov_kspace(traj: np.ndarray, n: int) -> np.ndarray:
    """Exact k-space of the image that is 1 in every voxel of the n^d matrix:
    ``prod_a sum_r exp(-2 pi i k_a r) = prod_a exp(i pi k_a) sin(pi n k_a) / sin(pi k_a)``."""
    k = np.asarray(traj, np.float64).reshape(-1, np.asarray(traj).shape[-1])
    out = np.ones(k.shape[0], np.complex128)
    for col in range(k.shape[1]):
        x = k[:, col]
        s = np.sin(np.pi * x)
        tiny = np.abs(s) < 1e-12
        out *= np.where(
            tiny, n, np.exp(1j * np.pi * x) * np.sin(np.pi * n * x) / np.where(tiny, 1.0, s)
        )
    return out


def ideal_constant_fov_image(n: int, ndim: int) -> np.ndarray:
    """What a perfect reconstruction from a ball (disc) of radius 0.5 in k-space gives for the
    constant image: the n^d box convolved with the band-limit's point spread function
    ``int_{|k|<0.5} exp(2 pi i k r) dk`` (3D: (sin a - a cos a) / (2 pi^2 rho^3), a = pi rho;
    2D: J1(pi rho) / (2 rho))."""
    d = np.arange(-n, n)
    grids = np.meshgrid(*([d] * ndim), indexing="ij")
    rho = np.sqrt(sum(g.astype(np.float64) ** 2 for g in grids))
    safe = np.where(rho > 0, rho, 1.0)
    if ndim == 3:
        a = np.pi * safe
        psf = np.where(rho > 0, (np.sin(a) - a * np.cos(a)) / (2 * np.pi**2 * safe**3), np.pi / 6)
    else:
        psf = np.where(rho > 0, j1(np.pi * safe) / (2 * safe), np.pi / 4)
    box = np.zeros((2 * n,) * ndim)
    box[(slice(0, n),) * ndim] = 1.0
    full = np.fft.ifftn(np.fft.fftn(np.fft.ifftshift(psf)) * np.fft.fftn(box)).real
    return full[(slice(0, n),) * ndim]


def loop_array_object(shape, voxel_mm):
    """A head-sized sphere (1.0) with a brighter ball and two bright 'tubes' near the edge."""
    from gadgets.core.numerics.geometry import Geometry

    fov = tuple(n * voxel_mm for n in shape[::-1])
    pts = Geometry(shape, fov, (0.0, 0.0, 0.0), (1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)).points_mm()
    r = np.linalg.norm(pts, axis=-1)
    rho = (r < 75).astype(float)
    rho[np.linalg.norm(pts - [20, 10, 0], axis=-1) < 15] = 2.0
    for x in (-95.0, 95.0):
        rho[np.linalg.norm(pts[..., :2] - [x, 0], axis=-1) < 12] = 3.0
    return rho, pts


def loop_array_scan(model, rho, pts, rng, noise=0.01, handedness=1):
    """Prewhitened channel volumes of rho seen by the model's loops with random gains, cable
    phases and correlated noise; returns (images, W)."""
    c = model.channels
    gains = rng.uniform(0.7, 1.3, c) * np.exp(2j * np.pi * rng.random(c))
    sens = gains[:, None] * model.fields(pts.reshape(-1, 3), handedness)
    centre = np.argmin(np.linalg.norm(pts.reshape(-1, 3), axis=1))
    sens /= np.linalg.norm(sens[:, centre])  # noise relative to the signal mid-head
    a = rng.normal(size=(c, c)) + 1j * rng.normal(size=(c, c))
    psi = a @ a.conj().T / c + np.eye(c)
    w = np.linalg.inv(np.linalg.cholesky(psi))  # prewhitening: W psi W^H = I
    raw = sens * rho.reshape(-1)
    raw += (
        np.linalg.cholesky(psi)
        @ (rng.normal(size=raw.shape) + 1j * rng.normal(size=raw.shape))
        * noise
    )
    return (w @ raw).reshape((c,) + rho.shape), w


@pytest.fixture(scope="module")
def loops8():
    from gadgets.core.receive.loop_model import CoilModel
    from gadgets.resources import coils_dir

    return CoilModel.from_json(coils_dir() / "loops_8ch.json")


def qa_phantom(n=32, vox=7.0):
    """A head (40 mM) and four tubes along z (30-120 mM), as (TSC map, voxel mm, QA tubes at
    their true places), for QA pictures."""
    from gadgets.core.output.qa import QaTube

    z, y, x = (np.mgrid[:n, :n, :n] - n // 2) * vox
    tsc = np.zeros((n, n, n), np.float32)
    tsc[(x / 70) ** 2 + (y / 80) ** 2 + (z / 75) ** 2 < 1] = 40.0
    tubes = []
    for c, (cx, cy) in zip(
        (30.0, 60.0, 90.0, 120.0), [(88, -35), (-88, -35), (88, 35), (-88, 35)], strict=True
    ):
        tsc[((x - cx) ** 2 + (y - cy) ** 2 < 100) & (np.abs(z) < 25)] = c
        tubes.append(QaTube((cx, cy, 0.0), (0.0, 0.0, 1.0), 10.0, 50.0, 0.01 * c + 0.05, c))
    return tsc, (vox, vox, vox), tubes


def dicom_geometry(shape=(6, 20, 24)):
    """A small oblique-free volume geometry off the isocentre, for DICOM tests."""
    from gadgets.core.numerics.geometry import Geometry

    return Geometry(shape, (240.0, 200.0, 60.0), (1.0, 2.0, 3.0), (1, 0, 0), (0, 1, 0), (0, 0, 1))


#: 4 mm isotropic voxels, (x, y, z)
VOXEL_4MM = np.array([4.0, 4.0, 4.0])


def readout_weighting(tube_class="agarose", field=7.0, readout_s=10e-3):
    """The k-space weighting of a 10 ms readout with linear ``|k|(t)`` (plain 3D radial), TE
    0.3 ms, for tube templates (:func:`~gadgets.core.calibration.tube_templates.readout_filter`)."""
    from gadgets.core.calibration.tube_templates import readout_filter
    from gadgets.core.numerics import relaxation as rx

    kr = np.linspace(0, 0.5, 256)
    t = kr / 0.5 * readout_s
    return readout_filter(kr, t, rx.relaxation(tube_class, field).decay, 0.3e-3)


def isocentre_volume(fov_mm: float):
    """What a volume image takes its geometry from (an acquisition's fields): at the isocentre,
    axis-aligned, ``fov_mm`` cubed."""
    from types import SimpleNamespace

    return SimpleNamespace(
        position=(0.0, 0.0, 0.0),
        read_dir=(1.0, 0, 0),
        phase_dir=(0, 1.0, 0),
        slice_dir=(0, 0, 1.0),
        patient_table_position=(0.0, 0.0, 0.0),
        field_of_view=(fov_mm,) * 3,
    )


def image_arrays(path: Path) -> list[np.ndarray]:
    """The data of every image in an ``images.h5``, series by series."""
    import ismrmrd

    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        series = [name for name in sorted(ds.list()) if name.startswith("image_")]
        return [
            ds.read_image(s, i).data.copy() for s in series for i in range(ds.number_of_images(s))
        ]
    finally:
        ds.close()


def delivered(folder: Path) -> dict[int, list[Path]]:
    """The series a DICOM delivery folder holds, by series number: each series' files, in
    ``FOLDER/<StudyInstanceUID>/series<NNN>_<SeriesInstanceUID>/``."""
    out: dict[int, list[Path]] = {}
    for series in sorted(Path(folder).glob("*/series*_*")):
        number = int(series.name.split("_")[0].removeprefix("series"))
        out[number] = sorted(series.iterdir())
    return out


def write_cfl(base: Path, array: np.ndarray) -> None:
    """BART .cfl/.hdr: complex64, column-major, 16 dimensions in the header."""
    a = np.asarray(array, np.complex64)
    dims = list(a.shape) + [1] * (16 - a.ndim)
    Path(f"{base}.hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    a.ravel(order="F").tofile(f"{base}.cfl")


def read_cfl(base: Path) -> np.ndarray:
    dims = [int(x) for x in Path(f"{base}.hdr").read_text().splitlines()[1].split()]
    return np.fromfile(f"{base}.cfl", np.complex64).reshape(dims, order="F")


def recon_scan(tmp_path_factory: pytest.TempPathFactory, name: str):
    """Simulate a named scan and reconstruct it with the chain its protocol maps to: the
    simulation folder, the :class:`OutputFolder`, and the first image of each series by its
    ``SeriesDescription``."""
    import ismrmrd

    from gadgets.app.application import recon_file
    from gadgets.simulator.scan import ScanDescription, simulate
    from gadgets.volumes import read_meta

    sim = tmp_path_factory.mktemp(name)
    simulate(ScanDescription.load(name), sim)
    out = recon_file(sim / f"{name}.h5", sim / "recon")  # chain from the protocol map
    images = {}
    ds = ismrmrd.Dataset(str(out.path / "images.h5"), "dataset", create_if_needed=False)
    try:
        for series in ds.list():
            if series.startswith("image_"):
                img = ds.read_image(series, 0)
                images[read_meta(img)["SeriesDescription"]] = img
    finally:
        ds.close()
    return sim, out, images


@pytest.fixture(scope="session")
def birdcage(tmp_path_factory):
    """``tiny_birdcage`` through ``sodium_tsc``: a calibration that works."""
    return recon_scan(tmp_path_factory, "tiny_birdcage")


@pytest.fixture(scope="session")
def refused(tmp_path_factory):
    """``tiny`` (4 loops) through ``sodium_tsc_b0``: a calibration that is refused."""
    return recon_scan(tmp_path_factory, "tiny")


def require_tool(name: str) -> str:
    """Path of an external tool; a missing tool fails under CI (where .ci/run installs it) and
    skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (.ci/run should install it)")
        pytest.skip(f"{name} not installed")
    return path


def relative_error(ref: np.ndarray, x: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(x) - ref) / np.linalg.norm(ref))


@contextlib.contextmanager
def served():
    """The embedded server with this application's chains, on a free port, in a thread."""
    from gadgets.app.application import application
    from gadgets.runtime.server import ReconServer

    srv = ReconServer(application(), "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
