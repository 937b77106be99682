"""Small raster drawing for pictures sent to a console: text, lines, markers, axes ticks and colour
maps on a Pillow RGB image, a few milliseconds per picture (matplotlib took 0.2-0.3 s for the
same QA picture, after the scan's last readout).

Pixel coordinates are ``(x, y)`` with ``y`` down, in pixels of the picture. Font sizes are given
in points at 100 dpi (``px = pt * 100 / 72``, as a matplotlib figure at 100 dpi draws them) times
the canvas' ``scale``. Text uses the DejaVu fonts matplotlib ships (so every install draws the same
glyphs) with Pillow's basic layout (no libraqm: the same pixels with or without it).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

__all__ = ["Canvas", "colour_map", "nice_ticks", "resample_nearest", "tick_label"]

_FONTS = {
    "regular": "DejaVuSans.ttf",
    "bold": "DejaVuSans-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
}


@functools.lru_cache(maxsize=1)
def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=64)
def _font(style: str, size_px: int):
    from PIL import ImageFont

    return ImageFont.truetype(
        str(_font_dir() / _FONTS[style]), size_px, layout_engine=ImageFont.Layout.BASIC
    )


@functools.lru_cache(maxsize=8)
def colour_map(name: str) -> np.ndarray:
    """A matplotlib colour map as a ``(256, 3)`` ``uint8`` look-up table."""
    from matplotlib import colormaps

    return (np.asarray(colormaps[name](np.linspace(0.0, 1.0, 256)))[:, :3] * 255 + 0.5).astype(
        np.uint8
    )


def rgb_colour(colour) -> tuple[int, int, int]:
    """``"#rrggbb"``, a grey level ``"0.85"`` (0 black, 1 white) or an RGB triple."""
    if isinstance(colour, str):
        if colour.startswith("#"):
            return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        if colour == "white":
            return (255, 255, 255)
        if colour == "black" or colour == "k":
            return (0, 0, 0)
        level = round(float(colour) * 255)
        return (level, level, level)
    return tuple(int(v) for v in colour)  # type: ignore[return-value]


def resample_nearest(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """``values`` (rows, columns, ...) resampled to ``(height, width, ...)`` by nearest pixel
    centre, as ``imshow(interpolation="nearest")`` shows a slice."""
    rows = np.minimum(
        ((np.arange(height) + 0.5) * values.shape[0] / height).astype(int), values.shape[0] - 1
    )
    cols = np.minimum(
        ((np.arange(width) + 0.5) * values.shape[1] / width).astype(int), values.shape[1] - 1
    )
    return values[rows[:, None], cols[None, :]]


def nice_ticks(lo: float, hi: float, target: int = 6) -> np.ndarray:
    """Tick values in ``[lo, hi]`` at the smallest round step (1, 2, 2.5 or 5 times a power of
    ten) that makes at most ``target`` intervals over the range."""
    span = hi - lo
    if not np.isfinite(span) or span <= 0:
        return np.array([lo])
    raw = span / max(target, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw * 0.999)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = first + step * np.arange(int(math.floor((hi - first) / step + 1e-9)) + 1)
    return np.where(np.abs(ticks) < step * 1e-9, 0.0, ticks)


def tick_label(value: float, ticks: np.ndarray) -> str:
    """``value`` with as many decimals as the ticks' step needs (``0.05`` -> 2)."""
    step = float(np.min(np.diff(ticks))) if len(ticks) > 1 else abs(value) or 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if abs(round(step, decimals) - step) > 1e-9 * step:
        decimals += 1  # 2.5, 0.25
    return f"{value:.{decimals}f}"


