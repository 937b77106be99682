"""The ``sodium-gadgets`` command line.

Subcommands so far:

* ``trajectory``: design a sodium readout (DA-3DPR, 3DPR, TPI) and print what the scanner would
  play: dwell, k0, plateau gradient, density-compensation totals; optionally save it (.npy).
* ``phantom``: reconstruct an analytic sodium sphere phantom from its exact k-space on a chosen
  trajectory, through density compensation and gridding, and report ROI values against the truth.
* ``simulate``: write a simulated sodium scan (ISMRMRD raw data and its ground truth).
* ``recon``, ``serve``, ``send``: run a chain on a file in-process, serve chains over the
  Gadgetron wire protocol, stream a file to a server.
* ``coil-profile``: measure a receive coil's profile on a uniform bottle scan.
* ``demo``: all of it end to end (simulate, serve, send, check against the truth), see
  :mod:`gadgets.app.demo`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from gadgets import __version__

__all__ = ["build_parser", "main"]

log = logging.getLogger(__name__)


def _add_trajectory_args(p: argparse.ArgumentParser, projections: int, samples: int) -> None:
    p.add_argument("--projections", type=int, default=projections, help="number of readouts")
    p.add_argument("--samples", type=int, default=samples, help="samples per readout")
    p.add_argument(
        "--readout-ms", type=float, default=10.0, help="ADC duration, ms (= samples * dwell)"
    )
    p.add_argument("--p", type=float, default=0.4, help="k0 = p * kmax (DA-3DPR, TPI)")
    p.add_argument(
        "--directions",
        choices=["spiral", "golden_means", "wong_roos"],
        default="spiral",
        help="projection directions for DA-3DPR and 3DPR (TPI uses cones)",
    )


def _description(args: argparse.Namespace):
    from gadgets.core.numerics.trajectory import TrajectoryDescription

    return TrajectoryDescription(
        identifier=args.kind,
        projections=args.projections,
        samples=args.samples,
        readout_duration_ms=args.readout_ms,
        p=args.p,
        directions="cones" if args.kind == "TPI" else args.directions,
    )


def cmd_trajectory(args: argparse.Namespace) -> int:
    from gadgets.core.numerics.density import radial_dcf
    from gadgets.core.numerics.trajectory import gradient_T_per_m

    desc = _description(args)
    traj = desc.trajectory()
    speed = np.linalg.norm(np.diff(traj, axis=1), axis=-1) / desc.dwell_s  # cycles/pixel/s
    dcf = radial_dcf(traj)
    report = {
        "identifier": desc.identifier,
        "projections": desc.projections,
        "samples": desc.samples,
        "dwell_us": round(desc.dwell_s * 1e6, 3),
        "readout_ms": desc.readout_duration_ms,
        "k0_cycles_per_pixel": 0.5 if desc.identifier == "3DPR" else 0.5 * desc.p,
        "kmax_reached": float(np.linalg.norm(traj[:, -1], axis=-1).max()),
        "plateau_gradient_mT_per_m": 1e3
        * gradient_T_per_m(desc.velocity(), args.matrix, args.fov_mm),
        "max_gradient_mT_per_m": 1e3
        * gradient_T_per_m(float(speed.max()), args.matrix, args.fov_mm),
        "dcf_sum": float(dcf.sum()),
        "dcf_sum_expected_ball": float(np.pi / 6),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        np.save(args.out, traj)
        print(f"trajectory (projections, samples, 3) cycles/pixel -> {args.out}")
    return 0


def cmd_phantom(args: argparse.Namespace) -> int:
    from gadgets.app.phantom_check import reconstruct_phantom

    out = Path(args.out)
    summary = reconstruct_phantom(_description(args), args.matrix, args.dcf, out)
    print(f"{'ROI centre (px)':>22} {'true mM':>8} {'recon mM':>9} {'error':>7}")
    for r in summary["rois"]:
        c = "(" + ",".join(f"{v:.0f}" for v in r["centre_px"]) + ")"
        err = r["recon_mM"] - r["true_mM"]
        print(f"{c:>22} {r['true_mM']:8.1f} {r['recon_mM']:9.2f} {err:+7.2f}")
    print(f"image, truth and summary written to {out}/ (phantom_recon.npy, (z, y, x))")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from gadgets.resources import scans_dir
    from gadgets.simulator.scan import ScanDescription, simulate

    if args.list or not args.name:
        paths = sorted(scans_dir().glob("*.json"))
        if not paths:
            raise FileNotFoundError(f"no scan descriptions installed in {scans_dir()}")
        print(f"{'scan':34} description")
        for path in paths:
            desc = ScanDescription.load(path)
            print(f"{desc.name:34} {desc.description}")
        return 0 if args.list else 2
    desc = ScanDescription.load(args.name)
    if args.notraj:
        desc.write_notraj = True
    summary = simulate(desc, args.out)
    print(
        f"{desc.name}: {summary['coil']['channels']} channels, "
        f"{summary['trajectory']['projections']} projections x {len(summary['te_ms'])} echoes, "
        f"SNR(WM) {summary['snr_wm']:g}, B0 {summary['b0_range_hz'][0]:.0f}..."
        f"{summary['b0_range_hz'][1]:.0f} Hz, {summary['seconds']['total']:.1f} s -> {args.out}/"
    )
    return 0


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set needs name=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def cmd_recon(args: argparse.Namespace) -> int:
    from gadgets.app.application import application
    from gadgets.runtime.client import recon_file

    out = recon_file(args.file, args.out, application(), args.chain, _overrides(args.set))
    print(f"{out.images} images, {len(out.dicoms)} DICOM files -> {args.out}/")
    return 0


def cmd_coil_profile(args: argparse.Namespace) -> int:
    from gadgets.app.coil_profile import measure_coil_profile

    profile = measure_coil_profile(
        args.file, args.out, args.name, args.degree, args.description, args.chain
    )
    if args.degree is not None:
        print(f"{profile.name}: degree {args.degree}, fit RMS {100 * profile.fit_rms:.2f}%")
    else:
        inside = 100 * profile.valid.mean()
        print(
            f"{profile.name}: {profile.measured_with.describe()}; fit RMS "
            f"{100 * profile.fit_rms:.2f}%; extension check ({profile.extend_mm:g} mm past the "
            f"bottle's edge): RMS {100 * profile.extension_rms:.2f}%; valid over {inside:.0f}% "
            "of its grid"
        )
    print(
        f"-> {args.out}: put it in chains/coils/ (coil_models=auto finds it for this coil "
        "only) or name it: --set coil_models=FILE.json"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gadgets.app.application import application, clean_delivery_folders
    from gadgets.runtime.policy import GIB, ServerPolicy, default_total_memory, parse_networks
    from gadgets.runtime.server import ReconServer, raise_file_limit

    app = application(args.chains)
    policy = ServerPolicy(
        allow_from=parse_networks(args.allow_from),
        max_sessions=args.max_sessions,
        max_connections=args.max_connections,
        hello_timeout_s=args.hello_timeout,
        idle_timeout_s=args.idle_timeout,
        send_timeout_s=args.send_timeout,
        max_scan_memory=int(args.max_scan_memory * GIB),
        max_total_memory=(
            int(args.max_total_memory * GIB) if args.max_total_memory else default_total_memory()
        ),
        queue_timeout_s=args.queue_timeout,
        allow_client_chains=args.allow_client_chains,
        client_locations=args.client_locations,
    )
    for path in clean_delivery_folders(app.chains_dir):
        log.warning("removed %s, left by an interrupted delivery", path)
    raise_file_limit(policy.max_connections + 64)
    server = ReconServer(app, args.host, args.port, policy=policy)
    nets = ", ".join(str(n) for n in policy.allow_from)
    log.info("accepting clients from %s; at most %d sessions", nets, policy.max_sessions)
    print(f"{app.name} {app.version} serving on {args.host}:{server.port} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    import socket

    from gadgets.app.application import application
    from gadgets.runtime.client import send_file

    try:
        result, out = send_file(
            args.file,
            args.out,
            args.host,
            args.port,
            args.config,
            args.config_file,
            args.timeout,
            dicom_hooks=application().dicom_hooks,
            parameters=_overrides(args.set) or None,
        )
    except (ConnectionError, TimeoutError, socket.gaierror) as exc:
        print(f"send: cannot reach a server at {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    for text in result.texts:
        print(f"server: {text}")
    for text in result.errors:
        print(f"server: {text}", file=sys.stderr)
    print(f"{out.images} images, {len(out.dicoms)} DICOM files -> {args.out}/")
    return 1 if result.errors or not result.closed else 0


def cmd_fft_wisdom(args: argparse.Namespace) -> int:
    from gadgets.app.application import application
    from gadgets.app.fft_wisdom import plan_fft_wisdom

    for path in args.files:
        done = plan_fft_wisdom(path, application(), args.chain, args.effort, _overrides(args.set))
        print(
            f"{path}: {done.chain}, {done.echoes} echo(es) planned ({done.effort}) in "
            f"{done.seconds:.1f} s -> {done.path}"
        )
    return 0


def cmd_chains(args: argparse.Namespace) -> int:
    import shutil
    import xml.etree.ElementTree as ET

    from gadgets.resources import chains_dir

    folder = chains_dir()
    files = sorted(folder.glob("*.xml")) + sorted((folder / "gadgetron").glob("*.xml"))
    if not files:
        raise FileNotFoundError(f"no chain files installed in {folder}")
    for path in files:
        kind = "Gadgetron only" if path.parent.name == "gadgetron" else "embedded + Gadgetron"
        steps = ET.parse(path).getroot().find("stream")
        print(f"{path.stem:30} {len(steps):2d} steps  {kind}")
    if args.copy_to:
        dest = Path(args.copy_to)
        dest.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy2(path, dest / path.name)
        print(
            f"{len(files)} chain files copied to {dest}/ (a Gadgetron's config folder: its "
            "clients name them with -c NAME.xml)"
        )
    return 0


def cmd_openrecon_label(args: argparse.Namespace) -> int:
    from gadgets.app.application import application
    from gadgets.app.openrecon import write_label

    text = write_label(args.chain, application(args.chains).chains_dir, args.out)
    if args.out is None:
        print(text, end="")
    else:
        print(f"OpenRecon label of {args.chain} -> {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gadgets.app.demo import format_summary, run_demo
    from gadgets.app.server_process import ServerProcessError

    out = Path(args.out)
    print(f"sodium-gadgets demo: scan {args.scan} -> {out}/ (server log: {out}/server.log)")
    try:
        demo = run_demo(out, args.scan, args.raw_dir, args.resimulate, args.timeout)
    except ServerProcessError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    text = format_summary(demo)
    (out / "summary.txt").write_text(text)
    print(text, end="")
    print(f"summary written to {out / 'summary.txt'}")
    if not demo.ok:
        why = "; ".join(demo.errors) or (
            "the connection ended without CLOSE" if not demo.closed else "no DICOM image came back"
        )
        print(f"demo failed: {why} (server log: {out / 'server.log'})", file=sys.stderr)
        return 1
    if demo.tsc_series is None:
        print(
            "note: no TSC map for this scan (calibration refused, see above); the "
            "uncalibrated image was returned instead",
            file=sys.stderr,
        )
    return 0


def _scan_names() -> str:
    from gadgets.resources import scans_dir

    return ", ".join(sorted(p.stem for p in scans_dir().glob("*.json")))


_DEMO_DESCRIPTION = """\
Run the whole pipeline once, as a scanner would drive it:

  1. simulate a sodium head scan with reference tubes, or reuse the one an earlier run left
     in OUT/raw/ for the same description;
  2. start the embedded server (sodium-gadgets serve) on a free loopback port;
  3. stream the raw data to it as sodium-gadgets send does; the server picks the chain by the
     scan's protocol name (chains/protocols.toml), as for a scanner;
  4. save what comes back (DICOM series, QA picture) in OUT/recon/;
  5. read the TSC series back from the DICOM files and write OUT/summary.txt: the chain, the
     tube calibration fit (a, b, R^2, residual per tube), ROI mean TSC against the
     simulator's truth, and timings. The server is stopped at the end.
