"""One job file for every test package: `job_text` writes the TOML of a job from its sections,
each given as a dict (only what a test sets; the rest are a small valid job's defaults)."""

from __future__ import annotations

from typing import Any

import tomlkit


def job_text(name: str = "t", *, region: dict[str, Any] | None = None,
             grid: dict[str, Any] | None = None, time: dict[str, Any] | None = None,
             recipe: dict[str, Any] | None = None, export: dict[str, Any] | None = None,
             limits: dict[str, Any] | None = None, emulator: str | None = None,
             **job: Any) -> str:
    """The TOML of a job named `name` (more [job] keys as keywords, e.g. output_dir); with
    `emulator` (a URL), a [backend] section for it."""
    doc: dict[str, Any] = {
        "job": {"name": name, **job},
        "region": region or {"bbox": [0, 0, 4, 2]},
        "grid": grid or {"size": 1},
    }
    if time:
        doc["time"] = time
    doc["recipe"] = recipe or {"name": "composite"}
    for section, keys in (("export", export), ("limits", limits)):
        if keys:
            doc[section] = keys
    if emulator:
        doc["backend"] = {"kind": "emulator", "url": emulator}
    return "\n" + tomlkit.dumps(doc)


def toml_value(text: str) -> Any:
    """A value written as TOML text ("[0, 0, 2, 1]") as Python."""
    import tomllib

    return tomllib.loads(f"v = {text}")["v"]
