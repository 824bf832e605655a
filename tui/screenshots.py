"""Render screenshots/ (SVG, and PNG when rsvg-convert or cairosvg is there) from the real app
running the demo job on the built-in emulator, with the worker in a thread as `eebatch demo`
runs it. Everything lives in a temporary EEBATCH_HOME: the user's sessions are not touched.

    python -m tui.screenshots [--out screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot

ROOT = Path(__file__).parents[1]
WIDE, NARROW = (140, 40), (80, 24)


def to_png(svg: Path, zoom: float = 1.0) -> Path | None:
    """PNG beside the SVG. Textual's SVG keeps runs of spaces only if the renderer is told to
    preserve whitespace, so a copy with xml:space="preserve" is converted."""
    png = svg.with_suffix(".png")
    text = svg.read_text(encoding="utf-8").replace("<svg ", '<svg xml:space="preserve" ', 1)
    with tempfile.NamedTemporaryFile("w", suffix=".svg", delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    try:
        if shutil.which("rsvg-convert"):
            subprocess.run(["rsvg-convert", "-z", str(zoom), "-o", str(png), tmp.name],
                           check=True)
            return png
        try:
            import cairosvg  # type: ignore[import-not-found]
        except ImportError:
            return None
        cairosvg.svg2png(url=tmp.name, write_to=str(png), scale=zoom)
        return png
    finally:
        os.unlink(tmp.name)


async def _until(pilot: Pilot[object], what: Callable[[], bool], timeout: float,
                 label: str) -> None:
    end = time.monotonic() + timeout
    while not what():
        if time.monotonic() > end:
            raise TimeoutError(f"the demo did not reach '{label}' within {timeout:.0f} s")
        await pilot.pause(0.25)


async def shoot(out: Path) -> list[Path]:
    from core.demo import prepare_demo
    from core.engine.runner import start_worker
    from core.states import DONE, RUNNING, SPLIT
    from tui.app import EEBatchApp
    from tui.widgets.common import SPLIT_CODE
    from tui.widgets.job_form import JobForm
    from tui.widgets.tile_map import TileMap

    emulator, session = prepare_demo()
    worker = start_worker(session, emulator_url=emulator.url)
    shots: list[Path] = []
    try:
        app = EEBatchApp(session, worker=worker, poll_interval=0.25)

        def save(name: str) -> None:
            shots.append(Path(app.save_screenshot(filename=f"{name}.svg", path=str(out))))
            print(f"  {name}.svg", flush=True)

        def fraction() -> float:
            total = sum(n for s, n in app.counts.items() if s != SPLIT)
            return app.counts.get(DONE, 0) / total if total else 0.0

        def busy() -> bool:
            return app.counts.get(RUNNING, 0) > 0 and app.counts.get(SPLIT, 0) > 0

        async with app.run_test(size=WIDE, notifications=True) as pilot:
            await _until(pilot, lambda: app.polls > 0, 30, "first poll")
            save("start")
            await _until(pilot, lambda: fraction() >= 0.3 and busy(), 240, "30% done")
            await pilot.pause(0.5)
            save("dashboard")
            await pilot.resize_terminal(*NARROW)
            await pilot.pause(0.5)
            save("dashboard-80x24")
            await pilot.resize_terminal(*WIDE)
            await pilot.pause(0.3)
            tile_map = app.query_one(TileMap)
            model = tile_map.model
            if model is not None:  # details of a tile that split after a memory failure
                split = [i for i in range(len(model.tile_ids))
                         if int(model.base[i, 0]) == SPLIT_CODE]
                if split:
                    i = split[0]
                    tile_map.focus()
                    tile_map.set_cursor(int(model.r[i]), int(model.c[i]))
                    await pilot.press("enter")
                    await pilot.pause(0.5)
                    save("tile-details")
                    await pilot.press("escape")
            await _until(pilot, lambda: fraction() >= 1.0, 600, "all done")
            await pilot.pause(1.0)
            save("finished")
            await pilot.press("v")  # the results: the mosaic and its quicklook
            await _until(pilot, lambda: getattr(app.screen, "loads", 0) > 0, 30, "results")
            end = time.monotonic() + 120
            while not any("mosaic.vrt" in line for line in app.screen.lines):
                if time.monotonic() > end:
                    raise TimeoutError("the demo's mosaic was not assembled within 120 s")
                await pilot.press("ctrl+r")  # assembled in the worker's own thread
                await pilot.pause(1.0)
            await pilot.pause(0.5)
            save("results")
            await pilot.press("escape")
            await pilot.resize_terminal(160, 45)
            await pilot.press("e")
            await pilot.pause(0.5)
            form = app.query_one(JobForm)
            await _until(pilot, lambda: form.caught_up, 60, "job form checked")
            await pilot.pause(0.5)
            save("job-form")
    finally:
        worker.stop()
        worker.join(60)
        emulator.stop()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eebatch-shots-") as home:
        os.environ["EEBATCH_HOME"] = home
        print(f"running the demo on the emulator (EEBATCH_HOME={home})", flush=True)
        shots = asyncio.run(shoot(out))
    pngs = [p for p in (to_png(s) for s in shots) if p is not None]
    if len(pngs) < len(shots):
        print("no rsvg-convert (apt librsvg2-bin) or cairosvg: SVG only", file=sys.stderr)
    for path in shots + pngs:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
