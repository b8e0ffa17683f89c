"""`Timeline`: Play and a frame slider, linked, above a joints-by-time heatmap.

The Play button drives the slider in the browser (``jslink``), so playback
needs no round trip through the kernel; the slider, the heatmap's cursor and
the `frame` trait are kept equal on the kernel side.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as W
import numpy as np
import traitlets as T

from ..skeleton import Topology
from .heatmap import JointHeatmap

__all__ = ["Timeline"]


class Timeline(W.VBox):
    """Frame controls and the heatmap of the current per-joint values.

    Parameters
    ----------
    joint_names : Topology or sequence of str
        The heatmap's rows (a topology: in anatomical groups).
    num_frames : int
    interval : int
        Milliseconds between frames when playing (`fps` sets it too).
    heatmap : bool
        Show the joints-by-time heatmap (a bare player without it).

    Attributes
    ----------
    frame : int
        The current frame, ``0 <= frame < num_frames``.
    num_frames : int
    play, slider : ipywidgets.Play, ipywidgets.IntSlider
    heatmap : JointHeatmap or None
    """

    frame = T.Int(0)
    num_frames = T.Int(1)
    fps = T.Int(15)

    #: The frame rates offered.
    FPS = (5, 10, 15, 20, 25, 30)

    def __init__(
        self,
        joint_names: Topology | Sequence[str],
        num_frames: int = 1,
        *,
        interval: int | None = None,
        heatmap: bool = True,
        colors: Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        n = max(int(num_frames), 1)
        if interval is not None:
            self.fps = max(1, round(1000 / int(interval)))
        self.play = W.Play(
            value=0,
            min=0,
            max=n - 1,
            step=1,
            interval=round(1000 / self.fps),
            # no description: ipywidgets 8 shows the tooltip only on a widget without one
            tooltip="Play, pause, stop or loop the frames (played in the browser)",
        )
        self.fps_dropdown = W.Dropdown(
            options=[(f"{f} fps", f) for f in sorted({*self.FPS, self.fps})],
            value=self.fps,
            tooltip="frames per second when playing",
            layout=W.Layout(width="90px"),
        )
        T.link((self, "fps"), (self.fps_dropdown, "value"))
        self.slider = W.IntSlider(
            value=0,
            min=0,
            max=n - 1,
            description="frame",
            continuous_update=True,
            tooltip="the frame shown (drag, or click a heatmap cell)",
            layout=W.Layout(width="100%"),
        )
        self._jslink = W.jslink((self.play, "value"), (self.slider, "value"))
        self.heatmap = JointHeatmap(joint_names, colors=colors) if heatmap else None
        children = [
            W.HBox([self.play, self.fps_dropdown, self.slider], layout=W.Layout(width="100%"))
        ]
        if self.heatmap is not None:
            children.append(self.heatmap)
        super().__init__(children=children, **kwargs)
        self.num_frames = n
        # Kernel-side links: frame <-> slider <-> heatmap cursor. The Play follows the
        # slider in the browser only: a second, kernel-side link would echo stale values
        # back while it plays.
        T.link((self, "frame"), (self.slider, "value"))
        if self.heatmap is not None:
            T.link((self, "frame"), (self.heatmap, "frame"))

    @T.observe("fps")
    def _on_fps(self, change) -> None:
        self.play.interval = round(1000 / max(int(change["new"]), 1))

    @T.validate("frame")
    def _clamp_frame(self, proposal) -> int:
        return int(min(max(int(proposal["value"]), 0), self.num_frames - 1))

    @T.validate("num_frames")
    def _valid_num_frames(self, proposal) -> int:
        return max(int(proposal["value"]), 1)

    @T.observe("num_frames")
    def _on_num_frames(self, change) -> None:
        top = change["new"] - 1
        # Lower `value` before `max` so the sliders never hold an out-of-range value.
        if self.frame > top:
            self.frame = top
        with self.slider.hold_sync(), self.play.hold_sync():
            self.slider.max = top
            self.play.max = top

    def show(
        self,
        values: np.ndarray | None,
        *,
        title: str = "",
        vmax: float | None = None,
        scale=None,
    ) -> None:
        """Show ``(T, J)`` per-joint values in the heatmap (``None``: nothing to show);
        ``scale``: the scene's `skvis_widgets.colors.ColorScale`."""
        if self.heatmap is None:
            return
        if values is None:
            values = np.zeros((self.num_frames, len(self.heatmap.order)))
        self.heatmap.show(values, title=title, vmax=vmax, scale=scale)
