"""A recipe added the way a newcomer adds one: a module of the core.recipes package holding
`RECIPE`. The tests write ONES as such a module into a folder put on the package's path and let
the catalog find it, as it finds composite.py and python_function.py; nothing else changes."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import core.recipes as package
from core.recipes import RECIPES, Recipe
from core.recipes.catalog import discover

# The whole of a new recipe: what would be core/recipes/ones.py.
ONES = '''\
"""ones: every band one value, over each tile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.recipes.base import Param, Recipe, UnitWork, between


class Ones(Recipe):
    name = "ones"
    help = "an image whose every band holds one value"
    parameters = (
        Param("value", (int, float), None, "the value of every pixel", required=True),
        Param("bands", int, 2, "how many bands", between(1, 10)),
        Param("prefix", str, "one", "band names: the prefix and the band's number"),
    )

    def bands(self, params: dict[str, Any]) -> list[tuple[str, int]]:
        return [(f"{params['prefix']}{i}", 4) for i in range(params["bands"])]

    def build(self, params: dict[str, Any], geometry: Any, unit: UnitWork,
              job_dir: Path) -> Any:
        import ee

        names = [name for name, _ in self.bands(params)]
        return ee.Image.constant([params["value"]] * len(names)).toFloat().rename(names)


RECIPE = Ones()
'''


@contextmanager
def plugged_in(folder: Path, modules: dict[str, str] | None = None) -> Iterator[dict[str, Recipe]]:
    """RECIPES as the catalog finds it when `modules` (name -> source; ONES as ones.py by
    default) sit in the core.recipes package; put back as it was afterwards."""
    modules = {"ones": ONES} if modules is None else modules
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
    saved_path, saved = list(package.__path__), dict(RECIPES)
    package.__path__.append(str(folder))
    importlib.invalidate_caches()
    try:
        found = discover()
        RECIPES.clear()
        RECIPES.update(found)
        yield found
    finally:
        package.__path__[:] = saved_path
        RECIPES.clear()
        RECIPES.update(saved)
        for name in modules:
            sys.modules.pop(f"{package.__name__}.{name}", None)
            if hasattr(package, name):
                delattr(package, name)
