"""`eebatch serve SESSION`: the dashboard in a real headless Chromium (the page loads, shows
the panes, a key typed in the page reaches the app and the worker), one worker however many
browser tabs, Ctrl+C stops the worker serve started and leaves a headless one running, the
page refuses a visitor without the printed token, and a finished session gets a worker when a
tab sends a retry. The browser test skips, saying why, where Chromium is missing or cannot
start (.ci/run installs Debian's `chromium` when it can)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.emulator.app import Emulator
from core.limits import PAUSED
from core.states import CMD_DONE, CMD_PENDING, FAILED
from core.store import Store
from tests.engine.conftest import emulator_with
from tests.engine.conftest import make_session as make_emulator_session
from tests.tui.chromium import BrowserError, Chromium, find_chromium
from tui.serve import Supervisor

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 90.0,
             seen: Callable[[], str] = lambda: "") -> Any:
    """Poll until `check()` is truthy; fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s {seen()}")
        time.sleep(0.2)


class Served:
    """`eebatch serve SESSION --port 0` as a user runs it; its output read as it comes."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tui", "serve", str(path), "--port", "0"], cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        found = wait_for(lambda: self._find(r"open\s+(http://\S+)"), "serve printing its URL",
                         seen=self.output)
        self.url: str = found.group(1)
        self.port = int(re.search(r":(\d+)/", self.url).group(1))  # type: ignore[union-attr]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def _find(self, pattern: str) -> re.Match[str] | None:
        for line in list(self.lines):
            if match := re.search(pattern, line):
                return match
        return None

    def output(self) -> str:
        return "\n".join(self.lines)

    def says(self, text: str) -> bool:
        return text in self.output()

    def interrupt(self, timeout: float = 90.0) -> int:
        """Ctrl+C, as in the terminal that runs it; its exit code."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop within {timeout:.0f} s of Ctrl+C:\n"
                        f"{self.output()}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture
def slow_emulator() -> Iterator[Emulator]:
    """Tasks that run for an hour: the session stays live while the test looks at it."""
    emulator = emulator_with(speed=1.0, task_overhead_seconds=3600.0)
    yield emulator
    emulator.stop()


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium on PATH or at EEBATCH_CHROMIUM (Debian: apt-get install "
                    "chromium): the browser test of eebatch serve cannot run")
    try:
        browser = Chromium(binary, tmp_path / "chromium")
    except BrowserError as exc:
        pytest.skip(f"Chromium ({binary}) did not start, so the browser test of eebatch serve "
                    f"cannot run: {exc}")
    yield browser
    browser.close()


def session_on(tmp_path: Path, emulator: Emulator) -> Path:
    store = make_emulator_session(tmp_path, emulator.url, max_tasks=2)
    path = store.path
    store.close()
    return path


def live_workers(path: Path) -> list[int]:
    """Pids of the workers registered as running (a fresh connection sees the latest)."""
    store = Store(path)
    try:
        return [r["pid"] for r in store.conn.execute(
            "SELECT pid FROM workers WHERE stopped IS NULL")]
    finally:
        store.close()


def setting(path: Path, key: str) -> Any:
    store = Store(path)
    try:
        return store.setting(key)
    finally:
        store.close()


