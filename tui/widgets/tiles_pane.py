"""The Tiles pane: the map, a legend with counts per state, and a line about the cursor's tile."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from core.routes import AUTO, BATCH, DIRECT
from core.states import DONE, PENDING, SPLIT
from tui.widgets.common import CODE, GLYPH, LEGEND_ORDER, SPLIT_CODE, STATE_OF_CODE
from tui.widgets.tile_map import TileMap

# A tile's units as (period, route, state): read for the cursor's tile of an auto job only
TileRoutes = Callable[[str], list[tuple[str, str, str]]]


class TilesPane(Vertical):
    ALLOW_MAXIMIZE = True
    DEFAULT_CSS = """
    TilesPane #legend { height: auto; max-height: 3; color: $text-muted; }
    TilesPane #tile-line { height: 1; color: $text; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.counts: dict[str, int] = {}
        self.route = BATCH  # the job's export.route
        self.tile_routes: TileRoutes | None = None

    def set_route(self, route: str, tile_routes: TileRoutes) -> None:
        self.route, self.tile_routes = route, tile_routes

    def compose(self) -> ComposeResult:
        yield TileMap(id="map")
        yield Static(id="legend")
        yield Static(id="tile-line", markup=False)

    def on_mount(self) -> None:
        self.border_title = "Tiles"

    @property
    def map(self) -> TileMap:
        return self.query_one(TileMap)

    def set_counts(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self._legend()

    def _legend(self) -> None:
        """Glyph, state and count for each state present; just glyph and count when the
        names do not fit on two lines (the help screen names every glyph)."""
        tile_map = self.map
        shown = [s for s in LEGEND_ORDER
                 if self.counts.get(s, 0) or s in (PENDING, DONE)]
        width = max(20, self.content_region.width or 40)
        full = sum(len(f"{GLYPH[s]} {s} {self.counts.get(s, 0):,}  ") for s in shown)
        named = full <= (3 if self.size.height > 20 else 2) * width
        text = Text()
        for state in shown:
            if text:
                text.append("  " if named else " ")
            style = tile_map.get_component_rich_style(f"tilemap--{state}", partial=True)
            text.append(GLYPH[state], style)
            n = self.counts.get(state, 0)
            text.append(f" {state} {n:,}" if named else f"{n:,}")
        self.query_one("#legend", Static).update(text)

    def on_resize(self) -> None:
        self._legend()
        self.call_after_refresh(self._tile_line)  # once the line has its new width

    def on_tile_map_changed(self, event: TileMap.Changed) -> None:
        tile_map = event.tile_map
        model = tile_map.model
        if model is None:
            return
        if len(model.periods) > 1:
            period = ("all periods" if tile_map.period is None
                      else f"period {_date(model.periods[tile_map.period])}")
            self.border_title = f"Tiles · {period}"
        self.border_subtitle = f"zoom {tile_map.zoom}"
        self._tile_line()

    def _tile_line(self) -> None:
        line = self.query_one("#tile-line", Static)
        line.update(describe_tile(self.map, line.content_region.width or None,
                                  self._route_of_cursor()))

    def _route_of_cursor(self) -> str:
        """The route of the cursor's tile in a word or two, when it is not batch: a direct
        job's units are all direct; an auto job's are read for the tile (a few rows, by
        primary key), as some may have moved to batch."""
        if self.route == DIRECT:
            return "direct"
        tile_map = self.map
        model = tile_map.model
        i = tile_map.selected_tile()
        if self.route != AUTO or self.tile_routes is None or model is None or i is None:
            return ""
        period = None if tile_map.period is None else model.periods[tile_map.period]
        routes = Counter(route for p, route, state in self.tile_routes(model.tile_ids[i])
                         if state != SPLIT and (period is None or p == period))
        direct, total = routes[DIRECT], sum(routes.values())
        if not direct:
            return ""
        return "direct" if direct == total else f"{direct} of {total} direct"


def _date(period: str) -> str:
    if len(period) == 8 and period.isdigit():
        return f"{period[:4]}-{period[4:6]}-{period[6:]}"
    return period


def describe_tile(tile_map: TileMap, width: int | None = None, route: str = "") -> str:
    """One line about the cursor: the tile and its units' states (or the cell, zoomed out);
    with [batches], each batch's most urgent state ("b0 done, b1 failed"); the `route` of its
    units when it is not batch ("direct", "2 of 3 direct"). Within `width` when it can be."""
    model = tile_map.model
    if model is None:
        return ""
    prefix = ""
    if tile_map.zoom >= 2:
        tiles = tile_map.cell_tiles()
        prefix = f"cell of {len(tiles)} tile{'s' * (len(tiles) != 1)} · "
    i = tile_map.selected_tile()
    if i is None:
        return prefix + "no tile here (outside the region)"
    columns = model.columns(tile_map.period)
    states: Counter[str] = Counter()
    worst: dict[int, int] = {}  # batch -> its most urgent code over the periods shown
    for j in columns:
        batch = model.column_batch[j]
        if batch is not None:
            worst.setdefault(batch, 0)  # 0: split, its children not read yet
        for _, code in model.unit_codes(i, j):
            states[STATE_OF_CODE.get(code, SPLIT) if code != SPLIT_CODE else SPLIT] += 1
            if batch is not None:
                worst[batch] = max(worst.get(batch, 0), code)
    split = any(int(model.base[i, j]) == SPLIT_CODE for j in columns)
    if worst:
        what = batch_states({b: STATE_OF_CODE.get(c, SPLIT) for b, c in worst.items()})
    else:
        what = ", ".join(f"{n} {s}" for s, n in sorted(states.items(),
                                                     key=lambda kv: LEGEND_ORDER.index(kv[0])))
    head = f"{prefix}{model.tile_ids[i]}{' (split)' if split else ''}"
    where = model.where(i)
    # What does not fit goes, least needed first: the key hint, where the tile is, its route.
    for parts in ([head, where, what, route, "enter: details"], [head, where, what, route],
                  [head, what, route], [head, what]):
        line = " · ".join(p for p in parts if p)
        if width is None or len(line) <= width:
            break
    return line


def batch_states(states: dict[int, str], most: int = 4) -> str:
    """Batches and their states in a few words: runs of neighbours in one state ("b0-b6 done,
    b7 failed"); past `most` runs, counts and the batches in the most urgent state named
    ("40 batches: 37 done, 3 failed (b7, b19, b30)")."""
    runs: list[list[Any]] = []  # [first, last, state]
    for b in sorted(states):
        if runs and runs[-1][2] == states[b] and runs[-1][1] == b - 1:
            runs[-1][1] = b
        else:
            runs.append([b, b, states[b]])
    if len(runs) <= most:
        return ", ".join(f"b{a}{f'-b{z}' if z > a else ''} {s}" for a, z, s in runs)
    counts = Counter(states.values())
    order = sorted(counts, key=LEGEND_ORDER.index)
    urgent = max(counts, key=lambda s: CODE.get(s, 0))
    named = [b for b in sorted(states) if states[b] == urgent]
    names = ", ".join(f"b{b}" for b in named[:3]) + (", …" if len(named) > 3 else "")
    return (f"{len(states)} batches: " + ", ".join(f"{counts[s]} {s}" for s in order)
            + f" ({names})")
