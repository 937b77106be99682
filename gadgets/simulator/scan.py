"""A simulated sodium scan: description file -> ISMRMRD raw data + ground truth.

A scan is described by a small JSON file (``simulated_raw/NAME.json``, see the README there);
:func:`simulate` turns it into

* ``NAME.h5``: ISMRMRD raw data following the raw-data conventions (README.md, Conventions; noise
  scans first, then one readout per projection and echo, each its own excitation one TR apart, with
  ``traj`` in cycles/pixel, ``center_sample = 0``, echoes as ``contrast``, flags and LPS geometry);
  ``NAME_notraj.h5`` optionally, the same without ``traj`` (trajectory from the header only);
* ``NAME_truth.npz``: ``tsc_mM``, ``b0_hz`` and ``labels`` on the recon grid (z, y, x), and the
  ``label_names``;
* ``NAME_truth.json``: the ROIs (sphere centre in patient mm, radius, true mM), tissues, tubes,
  geometry, coil and noise model, SNR, timings.

The same seed gives the same bytes.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import ismrmrd
import ismrmrd.xsd as X
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype, acquisition_header_dtype

from gadgets.core.numerics.density import radial_dcf
from gadgets.core.numerics.trajectory import TrajectoryDescription
from gadgets.resources import scans_dir
from gadgets.simulator.field import b0_map_hz, larmor_hz
from gadgets.simulator.head import Grid, Phantom, Tube, brain_phantom, default_tubes
from gadgets.simulator.receive_coils import CoilSpec, noise_covariance, sensitivities
from gadgets.simulator.signal import OBJECT_SIGMA, simulate_kspace

__all__ = ["TICK_S", "fine_matrix", "ScanDescription", "simulate"]

log = logging.getLogger(__name__)

TICK_S = 2.5e-3  # acquisition_time_stamp unit (vendor ticks)


@dataclass
class ScanDescription:
    """What a description file holds (JSON keys of the same names)."""

    name: str
    seed: int
    field_T: float
    matrix: int
    fov_mm: float
    trajectory: dict
    te_ms: list[float]
    tr_ms: float
    flip_deg: float
    coil: dict
    snr_wm: float
    tubes: dict
    head: bool = True
    protocol: str = "sodium_tsc"
    fine_factor: float = 2.5
    b0_scale: float = 1.0
    noise_readouts: int = 32
    noise_dwell_us: float | None = None
    geometry: dict = field(default_factory=dict)
    write_notraj: bool = False
    description: str = ""
    eyes: dict = field(default_factory=dict)
    noise_seed: int | None = None
    #: how the scanning site reconstructs it (benchmarks/accuracy.py): ``bottle``, the scan
    #: its coil file is measured from; ``set``, the protocol's chain settings
    site: dict = field(default_factory=dict)

    @classmethod
    def load(cls, name_or_path: str | Path) -> ScanDescription:
        """A named scan from ``simulated_raw/`` or a JSON file path."""
        path = Path(name_or_path)
        if not path.suffix:
            path = scans_dir() / f"{name_or_path}.json"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in scans_dir().glob("*.json")))
            raise ValueError(f"no scan description {name_or_path!r} (known: {known})")
        data = json.loads(path.read_text())
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path.name}: unknown keys {sorted(unknown)}")
        return cls(**data)

    def trajectory_description(self) -> TrajectoryDescription:
        t = self.trajectory
        return TrajectoryDescription(
            identifier=t["identifier"],
            projections=int(t["projections"]),
            samples=int(t["samples"]),
            readout_duration_ms=float(t["readout_ms"]),
            p=float(t.get("p", 1.0)),
            directions=t.get("directions", "cones" if t["identifier"] == "TPI" else "spiral"),
        )

    def grid(self, matrix: int) -> Grid:
        g = self.geometry
        dirs = tuple(
            tuple(float(v) for v in g.get(key, default))
            for key, default in (
                ("read_dir", (1, 0, 0)),
                ("phase_dir", (0, 1, 0)),
                ("slice_dir", (0, 0, 1)),
            )
        )
        d = np.asarray(dirs)
        if not np.allclose(d @ d.T, np.eye(3), atol=1e-6):
            raise ValueError(f"{self.name}: read/phase/slice directions must be orthonormal")
        position = tuple(float(v) for v in g.get("position_mm", (0, 0, 0)))
        return Grid((matrix,) * 3, self.fov_mm / matrix, position, dirs)

    def tube_list(self) -> list[Tube]:
        t = self.tubes
        if "list" in t:
            known = {"tsc_mM", "centre_mm", "radius_mm", "length_mm", "class", "axis"}
            known |= {"t1_ms", "t2s_ms", "fractions"}
            tubes = []
            for e in t["list"]:
                unknown = set(e) - known
                if unknown:
                    raise ValueError(f"{self.name}: tube keys {sorted(unknown)} unknown")
                tubes.append(
                    Tube(
                        float(e["tsc_mM"]),
                        tuple(e["centre_mm"]),
                        float(e.get("radius_mm", 10.0)),
                        float(e.get("length_mm", 50.0)),
                        e.get("class", "saline"),
                        tuple(float(v) for v in e.get("axis", (0.0, 0.0, 1.0))),
                        e.get("t1_ms"),
                        tuple(e["t2s_ms"]) if "t2s_ms" in e else None,
                        tuple(e["fractions"]) if "fractions" in e else None,
                    )
                )
            return tubes
        return default_tubes(list(t.get("concentrations_mM", [])), t.get("class", "saline"))

    def coil_spec(self) -> CoilSpec:
        return CoilSpec.from_dict(self.coil)

    def phantom(self) -> Phantom:
        return brain_phantom(self.field_T, self.tube_list(), head=self.head, eyes=self.eyes)


def fine_matrix(desc: ScanDescription) -> int:
    """The simulator's fine grid (an even matrix, ``fine_factor`` times the recon matrix)."""
    m = int(np.ceil(desc.fine_factor * desc.matrix))
    return m + (m % 2)


