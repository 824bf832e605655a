"""The grid: tiles cover the region, never overlap, meet the region itself, ids are stable."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core import grid
from core.grid import TooManyTiles, child_id, make_tiles, split_bounds
from core.plan import make_plan
from core.spec import parse_spec

JOB = """
[job]
name = "g"
[region]
bbox = [{w}, {s}, {e}, {n}]
[grid]
size = {size}
{extra}
[recipe]
name = "composite"
"""


def spec_for(w: float, s: float, e: float, n: float, size: float, extra: str = ""):
    return parse_spec(JOB.format(w=w, s=s, e=e, n=n, size=size, extra=extra), Path("g.toml"))


boxes = st.tuples(
    st.floats(-170, 160), st.floats(-80, 70), st.floats(0.05, 9), st.floats(0.05, 9),
    st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(boxes)
@example((5e-324, -2.0768448035147536e-83, 0.5, 0.5, 1.0))  # a subnormal west edge
def test_tiles_cover_the_region_without_overlap(box: tuple[float, ...]) -> None:
    w, s, dx, dy, size = box
    spec = spec_for(w, s, w + dx, s + dy, size)
    tiles = make_tiles(spec)
    polys = shapely.box(*tiles.bounds().T)
    union = shapely.union_all(polys)
    # Cover: nothing of the region is left outside the tiles.
    assert spec.region.difference(union).area < 1e-9 * spec.region.area + 1e-12
    # No overlap: the tiles' areas add up to the area of their union.
    assert abs(shapely.area(polys).sum() - union.area) < 1e-6 * union.area
    # Every tile shares area with the region (not merely touching its edge). Boxes meet by
    # arithmetic: GEOS loses a subnormal coordinate (5e-324) and returns the corners only.
    x0, y0, x1, y1 = spec.region.bounds
    b = tiles.bounds()
    assert ((np.minimum(b[:, 2], x1) > np.maximum(b[:, 0], x0))
            & (np.minimum(b[:, 3], y1) > np.maximum(b[:, 1], y0))).all()
    # Ids are unique.
    assert len(set(tiles.ids())) == len(tiles)


@settings(max_examples=25, deadline=None)
@given(boxes)
def test_tile_ids_depend_only_on_place(box: tuple[float, ...]) -> None:
    """A tile keeps its id whatever region it is planned for: the grid has a fixed origin."""
    w, s, dx, dy, size = box
    small = make_tiles(spec_for(w, s, w + dx, s + dy, size))
    big = make_tiles(spec_for(w - 5, s - 5, w + dx + 5, s + dy + 5, size))
    big_by_id = dict(zip(big.ids(), map(tuple, big.bounds()), strict=True))
    for tid, bounds in zip(small.ids(), map(tuple, small.bounds()), strict=True):
        assert np.allclose(big_by_id[tid], bounds)


def test_same_job_file_same_unit_ids() -> None:
    extra = '[time]\nstart = 2020-01-01\nend = 2020-07-01\nstep = "2 months"'
    first = [r[0] for r in make_plan(spec_for(-3, -2, 4, 5, 1, extra)).unit_rows()]
    second = [r[0] for r in make_plan(spec_for(-3, -2, 4, 5, 1, extra)).unit_rows()]
    assert first == second
    assert first[0] == "r85c177_20200101"  # row from 90°N, column from 180°W


def test_tiles_kept_only_where_they_meet_the_region_itself(tmp_path: Path) -> None:
    # An L-shaped region: its bounding box holds 4 tiles, the region only 3.
    (tmp_path / "l.geojson").write_text(
        '{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":'
        '[[[0,0],[2,0],[2,1],[1,1],[1,2],[0,2],[0,0]]]}}')
    body = JOB.format(w=0, s=0, e=1, n=1, size=1, extra="").replace(
        "bbox = [0, 0, 1, 1]", 'file = "l.geojson"')
    spec = parse_spec(body, tmp_path / "l.toml")
    assert sorted(make_tiles(spec).ids()) == ["r88c180", "r89c180", "r89c181"]


def test_projected_grid_in_metres() -> None:
    extra = '[export]\ncrs = "EPSG:32611"\nscale = 30'
    spec = parse_spec(JOB.format(w=-118, s=34, e=-117, n=35, size=50000, extra=extra)
                      .replace('size = 50000', 'size = 50000\ncrs = "EPSG:32611"'),
                      Path("p.toml"))
    tiles = make_tiles(spec)
    b = tiles.bounds()
    assert np.allclose(b[:, 2] - b[:, 0], 50000)
    assert tiles.frame.region.bounds[0] > 100_000  # the region was reprojected to UTM metres


def test_align_snaps_tiles_to_whole_pixels() -> None:
    extra = '[export]\ncrs = "EPSG:32611"\nscale = 30'
    body = JOB.format(w=-118, s=34, e=-117, n=35, size=50000, extra=extra).replace(
        "size = 50000", 'size = 50000\ncrs = "EPSG:32611"\nalign = true')
    tiles = make_tiles(parse_spec(body, Path("a.toml")))
    b = tiles.bounds()
    assert np.allclose((b[:, 2] - b[:, 0]) / 30, np.round((b[:, 2] - b[:, 0]) / 30))
    assert np.allclose(b[:, 0] / 30, np.round(b[:, 0] / 30))  # edges on the 30 m lattice
    assert tiles.frame.size == 50010  # 1667 whole pixels


def test_split_gives_four_quadrants_that_tile_the_parent() -> None:
    parent = (0.0, 0.0, 2.0, 2.0)
    quads = split_bounds(parent)
    assert shapely.union_all(shapely.box(*np.array(quads).T)).equals(shapely.box(*parent))
    assert sum((e - w) * (n - s) for w, s, e, n in quads) == 4
    assert [child_id("r1c2", q) for q in range(4)] == ["r1c2.0", "r1c2.1", "r1c2.2", "r1c2.3"]


def test_limit_refuses_a_huge_grid_before_building_a_tile() -> None:
    """A global bbox at 0.06° once built 18 million boxes (7.8 GB) before the unit cap."""
    spec = spec_for(-180, -90, 180, 90, 10)
    spec = dataclasses.replace(spec, grid=dataclasses.replace(spec.grid, size=0.06))
    tracemalloc.start()
    try:
        with pytest.raises(TooManyTiles) as info:
            make_tiles(spec, limit=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.at_least == pytest.approx(18_000_000)
    assert peak < 50_000_000, peak  # memory, not seconds: the clock races on a loaded CI


def test_candidates_in_chunks_give_the_same_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_for(-3.5, -2.5, 4.5, 5.5, 1)
    whole = make_tiles(spec)
    monkeypatch.setattr(grid, "CHUNK", 7)
    chunked = make_tiles(spec)
    assert chunked.ids() == whole.ids() and len(whole) == 81


def test_limit_stops_building_once_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Area 3 (the bound lets it through), but the box straddles 8 tiles.
    spec = spec_for(0.5, 0.5, 3.5, 1.5, 1)
    assert len(make_tiles(spec, limit=8)) == 8
    with pytest.raises(TooManyTiles) as info:
        make_tiles(spec, limit=5)
    assert info.value.at_least == 8  # a rectangle meets every cell of its range: all counted
    # Any other shape is built chunk by chunk: one corner cut off, the same 8 tiles.
    notched = dataclasses.replace(spec, region=shapely.Polygon(
        [(0.5, 0.5), (3.5, 0.5), (3.5, 1.5), (0.6, 1.5), (0.5, 1.4)]))
    assert len(make_tiles(notched, limit=8)) == 8
    monkeypatch.setattr(grid, "CHUNK", 2)
    with pytest.raises(TooManyTiles) as info:
        make_tiles(notched, limit=5)
    assert info.value.at_least == 6  # stopped at the first chunk past the limit


def test_an_aligned_tile_of_odd_pixels_splits_on_the_pixel_lattice() -> None:
    """1,667 pixels of 30 m a side: the halfway cut would fall inside a pixel, and the two
    halves' exports would both hold it (a half-pixel overlap in the mosaic). On the lattice,
    the quarters are whole pixels, tile the parent, and share no pixel."""
    parent = (300_000.0, 3_700_020.0, 350_010.0, 3_750_030.0)
    quads = split_bounds(parent, 30.0)
    for w, s, e, n in quads:
        for edge in (w, s, e, n):
            assert edge / 30 == pytest.approx(round(edge / 30))
    assert shapely.union_all(shapely.box(*np.array(quads).T)).equals(shapely.box(*parent))
    assert sum((e - w) * (n - s) for w, s, e, n in quads) == pytest.approx(50_010.0 ** 2)
    assert split_bounds((0.0, 0.0, 30.0, 30.0), 30.0)[0] == (0.0, 15.0, 15.0, 30.0)  # one pixel
