"""The names eebatch gives Earth Engine: task descriptions and file-name prefixes.

Google's Export docs allow letters, digits, '-' and '_' in both (no spaces, no dots) and 100
characters in a description; whether the server enforces it is not known, so eebatch keeps to
it. Unit ids keep their readable form in the store and the dashboard (`r12c40.0` is the
north-west quarter of `r12c40`); only the names sent to EE are made safe, here.

Each attempt stores the description and prefix it was sent with, so a session made by an
earlier version (descriptions `eebatch:SESSION:UNIT:aN`, prefixes with '.') still finds its
tasks and files.
"""

from __future__ import annotations

import hashlib
import re

UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_DESCRIPTION = 100
# ee.data.setWorkloadTag's rule: 1-63 characters, letters, digits, '-', '_' and '.', starting
# and ending with a letter or digit. Cloud Monitoring charts EECU per tag.
WORKLOAD_TAG = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?")


def ee_safe(text: str) -> str:
    """`text` with every character EE may refuse turned into '-'. Unit ids stay distinct:
    tile ids are `rNcN` with '.'-separated quadrant digits and never contain '-'."""
    return UNSAFE.sub("-", text)


def _digest(text: str, n: int) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:n]


def task_description(session: str, unit: str, attempt: int) -> str:
    """`eebatch_SESSION_UNIT_aN`: unique per attempt, and recognisable as the job's in EE's
    task list. A session id that had to be changed gets a short digest of the original, so
    `ndvi.v2-1` and `ndvi-v2-1` never share a description; one over 100 characters is cut
    and given a digest of the whole."""
    safe_session = ee_safe(session)
    if safe_session != session:
        safe_session = f"{safe_session}-{_digest(session, 6)}"
    text = f"eebatch_{safe_session}_{ee_safe(unit)}_a{attempt}"
    if len(text) <= MAX_DESCRIPTION:
        return text
    return f"{text[:MAX_DESCRIPTION - 11]}-{_digest(text, 10)}"


def file_prefix(template: str, job: str, unit: str) -> str:
    """The fileNamePrefix of a unit's export (also its files' names on disk): the job's
    `export.prefix` template with the job name and unit id, made safe."""
    return ee_safe(template.format(job=job, unit=unit))


def legacy_file_prefix(template: str, job: str, unit: str) -> str:
    """What versions before the names were made safe sent (attempts without a stored
    prefix): their files in Drive still carry it."""
    return template.format(job=job, unit=unit)


def default_workload_tag(job: str) -> str:
    """`eebatch-JOB` in lower case, cut to EE's 63 characters: every export of the job carries
    it, so its EECU can be seen per job in Cloud Monitoring."""
    tag = "eebatch-" + re.sub(r"[^a-z0-9_-]", "-", job.lower())
    return tag[:63].rstrip("-_.")
