"""The tile map: every tile in its place on the grid, one glyph + colour per state.

Drawn with the Line API (one ScrollView, cached Strips, numpy for aggregation), never a widget
per tile, so 100,000 tiles stay smooth. Zoom levels:

  0   a tile is 4 characters x 2 lines; each quadrant (a split tile's child) 2 x 1
  1   a tile is 2 characters x 1 line; a character is the west or east half
  k   (k >= 2) a character covers 2^(k-2) tile columns x 2^(k-1) tile rows

A cell covering several tiles (or children, or periods, or batches) shows the most urgent state
among them.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from core.states import FAILED, PENDING
from tui.reader import MapInit, UnitChanges
from tui.widgets.common import CODE, EMPTY, GLYPH, SPLIT_CODE, STATE_CSS, STATE_OF_CODE

MAX_ZOOM = 14
CURSOR_DONE = "▚"
FAILED_CODE = CODE[FAILED]


class TileModel:
    """States of every unit drawn on the map, as arrays. A column is a period, or with
    [batches] one batch of a period (MapInit): base[tile, column] for the planned units,
    children for split ones; quads[tile, column, 4] is what each quadrant shows."""

    @property
    def quads(self) -> np.ndarray:
        """(tiles, columns, 4) what each quadrant shows: a unit's code, or where it is split
        its children's."""
        return self._quads(0, self.base.shape[1])

    def _quads(self, lo: int, hi: int) -> np.ndarray:
        codes = self.base[:, lo:hi, None]
        return np.where(codes == SPLIT_CODE, self.kid_quads[:, lo:hi, :], codes)

    def __init__(self, init: MapInit) -> None:
        self.tile_ids = init.tile_ids
        self.periods = init.periods
        self.grid = init.grid
        n = len(init.tile_ids)
        self.row0 = int(init.rows.min()) if n else 0
        self.col0 = int(init.cols.min()) if n else 0
        self.r = (init.rows - self.row0).astype(np.int64)
        self.c = (init.cols - self.col0).astype(np.int64)
        self.R = int(self.r.max()) + 1 if n else 0
        self.C = int(self.c.max()) + 1 if n else 0
        self.tile_at = np.full((self.R, self.C), -1, dtype=np.int64)
        self.tile_at[self.r, self.c] = np.arange(n)
        # Each tile's cell in a row-major (R, C) grid; a rectangular region's tiles fill it in
        # order (dense): then a per-tile array is that grid as it is, no scatter.
        self.flat = self.r * self.C + self.c
        self.dense = n == self.R * self.C and bool((self.flat == np.arange(n)).all())
        self.base = init.base.copy()
        columns = self.base.shape[1]
        self.column_period = (init.column_period if init.column_period is not None
                              else np.arange(columns, dtype=np.int64))
        self.column_batch = (init.column_batch if init.column_batch is not None
                             else [None] * columns)
        self.batched = any(b is not None for b in self.column_batch)
        # a period's columns sit side by side: [lo, hi) of each
        edges = np.searchsorted(self.column_period, np.arange(len(self.periods) + 1))
        self.period_columns = [(int(edges[p]), int(edges[p + 1]))
                               for p in range(len(self.periods))]
        self.children: dict[tuple[int, int], dict[tuple[int, ...], int]] = {}
        # What a split unit's quadrants show, kept only where base is SPLIT_CODE: a change of
        # every unit then writes base alone (a million units: half the repaint).
        self.kid_quads = np.zeros((*self.base.shape, 4), dtype=np.uint8)
        for i, p in zip(*np.nonzero(self.base == SPLIT_CODE), strict=True):
            self._requad(int(i), int(p))

    def columns(self, period: int | None) -> range:
        """The columns of a period (its batches), or every column."""
        if period is None:
            return range(self.base.shape[1])
        return range(*self.period_columns[period])

    def where(self, i: int) -> str:
        """Tile i's centre: degrees north/east on a geographic grid, else grid-CRS metres."""
        if self.grid is None:
            return ""
        ox, oy, size, geographic = self.grid
        x = ox + (int(self.c[i]) + self.col0 + 0.5) * size
        y = oy - (int(self.r[i]) + self.row0 + 0.5) * size
        if geographic:
            return f"{abs(y):.2f}°{'N' if y >= 0 else 'S'} {abs(x):.2f}°{'E' if x >= 0 else 'W'}"
        return f"x {x:,.0f} y {y:,.0f}"

    def apply(self, changes: UnitChanges) -> None:
        tiles, columns, codes = changes.tiles, changes.columns, changes.codes
        # One index array: a pair cost twice as much (and one column needs no arithmetic,
        # whose temporary array of a million indexes cost more than the assignment).
        if self.base.shape[1] == 1:
            self.base[:, 0][tiles] = codes
        else:
            self.base.reshape(-1)[tiles * self.base.shape[1] + columns] = codes
        # A tile that is split shows its children: those are the only ones worked out one by one.
        split = codes == SPLIT_CODE
        dirty = set(zip(tiles[split].tolist(), columns[split].tolist(), strict=True))
        for i, p, path, code in changes.children:
            self.children.setdefault((i, p), {})[path] = code
            dirty.add((i, p))
        for i, p in dirty:
            self._requad(i, p)

    def _requad(self, i: int, p: int) -> None:
        if int(self.base[i, p]) != SPLIT_CODE:
            return
        kids = self.children.get((i, p), {})
        for q in range(4):
            leaves = [c for path, c in kids.items() if path[0] == q and c != SPLIT_CODE]
            self.kid_quads[i, p, q] = max(leaves) if leaves else CODE[PENDING]

    def tile_quads(self, period: int | None) -> np.ndarray:
        """(tiles, 4) codes for one period, or the most urgent over all periods; a period of
        several batches shows the most urgent of them."""
        lo, hi = (0, self.base.shape[1]) if period is None else self.period_columns[period]
        quads = self._quads(lo, hi)
        return quads.max(axis=1) if hi - lo > 1 else quads[:, 0, :]

    def tile_max(self, period: int | None) -> np.ndarray:
        """(tiles,) the most urgent code a tile shows for one period or all: its units' codes,
        or for a split one its children's, worked out only for the tiles that have them."""
        lo, hi = (0, self.base.shape[1]) if period is None else self.period_columns[period]
        codes = self.base[:, lo:hi]
        worst = codes.max(axis=1) if hi - lo > 1 else codes[:, 0].copy()
        split = np.flatnonzero(worst == SPLIT_CODE)  # the highest code: any column split
        if len(split):
            codes = self.base[split, lo:hi]
            kids = self.kid_quads[split, lo:hi, :].max(axis=2)
            worst[split] = np.where(codes == SPLIT_CODE, kids, codes).max(axis=1)
        return worst

    def grid_of(self, per_tile: np.ndarray) -> np.ndarray:
        """(R, C) of a per-tile array, EMPTY where there is no tile."""
        if self.dense:
            return per_tile.reshape(self.R, self.C)
        grid = np.zeros(self.R * self.C, dtype=per_tile.dtype)
        grid[self.flat] = per_tile
        return grid.reshape(self.R, self.C)

    def quad_grid(self, period: int | None) -> np.ndarray:
        """(2R, 2C) codes: each tile's four quadrants in their places."""
        tq = self.tile_quads(period)
        grid = np.zeros((2 * self.R, 2 * self.C), dtype=np.uint8)
        r2, c2 = 2 * self.r, 2 * self.c
        grid[r2, c2], grid[r2, c2 + 1] = tq[:, 0], tq[:, 1]
        grid[r2 + 1, c2], grid[r2 + 1, c2 + 1] = tq[:, 2], tq[:, 3]
        return grid

    def unit_codes(self, i: int, column: int) -> list[tuple[tuple[int, ...], int]]:
        """The drawn units of a tile in a column: itself, or its leaf children."""
        code = int(self.base[i, column])
        if code != SPLIT_CODE:
            return [((), code)]
        kids = self.children.get((i, column), {})
        return sorted((p, c) for p, c in kids.items() if c != SPLIT_CODE)


