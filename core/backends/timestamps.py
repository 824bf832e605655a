"""Google's timestamps (EE's createTime, Drive's createdDate) as Unix times."""

from __future__ import annotations

import datetime as dt


def unix_time(text: str | None) -> float | None:
    """An RFC 3339 UTC timestamp (`...Z`, 0-9 fractional digits) as a Unix time, or None."""
    if not text:
        return None
    text = text.rstrip("Z")
    if "." in text:  # strptime's %f takes at most 6 digits; EE may send 9
        whole, _, fraction = text.partition(".")
        text = f"{whole}.{fraction[:6]}"
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in text else "%Y-%m-%dT%H:%M:%S"
    try:
        return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None
