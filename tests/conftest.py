"""Shared fixtures: a headless Chromium (Playwright) and Jupyter servers (JupyterLab, Voila).

Browser tests are marked ``browser``. They skip when Chromium is missing (set
``SKVIS_CHROMIUM`` to its path if it is not ``/usr/bin/chromium``), unless
``SKVIS_REQUIRE_BROWSER=1``, which turns the skip into a failure (for CI).

`jupyter_server` starts ``jupyter lab`` or ``voila`` on a free localhost port with
an empty token, in a private HOME / runtime / settings directory so that the
user's configuration is neither read nor touched, on a temporary copy of
``notebooks/`` (so that nothing, autosave included, writes to the checkout), and
stops it (and its kernels) when the test is done. Its kernels import this
checkout's package (``PYTHONPATH``).

`waits` polls a condition until a deadline and, on time-out, fails with the name of
what it waited for and a screenshot in ``test-artifacts/``; `JupyterServer.kernel`
reads a notebook's kernel from the server's REST API (``/api/sessions``), the same in
JupyterLab 4 and Notebook 7. The browser tests use them and never sleep for a
fixed time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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

import numpy as np
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
HARMLESS_CONSOLE = (
    "ERR_NAME_NOT_RESOLVED",
    "Unsatisfied version",
)


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
    """A running ``jupyter lab`` or ``voila``; ``root`` is the temporary copy it serves."""

    url: str
    process: subprocess.Popen
    home: Path
    log: Path
    root: Path

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def api(self, path: str):
        """``GET /api/<path>`` as JSON (None when the server does not answer with 200)."""
        try:
            with urllib.request.urlopen(f"{self.url}api/{path}", timeout=5) as r:
                return json.load(r) if r.status == 200 else None
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return None

    def kernel(self, notebook: str) -> dict | None:
        """The kernel model (``execution_state``, ``connections``, ...) of the session of
        ``notebook`` (a path relative to ``root``), or None while there is none."""
        for session in self.api("sessions") or []:
            if session.get("path") == notebook and session.get("kernel"):
                return session["kernel"]
        return None


def _private_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Kernels run in the temporary copy of notebooks/: they must import this checkout.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
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
        # The notebooks are temporary copies anyway; no saving behind the test's back.
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
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


def _copy_of_notebooks(root: Path) -> Path:
    """``root/notebooks/*.ipynb`` copied from the checkout, and ``root/tests/data`` linked
    (read by ``04_kinect_v2_ntu.ipynb`` as ``../tests/data``)."""
    (root / "notebooks").mkdir(parents=True)
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        shutil.copy2(nb, root / "notebooks" / nb.name)
    (root / "tests").mkdir()
    (root / "tests" / "data").symlink_to(REPO / "tests" / "data", target_is_directory=True)
    return root


@pytest.fixture
def jupyter_server(tmp_path_factory) -> Iterator[Callable[..., JupyterServer]]:
    """A factory: ``jupyter_server("lab")`` or ``jupyter_server("voila", notebook=...)``.

    Returns a `JupyterServer` whose ``url`` is the base URL (``http://127.0.0.1:PORT/``)
    and whose ``root`` is a temporary copy of the checkout's notebooks (``notebook`` and
    the paths opened in the browser are relative to it, as they are to the checkout).
    Every server started is stopped when the test ends.
    """
    started: list[subprocess.Popen] = []

    def start(
        app: str = "lab", *, notebook: str | None = None, timeout: float = 90
    ) -> JupyterServer:
        home = tmp_path_factory.mktemp(f"jupyter-{app}-home")
        root = _copy_of_notebooks(tmp_path_factory.mktemp(f"jupyter-{app}-root"))
        port = free_port()
        if app == "lab":
            argv = [
                sys.executable, "-m", "jupyterlab",
                "--no-browser",
                f"--ServerApp.port={port}",
                "--ServerApp.ip=127.0.0.1",
                "--ServerApp.token=",
                "--ServerApp.password=",
                f"--ServerApp.root_dir={root}",
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
                f"--Voila.root_dir={root}",
            ]  # fmt: skip
            ready = f"http://127.0.0.1:{port}/"
        else:
            raise ValueError(f"app must be 'lab' or 'voila', got {app!r}")
        log = home / f"{app}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=root,
                env=_private_env(home),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(proc)
        server = JupyterServer(f"http://127.0.0.1:{port}/", proc, home, log, root)
        try:
            _wait_http(ready, proc, timeout * WAIT_SCALE)
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


#: Every wait's bound is multiplied by this (``SKVIS_WAIT_SCALE``, default 3): the bounds
#: are written for a lightly loaded machine, and a shared one can be several times slower.
#: A wait returns as soon as its condition holds, so a generous bound costs nothing when
#: things work; it only delays the report of a real failure.
WAIT_SCALE = float(os.environ.get("SKVIS_WAIT_SCALE", "3"))


class WaitTimeout(AssertionError):
    """A wait of the browser tests ran out of time (the message names which)."""


@dataclass
class Waits:
    """Named waits on a page: poll a condition, fail clearly with a screenshot on time-out."""

    page: object
    artifacts: Path
    poll_ms: float = 250

    def until(self, what: str, check: Callable[[], object], timeout: float, detail=None):
        """Poll ``check()`` until it returns something other than None, False or 0 (an
        array counts as an answer), and return that.

        ``page.wait_for_timeout`` between polls keeps Playwright's events flowing (the
        console log, the page's own timers). On time-out: a `WaitTimeout` that names
        ``what``, says what ``detail()`` (if given) reads at that moment, and points to
        the screenshot ``test-artifacts/timeout_<what>.png``.
        """
        timeout = timeout * WAIT_SCALE
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result is not None and not (isinstance(result, (bool, int)) and not result):
                return result
            if time.monotonic() >= deadline:
                self.fail(what, timeout, detail() if detail else None)
            self.page.wait_for_timeout(self.poll_ms)

    def fail(self, what: str, timeout: float, detail: object = None) -> None:
        slug = re.sub(r"[^a-z0-9]+", "_", what.lower()).strip("_")[:60]
        shot = self.artifacts / f"timeout_{slug}.png"
        try:
            self.page.screenshot(path=str(shot), full_page=True)
            where = f"screenshot: {shot}"
        except Exception as exc:  # noqa: BLE001 - the time-out is the error to report
            where = f"no screenshot ({exc})"
        extra = f"\n  last seen: {detail}" if detail is not None else ""
        raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}{extra}\n  {where}")


@pytest.fixture
def waits(page, artifacts) -> Waits:
    """`Waits` on the test's page."""
    return Waits(page, artifacts)


# -- the explorer, read from the page (shared by test_browser.py and test_voila.py) ---------------
#: Watches a canvas from inside the page: at every animation frame, a 96x96 copy of it is
#: hashed; each new image is recorded with its time (``performance.now()``). The times of
#: the last key press and the last ``change`` event (a select, a slider) are recorded too,
#: so that a wait can measure, in the browser, how long the canvas took to answer.
CANVAS_MONITOR_JS = """(canvas) => {
    if (window.__skvisMonitor) { window.__skvisMonitor.running = false; }
    const m = {images: [], running: true, key: null, change: null};
    const small = document.createElement('canvas');
    small.width = 96; small.height = 96;
    const ctx = small.getContext('2d', {willReadFrequently: true});
    let last = null;
    document.addEventListener('keydown', () => { m.key = performance.now(); }, true);
    document.addEventListener('change', () => { m.change = performance.now(); }, true);
    function loop() {
        if (!m.running) return;
        ctx.clearRect(0, 0, 96, 96);
        ctx.drawImage(canvas, 0, 0, 96, 96);
        const d = ctx.getImageData(0, 0, 96, 96).data;
        let h = 0;
        for (let i = 0; i < d.length; i += 3) { h = (Math.imul(h, 31) + d[i]) | 0; }
        if (h !== last) { m.images.push([performance.now(), h]); last = h; }
        requestAnimationFrame(loop);
    }
    requestAnimationFrame(loop);
    window.__skvisMonitor = m;
    return true;
}"""


def start_canvas_monitor(canvas) -> None:
    """Start `CANVAS_MONITOR_JS` on ``canvas`` (a Playwright locator)."""
    canvas.evaluate(CANVAS_MONITOR_JS)


def monitor(page) -> dict:
    """The monitor's record: ``images`` ([time ms, hash], ...), ``key``, ``change``."""
    return page.evaluate(
        "() => { const m = window.__skvisMonitor;"
        " return {images: m.images, key: m.key, change: m.change, now: performance.now()}; }"
    )


def answer_ms(waits, page, event: str, what: str, timeout: float = 30.0) -> float:
    """Milliseconds from the last ``event`` (``"key"`` or ``"change"``) to the first new
    canvas image after it, measured in the browser."""

    def answered():
        m = monitor(page)
        t0 = m[event]
        later = [t for t, _ in m["images"] if t0 is not None and t > t0]
        return (later[0] - t0) if later else None

    return waits.until(f"the canvas to answer {what}", answered, timeout)


def scene_canvas(scope, waits, what: str = "the explorer's 3D canvas"):
    """The explorer's 3D canvas: the largest canvas in its scene."""

    def find():
        best, area = None, 0.0
        for c in scope.locator(".skvis-scene canvas").all():
            box = c.bounding_box()
            if box and box["width"] >= 300 and box["height"] >= 250:
                if box["width"] * box["height"] > area:
                    best, area = c, box["width"] * box["height"]
        return best

    return waits.until(what, find, timeout=90)


def side_pixels(img) -> tuple[int, int]:
    """Pixels in the left limbs' blue and the right limbs' green (any shade of them)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    left = (b > r + 60) & (b > g + 20)
    right = (g > r + 60) & (g > b + 10)
    return int(left.sum()), int(right.sum())


#: Widgets of the explorer that take a band of room (over 40 px high: a panel, not a
#: library's hidden button) but show nothing (``visibility: hidden``): ``[class, height]``.
BLANK_BANDS_JS = """(root) => {
    const out = [];
    // the widgets' own elements (a library's hidden tool bar is not a panel)
    for (const e of root.querySelectorAll('.jupyter-widgets, .lm-Widget')) {
        const st = getComputedStyle(e);
        const h = e.getBoundingClientRect().height;
        if (st.visibility === 'hidden' && h > 40 && st.display !== 'none') {
            out.push([String(e.className), h]);
        }
    }
    return out;
}"""


def blank_bands(explorer) -> list:
    """`BLANK_BANDS_JS` on an explorer locator."""
    return explorer.evaluate(BLANK_BANDS_JS)


#: The heatmap's cells that the page lays out with a size (bqplot draws one <rect> per cell).
HEATMAP_CELLS_JS = """(root) => [...root.querySelectorAll('.skvis-heatmap rect.heatmapcell')]
    .filter(c => { const b = c.getBoundingClientRect(); return b.width > 0.5 && b.height > 0.5; })
    .length"""


def heatmap_painted(explorer) -> tuple[int, int]:
    """The heatmap as drawn: its cells laid out with a size, and the coloured pixels in a
    screenshot of its figure (not white, not grey: the ramp's yellows to reds)."""
    import io

    from PIL import Image

    cells = explorer.evaluate(HEATMAP_CELLS_JS)
    figure = explorer.locator(".skvis-heatmap .bqplot").first
    figure.scroll_into_view_if_needed()
    img = np.asarray(Image.open(io.BytesIO(figure.screenshot())).convert("RGB"), np.float64)
    return int(cells), int((np.ptp(img, axis=2) > 40).sum())


def hover_a_joint(page, canvas, img, ramp_mask, waits) -> str:
    """Move the mouse over joints of the 3D view until a joint's name shows; return it."""
    ys, xs = np.nonzero(ramp_mask)
    box = canvas.bounding_box()
    sy, sx = box["height"] / img.shape[0], box["width"] / img.shape[1]
    order = np.random.default_rng(0).permutation(len(xs))[:15]
    label = page.locator(".skvis-joint-name")
    for k in order:
        page.mouse.move(box["x"] + (xs[k] + 0.5) * sx, box["y"] + (ys[k] + 0.5) * sy)
        try:
            return waits.until(
                "a joint's name under the mouse",
                lambda: label.count() and label.first.inner_text().strip(),
                timeout=3,
            )
        except AssertionError:
            continue
    raise AssertionError("no joint name appeared while hovering the joints")


# ---------------------------------------------------------------------------------------------
# A small slice of the bundled MSR Action3D, shared by the explorer's tests
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def msr_slice():
    """``msr_slice(frames)``: 2 samples of each of the first 4 MSR Action3D classes, cut to
    ``frames`` frames, as an unnormalized `SkeletonDataset` (cached per ``frames``)."""
    import functools
    import warnings

    from skvis_widgets.data import SkeletonDataset, load_msr_action3d
    from skvis_widgets.skeleton import MSR_ACTION3D

    @functools.cache
    def make(frames: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            full = load_msr_action3d()
        idx = np.concatenate([full.indices_of_class(c)[:2] for c in range(4)])
        small = full.subset(idx)
        return SkeletonDataset.from_arrays(
            [s[:frames] for s in small.sequences],
            small.labels,
            MSR_ACTION3D,
            full.class_names,
            normalize=False,
            name="MSR slice",
            ids=small.ids,
        )

    return make


# ---------------------------------------------------------------------------------------------
# Models, rest poses and the compiled solver, shared by the numerical tests
#
# skvis_widgets is imported inside the fixtures: a browser-only session needs no torch.
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def make_model():
    """A factory of small `SkeletonLSTM`s, reproducible from ``seed``.

    ``make_model(num_joints=20, num_classes=7, hidden_size=16, *, cell="lstm",
    num_layers=1, dropout=0.0, seed=0, topology=None, wide=False, standardize=False,
    dtype=torch.float32, train=False)``. The weights come from ``torch.manual_seed(seed)``
    inside ``torch.random.fork_rng`` (the global random state is left alone).
    ``wide``: every parameter uniform in [-0.8, 0.8] (gates away from 0.5, the nonlinear
    regime the engines must get right); ``standardize``: feature statistics drawn from
    ``numpy.random.default_rng(seed)`` (mean N(0, 0.2), std U(0.5, 1.5)). The model is in
    eval mode unless ``train``.
    """
    import numpy as np
    import torch

    from skvis_widgets.model import SkeletonLSTM

    def make(
        num_joints: int = 20,
        num_classes: int = 7,
        hidden_size: int = 16,
        *,
        cell: str = "lstm",
        num_layers: int = 1,
        dropout: float = 0.0,
        seed: int = 0,
        topology=None,
        wide: bool = False,
        standardize: bool = False,
        dtype=torch.float32,
        train: bool = False,
    ) -> SkeletonLSTM:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SkeletonLSTM(
                num_joints,
                num_classes,
                hidden_size,
                cell=cell,
                num_layers=num_layers,
                dropout=dropout,
                topology=topology,
            )
            if wide:
                for p in model.parameters():
                    torch.nn.init.uniform_(p, -0.8, 0.8)
        if standardize:
            rng = np.random.default_rng(seed)
            f = 3 * num_joints
            model.set_standardization(rng.normal(0, 0.2, f), rng.uniform(0.5, 1.5, f))
        return model.to(dtype).train(train)

    return make


@pytest.fixture
def lstm_model(make_model):
    """A small 20-joint LSTM (7 classes, 16 units), float32, eval mode."""
    return make_model(20, 7, 16, cell="lstm")


@pytest.fixture
def gru_model(make_model):
    """A small 20-joint GRU (7 classes, 16 units), float32, eval mode."""
    return make_model(20, 7, 16, cell="gru")


@pytest.fixture(scope="session")
def small_model(make_model):
    """``small_model(cell="lstm", layers=1, *, seed=0, hidden=5)``: the numerical tests'
    float64 model, 4 joints and 3 classes (``J, H, C = 4, 5, 3`` in test_saliency and
    test_optimize), wide weights and a non-trivial standardization."""
    import torch

    def make(cell: str = "lstm", layers: int = 1, *, seed: int = 0, hidden: int = 5):
        return make_model(
            4, 3, hidden, cell=cell, num_layers=layers, seed=seed, wide=True, standardize=True,
            dtype=torch.float64,
        )  # fmt: skip

    return make


@pytest.fixture
def ntu_model(make_model):
    """An untrained model of NTU RGB+D's size: Kinect v2's 25 joints (recorded in its
    metadata), 60 classes, 128 units."""
    return make_model(25, 60, 128, topology="kinect_v2")


@pytest.fixture
def pretrained_model():
    """The shipped MSR Action3D model (a fresh copy: a test may change it)."""
    from skvis_widgets.model import load_pretrained

    return load_pretrained("msr_action3d")


@pytest.fixture(scope="session")
def rest_pose():
    """``rest_pose(topology, frames=1)``: `skvis_widgets.skeleton.rest_pose` repeated over
    ``frames``, ``(frames, J, 3)`` float64 (a fresh array each call)."""
    import numpy as np

    from skvis_widgets.skeleton import rest_pose as one

    def make(topology, frames: int = 1):
        return np.repeat(one(topology)[None], frames, axis=0)

    return make


@pytest.fixture(scope="session")
def compiled_solver() -> bool:
    """The projection's compiled solver, compiled (or loaded from numba's cache) once per
    session, so that no test's own time includes it; whether it is available."""
    from skvis_widgets.anatomy import prepare_solver

    return prepare_solver()


@pytest.fixture(params=["kernel", "torch"])
def engine(request, monkeypatch):
    """Which path computes an LSTM's all-unit instantaneous maps on the CPU: the compiled
    kernel (`skvis_widgets._lstm_kernel`, compiled first and waited for) or the torch path
    (the kernel reported not ready). The value is a dict: ``path`` and ``calls``, the
    number of sequences the kernel wrote (it must stay 0 on the torch path)."""
    import numpy as np

    from skvis_widgets import _lstm_kernel

    calls = {"path": request.param, "calls": 0}
    if request.param == "kernel":
        assert _lstm_kernel.ready(np.float32, wait=True)
        assert _lstm_kernel.ready(np.float64, wait=True)
    else:
        monkeypatch.setattr(_lstm_kernel, "ready", lambda *a, **k: False)
    real = _lstm_kernel.unit_blocks

    def counted(*args):
        calls["calls"] += args[-2] == 0  # one per sequence (its first units, u0 = 0)
        return real(*args)

    monkeypatch.setattr(_lstm_kernel, "unit_blocks", counted)
    return calls
