"""One self-contained HTML page of a coloured skeleton sequence that plays offline.

`write_html` embeds the whole sequence, its colours and its heatmap as JSON in one
file with a small canvas renderer written for this package (orthographic projection
of joints and bones, drag to turn the body, a joints-by-time heatmap, Play and a frame
slider). The page loads nothing: no script, style sheet, font or image comes from
anywhere but the file itself, so it opens from ``file://`` with no network and no
kernel.

This module imports no widget library.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .colors import (
    COLORMAPS,
    DEFAULT_JOINT_COLOR,
    check_map,
    resolve_vmax,
    sensitivity_colors,
    to_hex,
)
from .data.arrays import as_sequence
from .errors import SkvisError
from .export import part_rows
from .skeleton import Topology, get_topology

__all__ = ["write_html", "render_html", "page_data"]


def _hex(rgb: np.ndarray) -> list:
    """``(..., 3)`` RGB in [0, 1] -> nested lists of ``"#rrggbb"``."""
    return to_hex(rgb).tolist()


def page_data(
    sequence: Any,
    topology: Topology | str,
    values: Any = None,
    *,
    colors: Any = None,
    vmax: float | None = None,
    label: str = "sensitivity (normalized)",
    title: str = "",
    original: Any = None,
    fps: float = 15.0,
    cmap: str = "YlOrRd",
) -> dict:
    """What the page embeds, as a JSON-ready dict (see `write_html` for the parameters).

    Keys: ``title``, ``fps``, ``joints`` (names), ``bones``, ``frames`` (``(T, J, 3)``
    metres, rounded to 0.1 mm), ``colors`` (``(T, J)`` ``"#rrggbb"``), ``original``
    (``(T, J, 3)`` or None), ``heatmap`` (``{rows, groups, colors (rows, T)}``) and
    ``colorbar`` (``{label, vmax, stops}`` or None when there are no values).
    """
    topo = get_topology(topology)
    seq = as_sequence(sequence, topo)
    t, j = seq.shape[:2]
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise SkvisError(f"fps must be a positive number, got {fps!r}")
    bar = None
    if values is not None:
        if colors is not None:
            raise SkvisError("give values (coloured by the map) or colors, not both")
        v = check_map(values, (t, j))
        top = resolve_vmax(v, vmax)
        rgb = sensitivity_colors(v, scale="global", vmax=top, cmap=cmap)
        bar = {"label": label, "vmax": top, "stops": _hex(COLORMAPS[cmap])}
    elif colors is not None:
        rgb = np.asarray(colors, dtype=np.float64)
        if rgb.shape == (j, 3):
            rgb = np.broadcast_to(rgb, (t, j, 3))
        if rgb.shape != (t, j, 3) or not np.isfinite(rgb).all():
            raise SkvisError(f"colors of shape {rgb.shape}: expected finite ({t}, {j}, 3) RGB")
    else:
        rgb = np.broadcast_to(np.array(DEFAULT_JOINT_COLOR), (t, j, 3))
    orig = None
    if original is not None:
        o = as_sequence(original, topo, name="original")
        if o.shape != seq.shape:
            raise SkvisError(f"original of shape {o.shape}: expected the sequence's {seq.shape}")
        orig = np.round(o.astype(np.float64), 4).tolist()
    rows, groups = part_rows(topo)
    cells = _hex(np.asarray(rgb)[:, rows].transpose(1, 0, 2))
    return {
        "title": str(title),
        "fps": fps,
        "joints": list(topo.joint_names),
        "bones": [list(b) for b in topo.bones],
        "frames": np.round(seq.astype(np.float64), 4).tolist(),
        "colors": _hex(rgb),
        "original": orig,
        "heatmap": {
            "rows": rows,
            "names": [topo.pretty(r) for r in rows],
            "groups": [[p.replace("_", " "), a, b] for p, a, b in groups],
            "colors": cells,
        },
        "colorbar": bar,
    }


def write_html(path: str | os.PathLike, sequence: Any, topology: Topology | str, values: Any = None, **kwargs: Any) -> Path:  # fmt: skip
    """Write one HTML file that plays a coloured skeleton sequence offline.

    Parameters
    ----------
    path : the ``.html`` file to write (its folder must exist)
    sequence : (T, J, 3) array, metres
    topology : Topology or name
    values : (T, J) non-negative array, optional: joint colours by the map, with a
        colour bar from 0 to ``vmax`` (default the largest value) labelled ``label``
    colors : (T, J, 3) or (J, 3) RGB in [0, 1], optional: instead of ``values``
    title : the page's heading
    original : (T, J, 3) array, optional: drawn in grey beside the sequence (the input
        of an activation maximization)
    fps : frames per second of Play

    Returns
    -------
    Path of the file written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise SkvisError(f"{path}: the folder {path.parent} does not exist")
    page = render_html(sequence, topology, values, **kwargs)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise SkvisError(f"{path}: could not write the page ({exc})") from exc
    return path


