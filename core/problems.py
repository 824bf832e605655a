"""A job file's problems as values: the file, the key, the message, and the line when known.

The command line prints each as one line ("FILE: KEY: MESSAGE", or "FILE: MESSAGE" for a
problem of the whole file); the job form marks the field named by its key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, eq=False)
class Problem(str):
    """One problem of a job file. It is also its own line of text (a str equal to
    "FILE: KEY: MESSAGE"), so code that prints, joins or compares the lines works unchanged;
    equality and hashing are the line's. `line` (1-based) is never part of the text."""

    path: Path
    key: str  # "grid.size", "[limit]" (a section), "region"; "" for the whole file
    message: str
    line: int | None = None

    def __new__(cls, path: Path, key: str, message: str, line: int | None = None) -> Problem:
        return super().__new__(cls, f"{path}: {key}: {message}" if key else f"{path}: {message}")

    def __reduce__(self) -> tuple[type[Problem], tuple[Path, str, str, int | None]]:
        return Problem, (self.path, self.key, self.message, self.line)


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_BARE = r"[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'"
_KEY = re.compile(rf"^\s*((?:{_BARE})(?:\s*\.\s*(?:{_BARE}))*)\s*=")
_PART = re.compile(_BARE)


def _name(dotted: str) -> list[str]:
    return [part.strip("\"'") for part in _PART.findall(dotted)]


def key_lines(text: str) -> dict[str, int]:
    """Where each section and key is first written: "grid" -> the line of [grid] (or of a
    top-level `grid = ...`), "grid.size" -> the line of `size = ...` under [grid]. A cheap
    reading of the lines, not a TOML parser: keys inside inline tables are not found."""
    found: dict[str, int] = {}
    section: list[str] = []
    in_string = False
    for number, line in enumerate(text.splitlines(), start=1):
        quotes = line.count('"""') + line.count("'''")
        if in_string:
            in_string = quotes % 2 == 0
            continue
        in_string = quotes % 2 == 1
        header = _HEADER.match(line)
        if header:
            section = _name(header.group(1))
            found.setdefault(".".join(section), number)
            continue
        key = _KEY.match(line)
        if key:
            parts = [*section, *_name(key.group(1))]
            for end in range(len(section) + 1, len(parts) + 1):
                found.setdefault(".".join(parts[:end]), number)
    return found


def line_of(key: str, lines: dict[str, int]) -> int | None:
    """The line a problem's key points at: the key's own line, or for a key that is not written
    (one that is required) its section's header; None when neither is in the text."""
    name = key.strip("[]")
    while name:
        if name in lines:
            return lines[name]
        name = name.rpartition(".")[0]
    return None
