"""Broken job files never crash the CLI: `plan`, `new` and `run JOB` exit 0 or 2, never with a
traceback; exit 2 names the job file on stderr and leaves no session behind.

A corpus of the cases a fuzz campaign found (BAD_JOBS of test_spec) and a deterministic
hypothesis fuzz that mutates a valid job: wrong types, NaN/inf, huge numbers, bad bytes, dates
and steps, regions (bboxes and small GeoJSON files), prefixes, recipes and their parameters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import tempfile
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from core import paths
from core.recipes import RECIPES
from core.spec import SCHEMA
from tests.core.test_spec import BAD_JOBS, BadJob, geojson_text
from tui.cli import main

VALID: dict[str, dict[str, Any]] = {
    "job": {"name": "fuzz", "output_dir": "out"},
    "region": {"bbox": [0, 0, 4, 2]},
    "grid": {"size": 1, "crs": "EPSG:4326"},
    "time": {"start": dt.date(2023, 6, 1), "end": dt.date(2023, 9, 1), "step": "1 month"},
    "recipe": {"name": "composite", "bands": ["SR_B4"], "max_cloud": 30},
    "export": {"scale": 1000, "folder": "f", "prefix": "{job}_{unit}", "file_format": "GeoTIFF",
               "max_pixels": 10**13},
    "limits": {"max_tasks": 4, "drive_budget": "1 GB", "poll_seconds": 1},
    "backend": {"kind": "emulator", "url": "http://127.0.0.1:8787"},
}
KEYS = sorted({(section, key) for section, keys in SCHEMA.items() for key in keys}
              | {("recipe", key) for info in RECIPES.values() for key in info.params}
              | {("job", "nme"), ("grid", "sizes"), ("export", "scale_m")})


# -- TOML out of Python values, nan, inf and bad text included -------------------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)  # ints past 64 bits are bad TOML: exit 2 all the same
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    return json.dumps(str(value), ensure_ascii=False)  # JSON's escapes are TOML's


def to_toml(doc: dict[str, Any]) -> str:
    top = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [f"[{json.dumps(k)}]\n" + "".join(f"{json.dumps(key)} = {_toml_value(v)}\n"
                                                for key, v in table.items())
              for k, table in doc.items() if isinstance(table, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables)


# -- mutations ---------------------------------------------------------------------------------

NASTY = [math.nan, math.inf, -math.inf, 0, -1, 0.0, 1e-300, 1e308, 2**63 - 1, -(2**63), 10**8,
         "", "\x00", "a\x00b", "x" * 300, "{unit}{", "{job}_{unit}_{x}", "{unit!r}", "a/{unit}",
         "99999999999 days", "0 days", "1 fortnight", "EPSG:99999", "EPSG:4978", "EPSG:3857",
         "+proj=longlat", "JPEG", "SHP", "10 GB", "9" * 400 + " GB", "nan", True, [], {},
         [math.nan, 0], [0, 0, 0], ["a", 1], [-181, -91, 181, 91], [0, 0, 1e-12, 1e-12],
         [-180, -90, 180, 90], [400, 0, 500, 1], dt.date(1, 1, 1), dt.date(9999, 12, 31),
         "9999-12-31", "2023-02-30", "python", "nosuch", "m:f", ":", "../../etc"]
scalars = st.one_of(
    st.sampled_from(NASTY), st.integers(-(2**63), 2**63 - 1), st.floats(),
    st.text(max_size=12), st.booleans(), st.dates(),
)
values = st.one_of(scalars, st.lists(scalars, max_size=5))
coords = st.floats(-400, 400) | st.sampled_from([math.inf, 1e30, 181.0, 95.0, 0.0])


@st.composite
def region_files(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A small GeoJSON region file: rings open or closed, off the globe, in odd CRSs, or junk."""
    points = draw(st.lists(st.tuples(coords, coords), min_size=1, max_size=6))
    ring = [list(p) for p in points]
    if draw(st.booleans()):
        ring.append(ring[0])
    crs = draw(st.sampled_from([None, "EPSG:4326", "EPSG:32610", "EPSG:3857", "EPSG:99999"]))
    text = draw(st.sampled_from([geojson_text(ring, crs), "{", '{"type": "FeatureCollection"}',
                                 geojson_text([[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]], crs)]))
    return {"file": "r.geojson"}, text


