"""QA picture of a tube calibration: what a radiographer checks at a glance after a quantitative
scan -- did the tubes fit a line, were the right things measured as tubes, does the TSC map look
sane.

One RGB picture (``uint8``, ``(H, W, 3)``, default 1200 x 450 px) with a status line and three
panels:

* status line: green ``CALIBRATION OK: ...`` or red ``CALIBRATION FAILED: <reason>``;
* (a) the calibration: each tube's signal ``S`` (a.u., the template amplitude of
  :func:`gadgets.core.calibration.tube_fit.measure_tube`) against its configured concentration ``C``
  (mM), the fitted line ``S = a C + b``, and a text box with ``a`` (a.u./mM), ``b`` (a.u.),
  ``R^2`` against ``min_r2``, and each tube's residual ``(S - b) / a - C`` in mM; tubes that
  were found but could not be paired with a concentration are listed with their signals;
* (b) the tube ROIs: the uncalibrated magnitude in the slice through the tubes (perpendicular
  to their common axis, where it cuts the most tubes), a circle of the fitted radius at
  each fitted tube centre, labelled with its concentration (``?``, dashed, when not paired);
* (c) the TSC map in the same slice with a colour bar in mmol/L (tube outlines drawn thin);
  when the calibration failed there is no TSC map and the panel says so in red.

Coordinates are volume mm as in :func:`gadgets.core.numerics.geometry.volume_coordinates_mm`:
``(read, phase, slice)`` from the centre of voxel ``n // 2``; the picture's axes are in mm, so
circles have their true size (a 50 mm scale bar shows it). Slices perpendicular to ``slice`` are
shown as the DICOM series shows them (rows along ``phase``, columns along ``read``). Each image
panel has the patient's directions at its edges, as a viewer marks them: R/L, A/P, S/I, the
letter of the patient direction the edge faces (from the volume's ``read``/``phase``/``slice``
directions in LPS).

The picture names the patient (name, ID), the study date and the protocol in its top right
corner, so that two patients' pictures cannot be mixed up on the console or in the PACS; its
Secondary Capture file says so (``BurnedInAnnotation YES``).

Rendering uses matplotlib's object-oriented API on an Agg canvas (``Figure`` +
``FigureCanvasAgg``), never ``pyplot``: no global state, so it is safe in the server's
threads; :mod:`gadgets.core.output.qa_process` draws it in a helper process. The pixels depend on
the inputs only (no clock).
"""

from __future__ import annotations

import logging
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "direction_letter",
    "FAIL_COLOUR",
    "GE",
    "OK_COLOUR",
    "SCALE_BAR_MM",
    "CalibrationQa",
    "QaTube",
    "png_bytes",
    "render_qa",
    "warm_up",
    "write_png",
]

log = logging.getLogger(__name__)

OK_COLOUR = "#1a7f37"
FAIL_COLOUR = "#e00000"  # pure enough to find in the pixels: (224, 0, 0)
_AXIS_NAMES = ("read", "phase", "slice")
GE = "\u2265"
SCALE_BAR_MM = 50.0


@dataclass(frozen=True)
class QaTube:
    """One tube as found and measured: centre (volume mm, ``(read, phase, slice)`` from the
    volume centre), unit axis, fitted radius and length (mm), signal (a.u., NaN if not
    measured) and the configured concentration (mM) it was paired with (None: not paired)."""

    centre_mm: tuple[float, float, float]
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    radius_mm: float = 10.0
    length_mm: float = 50.0
    signal: float = float("nan")
    concentration_mM: float | None = None


