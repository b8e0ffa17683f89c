"""The quickstart notebook in a real JupyterLab, in headless Chromium, as a person uses it.

Opens ``notebooks/01_quickstart.ipynb`` (a temporary copy: nothing is written to the
checkout), waits until its kernel is idle and connected (the server's ``/api/sessions``
and the page's kernel indicator agree), runs every cell (Run > Run All Cells, tried again
if it queued nothing) and waits for each code cell's execution count. Then it checks the
3D canvas (the skeleton is drawn in the sensitivity colours), drags the frame slider (the
drawing changes), picks another target class (the colours change), hovers and clicks the
heatmap, runs activation maximization, and reads the browser console (no errors but the
known harmless ones). Every wait polls a condition and fails with its name and a
screenshot (``test-artifacts/timeout_*.png``); none is a fixed sleep. Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import io
import os
import re
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = os.environ.get("SKVIS_BROWSER_NOTEBOOK", "notebooks/01_quickstart.ipynb")


# -- pixels ---------------------------------------------------------------------------------------
def _ramp() -> np.ndarray:
    """The sensitivity colormap, finely sampled, in 0..255 RGB."""
    from skvis_widgets.saliency import sensitivity_colors

    return sensitivity_colors(np.linspace(0, 1, 256), scale="global", vmax=1.0) * 255.0


def _image(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def joint_pixels(img: np.ndarray, ramp: np.ndarray, tol: float = 10.0) -> np.ndarray:
    """Mask of pixels in a joint colour: on the sensitivity colormap, and not near-white.

    The background is white, the grid and bones are grey (R = G = B); the
    colormap runs from light yellow to dark red, so grey is far from it, and its
    lightest end (too close to white to tell from antialiased background) is left out.
    """
    px = img.reshape(-1, 3)
    candidates = np.flatnonzero(np.linalg.norm(px - 255.0, axis=1) > 40)
    mask = np.zeros(len(px), bool)
    for chunk in np.array_split(candidates, max(1, len(candidates) // 20000)):
        d = np.linalg.norm(px[chunk, None, :] - ramp[None], axis=2).min(1)
        mask[chunk[d < tol]] = True
    return mask.reshape(img.shape[:2])


# -- the page ------------------------------------------------------------------------------------
#: Prompts of the code cells, as JupyterLab 4 and Notebook 7 draw them: "[ ]:", "[*]:", "[3]:".
_PROMPTS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent.replace(/\\s+/g, ''))"""

#: The notebook's kernel status as the page shows it (the toolbar's execution indicator, in
#: JupyterLab 4 and Notebook 7); it reads "idle" before a kernel exists too, so it is only
#: trusted together with the server's view.
_INDICATOR = """() => {
    const e = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
    return e ? e.dataset.status : null;
}"""


def _kernel_ready(page, server, notebook: str):
    """The server has a kernel for ``notebook``, idle, with the page's websocket connected,
    and the page shows it idle."""
    kernel = server.kernel(notebook)
    ok = (
        kernel is not None
        and kernel.get("execution_state") == "idle"
        and kernel.get("connections", 0) >= 1
        and page.evaluate(_INDICATOR) == "idle"
    )
    return kernel if ok else None


def _kernel_state(page, server, notebook: str) -> str:
    kernel = server.kernel(notebook)
    server_view = (
        "no session"
        if kernel is None
        else f"{kernel.get('execution_state')}, {kernel.get('connections')} connection(s)"
    )
    return f"server: {server_view}; page indicator: {page.evaluate(_INDICATOR)}"


