"""skvis_widgets: SkeletonVis in JupyterLab.

Shows what a recurrent network learned when it recognises actions from 3D
skeletons: joint sensitivity (Patil et al., eqs 1-5) and activation
maximization under anatomical constraints (eqs 6-14), in an interactive explorer.

Importing the package imports no widget library; ``skvis_widgets.widgets`` does.
"""

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
]
