"""Byte sizes as people write them in job files ("10 GB", "500MiB", 1e9)."""

from __future__ import annotations

import math
import re

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*\Z")


def parse_size(value: object) -> int:
    """Return bytes, or raise ValueError naming what is wrong."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as \"10 GB\"")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number of bytes, got {value!r}")
        if value < 0:
            raise ValueError("must not be negative")
        return int(value)
    if not isinstance(value, str):
        raise ValueError("expected a size such as \"10 GB\"")
    m = _SIZE.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"{value!r} is not a size such as \"10 GB\" or \"500 MiB\"")
    size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(size):  # hundreds of digits overflow a float
        raise ValueError(f"{value!r} is too large a size")
    return int(size)