def _run_all_cells(page) -> None:
    """Run > Run All Cells; a menu that does not open or answer is closed (tried again)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_role("menuitem", name="Run", exact=True).click(timeout=10_000)
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=10_000)
    except PlaywrightTimeout:
        page.keyboard.press("Escape")


def run_notebook(page, server, notebook: str, waits, *, timeout: float = 240) -> list[str]:
    """Run every cell of the open ``notebook`` as a person does (Run > Run All Cells), once
    its kernel is idle and connected; return the code cells' prompts once each has run.

    A Run All that queued nothing (no prompt left "[ ]:", the kernel not busy) is tried
    again, up to three times, each time once the kernel is idle again.
    """
    state = lambda: _kernel_state(page, server, notebook)  # noqa: E731
    for attempt in range(1, 4):
        waits.until(
            f"the kernel to be idle and connected (Run All, try {attempt})",
            lambda: _kernel_ready(page, server, notebook),
            timeout=180,
            detail=state,
        )
        _run_all_cells(page)

        def queued():
            prompts = page.evaluate(_PROMPTS)
            kernel = server.kernel(notebook) or {}
            return any(p != "[]:" for p in prompts) or kernel.get("execution_state") == "busy"

        try:
            waits.until("Run All to queue a cell", queued, timeout=15, detail=state)
            break
        except AssertionError:
            if attempt == 3:
                raise

    def all_counted():
        prompts = page.evaluate(_PROMPTS)
        done = prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)
        return prompts if done else None

    prompts = waits.until(
        "every code cell's execution count ([1]:, [2]:, ...)",
        all_counted,
        timeout=timeout,
        detail=lambda: f"prompts {page.evaluate(_PROMPTS)}; {state()}",
    )
    waits.until(
        "the kernel to be idle after the run",
        lambda: _kernel_ready(page, server, notebook),
        timeout=60,
        detail=state,
    )
    return prompts


def _scene_canvas(page, waits):
    """The pythreejs canvas (the explorer's 3D view), found by its size."""

    def find():
        for c in page.locator(".jp-OutputArea-output canvas").all():
            box = c.bounding_box()
            if box and 400 <= box["width"] <= 560 and 350 <= box["height"] <= 500:
                return c
        return None

    return waits.until("the explorer's pythreejs canvas", find, timeout=90)


def changed_pixels(a: np.ndarray, b: np.ndarray, levels: float = 30) -> int:
    """How many pixels differ by more than ``levels`` (of 255) in some channel."""
    return int((np.abs(a - b).max(axis=-1) > levels).sum()) if a.shape == b.shape else a.size


def _wait_changed(waits, canvas, before: np.ndarray, what: str, timeout: float = 30.0):
    """The canvas once it differs from ``before``; a named time-out otherwise."""
    last = {}

    def changed():
        img = last["img"] = _image(canvas.screenshot())
        return img if changed_pixels(img, before, levels=6) > 20 else None

    return waits.until(
        f"the canvas to change after {what}",
        changed,
        timeout,
        detail=lambda: f"{changed_pixels(last['img'], before, levels=6)} pixels changed",
    )


def _labelled(page, kind: str, label: str):
    """Widgets of class ``widget-<kind>`` whose description is exactly ``label``."""
    return page.locator(f".widget-{kind}").filter(
        has=page.locator(".widget-label", has_text=re.compile(rf"^\s*{label}\s*$"))
    )


def test_quickstart_in_jupyterlab(jupyter_server, page, artifacts, waits):
    t_start = time.monotonic()
    server = jupyter_server("lab")
    page.goto(f"{server.url}lab/tree/{NOTEBOOK}", wait_until="domcontentloaded", timeout=60_000)
    waits.until(
        "the notebook's cells to appear",
        lambda: page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").count(),
        timeout=90,
    )
    try:
        prompts = run_notebook(page, server, NOTEBOOK, waits)
        canvas = _scene_canvas(page, waits)
    finally:
        page.screenshot(path=str(artifacts / "lab_notebook.png"), full_page=True)
    print(f"cells ran ({' '.join(prompts)}) at {time.monotonic() - t_start:.1f} s")
    errors_in_cells = page.locator(
        ".jp-OutputArea-output[data-mime-type*='error']"
    ).all_inner_texts()
    assert not errors_in_cells, f"a cell raised:\n{errors_in_cells}\n{server.tail()}"
    explorer_errors = page.locator(".skvis-explorer").inner_text()
    assert "Error" not in explorer_errors.split("Input sequence")[0], explorer_errors

    ramp = _ramp()
    canvas.scroll_into_view_if_needed()
    seen = {}

    def skeleton_drawn():
        img = seen["img"] = _image(canvas.screenshot())
        return img if joint_pixels(img, ramp).sum() >= 40 else None

    first = waits.until(
        "the skeleton to be drawn in joint colours",
        skeleton_drawn,
        timeout=60,
        detail=lambda: f"{joint_pixels(seen['img'], ramp).sum()} pixels in joint colours",
    )
    canvas.screenshot(path=str(artifacts / "lab_canvas_initial.png"))
    page.locator(".skvis-explorer").screenshot(path=str(artifacts / "lab_explorer_initial.png"))
    joints = joint_pixels(first, ramp)
    distinct = {tuple(c) for c in (first[joints] // 8).astype(int)}
    assert joints.sum() >= 40, f"only {joints.sum()} pixels in joint colours"
    assert len(distinct) >= 3, f"joint colours: {distinct}"
    grey_or_bg = np.abs(first - first[0, 0]).max(axis=2) > 30
    assert grey_or_bg.sum() > joints.sum(), "no bones or grid drawn"

    # Drag the frame slider: the pose (and its colours) change.
    slider = _labelled(page, "hslider", "frame").first
    readout = slider.locator(".widget-readout")
    frame_before = readout.inner_text()
    handle = slider.locator(".noUi-handle")
    box = handle.bounding_box()
    track = slider.locator(".noUi-base").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + 0.6 * track["width"], box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    moved = _wait_changed(waits, canvas, first, "dragging the frame slider")
    canvas.screenshot(path=str(artifacts / "lab_canvas_frame.png"))
    assert readout.inner_text() != frame_before, "the frame slider did not move"
    assert changed_pixels(moved, first) > 20, "the drawing did not change"
    assert joint_pixels(moved, ramp).sum() >= 40

    # Another target class: the colours change (same pose).
    target = _labelled(page, "dropdown", "class").nth(1).locator("select")
    current = target.input_value()
    values = target.locator("option").evaluate_all("os => os.map(o => o.value)")
    other = next(v for v in values[len(values) // 2 :] + values if v != current)
    target.select_option(other)
    recoloured = _wait_changed(waits, canvas, moved, "choosing another class")
    canvas.screenshot(path=str(artifacts / "lab_canvas_class.png"))
    page.locator(".skvis-explorer").screenshot(path=str(artifacts / "lab_explorer_class.png"))
    before_px, after_px = joint_pixels(moved, ramp), joint_pixels(recoloured, ramp)
    assert after_px.sum() >= 40
    both = before_px & after_px
    assert changed_pixels(recoloured[both], moved[both], levels=8) > 10, (
        "the joint colours did not change with the class"
    )

    # The heatmap: hovering a cell names its joint, clicking it jumps to its frame.
    cells = page.locator(".skvis-explorer rect.heatmapcell")
    handle = _labelled(page, "hslider", "frame").locator(".noUi-handle")
    num_frames = round(float(handle.get_attribute("aria-valuemax"))) + 1
    cell = cells.nth(3 * num_frames + 7)  # row 3, frame 7
    cell.hover()
    hovered = page.locator(".skvis-explorer", has_text=re.compile(r"\w+, frame 7: "))
    waits.until("the hovered heatmap cell to be named", hovered.count, timeout=30)
    cell.click()
    waits.until(
        "a click on the heatmap to move the frame slider to 7",
        lambda: readout.inner_text().strip() == "7",
        timeout=30,
        detail=readout.inner_text,
    )
    clicked = _wait_changed(waits, canvas, recoloured, "a click on the heatmap (frame 7)")
    page.locator(".skvis-explorer").screenshot(
        path=str(artifacts / "lab_explorer_heatmap_click.png")
    )

    unit = _labelled(page, "dropdown", "unit").locator("select")
    assert (
        unit.locator("option:checked").inner_text().replace("\xa0", " ").strip()
        == "the class itself"
    )

    # Activation maximization: Run, wait for the history, see it beside the original.
    page.get_by_role("button", name="Activation maximization").click()
    plain = _wait_changed(waits, canvas, clicked, "switching to activation maximization")
    page.locator(".skvis-explorer button", has_text=re.compile(r"^\s*Run\s*$")).click()
    status = page.locator(".skvis-explorer .widget-html-content", has_text="constraint residuals")
    waits.until(
        "activation maximization to finish (its constraint residuals shown)",
        status.count,
        timeout=180,
        detail=lambda: page.locator(".skvis-explorer .widget-html-content").all_inner_texts(),
    )
    optimized = _wait_changed(waits, canvas, plain, "activation maximization")
    canvas.screenshot(path=str(artifacts / "lab_canvas_maximization.png"))
    page.locator(".skvis-explorer").screenshot(
        path=str(artifacts / "lab_explorer_maximization.png")
    )
    assert changed_pixels(optimized, plain) > 20, "the maximization view did not draw"
    assert re.search(r"iteration (\d+)/\1", status.first.inner_text()), status.first.inner_text()

    errors = page.console.errors()
    print(f"browser test: {time.monotonic() - t_start:.1f} s; console warnings and errors:")
    for kind, text in page.console.messages:
        if kind in ("warning", "error", "pageerror"):
            print(f"  [{kind}] {text[:200]}")
    assert not errors, f"{len(errors)} console errors:\n" + "\n".join(errors)