def _uid(seed: int, what: str) -> str:
    """A DICOM UID under the UUID-derived root 2.25, deterministic from the seed."""
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, f"sodium-gadgets/{seed}/{what}").int)


def _compartments(phantom: Phantom, fractions, desc: ScanDescription):
    """Relaxation components: amplitude maps A_q (TSC x saturation x fraction) and T2*_q."""
    by_t2: dict[float, np.ndarray] = {}
    for t in phantom.tissues:
        if t.name not in fractions or t.tsc_mM == 0:
            continue
        sat = t.relaxation.saturation(desc.tr_ms, desc.flip_deg)
        for frac, t2 in zip(t.relaxation.fractions, t.relaxation.t2s_ms, strict=True):
            amp = fractions[t.name] * np.float32(t.tsc_mM * sat * frac)
            by_t2[t2] = by_t2[t2] + amp if t2 in by_t2 else amp
    t2s = np.array(sorted(by_t2), np.float64)
    return np.stack([by_t2[t] for t in sorted(by_t2)]), t2s * 1e-3


def _header(desc: ScanDescription, traj: TrajectoryDescription, coil: CoilSpec) -> str:
    nch = coil.channels
    space = X.encodingSpaceType(
        matrixSize=X.matrixSizeType(x=desc.matrix, y=desc.matrix, z=desc.matrix),
        fieldOfView_mm=X.fieldOfViewMm(x=desc.fov_mm, y=desc.fov_mm, z=desc.fov_mm),
    )
    longs = [
        X.userParameterLongType(name="projections", value=traj.projections),
        X.userParameterLongType(name="samples", value=traj.samples),
    ]
    doubles = [
        X.userParameterDoubleType(name="readout_duration_ms", value=traj.readout_duration_ms)
    ]
    if traj.identifier != "3DPR":
        doubles.append(X.userParameterDoubleType(name="p", value=traj.p))
    necho = len(desc.te_ms)
    encoding = X.encodingType(
        encodedSpace=space,
        reconSpace=space,
        encodingLimits=X.encodingLimitsType(
            kspace_encoding_step_1=X.limitType(minimum=0, maximum=traj.projections - 1, center=0),
            contrast=X.limitType(minimum=0, maximum=necho - 1, center=0),
            repetition=X.limitType(minimum=0, maximum=0, center=0),
            average=X.limitType(minimum=0, maximum=0, center=0),
        ),
        trajectory=X.trajectoryType.OTHER if traj.identifier == "TPI" else X.trajectoryType.RADIAL,
        trajectoryDescription=X.trajectoryDescriptionType(
            identifier=traj.identifier,
            userParameterLong=longs,
            userParameterDouble=doubles,
            userParameterString=[
                X.userParameterStringType(name="directions", value=traj.directions)
            ],
            comment="k in cycles/pixel; centre-out; sample i at TE + i * dwell",
        ),
    )
    # no <version>: ISMRMRD's C++ writer refuses any but its own minor version (14 for 1.14.x,
    # 15 for 1.15), which Gadgetron checks each time it sends the header to an external step
    header = X.ismrmrdHeader(
        subjectInformation=X.subjectInformationType(
            patientName="Phantom^Sodium", patientID=f"SIM{desc.seed}", patientGender="O"
        ),
        studyInformation=X.studyInformationType(
            studyID=str(desc.seed),
            studyDescription="simulated sodium MRI",
            studyInstanceUID=_uid(desc.seed, "study"),
            bodyPartExamined="HEAD",
        ),
        measurementInformation=X.measurementInformationType(
            measurementID=f"{desc.seed}_{desc.name}",
            patientPosition=X.patientPositionType.HFS,
            protocolName=desc.protocol,
            sequenceName=traj.identifier,
            seriesDescription=desc.name,
            frameOfReferenceUID=_uid(desc.seed, "frame"),
        ),
        acquisitionSystemInformation=X.acquisitionSystemInformationType(
            systemVendor="sodium-gadgets simulator",
            systemModel="digital phantom",
            systemFieldStrength_T=desc.field_T,
            relativeReceiverNoiseBandwidth=0.793,
            receiverChannels=nch,
            coilLabel=[
                X.coilLabelType(coilNumber=c, coilName=label)
                for c, label in enumerate(coil.labels())
            ],
        ),
        experimentalConditions=X.experimentalConditionsType(
            H1resonanceFrequency_Hz=int(round(larmor_hz(desc.field_T)))
        ),
        encoding=[encoding],
        sequenceParameters=X.sequenceParametersType(
            TR=[desc.tr_ms],
            TE=list(map(float, desc.te_ms)),
            flipAngle_deg=[desc.flip_deg],
            sequence_type="sodium_gre",
        ),
    )
    return X.ToXML(header)


