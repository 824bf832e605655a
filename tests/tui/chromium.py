"""A headless Chromium driven over the DevTools protocol (a websocket), for the browser test of
`eebatch serve`: the system's Chromium (Debian's `chromium`), no browser downloaded, no driver.

textual-serve draws the terminal with xterm.js on a canvas, so the page's text is not in the
DOM: a script run before the page's own catches the terminal object as textual-serve builds it,
and `screen()` reads xterm's buffer, the rows as the user sees them."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# textual-serve's terminal class sets `this.websocket_url` first thing in its constructor: a
# setter on Object.prototype sees that object and keeps it for the test to read.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "websocket_url", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "websocket_url",
                          {value, writable: true, configurable: true, enumerable: true});
    window.__eebatchTerminal = this;
  },
});
"""

SCREEN = """(() => {
  const view = window.__eebatchTerminal;
  if (!view || !view.terminal) return null;
  const term = view.terminal, buffer = term.buffer.active, rows = [];
  for (let i = 0; i < term.rows; i++) {
    const line = buffer.getLine(buffer.viewportY + i);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n");
})()"""


class BrowserError(Exception):
    """Chromium is missing or did not start: the test skips, saying this."""


def find_chromium() -> str | None:
    """EEBATCH_CHROMIUM, else the first Chromium or Chrome on PATH."""
    chosen = os.environ.get("EEBATCH_CHROMIUM")
    if chosen:
        return chosen if Path(chosen).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One headless Chromium with one page; `close()` ends it."""

    def __init__(self, binary: str, profile: Path, size: tuple[int, int] = (1280, 800),
                 timeout: float = 60.0) -> None:
        from websockets.sync.client import connect

        self.profile = profile
        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"
        self.size = size
        self._stack = contextlib.ExitStack()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, "--headless", "--no-sandbox", "--remote-debugging-port=0",
                 f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                 "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                 "--mute-audio", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            port = self._devtools_port(timeout)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                        timeout=timeout) as answer:
                targets = json.load(answer)
            page = next(t for t in targets if t.get("type") == "page")
            self.ws = self._stack.enter_context(
                connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout))
        except BaseException:
            self.close()
            raise
        self._id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                  deviceScaleFactor=1, mobile=False)
        self.call("Page.addScriptToEvaluateOnNewDocument", source=CATCH_TERMINAL)

    def _devtools_port(self, timeout: float) -> int:
        """Chromium writes the port it chose into DevToolsActivePort in its profile."""
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            if marker.exists():
                first = marker.read_text().split("\n", 1)[0].strip()
                if first.isdigit():
                    return int(first)
            if self.process.poll() is not None:
                raise BrowserError(f"Chromium exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BrowserError(f"Chromium opened no DevTools port within {timeout:.0f} s: "
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command and its answer (events in between are dropped)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:40]}…: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screen(self) -> str | None:
        """The terminal's rows as text, or None before textual-serve has built it."""
        return self.evaluate(SCREEN)  # type: ignore[no-any-return]

    def press(self, key: str) -> None:
        """A key pressed and released in the terminal, as a user types it."""
        self.evaluate("window.__eebatchTerminal.terminal.focus()")
        code = f"Key{key.upper()}" if key.isalpha() else ""
        vk = ord(key.upper()) if key.isalnum() else 0
        self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=code, text=key,
                  unmodifiedText=key, windowsVirtualKeyCode=vk, nativeVirtualKeyCode=vk)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code,
                  windowsVirtualKeyCode=vk, nativeVirtualKeyCode=vk)

    def screenshot(self) -> bytes:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        self._stack.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
