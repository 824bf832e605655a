"""Settings of one emulator instance: the batch model's knobs and the failure knobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GB = 10**9


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything `eebatch emulator` can be told on its command line.

    Times are *simulated* seconds; `speed` says how many of them pass per wall-clock second, so
    a demo can run a day of EE queue in a minute while the HTTP side stays real.
    """

    slots: int = 2  # tasks RUNNING at once per project (EE's default for a new project)
    speed: float = 1.0  # simulated seconds per wall-clock second
    drive_quota: int | None = 15 * GB  # None: an unlimited Drive (quotaType UNLIMITED)
    seed: int = 0
    state_dir: Path | None = None  # None: a temporary dir removed on stop
    # The batch model: a task runs for overhead + pixels * bands / pixel_rate simulated seconds.
    task_overhead_seconds: float = 20.0
    pixel_rate: float = 2_000_000.0  # pixel-bands per simulated second
    jitter: float = 0.2  # +-20 % seeded run-time jitter
    # Failures of oversized exports, as EE gives them.
    memory_limit_pixels: int = 400_000_000  # above: "User memory limit exceeded."
    timeout_pixels: int = 1_000_000_000  # above: "Computation timed out."
    internal_error_rate: float = 0.0  # seeded fraction failing with "Internal error."
    # A seeded fraction of tasks run `straggler_slowdown` times longer than their work says,
    # as a task on a stalled EE worker does (the straggler watchdog's case).
    straggler_rate: float = 0.0
    straggler_slowdown: float = 20.0
    # Output files above this many bytes are split into prefix-RRRRRRRRRR-CCCCCCCCCC.tif shards.
    file_split_bytes: int = 256 * 1024 * 1024
    # Cap on every page size (operations, assets, Drive files) so tests can force paging.
    max_page_size: int = 1000
    # Google's documented limits, enforced as strictly as the real service may (issue 13).
    # Descriptions and file-name prefixes beyond [A-Za-z0-9_-] are refused (400). On by default
    # here, so every test and the demo run with it; `eebatch emulator` turns it on with
    # --strict-names (user scripts with dots in names run as Google may let them).
    strict_names: bool = True
    max_pending_tasks: int = 3000  # PENDING tasks per project; one more submit is refused
    # Memory failures come early: within this many simulated seconds of the task's start,
    # however large the export (EE gives up in minutes, not after a quarter of the run).
    memory_fail_seconds: float = 300.0
    # A task whose simulated run would exceed this fails "Computation timed out." at it.
    max_run_seconds: float = 12 * 3600.0
    # operations.list order is not documented by Google: newest first by default, oldest first
    # to prove that a client does not depend on it.
    operations_oldest_first: bool = False
    # Wall-clock seconds before a new Drive file shows in files.list (files.get finds it at
    # once): Drive's search index lags (undocumented how long).
    drive_listing_lag: float = 0.0
    # Bytes of Gmail and Photos sharing the Drive quota (quotaBytesUsedAggregate - Used).
    quota_other: int = 0
    # Tiles that differ in content (scene count, masked area): each image export gets a content
    # factor in [1, size_spread], log-uniform, seeded by `seed` and the cell of `size_cell`
    # degrees (lon/lat) its centre lies in, so a tile has the same factor whatever loop sends
    # it and its split quarters share it. Its work (run time, the memory and time-out limits)
    # and its file sizes are multiplied by it; the pixels stay the world's (the GeoTIFF is
    # written in strips, so its size follows its pixels, and carries zero bytes after its
    # TIFF data). 1.0: off.
    size_spread: float = 1.0
    size_cell: float = 1.0
    # Drive download bandwidth (files.get?alt=media) in bytes per *simulated* second: per
    # download and shared by all downloads at once (paced on the wall clock at rate x speed,
    # so download time keeps its ratio to EE time at any speed). None: unthrottled.
    download_rate: float | None = None
    download_total_rate: float | None = None
    # Direct pixels (computePixels, and getDownloadURL's thumbnails getPixels), EE's
    # interactive route (pixels.py): no queue and no Drive, at most `direct_concurrency`
    # requests in flight per project (EE: 40, standard and high-volume endpoints alike; one
    # more gets 429). A request takes direct_latency_seconds + pixels x bands x content /
    # direct_pixel_rate simulated seconds. Google publishes no rate (field.md): 500,000
    # pixel-bands a second is an assumption, a quarter of the batch model's per-task rate
    # (one interactive computation runs where a batch task fans out), so a 48 MB float32
    # request (12.6 M pixel-bands) takes ~27 s, the tens of seconds Xee users report for
    # such chunks; 2 s of latency per request is what geemap's 25-process chip downloads
    # ("thousands of chips in a few minutes") imply.
    direct_concurrency: int = 40
    direct_pixel_rate: float = 500_000.0
    direct_latency_seconds: float = 2.0
    # Interactive requests must finish in 5 minutes: "Computation timed out." (400) at it.
    direct_timeout_seconds: float = 300.0
    # Model pixels x content above which a direct request fails "User memory limit
    # exceeded." (400), early (a quarter of its run). None: memory_limit_pixels / 16, the
    # batch limit scaled to one interactive computation (25 M pixels by default: a 5,000 x
    # 5,000 tile, or a 1,600 x 1,600 one ten times as heavy in content).
    direct_memory_limit_pixels: int | None = None