def _noise(rng: np.random.Generator, chol: np.ndarray, sigma: float, shape: tuple[int, int]):
    white = rng.standard_normal(shape + (2,)).view(np.complex128)[..., 0] / np.sqrt(2.0)
    return (sigma * (chol @ white.reshape(chol.shape[0], -1))).reshape(shape)


def _write_raw(path: Path, xml: str, records: np.ndarray) -> None:
    """ISMRMRD file with ``xml`` and the acquisition ``records`` (ismrmrd's HDF5 layout, written
    in one go: appending one by one costs ~2 ms per readout). Written to a temporary name and
    renamed, so no half-written file ever carries the final name."""
    tmp = path.with_suffix(".h5.tmp")
    tmp.unlink(missing_ok=True)
    dset = ismrmrd.Dataset(str(tmp), "dataset", create_if_needed=True)
    try:
        dset.write_xml_header(xml)
    finally:
        dset.close()
    with h5py.File(tmp, "a") as f:
        f["dataset"].create_dataset(
            "data", data=records, maxshape=(None,), chunks=True, dtype=acquisition_dtype
        )
    tmp.replace(path)


def _records(template: ismrmrd.Acquisition, data: np.ndarray, traj: np.ndarray | None):
    """Structured acquisition records for readouts ``data`` (R, C, S) with ``traj`` (R, S, D) or
    None, each header a copy of ``template``'s (fields are then set per readout by the caller)."""
    n = data.shape[0]
    rec = np.empty(n, dtype=acquisition_dtype)
    rec["head"] = np.frombuffer(template.getHead(), dtype=acquisition_header_dtype)[0]
    flat = np.ascontiguousarray(data, np.complex64).view(np.float32).reshape(n, -1)
    flat_traj = None if traj is None else np.ascontiguousarray(traj, np.float32).reshape(n, -1)
    empty = np.zeros(0, np.float32)
    for i in range(n):  # variable-length fields: one object per record
        rec["data"][i] = flat[i]
        rec["traj"][i] = empty if flat_traj is None else flat_traj[i]
    return rec