@st.composite
def jobs(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """(the job file's bytes, a region file's text or None)."""
    doc = json.loads(json.dumps(VALID, default=str))  # a deep copy; dates come back below
    doc["time"].update(start=VALID["time"]["start"], end=VALID["time"]["end"])
    region_text = None
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "set", "set", "delete", "section", "region",
                                     "prefix", "time", "recipe"]))
        if kind == "set":
            section, key = draw(st.sampled_from(KEYS))
            doc.setdefault(section, {})
            if isinstance(doc[section], dict):
                doc[section][key] = draw(values)
        elif kind == "delete":
            section = draw(st.sampled_from(sorted(doc)))
            if isinstance(doc[section], dict) and doc[section]:
                doc[section].pop(draw(st.sampled_from(sorted(doc[section]))))
        elif kind == "section":
            section = draw(st.sampled_from([*sorted(SCHEMA), "extra"]))
            doc[section] = draw(st.sampled_from([None, 1, "x", {}]))
            if doc[section] is None:
                del doc[section]
        elif kind == "region":
            doc["region"], region_text = draw(region_files())
        elif kind == "prefix":
            pieces = st.sampled_from(["{", "}", "{job}", "{unit}", "x", "/", ":", "!r", " "])
            if not isinstance(doc.get("export"), dict):
                doc["export"] = {}
            doc["export"]["prefix"] = "".join(draw(st.lists(pieces, max_size=6)))
        elif kind == "time":
            doc["time"] = {"start": draw(st.dates()), "end": draw(st.dates()),
                           "step": draw(st.from_regex(r"\d{1,12} (days|months|years)",
                                                      fullmatch=True))}
        else:
            doc["recipe"] = {"name": "python", "function": draw(st.sampled_from(["m:f", "m"])),
                             "bands": draw(st.integers(-5, 10**9)),
                             "kind": draw(st.sampled_from(["image", "table", "video"]))}
    body = to_toml(doc).encode()
    if draw(st.integers(0, 9)) == 0:  # a stray byte: bad UTF-8 or a broken TOML line
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=2)) + body[at:]
    return body, region_text


# -- the CLI, watched --------------------------------------------------------------------------

def cli(*argv: str) -> tuple[int, str]:
    """Exit code and stderr of `eebatch ARGV`; an exception out of main fails the test."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(list(argv))
    except BaseException:  # any escape from main is the bug this test hunts
        pytest.fail(f"eebatch {' '.join(argv)} crashed:\n{traceback.format_exc()}")
    return code, err.getvalue()


def session_files() -> list[Path]:
    return sorted(paths.sessions_dir().iterdir())


def check_refused(job: Path, *command: str) -> str:
    """The command exits 2, every stderr line is an error and one names the job file; no
    session file (not even a temporary) is left behind."""
    code, err = cli(*command, str(job))
    assert code == 2, (command, err)
    lines = err.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err
    assert any(str(job) in line for line in lines), err
    assert "Traceback" not in err
    assert session_files() == [], command
    return err


@pytest.mark.parametrize("bad", BAD_JOBS, ids=lambda b: b.id)
def test_corpus_exits_2_through_the_cli(tmp_path: Path, bad: BadJob) -> None:
    job = bad.write(tmp_path)
    for command in (("plan",), ("new",), ("run",)):  # `run JOB` fails at validation
        err = check_refused(job, *command)
        assert err.splitlines() == [err.splitlines()[0]], err
        assert f"{job}: {bad.key}: " in err and bad.words in err, err


@pytest.mark.slow  # 300 job files through the command line: about 10 s
@settings(derandomize=True, max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(jobs(), st.integers(0, 4))
def test_fuzzed_jobs_exit_0_or_2(case: tuple[bytes, str | None], sample: int) -> None:
    body, region_text = case
    with tempfile.TemporaryDirectory() as directory:
        job = Path(directory) / "job.toml"
        job.write_bytes(body)
        if region_text is not None:
            (job.parent / "r.geojson").write_text(region_text)
        note(body.decode("utf-8", "backslashreplace"))
        code, err = cli("plan", str(job))
        event(f"plan exits {code}")
        assert code in (0, 2), err
        assert session_files() == []
        if code == 2:
            check_refused(job, "plan")
            if sample == 0:  # `new` and `run` validate the same way; a sample keeps it fast
                check_refused(job, "new")
                check_refused(job, "run")
        elif sample == 0:
            # A valid job: `new` makes one session (removed here); `run` would start a worker,
            # so it is not run.
            code, err = cli("new", str(job))
            assert code == 0, err
            created = session_files()
            assert len(created) == 1 and created[0].suffix == ".sqlite", created
            for path in created:
                path.unlink()


# -- malformed arguments -----------------------------------------------------------------------

TOKENS = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "99999999999999999999", "", "\x00", "é",
                     "--csv", "--every", "--headless", "--yes", "--new", "--port", "-", "--",
                     "no-such.toml", "/no/such/dir/x.csv", "../", "a" * 300, "t-1", "demo-1"]),
    st.text(max_size=8))


@settings(derandomize=True, max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["plan", "new", "run", "status", "rm", "sessions", "doctor"]),
       st.lists(TOKENS, min_size=1, max_size=4))
def test_malformed_arguments_exit_2_with_one_error(command: str, args: list[str]) -> None:
    """No job file or session exists here, so every one of these is bad input: exit 2, an
    error on stderr, never a traceback, nothing written."""
    if command == "sessions" and all(a in ("--", "") for a in args):
        args = [*args, "x"]  # a bare `sessions` is a valid command
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main([command, *args])
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    except BaseException:
        pytest.fail(f"eebatch {command} {args!r} crashed:\n{traceback.format_exc()}")
    text = err.getvalue()
    assert code == 2, (command, args, text)
    assert "Traceback" not in text and "error: " in text, text
    assert session_files() == []
