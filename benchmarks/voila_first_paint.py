"""Voila: how long until a reader sees something, and the explorer drawn.

    python benchmarks/voila_first_paint.py [notebook] [voila options ...]
    python benchmarks/voila_first_paint.py notebooks/02_throw_and_kick.ipynb --progressive_rendering=True

Starts Voila on a temporary copy of the notebooks (as the browser tests do, with their
private HOME), opens the page in headless Chromium and prints the seconds from the
request to: the first byte, the first output on the page, the explorer's canvas, the
explorer's canvas with joints in colour, and the last cell's output. A measurement, not
a test: nothing is asserted.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import conftest as C  # noqa: E402  - the browser tests' helpers


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _coloured(png: bytes) -> int:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    return int((np.ptp(img, axis=-1) > 60).sum())


def measure(notebook: str, options: list[str]) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="skvis-voila-"))
    home, root = tmp / "home", C._copy_of_notebooks(tmp / "root")
    home.mkdir()
    port = C.free_port()
    argv = [sys.executable, "-m", "voila", notebook, "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", f"--Voila.root_dir={root}", *options]  # fmt: skip
    log = open(home / "voila.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, cwd=root, env=C._private_env(home), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    times: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 120
        while not _port_open(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((home / "voila.log").read_text()[-2000:])
            time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=C.CHROMIUM_FLAGS, headless=True)  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.monotonic()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="commit", timeout=300_000)
            times["first byte"] = time.monotonic() - t0
            checks = {
                "first output": lambda: page.locator(".jp-OutputArea-output").count() > 0,
                "explorer canvas": lambda: page.locator(".skvis-explorer canvas").count() > 0,
                "explorer drawn": lambda: (
                    page.locator(".skvis-explorer canvas").count() > 0
                    and _coloured(page.locator(".skvis-explorer canvas").first.screenshot()) > 40
                ),
                "last cell": lambda: page.get_by_text("Play it in the browser").count() > 0,
            }
            while checks and time.monotonic() - t0 < 400:
                for name in list(checks):
                    try:
                        ok = checks[name]()
                    except Exception:  # noqa: BLE001 - not there yet
                        ok = False
                    if ok:
                        times[name] = time.monotonic() - t0
                        del checks[name]
                page.wait_for_timeout(200)
            browser.close()
    finally:
        C._stop(proc)
        log.close()
    return times


if __name__ == "__main__":
    nb = sys.argv[1] if len(sys.argv) > 1 else "notebooks/02_throw_and_kick.ipynb"
    for name, t in measure(nb, sys.argv[2:]).items():
        print(f"{name:>18}: {t:6.1f} s")