def simulate(desc: ScanDescription, out_dir: str | Path, nthreads: int | None = None) -> dict:
    """Simulate ``desc`` into ``out_dir``; returns the summary written to NAME_truth.json."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    coil = desc.coil_spec()
    # cable phases and noise coupling belong to the coil, not to the scan: every scan of one
    # coil (its bottle, its patients) has the same ones, as on a scanner
    rng_coil, rng_cov = (np.random.default_rng(s) for s in coil.hardware_seeds())
    rng_noise = np.random.default_rng(np.random.SeedSequence(desc.seed).spawn(3)[2])
    if desc.noise_seed is not None:  # the same scan, another noise realisation
        rng_noise = np.random.default_rng([desc.seed, desc.noise_seed])

    tdesc = desc.trajectory_description()
    traj = tdesc.trajectory()  # (P, S, 3)
    nproj, nsamp = traj.shape[:2]
    dwell_s = tdesc.dwell_s
    te_s = np.asarray(desc.te_ms, np.float64) * 1e-3
    necho = len(te_s)
    phantom = desc.phantom()

    # fine grid: object, B0, coils
    recon = desc.grid(desc.matrix)
    nfine = fine_matrix(desc)
    fine = Grid((nfine,) * 3, desc.fov_mm / nfine, recon.position_mm, recon.dirs)
    t0 = time.perf_counter()
    sigma_fine = OBJECT_SIGMA * desc.matrix / nfine  # cycles per fine voxel
    fractions = phantom.composition(fine, smooth_sigma_px=sigma_fine)
    amplitudes, t2s_s = _compartments(phantom, fractions, desc)
    del fractions
    points = fine.points()
    b0_fine = b0_map_hz(points, desc.field_T, phantom.sinus_mm, desc.b0_scale)
    nch = coil.channels
    wm = next((r for r in phantom.rois if r.name == "white_matter"), phantom.rois[0])
    all_points = np.concatenate([points.reshape(-1, 3), np.asarray([wm.centre_mm])])
    coil_all = sensitivities(coil, all_points, rng_coil)
    coils_fine = coil_all[:, :-1].reshape((nch,) + fine.shape)
    s_wm = coil_all[:, -1].astype(np.complex128)
    del points, all_points, coil_all
    t_object = time.perf_counter() - t0

    # signal
    k_all = np.tile(traj.reshape(1, nproj, nsamp, 3), (necho, 1, 1, 1))  # (E, P, S, 3)
    t_all = np.broadcast_to(
        te_s[:, None, None] + dwell_s * np.arange(nsamp)[None, None, :], (necho, nproj, nsamp)
    )
    t0 = time.perf_counter()
    kspace = simulate_kspace(
        k_all.reshape(-1, 3),
        t_all.reshape(-1),
        fine.shape,
        desc.matrix,
        amplitudes,
        t2s_s,
        b0_fine,
        coils_fine,
        nthreads=nthreads,
        max_segment_s=min(0.5e-3, nsamp * dwell_s / 20),  # >= 20 segments per readout
    ).reshape(nch, necho, nproj, nsamp)
    t_signal = time.perf_counter() - t0
    del amplitudes, b0_fine, coils_fine

    # noise: sigma set so that white matter has the requested SNR in an optimal (Roemer)
    # combination of the density-compensated echo-1 image
    psi = noise_covariance(coil, rng_cov)
    chol = np.linalg.cholesky(psi)
    # white matter, or the first tube when there is no head: its image amplitude at echo 1
    names = ("white_matter", "tube0_")
    ref = next(t for t in phantom.tissues if t.name.startswith(names))
    m_wm = ref.tsc_mM * ref.relaxation.saturation(desc.tr_ms, desc.flip_deg)
    m_wm *= float(ref.relaxation.decay(te_s[0]))
    gain = np.sqrt(np.real(s_wm.conj() @ np.linalg.solve(psi, s_wm)))
    dcf_rms = np.sqrt(np.sum(radial_dcf(traj).astype(np.float64) ** 2))
    sigma = m_wm * gain / (desc.snr_wm * dcf_rms)
    kspace = kspace + _noise(rng_noise, chol, sigma, (nch, necho * nproj * nsamp)).reshape(
        kspace.shape
    )
    noise_dwell_s = (desc.noise_dwell_us or dwell_s * 1e6) * 1e-6
    # noise variance per sample scales with the bandwidth, 1 / dwell
    noise_sigma = sigma * np.sqrt(dwell_s / noise_dwell_s)
    noise_scans = _noise(rng_noise, chol, noise_sigma, (nch, desc.noise_readouts * nsamp))
    noise_scans = noise_scans.reshape(nch, desc.noise_readouts, nsamp)

    # raw files
    xml = _header(desc, tdesc, coil)
    geometry = {
        "position": recon.position_mm,
        "read_dir": recon.dirs[0],
        "phase_dir": recon.dirs[1],
        "slice_dir": recon.dirs[2],
        "patient_table_position": (0.0, 0.0, 0.0),
    }

    def records(with_traj: bool) -> np.ndarray:
        noise_head = ismrmrd.Acquisition.from_array(noise_scans[:, 0].astype(np.complex64))
        noise_head.sample_time_us = noise_dwell_s * 1e6
        noise_head.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        noise = _records(noise_head, noise_scans.transpose(1, 0, 2), None)
        readouts = kspace.transpose(2, 1, 0, 3).reshape(nproj * necho, nch, nsamp)
        head = ismrmrd.Acquisition.from_array(readouts[0], traj[0] if with_traj else None)
        head.sample_time_us = dwell_s * 1e6
        head.center_sample = 0
        for key, value in geometry.items():
            setattr(head, key, value)
        per_readout = np.repeat(traj, necho, axis=0) if with_traj else None
        imaging = _records(head, readouts, per_readout)
        h = imaging["head"]
        excitation = np.arange(nproj * necho)
        h["idx"]["kspace_encode_step_1"] = excitation // necho
        h["idx"]["contrast"] = excitation % necho
        h["acquisition_time_stamp"] = np.round(excitation * desc.tr_ms * 1e-3 / TICK_S)
        first = (1 << (ismrmrd.ACQ_FIRST_IN_SLICE - 1)) | (
            1 << (ismrmrd.ACQ_FIRST_IN_REPETITION - 1)
        )
        last = (
            (1 << (ismrmrd.ACQ_LAST_IN_SLICE - 1))
            | (1 << (ismrmrd.ACQ_LAST_IN_REPETITION - 1))
            | (1 << (ismrmrd.ACQ_LAST_IN_MEASUREMENT - 1))
        )
        h["flags"][0] |= np.uint64(first)
        h["flags"][-1] |= np.uint64(last)
        out = np.concatenate([noise, imaging])
        out["head"]["scan_counter"] = np.arange(len(out))
        return out

    t0 = time.perf_counter()
    _write_raw(out_dir / f"{desc.name}.h5", xml, records(True))
    if desc.write_notraj:
        _write_raw(out_dir / f"{desc.name}_notraj.h5", xml, records(False))
    t_write = time.perf_counter() - t0

    # ground truth on the recon grid
    truth_fractions = phantom.composition(recon)
    tsc = phantom.tsc_map(truth_fractions).astype(np.float32)
    labels, names = phantom.labels(truth_fractions)
    b0_recon = b0_map_hz(recon.points(), desc.field_T, phantom.sinus_mm, desc.b0_scale)
    np.savez_compressed(
        out_dir / f"{desc.name}_truth.npz",
        tsc_mM=tsc,
        b0_hz=b0_recon,
        labels=labels,
        label_names=np.array(names),
    )
    summary = {
        "name": desc.name,
        "seed": desc.seed,
        "field_T": desc.field_T,
        "larmor_hz": larmor_hz(desc.field_T),
        "matrix": desc.matrix,
        "fov_mm": desc.fov_mm,
        "fine_matrix": nfine,
        "trajectory": tdesc.__dict__,
        "dwell_us": dwell_s * 1e6,
        "te_ms": desc.te_ms,
        "tr_ms": desc.tr_ms,
        "flip_deg": desc.flip_deg,
        "geometry": {k: list(v) for k, v in geometry.items()},
        "coil": {"kind": coil.kind, "channels": nch, "name": coil.coil_name},
        "noise": {
            "sigma_per_sample": float(sigma),
            "covariance": {"real": psi.real.tolist(), "imag": psi.imag.tolist()},
            "noise_readouts": desc.noise_readouts,
            "noise_dwell_us": noise_dwell_s * 1e6,
        },
        "snr_wm": desc.snr_wm,
        "snr_definition": "white matter (first tube if no head), echo 1, optimal coil "
        "combination of the density-compensated adjoint reconstruction, from the noise model",
        "b0_range_hz": [float(b0_recon.min()), float(b0_recon.max())],
        "rois": [r.__dict__ | {"centre_mm": list(r.centre_mm)} for r in phantom.rois],
        "tissues": {
            t.name: {
                "tsc_mM": t.tsc_mM,
                "t1_ms": t.relaxation.t1_ms,
                "t2s_ms": list(t.relaxation.t2s_ms),
                "fractions": list(t.relaxation.fractions),
            }
            for t in phantom.tissues
        },
        "tubes": [t.__dict__ | {"centre_mm": list(t.centre_mm)} for t in phantom.tubes],
    }
    (out_dir / f"{desc.name}_truth.json").write_text(json.dumps(summary, indent=1))
    # timings are returned, not written: the files must be identical for the same seed
    summary["seconds"] = {
        "object": round(t_object, 2),
        "signal": round(t_signal, 2),
        "write": round(t_write, 2),
        "total": round(time.perf_counter() - t_start, 2),
    }
    log.info("%s simulated in %.1f s", desc.name, summary["seconds"]["total"])
    return summary
