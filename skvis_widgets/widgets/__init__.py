"""Widgets: the SkeletonVis explorer and its parts.

This is the only subpackage that imports ipywidgets, pythreejs, ipyvolume and bqplot.

- `SkeletonVis`: the explorer (section 3.3 of the paper).
- `SkeletonScene`: one pose in 3D (pythreejs).
- `Timeline`: Play, frame slider and a joints-by-time heatmap (bqplot).
- `AnimatedSkeleton`: a whole sequence that plays in the browser (ipyvolume).
"""

from .animation import AnimatedSkeleton
from .explorer import SkeletonVis
from .heatmap import JointHeatmap
from .scene import SkeletonScene
from .timeline import Timeline

__all__ = ["SkeletonVis", "SkeletonScene", "Timeline", "AnimatedSkeleton", "JointHeatmap"]
