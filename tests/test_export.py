"""A static HTML export of a case study keeps its widgets' state (the animations play in it).

``jupyter nbconvert --execute --to html --ExecutePreprocessor.store_widget_state=True``
runs the notebook and writes the widget state into the page as a
``<script type="application/vnd.jupyter.widget-state+json">`` block, with one
``application/vnd.jupyter.widget-view+json`` block per displayed widget. For an
`AnimatedSkeleton`, the state holds an ipyvolume ``ScatterModel`` whose ``x``, ``y``, ``z``
are one array per frame (binary buffers, base64) and a ``PlayModel`` linked to it, so the
page plays the sequence with no kernel. This test exports ``02_throw_and_kick.ipynb`` and
reads the state back: the frames of the throw the notebook animates, decoded from the
page, are the recording's coordinates.

(That page loads the widget renderer, ``@jupyter-widgets/html-manager``, from unpkg.com,
so it needs the network to draw; the state itself is all in the file.)

The offline export (``--to skvis_widgets.offline.OfflineHTMLExporter``) is opened from
``file://`` in Chromium with every other request aborted: the two animations play in
the colours the widget state holds, the explorer's frame is drawn, the maths is an image,
and nothing is requested (screenshot ``test-artifacts/export_offline_case_study.png``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "02_throw_and_kick.ipynb"
STATE = re.compile(
    r'<script type="application/vnd\.jupyter\.widget-state\+json">\s*(\{.*?\})\s*</script>', re.S
)
VIEW = re.compile(
    r'<script type="application/vnd\.jupyter\.widget-view\+json">\s*(\{.*?\})\s*</script>', re.S
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, dict]:
    """The case study executed once (widget state stored), in a temporary folder."""
    pytest.importorskip("nbconvert")
    out = tmp_path_factory.mktemp("export")
    env = dict(os.environ)
    for key, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "matplotlib")):  # fmt: skip
        (out / sub).mkdir()
        env[key] = str(out / sub)
    # The kernel imports this checkout's package, and runs (and writes) in the temporary
    # folder, on a copy of the notebook: nothing lands in the checkout.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    notebook = shutil.copy2(NOTEBOOK, out / NOTEBOOK.name)
    cmd = [
        sys.executable, "-m", "nbconvert", "--execute", "--to", "notebook",
        "--ExecutePreprocessor.store_widget_state=True",
        "--ExecutePreprocessor.timeout=600",
        "--output", "executed", "--output-dir", str(out), str(notebook),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"nbconvert failed:\n{done.stderr[-4000:]}"
    assert (out / "executed.ipynb").is_file(), done.stderr[-2000:]
    return out, env


def _convert(converted, to: str, name: str) -> Path:
    out, env = converted
    cmd = [sys.executable, "-m", "nbconvert", "--to", to, "--output", name,
           "--output-dir", str(out), str(out / "executed.ipynb")]  # fmt: skip
    done = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"nbconvert --to {to} failed:\n{done.stderr[-4000:]}"
    return out / f"{name}.html"


@pytest.fixture(scope="module")
def exported(converted) -> str:
    """The README's export: ``nbconvert --execute --to html`` with the widget state."""
    return _convert(converted, "html", "02_throw_and_kick").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def offline_page(converted) -> Path:
    """The offline export: ``--to skvis_widgets.offline.OfflineHTMLExporter``."""
    return _convert(converted, "skvis_widgets.offline.OfflineHTMLExporter", "offline")


def _state(html: str) -> dict:
    blocks = STATE.findall(html)
    assert len(blocks) == 1, f"{len(blocks)} widget-state blocks in the page"
    state = json.loads(blocks[0])
    assert state["version_major"] == 2
    return state["state"]


def _frames(model: dict, name: str) -> list[np.ndarray]:
    """Decode the per-frame arrays ``name`` (x, y, z) of an ipyvolume scatter's saved state."""
    spec = model["state"][name]
    assert isinstance(spec, list), f"{name} is not a per-frame list: {str(spec)[:80]}"
    data = {
        b["path"][1]: base64.b64decode(b["data"])
        for b in model.get("buffers", [])
        if b["path"][0] == name and b.get("encoding") == "base64"
    }
    assert sorted(data) == list(range(len(spec))), f"{name}: buffers for {sorted(data)}"
    out = []
    for k, meta in enumerate(spec):
        arr = np.frombuffer(data[k], dtype=meta["dtype"]).reshape(meta["shape"])
        out.append(arr)
    return out


def test_html_export_holds_the_widget_state(exported):
    state = _state(exported)
    views = [json.loads(v)["model_id"] for v in VIEW.findall(exported)]
    assert views, "no widget views in the page"
    assert all(v in state for v in views), "a displayed widget's model is not in the saved state"
    kinds = [m["model_name"] for m in state.values()]
    # the explorer (pythreejs scene, bqplot heatmap) and the two animations (ipyvolume)
    assert kinds.count("ScatterModel") == 2 and kinds.count("RendererModel") >= 1
    assert "GridHeatMapModel" in kinds
    # the static figures are in the page as images
    assert exported.count('src="data:image/png;base64,') >= 6