class Canvas:
    """An RGB picture being drawn on (``image``: a Pillow image; :meth:`array` the result)."""

    def __init__(self, width: int, height: int, scale: float = 1.0, background="white") -> None:
        from PIL import Image, ImageDraw

        self.image = Image.new("RGB", (int(width), int(height)), rgb_colour(background))
        self.draw = ImageDraw.Draw(self.image)
        self.scale = float(scale)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def px(self, value: float) -> int:
        """A length given at scale 1 (line widths, gaps) in this canvas' pixels, at least 1."""
        return max(1, round(value * self.scale))

    def font(self, pt: float, style: str = "regular"):
        return _font(style, max(6, round(pt * 100.0 / 72.0 * self.scale)))

    def text(
        self,
        xy: tuple[float, float],
        text: str,
        pt: float,
        colour="black",
        anchor: str = "la",
        style: str = "regular",
        align: str = "left",
    ) -> tuple[int, int, int, int]:
        """Draw ``text`` (lines split at ``\\n``) anchored at ``xy`` (Pillow anchors: ``l m r``
        then ``a m d`` for multi-line text); returns its bounding box."""
        font = self.font(pt, style)
        spacing = self.px(2)
        xy = (round(xy[0]), round(xy[1]))
        self.draw.multiline_text(
            xy,
            text,
            font=font,
            fill=rgb_colour(colour),
            anchor=anchor,
            align=align,
            spacing=spacing,
        )
        return self.draw.multiline_textbbox(
            xy, text, font=font, anchor=anchor, align=align, spacing=spacing
        )

    def text_size(self, text: str, pt: float, style: str = "regular") -> tuple[int, int]:
        box = self.draw.multiline_textbbox(
            (0, 0), text, font=self.font(pt, style), anchor="la", spacing=self.px(2)
        )
        return box[2] - box[0], box[3] - box[1]

    def vertical_text(
        self, xy: tuple[float, float], text: str, pt: float, colour="black", style="regular"
    ) -> None:
        """One line of text turned 90 degrees anticlockwise (reading upwards), centred on
        ``xy``."""
        from PIL import Image, ImageDraw

        font = self.font(pt, style)
        box = self.draw.textbbox((0, 0), text, font=font, anchor="lt")
        mask = Image.new("L", (box[2] - box[0] + 2, box[3] - box[1] + 2), 0)
        ImageDraw.Draw(mask).text((1, 1), text, font=font, fill=255, anchor="lt")
        mask = mask.transpose(Image.Transpose.ROTATE_90)
        left = round(xy[0] - mask.size[0] / 2)
        top = round(xy[1] - mask.size[1] / 2)
        self.image.paste(rgb_colour(colour), (left, top), mask)

    def line(self, points, colour="black", width: float = 1.0, dashed: bool = False) -> None:
        """A polyline through ``points`` ``[(x, y), ...]``; ``dashed``: 6 on, 3 off (scaled)."""
        fill, w = rgb_colour(colour), self.px(width)
        points = [(float(x), float(y)) for x, y in points]
        if not dashed:
            self.draw.line(points, fill=fill, width=w)
            return
        on, off = 6.0 * self.scale, 3.0 * self.scale
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
            length = math.hypot(x1 - x0, y1 - y0)
            t = 0.0
            while t < length:
                t1 = min(t + on, length)
                a, b = t / length, t1 / length
                self.draw.line(
                    [
                        (x0 + a * (x1 - x0), y0 + a * (y1 - y0)),
                        (x0 + b * (x1 - x0), y0 + b * (y1 - y0)),
                    ],
                    fill=fill,
                    width=w,
                )
                t = t1 + off

    def rectangle(self, box, outline=None, fill=None, width: float = 1.0) -> None:
        self.draw.rectangle(
            [round(v) for v in box],
            outline=None if outline is None else rgb_colour(outline),
            fill=None if fill is None else rgb_colour(fill),
            width=self.px(width),
        )

    def circle(
        self, centre, radius: float, colour, width: float = 1.0, dashed: bool = False, fill=None
    ) -> None:
        """A circle outline (or a filled disc with ``fill``); ``dashed``: 24 arcs of 10 degrees."""
        x, y = centre
        box = [x - radius, y - radius, x + radius, y + radius]
        if fill is not None:
            self.draw.ellipse(box, fill=rgb_colour(fill))
            return
        if dashed:
            for start in range(0, 360, 15):
                self.draw.arc(box, start, start + 10, fill=rgb_colour(colour), width=self.px(width))
        else:
            self.draw.ellipse(box, outline=rgb_colour(colour), width=self.px(width))

    def triangle_left(self, tip: tuple[float, float], size: float, colour) -> None:
        """A filled triangle pointing left with its tip at ``tip`` (a mark on an axis' edge)."""
        x, y = tip
        self.draw.polygon(
            [(x, y), (x + size, y - 0.6 * size), (x + size, y + 0.6 * size)],
            fill=rgb_colour(colour),
        )

    def paste(self, rgb: np.ndarray, left: int, top: int) -> None:
        from PIL import Image

        self.image.paste(Image.fromarray(np.ascontiguousarray(rgb), "RGB"), (int(left), int(top)))

    def array(self, reduce: int = 1) -> np.ndarray:
        """The pixels, ``(H, W, 3)`` ``uint8``; ``reduce``: averaged over ``reduce x reduce``
        blocks (a canvas drawn at ``reduce`` times the size and scale: smooth lines)."""
        image = self.image.reduce(reduce) if reduce > 1 else self.image
        return np.asarray(image, dtype=np.uint8).copy()
