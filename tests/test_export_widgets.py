"""The explorer's and the animation widget's exports, driven from Python (no browser).

The Save-animation button writes a GIF of the current view whose joints have the
colours the explorer's scene draws; `export_html` writes one page holding the same
sequence and colours and asking for nothing outside itself (the browser side is in
``test_export_html.py``).
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from skvis_widgets.data import SkeletonDataset, load_msr_action3d
from skvis_widgets.errors import SkvisError
from skvis_widgets.model import SkeletonLSTM
from skvis_widgets.skeleton import MSR_ACTION3D

DATA = re.compile(r'<script id="skvis-data" type="application/json">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def dataset():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = load_msr_action3d()
    idx = np.concatenate([full.indices_of_class(c)[:1] for c in range(3)])
    small = full.subset(idx)
    return SkeletonDataset.from_arrays(
        [s[:12] for s in small.sequences], small.labels, MSR_ACTION3D, full.class_names,
        normalize=False, name="MSR slice", ids=small.ids,
    )  # fmt: skip


@pytest.fixture
def vis(dataset):
    from skvis_widgets.widgets import SkeletonVis

    torch.manual_seed(0)
    v = SkeletonVis(SkeletonLSTM(20, 20, 8).eval(), dataset, sample=1)
    yield v
    v.close()


def _hex(rgb) -> list:
    q = np.rint(np.asarray(rgb) * 255).astype(int)
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in q.reshape(-1, 3)]


def _page(path) -> tuple[str, dict]:
    text = path.read_text(encoding="utf-8")
    blocks = DATA.findall(text)
    assert len(blocks) == 1
    return text, json.loads(blocks[0])


def _self_contained(text: str) -> None:
    assert not re.search(r"<script[^>]*\bsrc=", text), "a script loaded from elsewhere"
    assert not re.search(r"<link[^>]*rel=\"stylesheet\"", text)
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), "a URL in the page"


def test_save_button_writes_the_current_view_as_a_gif(vis, tmp_path):
    path = tmp_path / "view.gif"
    vis.exporter.path = str(path)
    vis.frame = 5
    drawn = vis.scene.colors.copy()  # what the scene shows at frame 5
    vis.exporter.save_button.click()
    assert path.is_file(), vis.error.value
    assert "wrote the animation" in vis.exporter.status.value
    seq = vis.dataset.sequences[1]
    with Image.open(path) as im:
        assert im.n_frames == len(seq)
    info = vis.save_animation(tmp_path / "again.gif")  # the same view, with the joint positions
    with Image.open(tmp_path / "again.gif") as im:
        im.seek(5)
        frame = np.asarray(im.convert("RGB"), np.float64) / 255
    j = int(np.argmax(drawn.sum(1) * -1))  # the darkest joint drawn
    c, r = np.rint(info.joint_pixels[5, 0, j]).astype(int)
    patch = np.median(frame[r - 1 : r + 2, c - 1 : c + 2].reshape(-1, 3), 0)
    np.testing.assert_allclose(patch, drawn[j], atol=0.05)


def test_a_failed_save_is_shown_in_the_explorer(vis, tmp_path):
    vis.exporter.path = str(tmp_path / "view.avi")
    vis.exporter.save_button.click()
    assert "expected .gif or .mp4" in vis.error.value
    assert "could not write" in vis.exporter.status.value
    vis.exporter.path = str(tmp_path / "view.gif")
    vis.exporter.save_button.click()
    assert "expected .gif" not in vis.error.value  # the error goes once the save works


def test_export_html_holds_the_sequence_and_the_colours_shown(vis, tmp_path):
    vis.frame = 3
    drawn = vis.scene.colors.copy()
    path = vis.export_html(tmp_path / "view.html")
    text, data = _page(path)
    _self_contained(text)
    seq = vis.dataset.sequences[1]
    np.testing.assert_allclose(np.array(data["frames"]), seq, atol=6e-5)
    assert data["colors"][3] == _hex(drawn)
    assert data["bones"] == [list(b) for b in MSR_ACTION3D.bones]
    assert data["colorbar"]["label"].startswith("sensitivity to class")
    assert data["original"] is None
    # the heatmap's cells are the joints' colours, rows grouped by body part
    rows = data["heatmap"]["rows"]
    assert data["heatmap"]["colors"][rows.index(7)][3] == data["colors"][3][7]
    # the HTML button writes the same page next to the animation's name
    vis.exporter.path = str(tmp_path / "button.gif")
    vis.exporter.html_button.click()
    assert _page(tmp_path / "button.html")[1] == data


def test_export_html_of_a_maximization_has_the_input_beside_it(vis, tmp_path):
    vis.constraints = False
    vis.iterations = 2
    vis.view = "maximization"
    vis.run_maximization()
    assert vis.wait(60)
    assert vis.result is not None, vis.error.value
    _, data = _page(vis.export_html(tmp_path / "am.html"))
    np.testing.assert_allclose(np.array(data["original"]), vis.dataset.sequences[1], atol=6e-5)
    k = vis.iteration
    np.testing.assert_allclose(np.array(data["frames"]), vis.result.history[k], atol=6e-5)
    assert data["colorbar"]["label"] == "displacement from the input (cm)"
    info = vis.save_animation(tmp_path / "am.gif")
    assert info.joint_pixels.shape[1] == 2  # the input and the iterate, side by side


def test_animation_widget_exports_its_colours(tmp_path):
    from skvis_widgets.widgets import AnimatedSkeleton

    rng = np.random.default_rng(0)
    seq = rng.normal(0, 0.3, (4, 20, 3)).astype(np.float32)
    colors = rng.random((4, 20, 3))
    anim = AnimatedSkeleton(seq, MSR_ACTION3D, colors, interval=50)
    text, data = _page(anim.export_html(tmp_path / "anim.html", title="<b>walk</b>"))
    _self_contained(text)
    assert data["colors"] == [_hex(c) for c in colors]
    assert data["fps"] == 20 and data["colorbar"] is None
    assert "<title>&lt;b&gt;walk&lt;/b&gt;</title>" in text  # the title is text, not markup
    with pytest.raises(SkvisError, match="does not exist"):
        anim.export_html(tmp_path / "no" / "a.html")


def _offline_html(widget) -> str:
    """What `OfflineWidgets` draws for ``widget``, from its embedded state (as nbconvert
    stores it)."""
    import nbformat
    from ipywidgets.embed import embed_data

    from skvis_widgets.offline import OfflineWidgets

    data = embed_data(views=[widget])
    nb = nbformat.v4.new_notebook()
    view = {"application/vnd.jupyter.widget-view+json": data["view_specs"][0], "text/plain": "x"}
    nb.cells.append(nbformat.v4.new_code_cell("w", outputs=[nbformat.v4.new_output("display_data", data=view)]))  # fmt: skip
    nb.cells.append(nbformat.v4.new_markdown_cell("the weight $|W_c^u|$ and $\\notacommand{x}$"))
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": data["manager_state"]}
    nb, _ = OfflineWidgets().preprocess(nb, {})
    assert "widgets" not in nb.metadata
    out = nb.cells[0].outputs[0]["data"]
    assert list(out) == ["text/html"]
    md = nb.cells[1].source
    assert md.count('class="skvis-math"') == 1 and "$\\notacommand{x}$" in md  # kept as TeX
    return out["text/html"]


def _iframe_data(text: str) -> list[dict]:
    import html as _html

    pages = re.findall(r'<iframe srcdoc="(.*?)"', text, re.S)
    return [json.loads(DATA.findall(_html.unescape(p))[0]) for p in pages]


def test_offline_export_turns_an_animation_into_its_page():
    from skvis_widgets.widgets import AnimatedSkeleton

    rng = np.random.default_rng(1)
    seq = rng.normal(0, 0.3, (5, 20, 3)).astype(np.float32)
    colors = rng.random((5, 20, 3)).astype(np.float32)
    anim = AnimatedSkeleton(seq, MSR_ACTION3D, colors)
    (data,) = _iframe_data(_offline_html(anim))
    np.testing.assert_allclose(np.array(data["frames"]), seq, atol=6e-5)
    assert data["colors"] == [_hex(c) for c in colors]
    assert data["bones"] == [list(b) for b in MSR_ACTION3D.bones]  # recognized by its bones


def test_offline_export_draws_the_explorers_frame(vis):
    vis.frame = 4
    drawn = vis.scene.colors.copy()
    text = _offline_html(vis)
    assert "needs a running kernel" in text
    (data,) = _iframe_data(text)
    np.testing.assert_allclose(np.array(data["frames"][0]), vis.scene.positions, atol=6e-5)
    assert data["colors"][0] == _hex(drawn)
