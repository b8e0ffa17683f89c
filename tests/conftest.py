"""Shared fixtures: a headless Chromium (Playwright) and Jupyter servers (JupyterLab, Voila).

Browser tests are marked ``browser``. They skip when Chromium is missing (set
``SKVIS_CHROMIUM`` to its path if it is not ``/usr/bin/chromium``), unless
``SKVIS_REQUIRE_BROWSER=1``, which turns the skip into a failure (for CI).

`jupyter_server` starts ``jupyter lab`` or ``voila`` on a free localhost port with
an empty token, in a private HOME / runtime / settings directory so that the
user's configuration is neither read nor touched, and stops it (and its kernels)
when the test is done.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

#: Chromium flags known to work headless on this stack (see DESIGN.md).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: Console messages that are not ours: offline fetches of external resources, and
#: pythreejs's version warning about @jupyter-widgets/base.
HARMLESS_CONSOLE = ("ERR_NAME_NOT_RESOLVED", "Unsatisfied version")


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("SKVIS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SKVIS_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("SKVIS_CHROMIUM", "/usr/bin/chromium")
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        _skip_or_fail(f"no Chromium at {path} (set SKVIS_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _skip_or_fail("playwright (python) is not installed")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path):
    """A headless Chromium, shared by the session's browser tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Console:
    """Console messages and page errors of one page."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    def attach(self, page) -> Console:
        page.on("console", lambda m: self.messages.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.messages.append(("pageerror", str(e))))
        return self

    def errors(self, harmless: tuple[str, ...] = HARMLESS_CONSOLE) -> list[str]:
        """Errors (console ``error`` and uncaught page errors), the harmless ones left out."""
        return [
            text
            for kind, text in self.messages
            if kind in ("error", "pageerror") and not any(h in text for h in harmless)
        ]


@pytest.fixture
def page(browser, request):
    """A fresh page (1400x1000) with its console recorded as ``page.console``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.console = Console().attach(pg)
    yield pg
    context.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JupyterServer:
    url: str
    process: subprocess.Popen
    home: Path
    log: Path

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _private_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    dirs = {
        "HOME": home,
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_DATA_DIR": home / "data",
        "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "lab-workspaces",
        "IPYTHONDIR": home / "ipython",
        "MPLCONFIGDIR": home / "matplotlib",
    }
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[key] = str(path)
    # No news or extension-manager requests to the internet, no pop-ups over the notebook.
    settings = dirs["JUPYTERLAB_SETTINGS_DIR"]
    for plugin, value in {
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"},
        "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
    }.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its kernels: its own process group, started by us."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@pytest.fixture
def jupyter_server(tmp_path_factory) -> Iterator[Callable[..., JupyterServer]]:
    """A factory: ``jupyter_server("lab")`` or ``jupyter_server("voila", notebook=...)``.

    Returns a `JupyterServer` whose ``url`` is the base URL (``http://127.0.0.1:PORT/``).
    Every server started is stopped when the test ends.
    """
    started: list[subprocess.Popen] = []

    def start(
        app: str = "lab", *, notebook: str | None = None, timeout: float = 90
    ) -> JupyterServer:
        home = tmp_path_factory.mktemp(f"jupyter-{app}-home")
        port = free_port()
        if app == "lab":
            argv = [
                sys.executable, "-m", "jupyterlab",
                "--no-browser",
                f"--ServerApp.port={port}",
                "--ServerApp.ip=127.0.0.1",
                "--ServerApp.token=",
                "--ServerApp.password=",
                f"--ServerApp.root_dir={REPO}",
                "--ServerApp.port_retries=0",
                "--LabApp.news_url=",
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ]  # fmt: skip
            ready = f"http://127.0.0.1:{port}/api/status"
        elif app == "voila":
            argv = [
                sys.executable, "-m", "voila",
                *([notebook] if notebook else []),
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                f"--Voila.root_dir={REPO}",
            ]  # fmt: skip
            ready = f"http://127.0.0.1:{port}/"
        else:
            raise ValueError(f"app must be 'lab' or 'voila', got {app!r}")
        log = home / f"{app}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=_private_env(home),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(proc)
        server = JupyterServer(f"http://127.0.0.1:{port}/", proc, home, log)
        try:
            _wait_http(ready, proc, timeout)
        except Exception as exc:
            raise RuntimeError(f"{app} did not start: {exc}\n{server.tail()}") from exc
        return server

    yield start
    for proc in started:
        _stop(proc)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/`` (gitignored): screenshots for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