def render_html(sequence: Any, topology: Topology | str, values: Any = None, **kwargs: Any) -> str:
    """The page `write_html` writes, as a string (same parameters, without ``path``)."""
    data = page_data(sequence, topology, values, **kwargs)
    # "</" cannot close the script block from inside the JSON
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return _PAGE.format(
        title=html.escape(data["title"] or "skeleton"), data=blob, script=_SCRIPT, style=_STYLE
    )


_STYLE = """
body { font: 14px sans-serif; margin: 16px; color: #222; background: #fff; }
h1 { font-size: 18px; margin: 0 0 8px 0; }
#view { display: flex; gap: 16px; align-items: flex-start; }
#skeleton { border: 1px solid #ddd; cursor: grab; }
#bar { display: flex; flex-direction: column; align-items: center; font-size: 12px; }
#bar .ramp { width: 18px; height: 300px; border: 1px solid #999; }
#controls { margin: 8px 0; display: flex; gap: 10px; align-items: center; }
#frame { width: 420px; }
#heatmap { border: 1px solid #ddd; cursor: pointer; }
.note { color: #777; font-size: 12px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1 id="title">{title}</h1>
<div id="view">
  <canvas id="skeleton" width="480" height="420"></canvas>
  <div id="bar"></div>
</div>
<div id="controls">
  <button id="play" type="button">Play</button>
  <input id="frame" type="range" min="0" max="0" value="0" step="1">
  <span id="frame-label"></span>
</div>
<canvas id="heatmap" width="640" height="240"></canvas>
<p class="note">Drag the skeleton to turn it; click the heatmap to pick a frame.
Made with skvis_widgets; this page loads nothing from the network.</p>
<script id="skvis-data" type="application/json">{data}</script>
<script>{script}</script>
</body>
</html>
"""

