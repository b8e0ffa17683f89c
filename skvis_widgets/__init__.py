"""skvis_widgets: SkeletonVis in JupyterLab.

Shows what a recurrent network learned when it recognises actions from 3D
skeletons: joint sensitivity (Patil et al., eqs 1-5) and activation
maximization under anatomical constraints (eqs 6-14), in an interactive explorer.

Importing the package imports no widget library (nor torch); ``skvis_widgets.widgets``
does. `explain` and `METHODS` (from `skvis_widgets.methods`) load torch on first use.
"""

from typing import Any

from .errors import SkvisError
from .limits import memory_limit, set_memory_limit
from .skeleton import KINECT_V1, KINECT_V2, MSR_ACTION3D, Topology, get_topology

__version__ = "0.1.0"

__all__ = [
    "SkvisError",
    "Topology",
    "KINECT_V1",
    "KINECT_V2",
    "MSR_ACTION3D",
    "get_topology",
    "memory_limit",
    "set_memory_limit",
    "explain",
    "METHODS",
]

_LAZY = {"explain": "methods", "METHODS": "methods"}


def __getattr__(name: str) -> Any:
    # torch-heavy names are imported on first access, so `import skvis_widgets` stays light
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
