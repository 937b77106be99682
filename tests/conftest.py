"""Shared test helpers: exact references that do not go through the gridding code, and the
end-to-end chain runs that several test modules look at (session-scoped: each runs once)."""

from __future__ import annotations

import os
import shutil
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