def block(zoom: int) -> tuple[int, int, int]:
    """(quad rows per line, quad columns per cell, characters per cell) at a zoom level."""
    if zoom == 0:
        return 1, 1, 2
    return 2**zoom, 2 ** (zoom - 1), 1


def block_max(grid: np.ndarray, bh: int, bw: int) -> np.ndarray:
    if bh == 1 and bw == 1:
        return grid
    h, w = grid.shape
    H, W = -(-h // bh), -(-w // bw)
    padded = np.zeros((H * bh, W * bw), dtype=grid.dtype)
    padded[:h, :w] = grid
    return padded.reshape(H, bh, W, bw).max(axis=(1, 3))


class TileMap(ScrollView, can_focus=True):
    """Arrows move the cursor over tiles; i/o zoom; f jumps to the next failed tile."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"tilemap--{s}" for s in STATE_CSS} | {
        "tilemap--cursor"}
    DEFAULT_CSS = "\n".join(
        [f"TileMap > .tilemap--{s} {{ color: {c}; }}" for s, c in STATE_CSS.items()]
        # reverse: the cursor shows without colour too (NO_COLOR): accent behind the glyph
        + ["TileMap > .tilemap--cursor { color: $accent; background: $background;"
           " text-style: bold reverse; }",
           "TileMap { scrollbar-size: 1 1; }"])
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(0,-1)", "Up", show=False),
        Binding("down,j", "move(0,1)", "Down", show=False),
        Binding("left,h", "move(-1,0)", "Left", show=False),
        Binding("right,l", "move(1,0)", "Right", show=False),
        Binding("enter", "details", "Details", show=False),
        Binding("i", "zoom(-1)", "zoom in", group=Binding.Group("Zoom", compact=True)),
        Binding("o", "zoom(1)", "zoom out", group=Binding.Group("Zoom", compact=True)),
        Binding("0", "fit", "Fit", show=False),
        Binding("f", "next_failed(1)", "Failed"),
        Binding("F", "next_failed(-1)", "Prev failed", show=False),
        Binding("t", "period(1)", "Period"),
        Binding("T", "period(-1)", "Prev period", show=False),
    ]

    class Changed(Message):
        """Cursor, zoom or period changed: the pane updates its title and details line."""

        def __init__(self, tile_map: TileMap) -> None:
            super().__init__()
            self.tile_map = tile_map

    class Selected(Message):
        def __init__(self, tile: int, period: int | None) -> None:
            super().__init__()
            self.tile = tile
            self.period = period

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model: TileModel | None = None
        self.zoom = 1
        self.auto_fit = True  # until the user zooms, the map refits on resize
        self.period: int | None = None  # None: all periods at once
        self.cursor = (0, 0)  # (tile row, tile col) on the normalized grid
        self._levels: np.ndarray = np.zeros((0, 0), dtype=np.uint8)
        self._strips: dict[int, Strip] = {}
        self._styles: dict[int, Style] = {}

    # -- data ----------------------------------------------------------------------------------

    def load(self, init: MapInit) -> None:
        self.model = TileModel(init)
        if self.model.tile_ids:
            self.cursor = (int(self.model.r[0]), int(self.model.c[0]))
        self.period = None if len(init.periods) != 1 else 0
        if self.auto_fit:
            self.zoom = self.fit_zoom()
        self._rebuild()

    def apply_changes(self, changes: UnitChanges) -> None:
        if self.model is None or not changes:
            return
        self.model.apply(changes)
        self._rebuild()

    def _rebuild(self) -> None:
        """Recompute the cells at this zoom; drop only the cached lines that changed."""
        if self.model is None:
            return
        bh, bw, cw = block(self.zoom)
        if self.zoom >= 2:  # a cell covers whole tiles: a quarter of the work of quadrants
            levels = block_max(self.model.grid_of(self.model.tile_max(self.period)),
                               bh // 2, bw // 2)
        else:
            levels = block_max(self.model.quad_grid(self.period), bh, bw)
        old = self._levels
        if old.shape != levels.shape:
            self._strips.clear()
            self.virtual_size = Size(levels.shape[1] * cw, levels.shape[0])
            self.refresh()
        else:
            for y in np.flatnonzero((old != levels).any(axis=1)):
                self._strips.pop(int(y), None)
                self.refresh_line(int(y))
        self._levels = levels
        self.post_message(self.Changed(self))

    # -- geometry ------------------------------------------------------------------------------

    def fit_zoom(self) -> int:
        """The closest zoom at which the whole grid fits the pane."""
        if self.model is None:
            return 1
        width = max(1, self.scrollable_content_region.width or self.size.width or 80)
        height = max(1, self.scrollable_content_region.height or self.size.height or 20)
        for zoom in range(MAX_ZOOM + 1):
            bh, bw, cw = block(zoom)
            lines = -(-2 * self.model.R // bh)
            cols = -(-2 * self.model.C // bw) * cw
            if lines <= height and cols <= width:
                return zoom
        return MAX_ZOOM

    def _step(self) -> tuple[int, int]:
        """Tile rows and columns the cursor moves by: one cell."""
        bh, bw, _ = block(self.zoom)
        return max(1, bh // 2), max(1, bw // 2)

    def cursor_cell(self) -> tuple[int, int, int, int]:
        """(x0, x1, y0, y1) of the cursor in characters and lines (end exclusive)."""
        tr, tc = self.cursor
        bh, bw, cw = block(self.zoom)
        if self.zoom <= 1:
            y0, x0 = 2 * tr // bh, 2 * tc // bw * cw
            return x0, x0 + 2 * cw // bw, y0, y0 + max(1, 2 // bh)
        y0, x0 = 2 * tr // bh, 2 * tc // bw
        return x0, x0 + 1, y0, y0 + 1

    def cell_tiles(self) -> np.ndarray:
        """Indices of the tiles under the cursor's cell, row-major."""
        if self.model is None:
            return np.zeros(0, dtype=np.int64)
        sr, sc = self._step()
        tr, tc = self.cursor
        r0, c0 = tr - tr % sr, tc - tc % sc
        found = self.model.tile_at[r0:r0 + sr, c0:c0 + sc].ravel()
        return found[found >= 0]

    def selected_tile(self) -> int | None:
        """The tile under the cursor; zoomed out, the most urgent tile of the cell."""
        if self.model is None:
            return None
        tr, tc = self.cursor
        if 0 <= tr < self.model.R and 0 <= tc < self.model.C and self.zoom <= 1:
            i = int(self.model.tile_at[tr, tc])
            return i if i >= 0 else None
        tiles = self.cell_tiles()
        if not len(tiles):
            return None
        worst = self.model.tile_max(self.period)[tiles]
        return int(tiles[int(np.argmax(worst))])

    def set_cursor(self, row: int, col: int) -> None:
        if self.model is None:
            return
        old = self.cursor_cell()
        self.cursor = (min(max(0, row), self.model.R - 1), min(max(0, col), self.model.C - 1))
        new = self.cursor_cell()
        for y0, y1 in ((old[2], old[3]), (new[2], new[3])):
            self.refresh_lines(y0, y1 - y0)
        x0, x1, y0, y1 = new
        self.scroll_to_region(Region(x0, y0, x1 - x0, y1 - y0), animate=False, force=True)
        self.post_message(self.Changed(self))

    # -- actions -------------------------------------------------------------------------------

    def action_move(self, dx: int, dy: int) -> None:
        sr, sc = self._step()
        tr, tc = self.cursor
        self.set_cursor(tr - tr % sr + dy * sr, tc - tc % sc + dx * sc)

    def action_zoom(self, delta: int) -> None:
        self.set_zoom(self.zoom + delta)

    def set_zoom(self, zoom: int) -> None:
        self.auto_fit = False
        self.zoom = min(max(0, zoom), MAX_ZOOM)
        self._levels = np.zeros((0, 0), dtype=np.uint8)
        self._rebuild()
        self.set_cursor(*self.cursor)

    def action_fit(self) -> None:
        self.set_zoom(self.fit_zoom())
        self.auto_fit = True

    def action_next_failed(self, direction: int) -> None:
        if self.model is None or not len(self.model.tile_ids):
            return
        failed = np.flatnonzero(self.model.tile_max(self.period) == FAILED_CODE)
        if not len(failed):
            self.notify("no failed tile" + ("" if self.period is None else " in this period"),
                        timeout=3)
            return
        tr, tc = self.cursor
        here = int(np.searchsorted(self.model.r * self.model.C + self.model.c,
                                   tr * self.model.C + tc, side="left"))
        current = self.selected_tile()
        if direction > 0:
            after = failed[failed > (current if current is not None else here - 1)]
            i = int(after[0]) if len(after) else int(failed[0])
        else:
            before = failed[failed < (current if current is not None else here)]
            i = int(before[-1]) if len(before) else int(failed[-1])
        self.set_cursor(int(self.model.r[i]), int(self.model.c[i]))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "period":  # only for jobs with several periods
            return self.model is not None and len(self.model.periods) > 1
        return True

    def action_period(self, delta: int) -> None:
        if self.model is None or len(self.model.periods) <= 1:
            return
        # cycle: all, 0, 1, ..., n-1
        options: list[int | None] = [None, *range(len(self.model.periods))]
        self.period = options[(options.index(self.period) + delta) % len(options)]
        self._rebuild()

    def action_details(self) -> None:
        tile = self.selected_tile()
        if tile is not None:
            self.post_message(self.Selected(tile, self.period))

    def on_click(self, event: events.Click) -> None:
        if self.model is None:
            return
        bh, bw, cw = block(self.zoom)
        x = event.x + int(self.scroll_offset.x)
        y = event.y + int(self.scroll_offset.y)
        self.set_cursor(y * bh // 2, x // cw * bw // 2)
        if event.chain >= 2:
            self.action_details()

    def on_resize(self, event: events.Resize) -> None:
        if self.auto_fit and self.model is not None:
            zoom = self.fit_zoom()
            if zoom != self.zoom:
                self.zoom = zoom
                self._levels = np.zeros((0, 0), dtype=np.uint8)
                self._rebuild()

    # -- drawing -------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._strips.clear()

    def _style(self, code: int) -> Style:
        style = self._styles.get(code)
        if style is None:
            base = self.rich_style
            if code == EMPTY:
                style = base
            else:
                style = base + self.get_component_rich_style(
                    f"tilemap--{STATE_OF_CODE[code]}", partial=True)
            self._styles[code] = style
        return style

    def _line(self, y: int) -> Strip:
        strip = self._strips.get(y)
        if strip is None:
            row = self._levels[y]
            _, _, cw = block(self.zoom)
            cuts = [0, *(np.flatnonzero(np.diff(row)) + 1).tolist(), len(row)]
            segments = []
            for a, b in itertools.pairwise(cuts):
                code = int(row[a])
                glyph = " " if code == EMPTY else GLYPH[STATE_OF_CODE[code]]
                segments.append(Segment(glyph * ((b - a) * cw), self._style(code)))
            strip = Strip(segments, len(row) * cw)
            self._strips[y] = strip
        return strip

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        line = y + scroll_y
        width = self.scrollable_content_region.width
        if self.model is None or line >= self._levels.shape[0]:
            return Strip.blank(width, self.rich_style)
        strip = self._line(line)
        x0, x1, y0, y1 = self.cursor_cell()
        if y0 <= line < y1:
            # The cursor keeps each glyph's shape, reversed on the accent colour; a reversed
            # full block would hide that, so "done" shows as a checker no state uses (not
            # "▓", which is "exported").
            cursor = self.get_component_rich_style("tilemap--cursor", partial=True)
            marked = Strip([Segment(seg.text.replace("█", CURSOR_DONE), seg.style + cursor)
                            for seg in strip.crop(x0, x1)])
            strip = Strip.join([strip.crop(0, x0), marked, strip.crop(x1, strip.cell_length)])
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)