def _scatters_in_view_order(state: dict, html: str) -> list[dict]:
    """The ipyvolume scatters in the order they are displayed (the saved state's own order
    of models varies from run to run): views in page order, then children and scatters
    in order."""
    out: list[dict] = []

    def walk(mid: str) -> None:
        model = state.get(mid)
        if model is None:
            return
        if model["model_name"] == "ScatterModel" and model not in out:
            out.append(model)
        for key in ("children", "scatters"):
            for ref in model["state"].get(key) or []:
                if isinstance(ref, str) and ref.startswith("IPY_MODEL_"):
                    walk(ref[len("IPY_MODEL_") :])

    for view in VIEW.findall(html):
        walk(json.loads(view)["model_id"])
    return out


def test_exported_animation_holds_every_frame_of_the_throw(exported):
    import warnings

    from skvis_widgets.data import load_msr_action3d
    from skvis_widgets.model import load_pretrained

    # The throw the notebook animates: the test recording the model is most sure of.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = load_msr_action3d().split_cross_subject()[1]
    throw = test.class_names.index("high throw")
    idx = test.indices_of_class(throw)
    probs = load_pretrained("msr_action3d").predict([test.sequences[i] for i in idx])
    sequence = test.sequences[idx[int(np.argmax(probs[:, throw]))]]

    state = _state(exported)
    scatters = _scatters_in_view_order(state, exported)
    recorded, optimized = (np.stack(_frames(m, "x")) for m in scatters)
    assert recorded.shape == optimized.shape == sequence.shape[:2]
    np.testing.assert_allclose(recorded, sequence[..., 0], atol=1e-6)
    for axis, name in enumerate("xyz"):
        np.testing.assert_allclose(
            np.stack(_frames(scatters[0], name)), sequence[..., axis], atol=1e-6
        )
    assert np.abs(optimized - recorded).max() > 0.05  # the maximization moved joints
    colors = np.stack(_frames(scatters[0], "color"))
    assert colors.shape[:2] == sequence.shape[:2] and colors.shape[2] in (3, 4)

    # The Play buttons run through every frame, in the browser.
    plays = [m["state"] for m in state.values() if m["model_name"] == "PlayModel"]
    assert any(p["max"] == len(sequence) - 1 for p in plays), [p["max"] for p in plays]
    links = [m["state"] for m in state.values() if m["model_name"] == "LinkModel"]
    linked = {tuple(link["target"]) for link in links} | {tuple(link["source"]) for link in links}
    assert any(name == "sequence_index" and ref.startswith("IPY_MODEL_") for ref, name in linked), (
        "no link to a scatter's sequence_index"
    )


def _canvas(locator) -> np.ndarray:
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(locator.screenshot())).convert("RGB")
    return np.asarray(img, dtype=np.float64)[1:-1, 1:-1]  # without the 1 px CSS border


@pytest.mark.browser
def test_offline_export_draws_its_widgets_with_no_network(
    exported, offline_page, page, waits, artifacts
):
    seen: list[str] = []
    blocked: list[str] = []
    page.on("request", lambda r: seen.append(r.url))

    def route(r):
        if r.request.url.startswith(("file://", "data:", "about:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.context.route("**/*", route)
    page.goto(offline_page.as_uri())
    html = offline_page.read_text(encoding="utf-8")
    assert "widget-state+json" not in html and "widget-view+json" not in html
    frames = page.frame_locator("iframe")
    assert page.locator("iframe").count() == 3  # the explorer's frame and two animations

    def ready():
        return (
            all(f.evaluate("!!window.skvis") for f in page.frames if f != page.main_frame)
            and len(page.frames) == 4
        )

    waits.until("the three offline views", ready, 30)
    views = [f for f in page.frames if f != page.main_frame]
    # the animations hold every frame of the throw and draw the state's colours
    state = _state(exported)
    scatters = _scatters_in_view_order(state, exported)
    colors = np.stack(_frames(scatters[0], "color"))[..., :3]  # (T, J, 3) in [0, 1]
    before = views[1]
    assert before.evaluate("skvis.frames") == len(colors)
    img = _canvas(frames.nth(1).locator("#skeleton"))
    for j in np.argsort(colors[0].sum(1))[:3]:  # the three darkest joints of frame 1
        c, r = (int(round(v)) for v in before.evaluate(f"skvis.jointPixel(0, {int(j)})"))
        drawn = np.median(img[r - 1 : r + 2, c - 1 : c + 2].reshape(-1, 3), 0)
        np.testing.assert_allclose(drawn, colors[0, j] * 255, atol=8)
    # Play runs without a kernel
    frames.nth(2).locator("#play").click()
    waits.until("Play in the second animation", lambda: views[2].evaluate("skvis.frame()") >= 3, 20)
    frames.nth(2).locator("#play").click()
    # the explorer's frame: joints drawn in colours (not only white and grey)
    shown = _canvas(frames.nth(0).locator("#skeleton"))
    coloured = np.ptp(shown, axis=-1) > 60
    assert coloured.sum() > 200, f"{coloured.sum()} coloured pixels in the explorer's frame"
    # the maths is an image, the figures are images, and all of them loaded
    assert page.locator("img.skvis-math").count() >= 1
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert len(widths) >= 7 and min(widths) > 0, widths
    page.screenshot(path=str(artifacts / "export_offline_case_study.png"), full_page=True)
    frames.nth(1).locator("body").screenshot(path=str(artifacts / "export_offline_animation.png"))
    assert blocked == [], blocked
    assert all(u.startswith(("file://", "data:", "about:")) for u in seen), seen
    assert page.console.errors(harmless=()) == []
