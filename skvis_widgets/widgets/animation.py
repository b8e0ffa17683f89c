"""`AnimatedSkeleton`: a whole sequence sent once and played in the browser (ipyvolume).

All frames travel with the widget (``(T, J)`` coordinate arrays and ``(T, J, 3)``
colours); ipyvolume's ``sequence_index`` picks the frame, and a Play button is
linked to it in JavaScript. Playback therefore needs no kernel and survives an
HTML export (``ipywidgets.embed.embed_minimal_html``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import ipyvolume as ipv
import ipywidgets as W
import numpy as np

from ..colors import DEFAULT_JOINT_COLOR
from ..errors import SkvisError
from ..skeleton import Topology
from ..webpage import write_html

__all__ = ["AnimatedSkeleton"]


@contextmanager
def _own_figure():
    """Use ipyvolume's pylab on a fresh figure, then restore its current figure."""
    cur = ipv.pylab.current
    saved = (cur.figure, cur.container, cur.material, dict(cur.figures), dict(cur.containers))
    try:
        yield
    finally:
        cur.figure, cur.container, cur.material = saved[:3]
        cur.figures.clear()
        cur.figures.update(saved[3])
        cur.containers.clear()
        cur.containers.update(saved[4])


class AnimatedSkeleton(W.VBox):
    """A skeleton sequence with per-joint colours, animated in the browser.

    Parameters
    ----------
    sequence : (T, J, 3) array
        Joint positions in metres.
    topology : Topology
    colors : (T, J, 3) or (J, 3) array, optional
        RGB in ``[0, 1]`` per joint (and frame), e.g. from
        `skvis_widgets.colors.sensitivity_colors`.
    interval : int
        Milliseconds per frame.
    width, height : int
        Canvas size in pixels.
    size : float
        Joint marker size (ipyvolume units).

    Attributes
    ----------
    figure : ipyvolume.Figure
    scatter : ipyvolume.Scatter (joints), mesh : ipyvolume.Mesh (bones)
    play, slider : the controls, linked to ``sequence_index`` in JavaScript
    """

    def __init__(
        self,
        sequence: np.ndarray,
        topology: Topology,
        colors: np.ndarray | None = None,
        *,
        interval: int = 60,
        width: int = 480,
        height: int = 420,
        size: float = 3.0,
        **kwargs: Any,
    ) -> None:
        seq = np.asarray(sequence, dtype=np.float32)
        if seq.ndim != 3 or seq.shape[1:] != (topology.num_joints, 3) or len(seq) == 0:
            raise SkvisError(
                f"sequence of shape {seq.shape}: expected (T, {topology.num_joints}, 3)"
            )
        if not np.all(np.isfinite(seq)):
            raise SkvisError("sequence has non-finite coordinates; cannot animate it")
        t, j = seq.shape[:2]
        if colors is None:
            col = np.broadcast_to(np.asarray(DEFAULT_JOINT_COLOR, np.float32), (t, j, 3))
        else:
            col = np.asarray(colors, dtype=np.float32)
            if col.shape == (j, 3):
                col = np.broadcast_to(col, (t, j, 3))
            if col.shape != (t, j, 3):
                raise SkvisError(f"colors of shape {col.shape}: expected ({t}, {j}, 3) or ({j}, 3)")
        col = np.ascontiguousarray(np.clip(col, 0, 1))
        self.sequence = seq
        self.colors = col
        self.interval = int(interval)
        self.topology = topology
        x, y, z = (np.ascontiguousarray(seq[..., d]) for d in range(3))
        lo, hi = seq.reshape(-1, 3).min(0), seq.reshape(-1, 3).max(0)
        center, half = (lo + hi) / 2, float((hi - lo).max()) / 2 + 0.1
        with _own_figure():
            self.figure = ipv.figure(width=width, height=height, controls=False)
            self.scatter = ipv.scatter(x, y, z, color=col, size=size, marker="sphere")
            self.mesh = ipv.plot_trisurf(
                x, y, z, lines=np.asarray(topology.bones, dtype=np.uint32), color="#505050"
            )
            ipv.xlim(center[0] - half, center[0] + half)
            ipv.ylim(center[1] - half, center[1] + half)
            ipv.zlim(center[2] - half, center[2] + half)
            ipv.style.box_off()
            ipv.style.axes_off()
            # animation_control links Play -> slider -> sequence_index with jslink: no kernel.
            controls = ipv.animation_control(
                [self.scatter, self.mesh], interval=interval, add=False
            )
        # Look at the body from the front (it faces -z in the body-centred frame).
        self.figure.camera.position = (-0.6, 0.4, -2.2)
        self.play, self.slider = controls.children
        super().__init__(children=[self.figure, controls], **kwargs)

    @property
    def num_frames(self) -> int:
        return len(self.sequence)

    def export_html(self, path, *, title: str = "", **kwargs: Any):
        """Write the animation as one HTML page that plays offline, in these colours (see
        `skvis_widgets.webpage.write_html`; give ``values=`` for a colour bar instead of
        the colours). Returns the path."""
        if "values" not in kwargs:
            kwargs["colors"] = self.colors
        kwargs.setdefault("fps", 1000.0 / max(self.interval, 1))
        return write_html(path, self.sequence, self.topology, title=title, **kwargs)
