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

Drawing uses :mod:`gadgets.core.output.raster` (Pillow, a few milliseconds; matplotlib took
0.2-0.3 s after the scan's last readout): no global state, so it is safe in the server's threads;
:mod:`gadgets.core.output.qa_process` can draw it in a helper process. The notes are drawn below
the panels, never over panel (a)'s axis label. The pixels depend on the inputs only (no clock).
"""

from __future__ import annotations

import logging
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gadgets.core.output.raster import (
    Canvas,
    colour_map,
    nice_ticks,
    resample_nearest,
    tick_label,
)

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


def _tube_label(tube: QaTube) -> str:
    return "?" if tube.concentration_mM is None else f"{tube.concentration_mM:g} mM"


@dataclass(frozen=True)
class _Box:
    """A rectangle on the picture, in pixels: left, top, right, bottom (exclusive)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def _image_box(qa: CalibrationQa, view: _View, panel: _Box) -> tuple[_Box, float]:
    """Where a slice of true proportions fits in ``panel``, centred (as ``imshow`` with equal
    aspect), and its scale in pixels per mm."""
    h0, h1, v0, v1 = _extent(qa, view)
    per_mm = min(panel.width / (h1 - h0), panel.height / (v1 - v0))
    w, h = round((h1 - h0) * per_mm), round((v1 - v0) * per_mm)
    left = panel.left + (panel.width - w) // 2
    top = panel.top + (panel.height - h) // 2
    return _Box(left, top, left + w, top + h), per_mm


def _slice_panel(
    canvas: Canvas,
    qa: CalibrationQa,
    view: _View,
    panel: _Box,
    rgb: np.ndarray,
    tube_colour: str,
    labels: bool,
) -> _Box:
    """One slice (``rgb``: ``(rows v, columns h, 3)`` in the volume's order) drawn in its box,
    with the tubes' circles, the patient's directions at the edges and a scale bar; everything
    is clipped to the slice (drawn on its own canvas first). Returns the slice's box."""
    box, per_mm = _image_box(qa, view, panel)
    h0, h1, v0, v1 = _extent(qa, view)
    up = view.v == 2  # rows run up along slice, down along read/phase (as the DICOM shows them)
    sub = Canvas(box.width, box.height, canvas.scale)
    sub.paste(resample_nearest(rgb[::-1] if up else rgb, box.height, box.width), 0, 0)

    def to_px(h_mm: float, v_mm: float) -> tuple[float, float]:
        x = (h_mm - h0) * per_mm
        y = (v1 - v_mm) * per_mm if up else (v_mm - v0) * per_mm
        return x, y

    vox = float(np.mean(qa.voxel_mm))
    for tube in qa.tubes:
        centre = np.asarray(tube.centre_mm, np.float64)
        if abs(centre[view.axis] - view.position_mm) > 0.5 * tube.length_mm + vox:
            continue  # not cut by this slice
        if not (h0 <= centre[view.h] <= h1 and v0 <= centre[view.v] <= v1):
            continue
        radius = tube.radius_mm if np.isfinite(tube.radius_mm) and tube.radius_mm > 0 else 10.0
        paired = tube.concentration_mM is not None
        edge = tube_colour if paired else "#ff8c00"
        x, y = to_px(centre[view.h], centre[view.v])
        sub.circle((x, y), radius * per_mm, edge, width=1.6 if labels else 1.0, dashed=not paired)
        if labels:  # just above the circle on screen
            top = y - (radius + 0.5 * vox) * per_mm
            sub.text((x, top), _tube_label(tube), 8, edge, anchor="md", style="bold")
    right = np.asarray(qa.directions[view.h], np.float64)  # columns grow to the right
    down = np.asarray(qa.directions[view.v], np.float64) * (-1.0 if up else 1.0)
    w, h = box.width, box.height
    for xy, vec, anchor in (
        ((0.015 * w, 0.5 * h), -right, "lm"),
        ((0.985 * w, 0.5 * h), right, "rm"),
        ((0.5 * w, 0.015 * h), -down, "ma"),
        ((0.5 * w, 0.985 * h), down, "md"),
    ):
        sub.text(xy, direction_letter(vec), 9, "#ffd400", anchor=anchor, style="bold")
    bar_mm = SCALE_BAR_MM if h1 - h0 > 2 * SCALE_BAR_MM else round((h1 - h0) / 4)
    x0, y_bar = 0.06 * w, 0.93 * h
    sub.line([(x0, y_bar), (x0 + bar_mm * per_mm, y_bar)], "white", width=2.5)
    gap = sub.px(3)
    sub.text((x0 + 0.5 * bar_mm * per_mm, y_bar - gap), f"{bar_mm:g} mm", 7, "white", anchor="md")
    canvas.paste(sub.array(), box.left, box.top)
    canvas.rectangle((box.left - 1, box.top - 1, box.right, box.bottom), outline="black")
    return box


def _grey(plane: np.ndarray, vmax: float) -> np.ndarray:
    level = np.clip(np.nan_to_num(plane / vmax) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(level[..., None], 3, axis=2)


def _coloured(plane: np.ndarray, vmax: float, name: str = "viridis") -> np.ndarray:
    index = np.clip(np.nan_to_num(plane / vmax) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return colour_map(name)[index]


def _colour_bar(canvas: Canvas, box: _Box, vmax: float, label: str) -> None:
    """A vertical viridis bar from 0 (bottom) to ``vmax`` beside the map, with ticks and label."""
    ramp = colour_map("viridis")[
        np.clip(((1.0 - (np.arange(box.height) + 0.5) / box.height) * 256).astype(int), 0, 255)
    ]
    canvas.paste(np.repeat(ramp[:, None, :], box.width, axis=1), box.left, box.top)
    canvas.rectangle((box.left - 1, box.top - 1, box.right, box.bottom), outline="black")
    ticks = nice_ticks(0.0, vmax, 7)
    tick, widest = canvas.px(3.5), 0
    for value in ticks:
        y = box.bottom - 0.5 - value / vmax * box.height
        canvas.line([(box.right, y), (box.right + tick, y)], "black")
        x0, _, x1, _ = canvas.text(
            (box.right + tick + canvas.px(2), y), tick_label(value, ticks), 7, anchor="lm"
        )
        widest = max(widest, x1 - box.right)
    canvas.vertical_text((box.right + widest + canvas.px(8), (box.top + box.bottom) / 2), label, 8)


def _fit_panel(canvas: Canvas, qa: CalibrationQa, panel: _Box) -> None:
    """Panel (a): the tubes' signals against their concentrations and the fitted line, with
    ticks, labels and the fit's numbers; the plot area is ``panel``."""
    paired = qa.paired
    colour = FAIL_COLOUR if qa.failed else OK_COLOUR
    conc = [float(t.concentration_mM) for t in paired]  # type: ignore[arg-type]
    sig = [t.signal for t in paired]
    unpaired = [t for t in qa.tubes if t.concentration_mM is None]
    extra = [t.signal for t in unpaired if np.isfinite(t.signal)]
    top_c = max([*qa.concentrations_mM, *conc, 1.0])
    x_lo, x_hi = 0.0, 1.1 * top_c
    finite = [s for s in [*sig, *extra] if np.isfinite(s)]
    if finite:
        lo, hi = min(0.0, min(finite)), max(finite)
        y_lo, y_hi = lo - 0.05 * (hi - lo or 1.0), hi + 0.1 * (hi - lo or 1.0)
    else:
        y_lo, y_hi = 0.0, 1.0
    w, h = panel.width, panel.height

    def to_px(c: float, s: float) -> tuple[float, float]:
        return (c - x_lo) / (x_hi - x_lo) * w, (y_hi - s) / (y_hi - y_lo) * h

    ss = 3  # drawn at 3x and averaged down: smooth lines and markers, clipped to the axes
    plot = Canvas(ss * w, ss * h, ss * canvas.scale)

    def to_plot(c: float, s: float) -> tuple[float, float]:
        x, y = to_px(c, s)
        return ss * x, ss * y

    for c in qa.concentrations_mM:
        x, _ = to_plot(c, 0.0)
        plot.line([(x, 0), (x, ss * h)], "0.85", width=0.8)
    if qa.slope is not None and qa.intercept is not None:
        ends = [to_plot(c, qa.slope * c + qa.intercept) for c in (x_lo, x_hi)]
        plot.line(ends, colour, width=1.5, dashed=qa.failed)
    for c, s in zip(conc, sig, strict=True):
        plot.circle(to_plot(c, s), 3.0 * plot.scale, None, fill="black")
    canvas.paste(plot.array(reduce=ss), panel.left, panel.top)
    canvas.rectangle((panel.left - 1, panel.top - 1, panel.right, panel.bottom), outline="black")
    for s in extra:  # the unpaired signals as marks on the right edge: which levels were found
        y = panel.top + to_px(0.0, s)[1]
        if panel.top <= y <= panel.bottom:
            canvas.triangle_left((panel.right, y), 8.0 * canvas.scale, "#ff8c00")

    tick = canvas.px(3.5)
    xticks = nice_ticks(x_lo, x_hi, 7)
    for value in xticks:
        x = panel.left + to_px(value, 0.0)[0]
        canvas.line([(x, panel.bottom), (x, panel.bottom + tick)], "black")
        canvas.text((x, panel.bottom + tick + 1), tick_label(value, xticks), 7, anchor="ma")
    yticks = nice_ticks(y_lo, y_hi, 8)
    widest = 0
    for value in yticks:
        y = panel.top + to_px(0.0, value)[1]
        canvas.line([(panel.left - tick, y), (panel.left, y)], "black")
        x0, _, _, _ = canvas.text(
            (panel.left - tick - canvas.px(2), y), tick_label(value, yticks), 7, anchor="rm"
        )
        widest = max(widest, panel.left - x0)
    label_gap = canvas.text_size("0", 7)[1] + tick + canvas.px(4)
    canvas.text(
        ((panel.left + panel.right) / 2, panel.bottom + label_gap),
        "configured concentration C [mM]",
        8,
        anchor="ma",
    )
    canvas.vertical_text(
        (panel.left - widest - canvas.px(9), (panel.top + panel.bottom) / 2),
        "tube signal S [a.u.]",
        8,
    )
    canvas.text((panel.left, panel.top - canvas.px(5)), "(a) tube calibration", 9, anchor="ld")

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
    if unpaired:
        shown = ", ".join(f"{v:.3g}" for v in extra[:4]) + (", ..." if len(extra) > 4 else "")
        lines.append(f"{len(unpaired)} tube(s) not used")
        if shown:
            lines.append(f"  S [a.u.]: {shown}  (\u25c0)")
    text = "\n".join(lines)
    tw, th = canvas.text_size(text, 7.5, "mono")
    pad = canvas.px(4)
    right, bottom = panel.right - 0.03 * w, panel.bottom - 0.03 * h
    canvas.rectangle(
        (right - tw - 2 * pad, bottom - th - 2 * pad, right, bottom), outline="0.7", fill="white"
    )
    canvas.text((right - tw - pad, bottom - th - pad), text, 7.5, anchor="la", style="mono")


_warm = False


def warm_up() -> None:
    """Load the fonts and the colour map and draw one small picture of a made-up calibration
    (an OK one with an unpaired tube: every element of a real one) once per process, so that a
    chain pays the first-drawing costs at its start, not after the scan's last readout."""
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
        identity="warm-up",
        notes=("warm-up",),
    )
    render_qa(qa, size_px=(1200, 450))
    _warm = True


def render_qa(qa: CalibrationQa, size_px: tuple[int, int] = (1200, 450)) -> np.ndarray:
    """The QA picture (see the module docstring) as ``uint8`` RGB ``(H, W, 3)``, ``size_px`` =
    ``(W, H)`` in pixels (fonts and lines scale with ``H / 450``)."""
    width, height = (int(v) for v in size_px)
    canvas = Canvas(width, height, scale=height / 450.0)
    failed = qa.failed
    colour = FAIL_COLOUR if failed else OK_COLOUR
    if failed:
        status = "CALIBRATION FAILED: " + (qa.failure or "no TSC map")
    else:
        status = (
            f"CALIBRATION OK: {len(qa.paired)} tubes, R\u00b2 = {qa.r2:.5f} "
            f"(\u2265 {qa.min_r2:g}), TSC = (S - b) / a"
        )
    wrapped = textwrap.wrap(status, width=80, max_lines=3, placeholder=" ...")
    margin = canvas.px(8)
    _, _, _, status_bottom = canvas.text(
        (0.01 * width, canvas.px(6)), "\n".join(wrapped), 11, colour, style="bold"
    )
    if qa.identity:
        canvas.text((width - margin, canvas.px(6)), qa.identity, 9, anchor="ra")
    footer = canvas.px(4)
    if qa.notes:  # bottom left, below everything else (the panels end above them)
        _, top, _, _ = canvas.text(
            (margin, height - canvas.px(4)), "\n".join(qa.notes), 7, anchor="ld"
        )
        footer = height - top + canvas.px(4)
    if qa.title:
        canvas.text((width - margin, height - canvas.px(4)), qa.title, 7, "0.4", anchor="rd")
        footer = max(footer, canvas.text_size(qa.title, 7)[1] + canvas.px(8))
    top = status_bottom + canvas.px(30)
    bottom = height - footer - canvas.px(34)  # room for panel (a)'s tick labels and x label
    left, right = 0.055 * width, 0.94 * width
    panel_w = (right - left) / (3 + 2 * 0.32)
    panels = [
        _Box(
            round(left + i * 1.32 * panel_w),
            top,
            round(left + i * 1.32 * panel_w + panel_w),
            bottom,
        )
        for i in range(3)
    ]
    _fit_panel(canvas, qa, panels[0])

    view = _view(qa)
    vmax = float(np.nanpercentile(np.abs(qa.magnitude), 99.5))
    vmax = vmax if np.isfinite(vmax) and vmax > 0 else 1.0
    mag = _grey(np.abs(_plane(qa.magnitude, view)), vmax)
    box = _slice_panel(canvas, qa, view, panels[1], mag, "#00c8ff", labels=True)
    where = f"{_AXIS_NAMES[view.axis]} {view.position_mm:+.1f} mm"
    title_at = (box.left, box.top - canvas.px(5))
    canvas.text(title_at, f"(b) tube ROIs, uncalibrated, {where}", 9, anchor="ld")

    p = panels[2]
    if qa.tsc_mM is not None:
        top_c = max([*qa.concentrations_mM, 100.0])
        vmax_tsc = float(np.ceil(1.25 * top_c / 10.0) * 10.0)
        bar_room = round(0.2 * p.width)  # the colour bar, its ticks and label, right of the map
        inner = _Box(p.left, p.top, p.right - bar_room, p.bottom)
        tsc = _coloured(_plane(qa.tsc_mM, view), vmax_tsc)
        box = _slice_panel(canvas, qa, view, inner, tsc, "white", labels=False)
        bar_left = box.right + canvas.px(9)
        bar = _Box(bar_left, box.top, bar_left + canvas.px(14), box.bottom)
        _colour_bar(canvas, bar, vmax_tsc, "TSC [mmol/L]")
    else:
        box = p
        canvas.rectangle((p.left - 1, p.top - 1, p.right, p.bottom), outline=FAIL_COLOUR, width=1.5)
        canvas.text(
            ((p.left + p.right) / 2, (p.top + p.bottom) / 2),
            "CALIBRATION FAILED\n\nno TSC map:\nthe uncalibrated image\nis returned",
            12,
            FAIL_COLOUR,
            anchor="mm",
            style="bold",
            align="center",
        )
    canvas.text((box.left, box.top - canvas.px(5)), "(c) TSC [mmol/L]", 9, anchor="ld")
    rgb = canvas.array()
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
