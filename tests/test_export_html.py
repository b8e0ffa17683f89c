"""The exported HTML page, opened from ``file://`` in Chromium with the network blocked.

`skvis_widgets.webpage.write_html` (what `SkeletonVis.export_html` and
`AnimatedSkeleton.export_html` write) must draw the skeleton in the map's colours and
the heatmap, and Play and the frame slider must change the drawing, with every
request that is not for the file itself aborted. Screenshots go to
``test-artifacts/export_html_*.png``.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from skvis_widgets.skeleton import MSR_ACTION3D
from skvis_widgets.webpage import write_html

pytestmark = pytest.mark.browser

LIGHT = np.array([255, 255, 204])
MID = np.array([253, 141, 60])
DARK = np.array([128, 0, 38])
HEAD = MSR_ACTION3D.index("head")
HAND = MSR_ACTION3D.index("hand_right")
T = 16


def _image(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def _canvas(locator) -> np.ndarray:
    """A canvas's pixels, without its 1 px CSS border (so rows and columns are the canvas's)."""
    return _image(locator.screenshot())[1:-1, 1:-1]


def _near(img: np.ndarray, rgb: np.ndarray, tol: float = 6) -> np.ndarray:
    return np.abs(img - rgb).max(-1) <= tol


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from skvis_widgets.data import load_msr_action3d

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seq = load_msr_action3d().sequences[0][:T]
    values = np.zeros((T, MSR_ACTION3D.num_joints))
    values[:, HEAD] = 2.0  # the darkest colour at every frame
    values[: T // 2, HAND] = 1.0  # half-way colour in the first half, lightest after
    path = tmp_path_factory.mktemp("page") / "skeleton.html"
    write_html(path, seq, MSR_ACTION3D, values, title="MSR sample", label="sensitivity (a.u.)")
    return path


@pytest.fixture
def offline(page):
    """The page with every request that is not ``file://`` aborted, and all recorded."""
    seen: list[str] = []
    blocked: list[str] = []
    page.on("request", lambda r: seen.append(r.url))

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.context.route("**/*", route)
    page.seen, page.blocked = seen, blocked
    return page


def _pixel(img: np.ndarray, xy) -> np.ndarray:
    c, r = (int(round(v)) for v in xy)
    return np.median(img[r - 1 : r + 2, c - 1 : c + 2].reshape(-1, 3), axis=0)


def test_offline_page_draws_plays_and_asks_for_nothing(offline, waits, exported, artifacts):
    page = offline
    page.goto(exported.as_uri())
    waits.until("the page's renderer", lambda: page.evaluate("!!window.skvis"), 20)
    canvas = page.locator("#skeleton")
    first = _canvas(canvas)
    assert first.shape[:2] == (420, 480)
    page.screenshot(path=str(artifacts / "export_html_first.png"), full_page=True)

    # the joints in the map's colours where the page projects them
    head, hand = (page.evaluate(f"skvis.jointPixel(0, {j})") for j in (HEAD, HAND))
    np.testing.assert_allclose(_pixel(first, head), DARK, atol=6)
    np.testing.assert_allclose(_pixel(first, hand), MID, atol=6)
    assert _near(first, DARK).sum() >= 80  # a disc of about 7 px radius
    light = _near(first, LIGHT).sum()
    assert light >= 18 * 80, f"{light} pixels in the lightest colour for 18 joints"
    # bones between the joints
    assert (np.abs(first - 0x50).max(-1) <= 8).sum() > 200

    # the heatmap: the head's row in the darkest colour all along, the hand's half of it
    heat = _canvas(page.locator("#heatmap"))
    assert _near(heat, DARK).sum() > 20 * T and _near(heat, MID).sum() > 10 * (T // 2)
    assert page.inner_text("#frame-label") == f"frame 1 / {T}"
    assert page.inner_text("#bar-label") == "sensitivity (a.u.)"

    # Play moves through the frames without a kernel
    page.click("#play")
    waits.until("Play to reach frame 3", lambda: page.evaluate("skvis.frame()") >= 3, 20)
    page.click("#play")
    assert not page.evaluate("skvis.playing()")
    played = _canvas(canvas)
    assert (np.abs(played - first).max(-1) > 30).sum() > 20, "Play did not change the drawing"

    # the slider (keyboard, as a person would) to the last frame: the hand is light there
    page.focus("#frame")
    page.keyboard.press("End")
    waits.until("the slider at the last frame", lambda: page.evaluate("skvis.frame()") == T - 1, 10)
    assert page.inner_text("#frame-label") == f"frame {T} / {T}"
    last = _canvas(canvas)
    np.testing.assert_allclose(_pixel(last, page.evaluate(f"skvis.jointPixel({T - 1}, {HAND})")), LIGHT, atol=6)  # fmt: skip
    np.testing.assert_allclose(_pixel(last, page.evaluate(f"skvis.jointPixel({T - 1}, {HEAD})")), DARK, atol=6)  # fmt: skip
    page.screenshot(path=str(artifacts / "export_html_last.png"), full_page=True)

    # nothing but the file itself was asked for, and nothing was blocked
    assert page.blocked == [], page.blocked
    assert page.seen and all(u.startswith("file://") for u in page.seen), page.seen
    assert page.console.errors(harmless=()) == []