"""

_DEMO_EPILOG = """\
what it writes:
  OUT/raw/NAME.h5, NAME_truth.json/.npz  the simulated scan (ISMRMRD) and its ground truth,
                                         kept and reused by later runs (same description)
  OUT/recon/                             what the server returned: DICOM series
                                         (series010_*.dcm = TSC in mmol/L), images.h5, QA files
  OUT/server.log                         the server's log
  OUT/summary.txt                        the report printed at the end

time, two cores: the default scan about 40 s the first time (20 s of it simulation), about
15 s when the simulation is reused; tiny_birdcage about 20 s and 8 s.

exit status: 0 on success (also when the calibration is refused, e.g. a coil without a coil
file: the summary says so), 1 when the server reports an error or returns no image, 2 for a bad
argument (e.g. an unknown scan).

examples:
  sodium-gadgets demo --out demo
  sodium-gadgets demo --scan tiny_birdcage --out demo-small
  sodium-gadgets demo --scan brain_7T_da3dpr_8ch_dualecho --out demo-7T    (200 MB, minutes)
"""


def build_parser() -> argparse.ArgumentParser:
    from gadgets.runtime.policy import GIB, ServerPolicy

    parser = argparse.ArgumentParser(
        prog="sodium-gadgets",
        description="Sodium-23 MRI reconstruction to tissue sodium concentration (TSC) maps.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "trajectory",
        help="design a sodium readout and print its gradients",
        description="Design a DA-3DPR, 3DPR or TPI readout; print dwell, k0, gradients and the "
        "density-compensation total; optionally save the k-space trajectory (cycles/pixel).",
    )
    p.add_argument("kind", choices=["DA-3DPR", "3DPR", "TPI"])
    _add_trajectory_args(p, projections=5000, samples=256)
    p.add_argument("--matrix", type=int, default=56, help="image matrix N")
    p.add_argument("--fov-mm", type=float, default=224.0, help="field of view, mm")
    p.add_argument("--out", help="save the trajectory as .npy (projections, samples, 3)")
    p.set_defaults(func=cmd_trajectory)

    p = sub.add_parser(
        "phantom",
        help="reconstruct an analytic sodium sphere phantom and report its accuracy",
        description="Compute the exact k-space of a sphere phantom (head 40 mM, 'CSF' 140 mM, "
        "'lesion' 65 mM, tubes 60/120 mM) on a trajectory, reconstruct it with density "
        "compensation and gridding, and compare ROI means with the truth.",
    )
    p.add_argument("kind", nargs="?", default="DA-3DPR", choices=["DA-3DPR", "3DPR", "TPI"])
    _add_trajectory_args(p, projections=6000, samples=128)
    p.add_argument("--matrix", type=int, default=48, help="image matrix N")
    p.add_argument("--dcf", choices=["analytic", "pipe_menon"], default="analytic")
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser(
        "simulate",
        help="simulate a named sodium scan (ISMRMRD raw data + ground truth)",
        description="Simulate a sodium scan described in simulated_raw/NAME.json (or a JSON "
        "file): a digital head with calibration tubes, coils, B0 and relaxation, written as "
        "NAME.h5 (ISMRMRD) with NAME_truth.npz/json. The same seed gives the same bytes.",
    )
    p.add_argument("name", nargs="?", help="scan name (see --list) or a .json description")
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.add_argument("--notraj", action="store_true", help="also write NAME_notraj.h5")
    p.add_argument("--list", action="store_true", help="list the named scans")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "recon",
        help="reconstruct an ISMRMRD file in-process with a chain",
        description="Run a chain on an ISMRMRD raw file without a server and write the results "
        "(images.h5, DICOM files) to --out. Without --chain, the protocol map chooses by the "
        "header's protocolName, as the server does.",
    )
    p.add_argument("file", help="ISMRMRD raw data (.h5)")
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.add_argument("--chain", help="a chain in chains/ (with or without .xml) or a path")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a property of every step that declares it (repeatable)",
    )
    p.set_defaults(func=cmd_recon)

    p = sub.add_parser(
        "coil-profile",
        help="measure a receive coil's profile from a uniform bottle scan (any coil)",
        description="Reconstruct a scan of a uniform bottle (saline filling the coil, the coil "
        "where it sits for patients, the patients' sequence) through the patient chain's own "
        "prewhitening, gridding and coil combination, and fit a smooth receive profile to its "
        "interior (cubic B-splines on a 12 mm grid in patient coordinates, or 6 mm where the "
        "profile bends faster than 12 mm nodes follow, judged on held-out voxels). The coil file "
        "records the coil (channels, coil labels, field) and where the profile holds (the "
        "bottle, plus 10 mm checked by refitting without the bottle's outer shell). Put it in "
        "chains/coils/ (coil_models=auto uses it for scans of this coil only) or name it with "
        "--set coil_models=FILE.json. Example: sodium-gadgets coil-profile raw/bottle.h5 --out "
        "chains/coils/head32.json (README: installing a new coil)",
    )
    p.add_argument("file", help="ISMRMRD raw data of the uniform phantom (.h5)")
    p.add_argument("--out", required=True, help="coil file to write (.json)")
    p.add_argument("--name", help="the coil's name (default: the file's stem)")
    p.add_argument(
        "--chain",
        default="sodium_tsc",
        help="the patient chain whose coil combination is measured (default: sodium_tsc)",
    )
    p.add_argument(
        "--degree",
        type=int,
        help="one-channel coils only: a polynomial of this degree instead of the spline grid",
    )
    p.add_argument("--description", help="free text kept in the file")
    p.set_defaults(func=cmd_coil_profile)

    p = sub.add_parser(
        "serve",
        help="run the embedded server (Gadgetron wire protocol)",
        description="Serve reconstructions over the Gadgetron/MRD wire protocol: one thread per "
        "connection, chains from chains/ (or --chains), errors sent to the client as text.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9002, help="port (default 9002; 0 = any free)")
    p.add_argument("--chains", help="folder of chain files and protocols.toml")
    p.add_argument(
        "--allow-from",
        default="127.0.0.0/8,::1",
        metavar="ADDR[,CIDR...]",
        help="client addresses served (default: this machine only); e.g. the scanner's "
        "192.168.2.10 or 192.168.2.0/24",
    )
    policy = ServerPolicy()
    p.add_argument(
        "--max-sessions",
        type=int,
        default=policy.max_sessions,
        help=f"scans at once (default {policy.max_sessions})",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=policy.max_connections,
        help=f"connections at once, scans or not (default {policy.max_connections})",
    )
    p.add_argument(
        "--hello-timeout",
        type=float,
        default=policy.hello_timeout_s,
        help=f"s a new connection has to send its configuration ({policy.hello_timeout_s:g})",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=policy.idle_timeout_s,
        help=f"s a scan's client may send nothing ({policy.idle_timeout_s:g})",
    )
    p.add_argument(
        "--send-timeout",
        type=float,
        default=policy.send_timeout_s,
        help=f"s a client may read nothing ({policy.send_timeout_s:g})",
    )
    p.add_argument(
        "--max-scan-memory",
        type=float,
        default=policy.max_scan_memory / GIB,
        help=f"GB one scan may take (default {policy.max_scan_memory / GIB:g})",
    )
    p.add_argument(
        "--max-total-memory",
        type=float,
        default=0.0,
        help="GB all scans together may take (default: 3/4 of the machine's memory)",
    )
    p.add_argument(
        "--queue-timeout",
        type=float,
        default=policy.queue_timeout_s,
        help="s a scan waits for memory held by others before it is refused "
        f"({policy.queue_timeout_s:g})",
    )
    p.add_argument(
        "--allow-client-chains",
        action="store_true",
        help="run chains that clients send as text (default: the chains folder's only)",
    )
    p.add_argument(
        "--client-locations",
        action="store_true",
        help="let clients set properties that name server paths or hosts (folders, PACS)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "send",
        help="stream an ISMRMRD file to a server and save what comes back",
        description="Stream a file's acquisitions to a Gadgetron or sodium-gadgets server, like "
        "gadgetron_ismrmrd_client; write returned images (images.h5) and DICOM files to --out, "
        "print the server's text; exit non-zero on a server ERROR.",
    )
    p.add_argument("file", help="ISMRMRD raw data (.h5)")
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9002)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--config", help="chain name on the server (default: by protocol)")
    group.add_argument("--config-file", help="send this chain XML instead of a name")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a chain property on the server (sent as FIRE/OpenRecon JSON parameters)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "fft-wisdom",
        help="time the gridder's FFTs for a kind of scan once per machine (faster scan ends)",
        description="Run the chain (the protocol map's choice, or --chain) on the first readouts "
        "of each scan with StreamingGridder.fft_effort set to --effort, so that FFTW times its "
        "plans for that scan's grids and keeps them as wisdom in the cache; later scans of the "
        "same kind plan from it (fft_effort=wisdom, the default) instead of FFTW's estimate. "
        "Once per machine and protocol (matrix, channels, echoes), on the machine the server "
        "runs on. patient: ~30-60 s per grid; measure: ~5 s, about half the gain.",
    )
    p.add_argument("files", nargs="+", help="ISMRMRD raw data (.h5) of each kind of scan")
    p.add_argument("--chain", help="a chain in chains/ (with or without .xml) or a path")
    p.add_argument("--effort", choices=("patient", "measure"), default="patient")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a property as the scans will have it (repeatable), e.g. oversampling",
    )
    p.set_defaults(func=cmd_fft_wisdom)

    p = sub.add_parser(
        "chains",
        help="list the installed chains; copy them into a Gadgetron's config folder",
        description="List the chain files installed with the package (chains/*.xml run in the "
        "embedded server and in Gadgetron; chains/gadgetron/*.xml in Gadgetron only). With "
        "--copy-to, copy them into a folder such as $GADGETRON_HOME/share/gadgetron/config.",
    )
    p.add_argument("--copy-to", metavar="DIR", help="copy the chain files into DIR")
    p.set_defaults(func=cmd_chains)

    p = sub.add_parser(
        "openrecon-label",
        help="write the OpenRecon UI description (JSON label) of a chain",
        description="Write the JSON label a Siemens OpenRecon image carries: the chain's "
        "properties as console parameters (type, default, description, choices, bounds), "
        "without those that name server paths or hosts. The console sends the values back as "
        "JSON parameters, which set the properties.",
    )
    p.add_argument("chain", help="a chain name (as for recon --chain) or a chain file")
    p.add_argument("--out", help="write the label here (default: print it)")
    p.add_argument("--chains", help="folder of chain files (default: the installed chains)")
    p.set_defaults(func=cmd_openrecon_label)

    p = sub.add_parser(
        "demo",
        help="end to end: simulate a scan, stream it through the server, check the TSC map",
        description=_DEMO_DESCRIPTION,
        epilog=_DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="demo", metavar="OUT", help="output folder (default: demo)")
    p.add_argument(
        "--scan",
        default="brain_3T_tpi_birdcage",
        metavar="NAME",
        help="a scan in simulated_raw/ or a description .json (default: brain_3T_tpi_birdcage; "
        f"named scans: {_scan_names()})",
    )
    p.add_argument(
        "--raw-dir", metavar="DIR", help="where the simulated scan is kept (default: OUT/raw)"
    )
    p.add_argument(
        "--resimulate", action="store_true", help="simulate again even if a cached scan exists"
    )
    p.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for the server (default 600)"
    )
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except BrokenPipeError:  # the reader went away (| head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, FileNotFoundError, FileExistsError, ConnectionError) as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
