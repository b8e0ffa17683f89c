"""nbconvert pages of the case studies that draw offline.

``jupyter nbconvert --execute --to html`` keeps the widgets' state in the page but loads
the widget renderer, require.js and MathJax from CDNs, so offline the widgets are empty
boxes and the maths stays raw. `OfflineHTMLExporter` (an ``HTMLExporter``) instead:

- replaces each animation (`~skvis_widgets.widgets.AnimatedSkeleton`, found in the
  saved widget state as an ipyvolume scatter with one array per frame and the bones as
  the lines of a mesh) by the self-contained page of `skvis_widgets.webpage` in an
  ``iframe``: it plays with Play and the frame slider, offline;
- draws an explorer (`~skvis_widgets.widgets.SkeletonVis`, a pythreejs scene) as the
  frame it showed, in its colours, and says that the rest needs a kernel;
- says so for any other widget, instead of an empty box;
- draws the maths of Markdown cells with matplotlib's mathtext (inline SVG; a formula
  mathtext cannot parse stays as its TeX source);
- leaves out the widget state and the CDN scripts (require.js, MathJax, the widget
  renderer): the page requests nothing.

Use it as ``jupyter nbconvert --execute --to skvis_widgets.offline.OfflineHTMLExporter
--ExecutePreprocessor.store_widget_state=True notebooks/02_throw_and_kick.ipynb`` (it
writes ``02_throw_and_kick.html``).
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import Preprocessor
from traitlets import default

from .skeleton import TOPOLOGIES, Topology

__all__ = ["OfflineHTMLExporter", "OfflineWidgets", "math_to_svg"]

_STATE = "application/vnd.jupyter.widget-state+json"
_VIEW = "application/vnd.jupyter.widget-view+json"
_REF = "IPY_MODEL_"
_TEMPLATES = Path(__file__).with_name("templates")


# -- the saved widget state -------------------------------------------------------------------
def _refs(value: Any) -> list[str]:
    """Model ids referenced anywhere in a state value."""
    if isinstance(value, str):
        return [value[len(_REF) :]] if value.startswith(_REF) else []
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _refs(v)]
    return []


def _tree(state: dict, root: str) -> list[str]:
    """Every model reachable from ``root`` (itself first), each once."""
    seen, order, stack = set(), [], [root]
    while stack:
        mid = stack.pop()
        if mid in seen or mid not in state:
            continue
        seen.add(mid)
        order.append(mid)
        stack.extend(reversed(_refs(state[mid].get("state", {}))))
    return order


def _buffers(model: dict) -> dict[tuple, bytes]:
    """The model's binary buffers by trait path; the serializers' last key (ipyvolume's
    ``"data"``, pythreejs's ``"buffer"``) is left out of the path."""
    out = {}
    for b in model.get("buffers", []):
        if b.get("encoding", "base64") != "base64":
            continue
        path = tuple(b["path"])
        if path and path[-1] in ("data", "buffer"):
            path = path[:-1]
        out[path] = base64.b64decode(b["data"])
    return out


def _array(model: dict, name: str) -> np.ndarray | list[np.ndarray] | None:
    """A saved array trait: one array, or one per frame (ipyvolume's sequences)."""
    spec = model.get("state", {}).get(name)
    bufs = _buffers(model)

    def one(meta, path):
        if not isinstance(meta, dict) or "dtype" not in meta or path not in bufs:
            return None
        return np.frombuffer(bufs[path], dtype=meta["dtype"]).reshape(meta["shape"])

    if isinstance(spec, list):
        arrays = [one(m, (name, k)) for k, m in enumerate(spec)]
        return None if not arrays or any(a is None for a in arrays) else arrays
    return one(spec, (name,))


def _topology(bones: np.ndarray | list[np.ndarray], num_joints: int) -> Topology | None:
    """The known topology with exactly these bones (MSR and Kinect v1 both have 20 joints)."""
    drawn = {tuple(sorted(map(int, b))) for b in np.asarray(bones).reshape(-1, 2)}
    for topo in TOPOLOGIES.values():
        if topo.num_joints == num_joints and {tuple(sorted(b)) for b in topo.bones} == drawn:
            return topo
    return None


def _animation(state: dict, figure: str) -> dict | None:
    """The sequence, colours and topology of an ipyvolume figure made by AnimatedSkeleton."""
    fig = state[figure]["state"]
    scatters = [r for r in _refs(fig.get("scatters", [])) if r in state]
    meshes = [r for r in _refs(fig.get("meshes", [])) if r in state]
    if not scatters or not meshes:
        return None
    sc, mesh = state[scatters[0]], state[meshes[0]]
    xyz = [_array(sc, a) for a in "xyz"]
    lines = _array(mesh, "lines")
    if isinstance(lines, list):
        lines = lines[0]
    frames = [a for a in xyz if isinstance(a, list)]  # x, y and z: one array per frame
    if lines is None or len(frames) != 3:
        return None
    seq = np.stack([np.stack(a) for a in frames], -1).astype(np.float32)  # (T, J, 3)
    topo = _topology(lines, seq.shape[1])
    if topo is None:
        return None
    color = _array(sc, "color")
    if isinstance(color, list):
        color = np.stack(color)
    colors = None
    if color is not None:
        color = np.asarray(color, dtype=np.float64)
        if color.shape[-1] == 4:
            color = color[..., :3]
        if color.shape in ((seq.shape[1], 3), seq.shape):
            colors = color
    width = int(fig.get("width", 480) or 480)
    return {"sequence": seq, "topology": topo, "colors": colors, "width": width}


def _bones_from_segments(state: dict, ids: list[str], joints: np.ndarray) -> list[np.ndarray]:
    """Bones (as joint index pairs) of line segments whose ends are all joints of ``joints``
    (``(J, 3)``): the thick bones of a `SkeletonScene` (`LineSegments2`)."""
    out = []
    for mid in ids:
        m = state[mid]
        if m.get("model_name") != "LineSegmentsGeometryModel":
            continue
        seg = _array(m, "positions")
        if not isinstance(seg, np.ndarray) or seg.ndim != 3 or seg.shape[1:] != (2, 3):
            continue
        d = np.linalg.norm(seg.reshape(-1, 1, 3) - joints[None].astype(np.float64), axis=-1)
        pairs = d.argmin(1).reshape(-1, 2)
        # every end on a joint, no zero-length segment (the displacement lines of a ghost
        # that has not moved)
        if len(seg) and np.all(d.min(1) < 1e-6) and np.all(pairs[:, 0] != pairs[:, 1]):
            out.append(pairs.reshape(-1))
    return out[:1]


def _interleaved_frame(state: dict, ids: list[str]) -> dict | None:
    """The pose of a `SkeletonScene`: one interleaved ``x y z r g b`` buffer whose first
    rows are the joints (a point geometry indexed ``0..J-1``) and bone lines indexing it."""
    geos = [
        (mid, state[mid]["state"].get("attributes", {}))
        for mid in ids
        if state[mid].get("model_name") == "BufferGeometryModel"
    ]
    for _mid, attrs in geos:
        if not isinstance(attrs, dict) or not {"position", "color", "index"} <= set(attrs):
            continue
        pos_ref = _refs(attrs["position"])
        attr = state.get(pos_ref[0]) if pos_ref else None
        if attr is None or attr.get("model_name") != "InterleavedBufferAttributeModel":
            continue
        index = _array(state[_refs(attrs["index"])[0]], "array")
        data_ref = _refs(attr["state"].get("data"))
        buf = _array(state[data_ref[0]], "array") if data_ref else None
        if not isinstance(index, np.ndarray) or not isinstance(buf, np.ndarray):
            continue
        j = len(index)
        if j == 0 or not np.array_equal(index, np.arange(j)) or buf.ndim != 2:
            continue
        bones = [
            _array(state[_refs(oattrs["index"])[0]], "array")
            for _, oattrs in geos
            if isinstance(oattrs, dict)
            and "color" not in oattrs
            and "index" in oattrs
            and _refs(oattrs.get("position")) == pos_ref
        ]
        pairs = [b for b in bones if isinstance(b, np.ndarray)]
        if not pairs:  # thick bones: a LineSegmentsGeometry of (B, 2, 3) end points
            pairs = _bones_from_segments(state, ids, buf[:j, :3])
        topo = _topology(np.concatenate(pairs), j) if pairs else None
        if topo is not None:
            return {"sequence": buf[None, :j, :3], "colors": buf[:j, 3:6], "topology": topo}
    return None


def _scene_frame(state: dict, ids: list[str]) -> dict | None:
    """The pose a pythreejs skeleton scene shows: positions, colours and bones."""
    frame = _interleaved_frame(state, ids)
    if frame is not None:
        return frame
    for mid in ids:
        m = state[mid]
        if m.get("model_name") != "BufferGeometryModel":
            continue
        attrs = m["state"].get("attributes", {})
        if not isinstance(attrs, dict) or "position" not in attrs or "color" not in attrs:
            continue
        pos_id, col_id = (_refs(attrs[k])[0] for k in ("position", "color"))
        pos, col = _array(state[pos_id], "array"), _array(state[col_id], "array")
        if not isinstance(pos, np.ndarray) or not isinstance(col, np.ndarray):
            continue
        # the bones share the position buffer, with an index
        for other in ids:
            o = state[other]
            oattrs = o.get("state", {}).get("attributes", {})
            if (
                o.get("model_name") == "BufferGeometryModel"
                and isinstance(oattrs, dict)
                and "index" in oattrs
                and _refs(oattrs.get("position")) == [pos_id]
            ):
                index = _array(state[_refs(oattrs["index"])[0]], "array")
                topo = None if index is None else _topology(index, len(pos))
                if topo is not None:
                    return {"sequence": pos[None], "colors": col, "topology": topo}
    return None


def _iframe(page: str, width: int, height: int) -> str:
    return (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" '
        f'style="width:{width}px;height:{height}px;border:0" loading="eager"></iframe>'
    )


def _note(text: str) -> str:
    return (
        "<div style='padding:6px 10px;border:1px dashed #bbb;color:#555;font:13px sans-serif'>"
        f"{html.escape(text)}</div>"
    )


def widget_html(state: dict, root: str) -> str:
    """What to draw for the widget ``root`` of a saved widget state, as offline HTML."""
    from .webpage import render_html

    ids = _tree(state, root)
    figures = [m for m in ids if state[m].get("model_name") == "FigureModel"]
    anims = [a for a in (_animation(state, f) for f in figures) if a is not None]
    # HTML labels beside the animations (one each, in order) become their titles
    labels = [
        re.sub(r"<[^>]+>", "", str(state[m]["state"].get("value", "")))
        for m in ids
        if state[m].get("model_name") == "HTMLModel"
    ]
    titles = labels if len(labels) == len(anims) else [""] * len(anims)
    parts = []
    for anim, title in zip(anims, titles, strict=True):
        page = render_html(
            anim["sequence"], anim["topology"], colors=anim["colors"], title=html.unescape(title)
        )
        parts.append(_iframe(page, 680, 790))
    if parts:
        return "<div style='display:flex;flex-wrap:wrap;gap:8px'>" + "".join(parts) + "</div>"
    frame = _scene_frame(state, ids)
    if frame is not None:
        page = render_html(
            frame["sequence"], frame["topology"], colors=frame["colors"], title="explorer"
        )
        return _note(
            "The explorer needs a running kernel (open the notebook in JupyterLab or Voila); "
            "here is the frame it showed, in its colours."
        ) + _iframe(page, 680, 790)
    name = state.get(root, {}).get("model_name", "widget")
    return _note(f"An interactive {name} widget: it needs a running kernel (JupyterLab, Voila).")


# -- maths ---------------------------------------------------------------------------------------
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$([^$\n]+?)\$(?!\$)")


def math_to_svg(tex: str, *, fontsize: float = 12.0) -> str | None:
    """One formula as an inline SVG ``<img>`` (matplotlib mathtext), or None if it cannot
    parse it."""
    from matplotlib import mathtext

    buf = io.BytesIO()
    try:
        mathtext.math_to_image(f"${tex.strip()}$", buf, prop=None, format="svg")
    except Exception:  # noqa: BLE001 - mathtext knows a subset of TeX; keep the source
        return None
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    alt = html.escape(tex.strip(), quote=True)
    return (
        f'<img class="skvis-math" alt="{alt}" src="data:image/svg+xml;base64,{data}" '
        f'style="vertical-align:middle;height:{fontsize * 1.35:.0f}px">'
    )


def _maths(source: str) -> str:
    def sub(match):
        svg = math_to_svg(match.group(1))
        return match.group(0) if svg is None else svg

    return _INLINE.sub(sub, _DISPLAY.sub(sub, source))


# -- nbconvert ------------------------------------------------------------------------------------
class OfflineWidgets(Preprocessor):
    """Replace widget outputs by offline HTML (see the module) and drop the widget state."""

    def preprocess(self, nb, resources):
        meta = nb.metadata.get("widgets", {})
        state = meta.get(_STATE, {}).get("state", {})
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = _maths(cell.source)
                continue
            if cell.cell_type != "code":
                continue
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                if _VIEW not in data:
                    continue
                root = data[_VIEW].get("model_id", "")
                data["text/html"] = widget_html(state, root)
                del data[_VIEW]
                data.pop("text/plain", None)
        nb.metadata.pop("widgets", None)
        return nb, resources


class OfflineHTMLExporter(HTMLExporter):
    """An HTML page that draws offline: `OfflineWidgets`, and a template without CDN scripts."""

    export_from_notebook = "HTML (offline, skvis_widgets)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_preprocessor(OfflineWidgets, enabled=True)

    @default("template_name")
    def _skvis_template_name(self) -> str:
        return "skvis_offline"

    @default("extra_template_basedirs")
    def _skvis_template_dirs(self) -> list[str]:
        return [str(_TEMPLATES)]
