"""A picture in the terminal: an RGB image drawn with half blocks, two pixels a cell (▀: its
colour the upper pixel, its background the lower one), fitted to the width it is given and to
at most `max_rows` lines. Under NO_COLOR Textual's monochrome filter turns it into grey
blocks, still a picture."""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

HALF = "▀"


class Quicklook(Widget):
    DEFAULT_CSS = """
    Quicklook { width: 1fr; height: auto; }
    """

    def __init__(self, rgb: np.ndarray, *, max_rows: int = 16, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.rgb = rgb  # rows × cols × 3, uint8
        self.max_rows = max_rows
        self._fitted: tuple[int, np.ndarray] | None = None  # (width, image fitted to it)
        self._strips: dict[int, Strip] = {}

    def fit(self, width: int) -> np.ndarray:
        """The image resampled (nearest) to fit `width` columns and max_rows lines (2 pixels
        a line), its aspect kept."""
        if self._fitted is not None and self._fitted[0] == width:
            return self._fitted[1]
        h, w = self.rgb.shape[:2]
        scale = min(max(width, 1) / w, 2 * self.max_rows / h)
        cols, rows = max(1, round(w * scale)), max(2, round(h * scale))
        rows += rows % 2  # whole cells
        ys = np.minimum((np.arange(rows) + 0.5) * h / rows, h - 1).astype(int)
        xs = np.minimum((np.arange(cols) + 0.5) * w / cols, w - 1).astype(int)
        fitted = self.rgb[ys][:, xs]
        self._fitted = (width, fitted)
        self._strips.clear()
        return fitted

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return int(self.fit(container.width).shape[1])

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return int(self.fit(width).shape[0]) // 2

    def render_line(self, y: int) -> Strip:
        image = self.fit(self.size.width)
        if 2 * y + 1 >= image.shape[0]:
            return Strip.blank(self.size.width, self.rich_style)
        strip = self._strips.get(y)
        if strip is None:
            top, bottom = image[2 * y], image[2 * y + 1]
            rgb = Color.from_rgb
            strip = Strip([Segment(HALF, Style(color=rgb(*t), bgcolor=rgb(*b)))
                           for t, b in zip(top.tolist(), bottom.tolist(), strict=True)])
            strip = strip.simplify()
            self._strips[y] = strip
        return strip.extend_cell_length(self.size.width, self.rich_style)

    def colours(self) -> set[tuple[str | None, str | None]]:
        """The (fg, bg) colours of the cells it draws now (tests: a picture, not blank)."""
        seen: set[tuple[str | None, str | None]] = set()
        for y in range(self.size.height):
            for seg in self.render_line(y):
                if seg.text.strip() and seg.style is not None:
                    fg, bg = seg.style.color, seg.style.bgcolor
                    seen.add((fg.name if fg else None, bg.name if bg else None))
        return seen