def viewer_processes(path: Path) -> list[int]:
    """Pids of the dashboards textual-serve started for the session's tabs."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--attach" in args and str(path).encode() in args:
            found.append(int(proc.name))
    return found


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@contextlib.contextmanager
def second_tab(served: Served) -> Iterator[None]:
    """Another browser tab, as its websocket: textual-serve starts it a dashboard of its own."""
    from websockets.sync.client import connect

    token = served.url.rsplit("token=", 1)[1]
    with connect(f"ws://127.0.0.1:{served.port}/ws/{token}?width=100&height=30",
                 open_timeout=30) as ws:
        # its dashboard draws: bytes of a screen arrive
        wait_for(lambda: len(ws.recv(timeout=60)) > 1000, "the second tab's dashboard drawing")
        yield


def test_the_dashboard_in_a_browser(tmp_path: Path, slow_emulator: Emulator,
                                    chromium: Chromium) -> None:
    path = session_on(tmp_path, slow_emulator)
    served = Served(path)
    try:
        assert served.says("worker   here, started by serve")
        assert served.url.startswith("http://127.0.0.1:") and "?token=" in served.url
        chromium.open(served.url)
        screen = wait_for(
            lambda: (s := chromium.screen()) and all(
                p in s for p in ("Tiles", "Tasks", "Log", "Drive", "running")) and s,
            "the dashboard's panes in the page, with tasks running",
            seen=lambda: f"(screen {chromium.screen()!r}; serve said {served.output()!r})")
        assert path.stem in screen  # the session's own dashboard
        assert "PAUSED" not in screen.splitlines()[0]

        # One worker however many tabs: a second tab gets a dashboard of its own, and the
        # session still has one worker, in serve's process.
        with second_tab(served):
            wait_for(lambda: served.says("(2 watching)"), "serve counting two tabs",
                     seen=served.output)
            assert len(viewer_processes(path)) == 2
            assert live_workers(path) == [served.process.pid]

        image = chromium.screenshot()
        assert png_size(image) == chromium.size
        (tmp_path / "browser.png").write_bytes(image)  # to look at when it fails

        # A key typed in the page reaches the app, and through the store the worker.
        chromium.press("p")
        wait_for(lambda: setting(path, PAUSED), "the worker pausing on p typed in the page",
                 seen=lambda: f"(screen {chromium.screen()!r})")
        wait_for(lambda: "PAUSED" in (chromium.screen() or "").splitlines()[0],
                 "the page's header saying PAUSED", seen=lambda: f"{chromium.screen()!r}")
        chromium.press("?")
        wait_for(lambda: "Keys everywhere" in (chromium.screen() or ""), "the help on ?",
                 seen=lambda: f"{chromium.screen()!r}")

        assert served.interrupt() == 0, served.output()
        assert served.says("stopping the worker serve started"), served.output()
        assert served.says("the worker stopped"), served.output()
        assert not Store.worker_lock_held(path)
        assert live_workers(path) == []
        wait_for(lambda: not viewer_processes(path), "the tabs' dashboards ending with serve",
                 timeout=30)
    finally:
        served.close()


def test_serve_leaves_a_running_headless_worker_running(tmp_path: Path,
                                                        slow_emulator: Emulator) -> None:
    from tui.headless import spawn_headless

    path = session_on(tmp_path, slow_emulator)
    headless = spawn_headless(path, path.stem)
    served = None
    try:
        wait_for(lambda: live_workers(path) == [headless.pid], "the headless worker running")
        served = Served(path)
        assert served.says(f"pid {headless.pid}"), served.output()
        assert served.says("headless: it goes on after Ctrl+C"), served.output()

        # Without the printed token the page is refused; with it, it links its own socket.
        bare = served.url.split("?", 1)[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bare, timeout=30)
        assert refused.value.code == 403
        with urllib.request.urlopen(served.url, timeout=30) as page:
            html = page.read().decode()
        token = served.url.rsplit("token=", 1)[1]
        assert f"ws://127.0.0.1:{served.port}/ws/{token}" in html

        assert served.interrupt() == 0, served.output()
        assert served.says("the headless worker goes on"), served.output()
        assert live_workers(path) == [headless.pid]  # still running the session
        assert headless.poll() is None
    finally:
        if served is not None:
            served.close()
        os.killpg(headless.pid, signal.SIGTERM)
        headless.wait(60)


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    from tests.tui.fixtures import make_session

    store = make_session(tmp_path)
    path = store.path
    store.close()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "tui", "serve", str(path), "--port", str(port)], cwd=REPO,
            capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use); --port N picks "
        "another (0: any free)")
    assert not Store.worker_lock_held(path)  # nothing started


def test_a_retry_from_a_tab_starts_a_worker_on_a_finished_session(
        tmp_path: Path, slow_emulator: Emulator) -> None:
    path = session_on(tmp_path, slow_emulator)
    store = Store(path)
    unit = store.conn.execute("SELECT id FROM units ORDER BY id LIMIT 1").fetchone()["id"]
    with store.tx() as conn:  # every unit failed: nothing to do, so no worker at first
        conn.execute("UPDATE units SET state = ?", (FAILED,))
    said: list[str] = []
    supervisor = Supervisor(path, said.append)
    try:
        assert supervisor.start().startswith("worker   none")
        assert supervisor.worker is None and not Store.worker_lock_held(path)
        command = store.post_command("retry", unit)  # what r in a tab posts
        wait_for(lambda: (row := store.command(command)) and row["state"] != CMD_PENDING,
                 "a worker started by serve answering the retry",
                 seen=lambda: f"(serve said {said}; worker {supervisor.worker}, error "
                              f"{getattr(supervisor.worker, 'error', None)!r})")
        assert store.command(command)["state"] == CMD_DONE
        assert live_workers(path) == [os.getpid()]  # in serve (here, this process)
        assert said == ["a command from the browser and no worker: starting one here"]
    finally:
        supervisor.stop()
        store.close()
    assert not Store.worker_lock_held(path)
