"""The quickstart notebook in a real JupyterLab, in headless Chromium, as a person uses it.

Runs every cell of ``notebooks/01_quickstart.ipynb``, then checks the 3D canvas
(the skeleton is drawn in the sensitivity colours), drags the frame slider
(the drawing changes), picks another target class (the colours change), and
reads the browser console (no errors but the known harmless ones). Screenshots
go to ``test-artifacts/``.
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
def _run_all_cells(page) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def _wait_cells_done(page, timeout: float) -> None:
    """Wait until no cell is queued or running (no ``[*]`` prompt) and one has run."""
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')]
                .map(p => p.textContent.trim());
            return prompts.some(t => /\\[\\d+\\]/.test(t)) && !prompts.some(t => t.includes('*'));
        }""",
        timeout=timeout * 1000,
    )


def _scene_canvas(page):
    """The pythreejs canvas (the explorer's 3D view), found by its size."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for c in page.locator(".jp-OutputArea-output canvas").all():
            box = c.bounding_box()
            if box and 400 <= box["width"] <= 560 and 350 <= box["height"] <= 500:
                return c
        time.sleep(0.5)
    raise AssertionError("no pythreejs canvas of the explorer's size appeared")


def changed_pixels(a: np.ndarray, b: np.ndarray, levels: float = 30) -> int:
    """How many pixels differ by more than ``levels`` (of 255) in some channel."""
    return int((np.abs(a - b).max(axis=-1) > levels).sum()) if a.shape == b.shape else a.size


def _wait_changed(canvas, before: np.ndarray, timeout: float = 20.0) -> np.ndarray:
    """The canvas once it differs from ``before`` (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    img = before
    while time.monotonic() < deadline:
        time.sleep(0.5)
        img = _image(canvas.screenshot())
        if changed_pixels(img, before, levels=6) > 20:
            return img
    return img


def _labelled(page, kind: str, label: str):
    """Widgets of class ``widget-<kind>`` whose description is exactly ``label``."""
    return page.locator(f".widget-{kind}").filter(
        has=page.locator(".widget-label", has_text=re.compile(rf"^\s*{label}\s*$"))
    )


def test_quickstart_in_jupyterlab(jupyter_server, page, artifacts):
    t_start = time.monotonic()
    server = jupyter_server("lab")
    page.goto(f"{server.url}lab/tree/{NOTEBOOK}", wait_until="domcontentloaded", timeout=60_000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_timeout(1000)
    _run_all_cells(page)
    try:
        _wait_cells_done(page, timeout=150)
        canvas = _scene_canvas(page)
    finally:
        page.screenshot(path=str(artifacts / "lab_notebook.png"), full_page=True)
    errors_in_cells = page.locator(
        ".jp-OutputArea-output[data-mime-type*='error']"
    ).all_inner_texts()
    assert not errors_in_cells, f"a cell raised:\n{errors_in_cells}\n{server.tail()}"
    explorer_errors = page.locator(".skvis-explorer").inner_text()
    assert "Error" not in explorer_errors.split("Input sequence")[0], explorer_errors

    ramp = _ramp()
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)
    first = _image(canvas.screenshot(path=str(artifacts / "lab_canvas_initial.png")))
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
    moved = _wait_changed(canvas, first)
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
    recoloured = _wait_changed(canvas, moved)
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
    page.locator(".skvis-explorer", has_text=re.compile(r"\w+, frame 7: ")).wait_for(timeout=15_000)
    cell.click()
    page.wait_for_function(
        "el => el.textContent.trim() === '7'", arg=readout.element_handle(), timeout=15_000
    )
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
    page.locator(".skvis-explorer button", has_text=re.compile(r"^\s*Run\s*$")).click()
    status = page.locator(".skvis-explorer .widget-html-content", has_text="constraint residuals")
    status.first.wait_for(timeout=90_000)
    optimized = _wait_changed(canvas, recoloured)
    canvas.screenshot(path=str(artifacts / "lab_canvas_maximization.png"))
    page.locator(".skvis-explorer").screenshot(
        path=str(artifacts / "lab_explorer_maximization.png")
    )
    assert changed_pixels(optimized, recoloured) > 20, "the maximization view did not draw"
    assert re.search(r"iteration (\d+)/\1", status.first.inner_text()), status.first.inner_text()

    errors = page.console.errors()
    print(f"browser test: {time.monotonic() - t_start:.1f} s; console warnings and errors:")
    for kind, text in page.console.messages:
        if kind in ("warning", "error", "pageerror"):
            print(f"  [{kind}] {text[:200]}")
    assert not errors, f"{len(errors)} console errors:\n" + "\n".join(errors)
