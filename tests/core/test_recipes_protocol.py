"""Recipes are plug-ins: every registered recipe keeps the Recipe protocol, and a recipe added as
one module (tests/engine/recipes/plugin.py's ONES) is found, validated, estimated and listed
with no other file touched."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.plan import make_plan
from core.plan_text import describe_plan
from core.recipes import RECIPES, Recipe, bytes_per_pixel, validate_params
from core.recipes.base import Param, toml_value
from core.spec import SpecError, load_spec
from tests.conftest import write_job
from tests.engine.recipes.plugin import ONES, plugged_in
from tests.jobs import job_text

ROOT = Path(__file__).parents[2]
TOML_KINDS = (str, int, float, bool, list, dict)  # what a job file's value can be


ONES_JOB = job_text(recipe={"name": "ones"})


# The recipe modules eebatch ships, in name order; a test plug-in adds "ones".
BUILT_IN = ["classify", "composite", "python", "sample", "stats"]
WITH_ONES = sorted([*BUILT_IN, "ones"])

def assert_keeps_protocol(key: str, recipe: Recipe) -> None:
    assert isinstance(recipe, Recipe)
    assert recipe.name == key and key.isidentifier()
    assert recipe.help.strip() and "\n" not in recipe.help, "help is one line"
    names = [p.name for p in recipe.parameters]
    assert len(set(names)) == len(names) and list(recipe.params) == names
    for param in recipe.parameters:
        assert isinstance(param, Param) and param.name.isidentifier()
        assert param.help.strip() and "\n" not in param.help, f"{key}.{param.name}: help"
        kinds = param.kind if isinstance(param.kind, tuple) else (param.kind,)
        assert kinds and all(k in TOML_KINDS for k in kinds), f"{key}.{param.name}: kind"
        if param.required:
            assert param.default is None, f"{key}.{param.name}: required, yet a default"
        else:  # its default passes its own check
            problems = validate_params(key, {param.name: param.default})[1]
            assert [p for p in problems if p[0] == param.name] == [], \
                f"{key}.{param.name}: default {param.default!r}"
    params, problems = validate_params(key, {})
    assert problems == [(name, "is required") for name in recipe.required]
    assert set(params) == set(names)
    assert recipe.output(params) in ("image", "table")
    bands = recipe.bands(params)
    if recipe.output(params) == "image":
        assert bands, f"{key}: an image of no bands"
    assert all(isinstance(b, str) and b and isinstance(n, int) and 1 <= n <= 8
               for b, n in bands), bands
    assert recipe.band_names(params) in ([], [b for b, _ in bands])
    assert type(recipe).build is not Recipe.build


@pytest.mark.parametrize("key", list(RECIPES))
def test_every_recipe_keeps_the_protocol(key: str) -> None:
    assert_keeps_protocol(key, RECIPES[key])


def test_the_catalog_lists_the_recipe_modules_in_name_order() -> None:
    assert list(RECIPES) == BUILT_IN
    assert {type(r).__module__ for r in RECIPES.values()} == {
        "core.recipes.classify", "core.recipes.composite", "core.recipes.python_function",
        "core.recipes.sample", "core.recipes.stats"}


def test_planning_never_imports_earthengine(tmp_path: Path) -> None:
    job = write_job(tmp_path, ONES_JOB.replace('"ones"', '"composite"') + 'indices = ["NDVI"]\n')
    code = ("import sys; from core.spec import load_spec; from core.plan import make_plan; "
            "from core.plan_text import describe_plan; "
            f"describe_plan(make_plan(load_spec({str(job)!r}))); "
            "assert 'ee' not in sys.modules, 'ee imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_new_module_is_a_new_recipe(tmp_path: Path) -> None:
    with plugged_in(tmp_path / "plugins") as found:
        assert list(found) == WITH_ONES
        assert list(RECIPES) == WITH_ONES
        assert_keeps_protocol("ones", RECIPES["ones"])
    assert "ones" not in RECIPES  # put back


def test_a_new_recipe_is_validated_with_its_own_parameters(tmp_path: Path) -> None:
    with plugged_in(tmp_path / "plugins"):
        job = write_job(tmp_path, ONES_JOB + 'bands = 11\nvalue = "x"\ncolour = 1\n')
        with pytest.raises(SpecError) as err:
            load_spec(job)
        text = str(err.value)
        assert "recipe.bands: must be between 1 and 10" in text
        assert "recipe.value: expected int or float, got str 'x'" in text
        assert ("recipe.colour: unknown parameter of recipe 'ones'; known: value, bands, prefix"
                in text)
        assert "recipe.value: is required" not in text  # given, if badly
        with pytest.raises(SpecError, match=r"recipe\.value: is required"):
            load_spec(write_job(tmp_path, ONES_JOB))
        spec = load_spec(write_job(tmp_path, ONES_JOB + "value = 7\n"))
        assert spec.recipe.params == {"value": 7, "bands": 2, "prefix": "one"}


def test_a_new_recipe_is_estimated_from_its_bands(tmp_path: Path) -> None:
    with plugged_in(tmp_path / "plugins"):
        spec = load_spec(write_job(tmp_path, ONES_JOB + "value = 1.5\nbands = 3\n"))
        plan = make_plan(spec)
        assert plan.bands == 3 and bytes_per_pixel(spec) == plan.bytes_per_pixel == 12
        assert plan.est_bytes == plan.pixels * 12
        assert "3 bands" in "\n".join(describe_plan(plan))


def test_a_new_recipe_is_listed_among_the_known(tmp_path: Path) -> None:
    with plugged_in(tmp_path / "plugins"), pytest.raises(
            SpecError, match=f"unknown recipe 'nope'; known: {', '.join(WITH_ONES)}"):
        load_spec(write_job(tmp_path, ONES_JOB.replace('"ones"', '"nope"')))


@pytest.mark.parametrize(("modules", "problem"), [
    ({"helpers": "X = 1\n"}, "core.recipes.helpers is in the recipe package but holds no RECIPE"),
    ({"ones": ONES, "twice": ONES}, "core.recipes.twice: recipe 'ones' is defined twice"),
])
def test_a_module_that_is_no_recipe_is_an_error(tmp_path: Path, modules: dict[str, str],
                                                problem: str) -> None:
    with (pytest.raises(TypeError, match=re.escape(problem)),
          plugged_in(tmp_path / "plugins", modules)):
        pass
    assert list(RECIPES) == BUILT_IN


def test_private_modules_are_not_recipes(tmp_path: Path) -> None:
    with plugged_in(tmp_path / "plugins", {"ones": ONES, "_shared": "Y = 2\n"}) as found:
        assert list(found) == WITH_ONES


TOML_VALUES = st.recursive(
    st.text() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False)
    | st.dates(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@given(TOML_VALUES)
@example({"0\n": ""})  # a key that ends in a newline is quoted ("$" once let it pass bare)
def test_a_value_is_shown_as_the_job_file_writes_it(value: object) -> None:
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_the_plan_names_the_parameters_a_job_sets() -> None:
    python = RECIPES["python"]
    params, _ = validate_params("python", {"function": "my_recipes:ndvi", "bands": 1,
                                           "args": {"cloud": 40}})
    assert python.settings(params) == ['function = "my_recipes:ndvi"', "args = { cloud = 40 }"]
    composite = RECIPES["composite"]
    assert composite.settings(validate_params("composite", {})[0]) == []


def test_the_manual_gives_each_parameter_its_line() -> None:
    lines = RECIPES["python"].manual()
    assert lines[0] == ("python: your own module:function(geometry, start, end, **args) "
                        "returning an ee.Image")
    assert lines[1] == '  function (str, required): "module:function" to call'
    assert "  bands (int, default 1): bands the image has (for estimates)" in lines
    assert len(RECIPES["composite"].manual()) == 1 + len(RECIPES["composite"].parameters)