# A small canvas renderer written for this package.
_SCRIPT = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("skvis-data").textContent);
  var T = D.frames.length, J = D.joints.length;
  var sk = document.getElementById("skeleton"), ctx = sk.getContext("2d");
  var hm = document.getElementById("heatmap"), hctx = hm.getContext("2d");
  var slider = document.getElementById("frame"), label = document.getElementById("frame-label");
  var play = document.getElementById("play");
  var state = { frame: 0, azimuth: 0, elevation: 10, timer: null };
  var bodies = D.original ? [D.original, D.frames] : [D.frames];

  // One centre and scale for every frame and any azimuth: the body turns in place.
  var lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  bodies.forEach(function (b) { b.forEach(function (f) { f.forEach(function (p) {
    for (var d = 0; d < 3; d++) { lo[d] = Math.min(lo[d], p[d]); hi[d] = Math.max(hi[d], p[d]); }
  }); }); });
  var centre = [0, 1, 2].map(function (d) { return (lo[d] + hi[d]) / 2; });
  var radius = 0;
  bodies.forEach(function (b) { b.forEach(function (f) { f.forEach(function (p) {
    var dx = p[0] - centre[0], dy = p[1] - centre[1], dz = p[2] - centre[2];
    radius = Math.max(radius, Math.sqrt(dx * dx + dy * dy + dz * dz));
  }); }); });
  radius = Math.max(radius, 0.3);
  var panels = bodies.length;

  // Orthographic: turn about y, tilt down; +x on the screen's left (facing the body).
  function project(p, panel) {
    var a = state.azimuth * Math.PI / 180, e = state.elevation * Math.PI / 180;
    var x = p[0] - centre[0], y = p[1] - centre[1], z = p[2] - centre[2];
    var xr = x * Math.cos(a) + z * Math.sin(a), zr = -x * Math.sin(a) + z * Math.cos(a);
    var yr = y * Math.cos(e) + zr * Math.sin(e), depth = -y * Math.sin(e) + zr * Math.cos(e);
    var w = sk.width / panels, s = 0.45 * Math.min(w, sk.height) / radius;
    return [w * panel + w / 2 - s * xr, sk.height / 2 - s * yr, depth];
  }

  function shade(hex, k) {
    var n = parseInt(hex.slice(1), 16);
    var r = Math.round(((n >> 16) & 255) * k), g = Math.round(((n >> 8) & 255) * k);
    var b = Math.round((n & 255) * k);
    return "rgb(" + r + "," + g + "," + b + ")";
  }

  function drawBody(frame, panel, colors) {
    var pts = frame.map(function (p) { return project(p, panel); });
    ctx.lineWidth = 3; ctx.lineCap = "round";
    ctx.strokeStyle = colors ? "#505050" : "#b0b0b0";
    D.bones.forEach(function (b) {
      ctx.beginPath(); ctx.moveTo(pts[b[0]][0], pts[b[0]][1]);
      ctx.lineTo(pts[b[1]][0], pts[b[1]][1]); ctx.stroke();
    });
    var order = pts.map(function (_, j) { return j; });
    order.sort(function (i, j) { return pts[j][2] - pts[i][2]; });  // far joints first
    order.forEach(function (j) {
      var c = colors ? colors[j] : "#b0b0b0";
      ctx.beginPath(); ctx.arc(pts[j][0], pts[j][1], 7, 0, 2 * Math.PI);
      ctx.fillStyle = c; ctx.fill();
      ctx.lineWidth = 1.5; ctx.strokeStyle = shade(c, 0.35); ctx.stroke();
    });
    return pts;
  }

  var names = D.original ? ["original", "synthesized"] : [""];
  function drawSkeleton() {
    ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, sk.width, sk.height);
    var k = state.frame;
    ctx.fillStyle = "#444"; ctx.font = "13px sans-serif"; ctx.textAlign = "center";
    bodies.forEach(function (b, i) {
      var last = i === bodies.length - 1;
      drawBody(b[k], i, last ? D.colors[k] : (D.original ? D.colors[k].map(function () {
        return D.colorbar ? D.colorbar.stops[0] : "#b0b0b0"; }) : null));
      if (names[i]) ctx.fillText(names[i], sk.width / panels * (i + 0.5), 18);
    });
  }

  var H = D.heatmap, left = 110, top = 6, right = 80;
  function drawHeatmap() {
    var rows = H.rows.length, w = (hm.width - left - right) / T, h = (hm.height - top - 24) / rows;
    hctx.fillStyle = "#fff"; hctx.fillRect(0, 0, hm.width, hm.height);
    for (var r = 0; r < rows; r++) {
      for (var t = 0; t < T; t++) {
        hctx.fillStyle = H.colors[r][t];
        hctx.fillRect(left + t * w, top + r * h, Math.ceil(w), Math.ceil(h));
      }
    }
    hctx.fillStyle = "#333"; hctx.font = "9px sans-serif"; hctx.textAlign = "right";
    hctx.textBaseline = "middle";
    H.names.forEach(function (n, r) { hctx.fillText(n, left - 4, top + (r + 0.5) * h); });
    hctx.textAlign = "left"; hctx.strokeStyle = "#000"; hctx.lineWidth = 1;
    H.groups.forEach(function (g) {
      if (g[1] > 0) {
        hctx.beginPath(); hctx.moveTo(left, top + g[1] * h);
        hctx.lineTo(left + T * w, top + g[1] * h); hctx.stroke();
      }
      hctx.fillText(g[0], left + T * w + 4, top + (g[1] + g[2]) / 2 * h);
    });
    hctx.textAlign = "center"; hctx.textBaseline = "alphabetic";
    hctx.fillText("frame", left + T * w / 2, hm.height - 4);
    hctx.strokeStyle = "#1060ff"; hctx.lineWidth = 2;
    hctx.strokeRect(left + state.frame * w, top, Math.max(w, 2), rows * h);
  }

  function drawBar() {
    var bar = document.getElementById("bar");
    if (!D.colorbar) { bar.style.display = "none"; return; }
    var stops = D.colorbar.stops.slice().reverse().join(",");
    bar.innerHTML = "";
    var hiLabel = document.createElement("div"); hiLabel.textContent = D.colorbar.vmax.toPrecision(3);
    var ramp = document.createElement("div"); ramp.className = "ramp";
    ramp.style.background = "linear-gradient(" + stops + ")";
    var loLabel = document.createElement("div"); loLabel.textContent = "0";
    var name = document.createElement("div"); name.textContent = D.colorbar.label;
    name.id = "bar-label"; name.style.maxWidth = "120px"; name.style.textAlign = "center";
    [hiLabel, ramp, loLabel, name].forEach(function (el) { bar.appendChild(el); });
  }

  function setFrame(k) {
    state.frame = Math.max(0, Math.min(T - 1, Math.round(k)));
    slider.value = String(state.frame);
    label.textContent = "frame " + (state.frame + 1) + " / " + T;
    drawSkeleton(); drawHeatmap();
  }

  function stop() { if (state.timer !== null) { clearInterval(state.timer); state.timer = null; } play.textContent = "Play"; }
  function start() {
    stop(); play.textContent = "Pause";
    state.timer = setInterval(function () { setFrame((state.frame + 1) % T); }, 1000 / D.fps);
  }
  play.addEventListener("click", function () { if (state.timer === null) start(); else stop(); });
  slider.max = String(T - 1);
  slider.addEventListener("input", function () { setFrame(Number(slider.value)); });
  hm.addEventListener("click", function (ev) {
    var box = hm.getBoundingClientRect(), w = (hm.width - left - right) / T;
    var x = (ev.clientX - box.left) * hm.width / box.width;
    if (x >= left && x < left + T * w) setFrame(Math.floor((x - left) / w));
  });
  var drag = null;
  sk.addEventListener("pointerdown", function (ev) { drag = [ev.clientX, ev.clientY, state.azimuth, state.elevation]; });
  window.addEventListener("pointerup", function () { drag = null; });
  window.addEventListener("pointermove", function (ev) {
    if (!drag) return;
    state.azimuth = drag[2] + (ev.clientX - drag[0]) * 0.5;
    state.elevation = Math.max(-89, Math.min(89, drag[3] + (ev.clientY - drag[1]) * 0.5));
    drawSkeleton();
  });

  // For scripts and tests: the state, and where a joint is drawn (canvas pixels).
  window.skvis = {
    frames: T, joints: J,
    frame: function () { return state.frame; },
    playing: function () { return state.timer !== null; },
    setFrame: setFrame,
    jointPixel: function (k, j, panel) {
      var p = panel === undefined ? bodies.length - 1 : panel;
      return project(bodies[p][k][j], p).slice(0, 2);
    }
  };
  drawBar(); setFrame(0);
})();
"""
