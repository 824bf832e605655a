"""The demo: the built-in emulator in this process, a fresh demo session on it; it ends with
the summer's mosaic and its quicklook (core/assembly)."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from core import paths
from core.assembly.products import mosaic_paths
from core.emulator.app import Emulator
from core.emulator.config import EmulatorConfig
from core.routes import BATCH
from core.session import create_session, load_session_spec
from core.store import Store

# EE's batch model at 15 times its speed with 4 slots, so the demo finishes in about a minute,
# and limits that make the southern tiles (the biggest, at 1 km) run out of memory and split;
# an interactive request (`--route direct` or `auto`) gets a little less memory than a batch
# task, so under auto the bigger (southern) tiles go by batch and some of them split there,
# and under direct they split.
# As strict as Google may be: names beyond [A-Za-z0-9_-] refused (strict_names, the default),
# and new files reaching Drive's listing 3 s late.
DEMO_EMULATOR = EmulatorConfig(slots=4, speed=15.0, task_overhead_seconds=20.0, seed=7,
                               memory_limit_pixels=5_950, internal_error_rate=0.05,
                               drive_listing_lag=3.0, direct_memory_limit_pixels=5_600)


def demo_dir() -> Path:
    path = paths.data_dir() / "demo"
    path.mkdir(parents=True, exist_ok=True)
    return path


EMULATOR_KIND = 'kind = "emulator"\n'
EXPORT = "[export]\n"


def is_demo(path: Path) -> bool:
    """A session of `eebatch demo`: its job file is the demo's copy in the data dir."""
    store = Store(path)
    try:
        return store.job_path.resolve() == (demo_dir() / "demo.toml").resolve()
    finally:
        store.close()


def write_demo_job(url: str, route: str = BATCH) -> Path:
    """A fresh copy of the demo job file and its region (its output goes beside it). The job
    names the emulator `url` it runs on: an emulator job without one is refused; `route` is
    its export.route (core/routes.py)."""
    directory = demo_dir()
    shutil.rmtree(directory / "output", ignore_errors=True)
    region = resources.files("core") / "california.geojson"
    (directory / "california.geojson").write_bytes(region.read_bytes())
    text = (resources.files("core") / "demo_job.toml").read_text(encoding="utf-8")
    assert EMULATOR_KIND in text
    job = directory / "demo.toml"
    text = text.replace(EMULATOR_KIND, f'{EMULATOR_KIND}url = "{url}"\n')
    if route != BATCH:
        assert EXPORT in text
        text = text.replace(EXPORT, f'{EXPORT}route = "{route}"\n')
    job.write_text(text, encoding="utf-8")
    return job


def prepare_demo(state_dir: Path | None = None, config: EmulatorConfig = DEMO_EMULATOR,
                 route: str = BATCH) -> tuple[Emulator, Path]:
    """Start the emulator on a free loopback port and create the demo session. The caller
    runs the worker with `emulator_url=emulator.url` and stops the emulator at the end."""
    emulator = Emulator(config if state_dir is None else
                        EmulatorConfig(**{**config.__dict__, "state_dir": state_dir})).start()
    store, _ = create_session(write_demo_job(emulator.url, route))
    path = store.path
    store.close()
    return emulator, path


def demo_products(path: Path) -> list[tuple[Path, Path]]:
    """(mosaic, quicklook) of each period the demo session at `path` assembled."""
    store = Store(path)
    try:
        spec = load_session_spec(store)
        periods = sorted({row["period"] for row in store.product_files()})
    finally:
        store.close()
    made = [mosaic_paths(spec, period, None) for period in periods]
    return [(m.vrt, m.quicklook) for m in made if m.vrt.exists() and m.quicklook.exists()]