@dataclass(frozen=True)
class CalibrationQa:
    """Everything the QA picture shows.

    ``magnitude``: the uncalibrated first-echo magnitude ``(nz, ny, nx)`` (a.u.);
    ``voxel_mm``: voxel size ``(x, y, z)`` in mm; ``tubes``: what was found (paired or not);
    ``concentrations_mM``: the configured tube concentrations; ``slope`` (a.u./mM),
    ``intercept`` (a.u.) and ``r2`` of the fit (None when there is no fit); ``min_r2``: the
    acceptance threshold; ``tsc_mM``: the TSC map ``(nz, ny, nx)`` in mmol/L (None when
    the calibration failed); ``failure``: the reason it failed ("" when it did not);
    ``title``: a short line naming the scan; ``identity``: the patient and study line drawn in
    the top right corner; ``directions``: the volume's read, phase and slice unit vectors in
    patient LPS (for the edge letters); ``notes``: lines on what the map rests on (the tube
    relaxation used, the receive correction), drawn at the bottom left.
    """

    magnitude: np.ndarray
    voxel_mm: tuple[float, float, float]
    tubes: tuple[QaTube, ...] = ()
    concentrations_mM: tuple[float, ...] = ()
    slope: float | None = None
    intercept: float | None = None
    r2: float | None = None
    min_r2: float = 0.99
    tsc_mM: np.ndarray | None = None
    failure: str = ""
    title: str = ""
    identity: str = ""
    directions: tuple[tuple[float, float, float], ...] = ((1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0))
    notes: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.failure) or self.tsc_mM is None

    @property
    def paired(self) -> list[QaTube]:
        """Tubes paired with a concentration and measured, by concentration."""
        tubes = [t for t in self.tubes if t.concentration_mM is not None and np.isfinite(t.signal)]
        return sorted(tubes, key=lambda t: float(t.concentration_mM))  # type: ignore[arg-type]

    def residual_mM(self, tube: QaTube) -> float:
        """``(S - b) / a - C`` in mM (NaN without a fit or a pairing)."""
        if self.slope is None or self.intercept is None or tube.concentration_mM is None:
            return float("nan")
        if self.slope == 0:
            return float("nan")
        return (tube.signal - self.intercept) / self.slope - float(tube.concentration_mM)


@dataclass(frozen=True)
class _View:
    """The slice shown in panels (b) and (c)."""

    axis: int  # coordinate normal to the slice: 0 read, 1 phase, 2 slice
    index: int  # voxel index along it
    position_mm: float
    h: int  # coordinate along the picture's columns
    v: int  # coordinate along its rows


