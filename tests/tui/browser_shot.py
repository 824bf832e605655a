"""`python -m tests.tui.browser_shot` renders screenshots/browser.png: `eebatch serve` on the
demo session (its worker and a fresh demo emulator in serve, as a user gets them after
`eebatch demo`), in headless Chromium, about half-way through. Needs Chromium (see chromium.py);
it uses a throwaway EEBATCH_HOME."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "screenshots" / "browser.png"


def main() -> int:
    os.environ["EEBATCH_HOME"] = tempfile.mkdtemp(prefix="eebatch-shot-")
    from core.demo import prepare_demo
    from core.states import COUNTED, DONE
    from core.store import Store
    from tests.tui.chromium import Chromium, find_chromium
    from tests.tui.test_serve import Served, wait_for

    binary = find_chromium()
    if binary is None:
        print("no Chromium on PATH (apt-get install chromium, or set EEBATCH_CHROMIUM)",
              file=sys.stderr)
        return 1
    emulator, path = prepare_demo()
    emulator.stop()  # as after `eebatch demo`: serve starts a fresh one with its worker
    served = Served(path)
    browser = Chromium(binary, Path(os.environ["EEBATCH_HOME"]) / "chromium")
    try:
        browser.open(served.url)

        def halfway() -> bool:
            store = Store(path)
            try:
                counts = store.counts()
            finally:
                store.close()
            return counts.get(DONE, 0) >= 0.5 * sum(n for s, n in counts.items()
                                                    if s in COUNTED)

        wait_for(halfway, "the demo half done", timeout=600)
        wait_for(lambda: "Tasks" in (browser.screen() or ""), "the dashboard in the page")
        time.sleep(1.5)  # the page draws the last snapshot (a picture, not a check)
        TARGET.write_bytes(browser.screenshot())
        print(f"wrote {TARGET}")
    finally:
        browser.close()
        served.interrupt()
        served.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
