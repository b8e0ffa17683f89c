"""The explorer's method selector and unit atlas in a real JupyterLab (headless Chromium).

A notebook written into the server's temporary copy opens the explorer on the shipped
model and a slice of the MSR test split. The test changes the method in the selector
(the 3D canvas and the joints-by-time heatmap change), opens the unit atlas, clicks a
unit (the target becomes that unit: the unit dropdown and the colour bar say so) and
reads the console. Every wait polls a condition; screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "notebooks/methods_check.ipynb"
CODE = """\
import numpy as np
from skvis_widgets.data import load_msr_action3d
from skvis_widgets.model import load_pretrained
from skvis_widgets.widgets import SkeletonVis

test = load_msr_action3d().split_cross_subject()[1]
vis = SkeletonVis(load_pretrained("msr_action3d"), test.subset(np.arange(0, 273, 9)))
vis"""


def _write_notebook(path) -> None:
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {},
                   "outputs": [], "source": CODE.splitlines(keepends=True)}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    path.write_text(json.dumps(nb))


def _image(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def _heatmap_fills(explorer) -> list[str]:
    """The fills of the joints-by-time heatmap's cells, in document order."""
    return explorer.locator(".skvis-heatmap rect.heatmapcell").evaluate_all(
        "rs => rs.map(r => getComputedStyle(r).fill)"
    )


def test_method_selector_and_unit_atlas_in_jupyterlab(jupyter_server, page, artifacts, waits):
    from conftest import scene_canvas

    server = jupyter_server("lab")
    _write_notebook(server.root / NOTEBOOK)
    page.set_viewport_size({"width": 1400, "height": 1900})
    page.goto(f"{server.url}lab/tree/{NOTEBOOK}", wait_until="domcontentloaded", timeout=60_000)
    waits.until(
        "the notebook's cell to appear",
        lambda: page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").count(),
        timeout=90,
    )
    waits.until(
        "the kernel to be idle and connected",
        lambda: (server.kernel(NOTEBOOK) or {}).get("execution_state") == "idle",
        timeout=180,
    )
    page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-editor").first.click()
    page.keyboard.press("Shift+Enter")
    canvas = scene_canvas(page, waits)
    explorer = page.locator(".skvis-explorer").first
    selector = explorer.locator(".skvis-method-selector").first
    waits.until("the method selector", selector.is_visible, timeout=60)
    dropdown = selector.locator("select").first
    assert "gradient" in dropdown.evaluate("s => s.options[s.selectedIndex].text")
    # ipywidgets writes the labels with non-breaking spaces
    labels = [t.replace("\xa0", " ") for t in dropdown.locator("option").all_inner_texts()]
    assert "eq 5, instantaneous (the paper's)" in labels, labels
    waits.until("the heatmap's cells", lambda: len(_heatmap_fills(explorer)) > 100, timeout=60)
    canvas.scroll_into_view_if_needed()

    def settled(what: str):
        """The canvas image once two screenshots in a row agree."""
        last = {}

        def same():
            img = _image(canvas.screenshot())
            prev, last["img"] = last.get("img"), img
            return img if prev is not None and np.abs(prev - img).max() < 1 else None

        return waits.until(what, same, timeout=60)

    before = settled("the first drawing to settle")
    fills = _heatmap_fills(explorer)
    explorer.screenshot(path=str(artifacts / "methods_gradient.png"))

    # the paper's map, picked in the selector: the canvas and the heatmap change
    dropdown.select_option(index=labels.index("eq 5, instantaneous (the paper's)"))

    def changed():
        img = _image(canvas.screenshot())
        moved = int((np.abs(img - before).max(-1) > 6).sum())
        return img if moved > 20 and _heatmap_fills(explorer) != fills else None

    waits.until("the canvas and the heatmap to change with the method", changed, timeout=60)
    legend = explorer.locator(".skvis-colorbar").first
    waits.until("the colour bar to name eq 5", lambda: "eq 5" in legend.inner_text(), 30)
    verdict = selector.locator(".skvis-verdict").first
    waits.until(
        "the paper's verdict line",
        lambda: (
            verdict.inner_text()
            .replace("\xa0", " ")
            .startswith("eq 5, instantaneous (the paper's): beats")
        ),
        timeout=600,
    )
    explorer.screenshot(path=str(artifacts / "methods_paper_verdict.png"))

    # the unit atlas: open its panel, click a unit, the unit is the target
    page.get_by_text("unit atlas: units by classes", exact=False).first.click()
    atlas = explorer.locator(".skvis-unit-atlas").first
    cells = atlas.locator("rect.heatmapcell")
    waits.until("the unit atlas's cells", lambda: cells.count() > 100, timeout=120)
    atlas.scroll_into_view_if_needed()
    atlas.screenshot(path=str(artifacts / "methods_unit_atlas.png"))
    unit_select = explorer.locator(".widget-dropdown", has_text="unit").locator("select").first
    shown = unit_select.evaluate("s => s.options[s.selectedIndex].text")
    assert "class itself" in shown.replace("\xa0", " ")
    cells.nth(5).click(force=True)

    def unit_chosen():
        text = unit_select.evaluate(
            "s => s.selectedIndex >= 0 ? s.options[s.selectedIndex].text : ''"
        )
        return re.match(r"unit (\d+)", text.replace("\xa0", " "))

    chosen = waits.until("the clicked unit to become the target", unit_chosen, timeout=60)
    waits.until(
        "the colour bar to name the unit",
        lambda: f"unit {chosen.group(1)}" in legend.inner_text(),
        timeout=60,
    )
    explorer.screenshot(path=str(artifacts / "methods_unit_clicked.png"))
    errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']").all_inner_texts()
    assert not errors, errors