def _view(qa: CalibrationQa) -> _View:
    """The slice through the tubes: normal to their most common axis, at the position along it
    that cuts the most tubes (of those, the one nearest their median; the median of two rows of
    short tubes would fall between them); the central slice when no tubes were found."""
    shape_xyz = qa.magnitude.shape[::-1]
    vox = np.asarray(qa.voxel_mm, np.float64)
    # the paired tubes when there are any: unpaired candidates may be anything
    tubes = [t for t in qa.tubes if t.concentration_mM is not None] or list(qa.tubes)
    if tubes:
        axis = Counter(int(np.argmax(np.abs(t.axis))) for t in tubes).most_common(1)[0][0]
        along = np.array([t.centre_mm[axis] for t in tubes])
        half = np.array([0.5 * t.length_mm for t in tubes])
        median = float(np.median(along))

        def cut(p: float) -> int:
            return int(np.sum(np.abs(along - p) <= half))

        centre = float(max(along, key=lambda p: (cut(p), -abs(p - median))))
    else:
        axis, centre = 2, 0.0
    n = shape_xyz[axis]
    index = int(np.clip(np.round(centre / vox[axis]) + n // 2, 0, n - 1))
    h, v = (c for c in range(3) if c != axis)
    return _View(axis, index, float((index - n // 2) * vox[axis]), h, v)


def _plane(volume: np.ndarray, view: _View) -> np.ndarray:
    """The ``(rows, columns)`` = ``(v, h)`` slice of a ``(nz, ny, nx)`` volume."""
    return np.take(np.asarray(volume), view.index, axis=2 - view.axis)


def _extent(qa: CalibrationQa, view: _View) -> tuple[float, float, float, float]:
    shape_xyz = qa.magnitude.shape[::-1]

    def edges(c: int) -> tuple[float, float]:
        n, d = shape_xyz[c], float(qa.voxel_mm[c])
        return (-(n // 2) - 0.5) * d, (n - 1 - n // 2 + 0.5) * d

    h0, h1 = edges(view.h)
    v0, v1 = edges(view.v)
    return h0, h1, v0, v1


_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # LPS: -x right, +x left, ...


def direction_letter(vector) -> str:
    """The patient direction (R, L, A, P, I or S) an LPS vector points to most."""
    v = np.asarray(vector, np.float64)
    axis = int(np.argmax(np.abs(v)))
    return _LETTERS[axis][int(v[axis] > 0)]


def _show(ax, qa: CalibrationQa, view: _View, image: np.ndarray, **kwargs):
    """``imshow`` in mm: rows run down along ``phase`` (as the DICOM series shows a slice) and
    up along ``slice`` (in views that contain the slice direction); the patient's directions at
    the edges and a scale bar (instead of mm ticks: tick labels were half of the drawing time)."""
    from matplotlib.transforms import blended_transform_factory

    h0, h1, v0, v1 = _extent(qa, view)
    if view.v == 2:
        artist = ax.imshow(image, origin="lower", extent=(h0, h1, v0, v1), **kwargs)
    else:
        artist = ax.imshow(image, origin="upper", extent=(h0, h1, v1, v0), **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    right = np.asarray(qa.directions[view.h], np.float64)  # columns grow to the right
    down = np.asarray(qa.directions[view.v], np.float64) * (-1.0 if view.v == 2 else 1.0)
    for (x, y), vec, ha, va in (
        ((0.015, 0.5), -right, "left", "center"),
        ((0.985, 0.5), right, "right", "center"),
        ((0.5, 0.985), -down, "center", "top"),
        ((0.5, 0.015), down, "center", "bottom"),
    ):
        ax.text(
            x,
            y,
            direction_letter(vec),
            transform=ax.transAxes,
            color="#ffd400",
            fontsize=9,
            fontweight="bold",
            ha=ha,
            va=va,
        )
    # the bar in data mm along x, in axes fractions along y: its label sits above it, clear
    bar = SCALE_BAR_MM if h1 - h0 > 2 * SCALE_BAR_MM else round((h1 - h0) / 4)
    x0 = h0 + 0.06 * (h1 - h0)
    mixed = blended_transform_factory(ax.transData, ax.transAxes)
    ax.plot(
        [x0, x0 + bar],
        [0.07, 0.07],
        color="white",
        linewidth=2.5,
        solid_capstyle="butt",
        transform=mixed,
    )
    ax.text(
        x0 + bar / 2,
        0.095,
        f"{bar:g} mm",
        color="white",
        fontsize=7,
        ha="center",
        va="bottom",
        transform=mixed,
    )
    return artist


def _tube_label(tube: QaTube) -> str:
    return "?" if tube.concentration_mM is None else f"{tube.concentration_mM:g} mM"


def _draw_tubes(ax, qa: CalibrationQa, view: _View, colour: str, labels: bool) -> None:
    from matplotlib.patches import Circle

    vox = float(np.mean(qa.voxel_mm))
    h0, h1, v0, v1 = _extent(qa, view)
    for tube in qa.tubes:
        centre = np.asarray(tube.centre_mm, np.float64)
        if abs(centre[view.axis] - view.position_mm) > 0.5 * tube.length_mm + vox:
            continue  # not cut by this slice
        if not (h0 <= centre[view.h] <= h1 and v0 <= centre[view.v] <= v1):
            continue
        radius = tube.radius_mm if np.isfinite(tube.radius_mm) and tube.radius_mm > 0 else 10.0
        paired = tube.concentration_mM is not None
        edge = colour if paired else "#ff8c00"
        ax.add_patch(
            Circle(
                (centre[view.h], centre[view.v]),
                radius,
                fill=False,
                edgecolor=edge,
                linewidth=1.4 if labels else 0.8,
                linestyle="-" if paired else "--",
                clip_on=True,
            )
        )
        if labels:  # just above the circle on screen (rows run down unless v is slice)
            up = 1.0 if view.v == 2 else -1.0
            ax.text(
                centre[view.h],
                centre[view.v] + up * (radius + vox),
                _tube_label(tube),
                ha="center",
                va="bottom",
                fontsize=8,
                color=edge,
                fontweight="bold",
                clip_on=True,
            )


def _fit_panel(ax, qa: CalibrationQa) -> None:
    paired = qa.paired
    colour = FAIL_COLOUR if qa.failed else OK_COLOUR
    conc = [float(t.concentration_mM) for t in paired]  # type: ignore[arg-type]
    sig = [t.signal for t in paired]
    top_c = max([*qa.concentrations_mM, *conc, 1.0])
    ax.set_xlim(0.0, 1.1 * top_c)
    for c in qa.concentrations_mM:
        ax.axvline(c, color="0.85", linewidth=0.8, zorder=0)
    if paired:
        ax.plot(conc, sig, "o", color="k", markersize=5, zorder=3, label="tubes")
    if qa.slope is not None and qa.intercept is not None:
        cc = np.array([0.0, 1.1 * top_c])
        ax.plot(
            cc,
            qa.slope * cc + qa.intercept,
            "-" if not qa.failed else "--",
            color=colour,
            linewidth=1.5,
            zorder=2,
            label="S = a C + b",
        )
    unpaired = [t for t in qa.tubes if t.concentration_mM is None]
    lines = []
    if qa.slope is not None and qa.intercept is not None and qa.r2 is not None:
        ok = qa.r2 >= qa.min_r2
        lines += [
            f"a = {qa.slope:.4g} a.u./mM",
            f"b = {qa.intercept:.4g} a.u.",
            f"R\u00b2 = {qa.r2:.5f} ({GE if ok else '<'} {qa.min_r2:g})",
            "residuals [mM]:",
        ]
        lines += [f"  {t.concentration_mM:g} mM: {qa.residual_mM(t):+.2f}" for t in paired]
    else:
        lines.append("no fit")
    extra = [t.signal for t in unpaired if np.isfinite(t.signal)]
    if unpaired:
        shown = ", ".join(f"{v:.3g}" for v in extra[:4]) + (", ..." if len(extra) > 4 else "")
        lines.append(f"{len(unpaired)} tube(s) not used")
        if shown:
            lines.append(f"  S [a.u.]: {shown}  (\u25c0)")
    ax.text(
        0.97,
        0.03,
        "\n".join(lines),
        transform=ax.transAxes,
        va="bottom",
        ha="right",
        fontsize=7.5,
        family="monospace",
        zorder=5,
        multialignment="left",
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"},
    )
    if extra:  # their signals as marks on the right edge: which levels were found
        ax.plot(
            [1.0] * len(extra),
            extra,
            "<",
            color="#ff8c00",
            markersize=6,
            clip_on=False,
            transform=ax.get_yaxis_transform(),
            zorder=4,
        )
    finite = [s for s in [*sig, *extra] if np.isfinite(s)]
    if finite:
        lo, hi = min(0.0, min(finite)), max(finite)
        ax.set_ylim(lo - 0.05 * (hi - lo or 1.0), hi + 0.1 * (hi - lo or 1.0))
    ax.set_xlabel("configured concentration C [mM]", fontsize=8)
    ax.set_ylabel("tube signal S [a.u.]", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title("(a) tube calibration", fontsize=9, loc="left")


_warm = False


def warm_up() -> None:
    """Import matplotlib and draw one small picture of a made-up calibration (an OK one with
    an unpaired tube: every font, glyph and artist of a real one) once per process, so that a
    chain pays the first-drawing costs (0.5-0.8 s: fonts, caches) at its start, not after the
    scan's last readout."""
    global _warm
    if _warm:
        return
    n = 8
    tsc = np.full((n, n, n), 40.0, np.float32)
    tubes = (
        QaTube((-8.0, 0.0, 0.0), (0.0, 0.0, 1.0), 4.0, 20.0, 0.35, 30.0),
        QaTube((8.0, 0.0, 0.0), (0.0, 0.0, 1.0), 4.0, 20.0, 0.65, 60.0),
        QaTube((0.0, 8.0, 0.0), (0.0, 0.0, 1.0), 4.0, 20.0, 0.5),
    )
    qa = CalibrationQa(
        tsc / 100,
        (4.0, 4.0, 4.0),
        tubes,
        (30.0, 60.0),
        0.01,
        0.05,
        0.99999,
        0.99,
        tsc,
        title="warm-up",
    )
    render_qa(qa, size_px=(600, 225))
    _warm = True


def render_qa(qa: CalibrationQa, size_px: tuple[int, int] = (1200, 450), dpi: int = 100):
    """The QA picture (see the module docstring) as ``uint8`` RGB ``(H, W, 3)``, ``size_px`` =
    ``(W, H)`` in pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = (int(v) for v in size_px)
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    failed = qa.failed
    colour = FAIL_COLOUR if failed else OK_COLOUR
    if failed:
        reason = qa.failure or "no TSC map"
        status = "CALIBRATION FAILED: " + reason
    else:
        status = (
            f"CALIBRATION OK: {len(qa.paired)} tubes, R\u00b2 = {qa.r2:.5f} "
            f"(\u2265 {qa.min_r2:g}), TSC = (S - b) / a"
        )
    wrapped = textwrap.wrap(status, width=80, max_lines=3, placeholder=" ...")
    fig.text(
        0.01,
        0.985,
        "\n".join(wrapped),
        color=colour,
        fontsize=11,
        fontweight="bold",
        va="top",
        ha="left",
    )
    if qa.title:
        fig.text(0.99, 0.01, qa.title, color="0.4", fontsize=7, va="bottom", ha="right")
    if qa.notes:
        fig.text(0.01, 0.01, "\n".join(qa.notes), color="k", fontsize=7, va="bottom", ha="left")
    if qa.identity:
        fig.text(0.99, 0.985, qa.identity, color="k", fontsize=9, va="top", ha="right")
    top = 0.86 - 0.045 * (len(wrapped) - 1)
    grid = fig.add_gridspec(1, 3, left=0.055, right=0.94, top=top, bottom=0.12, wspace=0.32)
    ax_fit, ax_roi, ax_tsc = (fig.add_subplot(grid[0, i]) for i in range(3))

    _fit_panel(ax_fit, qa)

    view = _view(qa)
    mag = _plane(qa.magnitude, view)
    vmax = float(np.nanpercentile(np.abs(qa.magnitude), 99.5))
    vmax = vmax if np.isfinite(vmax) and vmax > 0 else 1.0
    _show(ax_roi, qa, view, np.abs(mag), cmap="gray", vmin=0.0, vmax=vmax, interpolation="nearest")
    _draw_tubes(ax_roi, qa, view, "#00c8ff", labels=True)
    where = f"{_AXIS_NAMES[view.axis]} {view.position_mm:+.1f} mm"
    ax_roi.set_title(f"(b) tube ROIs, uncalibrated, {where}", fontsize=9, loc="left")

    ax_tsc.set_title("(c) TSC [mmol/L]", fontsize=9, loc="left")
    if qa.tsc_mM is not None:
        top_c = max([*qa.concentrations_mM, 100.0])
        vmax_tsc = float(np.ceil(1.25 * top_c / 10.0) * 10.0)
        artist = _show(
            ax_tsc,
            qa,
            view,
            _plane(qa.tsc_mM, view),
            cmap="viridis",
            vmin=0.0,
            vmax=vmax_tsc,
            interpolation="nearest",
        )
        _draw_tubes(ax_tsc, qa, view, "white", labels=False)
        bar = fig.colorbar(artist, ax=ax_tsc, fraction=0.06, pad=0.03)
        bar.set_label("TSC [mmol/L]", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    else:
        ax_tsc.set_xticks([])
        ax_tsc.set_yticks([])
        for spine in ax_tsc.spines.values():
            spine.set_edgecolor(FAIL_COLOUR)
        ax_tsc.text(
            0.5,
            0.5,
            "CALIBRATION FAILED\n\nno TSC map:\nthe uncalibrated image\nis returned",
            transform=ax_tsc.transAxes,
            ha="center",
            va="center",
            color=FAIL_COLOUR,
            fontsize=12,
            fontweight="bold",
        )
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    log.debug("QA picture %dx%d px, %s", rgb.shape[1], rgb.shape[0], "failed" if failed else "ok")
    return rgb


def png_bytes(rgb: np.ndarray) -> bytes:
    """An ``(H, W, 3)`` ``uint8`` picture as PNG file bytes."""
    import io

    from PIL import Image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) picture, got {rgb.dtype} {rgb.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def write_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an ``(H, W, 3)`` ``uint8`` picture as PNG, atomically and never over an existing
    file (:func:`gadgets.core.output.dicom_files.place_file`)."""
    from gadgets.core.output.dicom_files import place_file

    return place_file(png_bytes(rgb), Path(path))
