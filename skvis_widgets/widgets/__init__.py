"""Widgets: the SkeletonVis explorer and its parts (the only place that imports
ipywidgets, pythreejs, ipyvolume and bqplot)."""

from .scene import SkeletonScene

__all__ = ["SkeletonScene"]
