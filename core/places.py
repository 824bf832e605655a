"""Where a country or state that a job's name mentions lies, so a region typed in (lat, lon)
order that lands on another continent can be caught before anything runs.

The gazetteer is PROJ's own: every CRS in proj.db has an area of use with a name such as
"Kenya - north of equator and east of 36°E." or "United States (USA) - California." and a
box. A place's box is the union of the boxes whose name starts with it. That is coarse (a box,
often with neighbours), which suits the one question asked here: does the region miss the
place entirely while the region read latitude-first covers it?
"""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache

import pyproj.datadir

Bounds = tuple[float, float, float, float]

# Words that begin an area name but name no place ("Between 30°E and 36°E, …", "World: …").
_NOT_PLACES = {"between", "world", "north", "south", "east", "west", "onshore", "offshore",
               "mainland", "conus", "europe", "asia", "africa", "americas", "oceania"}
_MAX_SPAN = 90.0  # a place wider or taller than this says nothing about a slip
_MIN_LETTERS = 4  # "a", "us", "ne" (north-east) would match words that name no place


def _words(text: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[^a-z]+", text.lower()) if w)


def _keys(area_name: str) -> list[tuple[str, ...]]:
    """The place names an area's name starts with: "United States (USA) - California." gives
    ("united", "states"), ("usa",), ("california",) — the last as "usa california" too."""
    segments = [s.strip().rstrip(".") for s in area_name.split(" - ")]
    head = re.split(r"[:;,]", segments[0])[0]
    alias = re.search(r"\(([A-Za-z ]+)\)", head)
    country = _words(re.sub(r"\(.*?\)", "", head))
    if not country or country[0] in _NOT_PLACES:
        return []
    keys = [country] + ([_words(alias.group(1))] if alias else [])
    if len(segments) > 1:
        sub = re.split(r"[:;,(]| and | - ", segments[1])[0].strip()
        words = _words(sub)
        if sub[:1].isupper() and 0 < len(words) <= 3 and words[0] not in _NOT_PLACES:
            keys.append(words)
    return keys


@lru_cache(maxsize=1)
def gazetteer() -> dict[tuple[str, ...], Bounds]:
    """Place words → (west, south, east, north), read once per process (about 20 ms)."""
    path = f"{pyproj.datadir.get_data_dir()}/proj.db"
    try:  # read-only: PROJ's database is the library's, never ours to change
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT name, west_lon, south_lat, east_lon, north_lat FROM extent").fetchall()
    except sqlite3.Error:
        return {}  # no gazetteer, no warning: this check only ever adds a hint
    places: dict[tuple[str, ...], Bounds] = {}
    for name, west, south, east, north in rows:
        if None in (west, south, east, north) or west > east:  # across the antimeridian
            continue
        for key in _keys(name):
            old = places.get(key)
            places[key] = (west, south, east, north) if old is None else (
                min(old[0], west), min(old[1], south), max(old[2], east), max(old[3], north))
    return {k: b for k, b in places.items()
            if b[2] - b[0] <= _MAX_SPAN and b[3] - b[1] <= _MAX_SPAN
            and len("".join(k)) >= _MIN_LETTERS}


def places_named(*texts: str) -> list[tuple[str, Bounds]]:
    """Places whose names appear as whole words in the texts (a job's name, its file's name):
    "kenya-ndvi-2023" names Kenya; "new-mexico-fire" names New Mexico, not Mexico too."""
    found: dict[str, Bounds] = {}
    by_length = sorted(gazetteer().items(), key=lambda item: -len(item[0]))
    for text in texts:
        words = _words(text)
        taken: set[int] = set()  # word positions a longer name already holds
        for key, bounds in by_length:
            n = len(key)
            for i in range(len(words) - n + 1):
                if words[i:i + n] == key and not taken & set(range(i, i + n)):
                    taken |= set(range(i, i + n))
                    found[" ".join(key).title()] = bounds
    return list(found.items())


def overlaps(a: Bounds, b: Bounds) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
