"""The Tiles pane: the map, a legend with counts per state, and a line about the cursor's tile."""

from __future__ import annotations

from collections import Counter

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from core.states import DONE, PENDING, SPLIT
from tui.widgets.common import GLYPH, LEGEND_ORDER, SPLIT_CODE, STATE_OF_CODE
from tui.widgets.tile_map import TileMap


class TilesPane(Vertical):
    ALLOW_MAXIMIZE = True
    DEFAULT_CSS = """
    TilesPane #legend { height: auto; max-height: 3; color: $text-muted; }
    TilesPane #tile-line { height: 1; color: $text; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.counts: dict[str, int] = {}

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
        self.query_one("#tile-line", Static).update(describe_tile(tile_map))


def _date(period: str) -> str:
    if len(period) == 8 and period.isdigit():
        return f"{period[:4]}-{period[4:6]}-{period[6:]}"
    return period


def describe_tile(tile_map: TileMap) -> str:
    """One line about the cursor: the tile and its units' states (or the cell, zoomed out)."""
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
    periods = range(len(model.periods)) if tile_map.period is None else [tile_map.period]
    states: Counter[str] = Counter()
    for p in periods:
        for _, code in model.unit_codes(i, p):
            states[STATE_OF_CODE.get(code, SPLIT) if code != SPLIT_CODE else SPLIT] += 1
    split = any(int(model.base[i, p]) == SPLIT_CODE for p in periods)
    what = ", ".join(f"{n} {s}" for s, n in sorted(states.items(),
                                                 key=lambda kv: LEGEND_ORDER.index(kv[0])))
    where = model.where(i)
    return (f"{prefix}{model.tile_ids[i]}{' (split)' if split else ''}"
            f"{' · ' + where if where else ''} · {what} · enter: details")
