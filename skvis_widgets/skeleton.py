"""Skeleton topologies: joint names, bones and body parts.

Joint names come from one canonical vocabulary shared by every topology
(``spine_base``, ``spine_mid``, ``spine_shoulder``, ``neck``, ``head`` and the
limbs with the side as a suffix: ``shoulder_left``, ``elbow_left``,
``wrist_left``, ``hand_left``, ``hand_tip_left``, ``thumb_left``, ``hip_left``,
``knee_left``, ``ankle_left``, ``foot_left`` and the same ``_right``), so that
anatomical constraints and body parts written once by name serve every topology
that has those joints.

Topologies are looked up by name (`get_topology`); `register_topology` adds one of
your own, so it can be named wherever a built-in can (and a `Topology` object is
accepted everywhere a name is). A model records its topology in
``model.metadata`` (`topology_metadata`: the name, the joint names in order and the
bones), so every tool can take the skeleton from the model and refuse data whose
joints are named or ordered differently (`check_model_topology`); `reorder` maps
sequences from one joint order to another by the shared joint names.

Pure data: this module imports neither torch nor any widget library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import SkvisError

__all__ = [
    "Topology",
    "KINECT_V1",
    "KINECT_V2",
    "MSR_ACTION3D",
    "OPENNI_15",
    "TOPOLOGIES",
    "BODY_PARTS",
    "get_topology",
    "register_topology",
    "reorder",
    "topology_metadata",
    "model_topology",
    "check_same_joints",
    "check_model_topology",
    "display_name",
    "rest_pose",
    "REST_POSE",
]

#: Body parts as canonical joint names; a topology keeps the names it has.
BODY_PARTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "head": ("neck", "head"),
        "torso": ("spine_base", "spine_mid", "spine_shoulder"),
        "left_arm": (
            "shoulder_left",
            "elbow_left",
            "wrist_left",
            "hand_left",
            "hand_tip_left",
            "thumb_left",
        ),
        "right_arm": (
            "shoulder_right",
            "elbow_right",
            "wrist_right",
            "hand_right",
            "hand_tip_right",
            "thumb_right",
        ),
        "left_leg": ("hip_left", "knee_left", "ankle_left", "foot_left"),
        "right_leg": ("hip_right", "knee_right", "ankle_right", "foot_right"),
    }
)


@dataclass(frozen=True)
class Topology:
    """A skeleton: ordered joint names and the bones joining them.

    Parameters
    ----------
    name : str
        Short identifier, e.g. ``"kinect_v2"``.
    joint_names : tuple of str
        Canonical joint names in the order of the data's joint axis.
    bones : tuple of (int, int)
        0-based ``(parent, child)`` joint indices.
    label : str
        Human-readable name for display, e.g. ``"Kinect v2 (NTU RGB+D)"``.

    The topology validates itself: names are unique, bones join real joints and
    form a tree (no cycles, every joint reached from the root).
    """

    name: str
    joint_names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    label: str = ""
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(self.joint_names)
        bones = tuple((int(p), int(c)) for p, c in self.bones)
        object.__setattr__(self, "joint_names", names)
        object.__setattr__(self, "bones", bones)
        if len(set(names)) != len(names):
            raise SkvisError(f"topology {self.name!r}: joint names are not unique")
        n = len(names)
        for p, c in bones:
            if not (0 <= p < n and 0 <= c < n) or p == c:
                raise SkvisError(
                    f"topology {self.name!r}: bone ({p}, {c}) does not join two of its {n} joints"
                )
        # A tree: n - 1 bones, each child has one parent, all reachable from a root.
        children = [c for _, c in bones]
        if len(set(children)) != len(children) or len(bones) != n - 1:
            raise SkvisError(f"topology {self.name!r}: bones do not form a tree")
        roots = set(range(n)) - set(children)
        seen = set(roots)
        frontier = list(roots)
        while frontier:
            j = frontier.pop()
            for p, c in bones:
                if p == j and c not in seen:
                    seen.add(c)
                    frontier.append(c)
        if len(roots) != 1 or len(seen) != n:
            raise SkvisError(f"topology {self.name!r}: bones do not form a tree")
        object.__setattr__(self, "_index", MappingProxyType({nm: i for i, nm in enumerate(names)}))

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def num_bones(self) -> int:
        return len(self.bones)

    @property
    def root(self) -> int:
        """Index of the joint that is no bone's child (the spine base)."""
        children = {c for _, c in self.bones}
        return next(i for i in range(self.num_joints) if i not in children)

    def index(self, name: str) -> int:
        """Index of the joint called ``name``; raises `SkvisError` for an unknown joint."""
        try:
            return self._index[name]
        except KeyError:
            raise SkvisError(
                f"unknown joint {name!r} for topology {self.name!r}; "
                f"it has: {', '.join(self.joint_names)}"
            ) from None

    def has(self, *names: str) -> bool:
        """Whether the topology has every joint in ``names``."""
        return all(n in self._index for n in names)

    @property
    def body_parts(self) -> Mapping[str, tuple[str, ...]]:
        """Body part -> the joint names of this topology that belong to it."""
        return MappingProxyType(
            {
                part: tuple(n for n in names if n in self._index)
                for part, names in BODY_PARTS.items()
            }
        )

    def part_indices(self, part: str) -> tuple[int, ...]:
        """Joint indices of one body part (see `BODY_PARTS`)."""
        if part not in BODY_PARTS:
            raise SkvisError(f"unknown body part {part!r}; expected one of {list(BODY_PARTS)}")
        return tuple(self._index[n] for n in self.body_parts[part])

    def part_of(self, joint: str | int) -> str:
        """The body part a joint belongs to."""
        name = self.joint_names[joint] if isinstance(joint, int) else joint
        self.index(name)
        return next(p for p, names in BODY_PARTS.items() if name in names)

    def pretty(self, joint: int) -> str:
        """Joint ``joint``'s name for display: ``"elbow_left"`` -> ``"elbow left"``."""
        return display_name(self.joint_names[joint])


def display_name(joint_name: str) -> str:
    """A joint name for display: ``"elbow_left"`` -> ``"elbow left"`` (what every label,
    axis tick and tooltip shows; `Topology.pretty` for an index)."""
    return str(joint_name).replace("_", " ")


def _topology(name: str, label: str, joints: list[str], bones: list[tuple[str, str]]) -> Topology:
    idx = {n: i for i, n in enumerate(joints)}
    return Topology(name, tuple(joints), tuple((idx[p], idx[c]) for p, c in bones), label)


def _limb_bones(upper: str) -> list[tuple[str, str]]:
    bones = []
    for side in ("left", "right"):
        bones += [
            (upper, f"shoulder_{side}"),
            (f"shoulder_{side}", f"elbow_{side}"),
            (f"elbow_{side}", f"wrist_{side}"),
            (f"wrist_{side}", f"hand_{side}"),
            ("spine_base", f"hip_{side}"),
            (f"hip_{side}", f"knee_{side}"),
            (f"knee_{side}", f"ankle_{side}"),
            (f"ankle_{side}", f"foot_{side}"),
        ]
    return bones


def _side(*parts: str, side: str) -> list[str]:
    return [f"{p}_{side}" for p in parts]


_ARM = ("shoulder", "elbow", "wrist", "hand")
_LEG = ("hip", "knee", "ankle", "foot")

#: Kinect v2, as in NTU RGB+D: 25 joints, 24 bones.
KINECT_V2 = _topology(
    "kinect_v2",
    "Kinect v2 (25 joints)",
    ["spine_base", "spine_mid", "neck", "head"]
    + _side(*_ARM, side="left")
    + _side(*_ARM, side="right")
    + _side(*_LEG, side="left")
    + _side(*_LEG, side="right")
    + ["spine_shoulder", "hand_tip_left", "thumb_left", "hand_tip_right", "thumb_right"],
    [
        ("spine_base", "spine_mid"),
        ("spine_mid", "spine_shoulder"),
        ("spine_shoulder", "neck"),
        ("neck", "head"),
    ]
    + _limb_bones("spine_shoulder")
    + [
        ("hand_left", "hand_tip_left"),
        ("hand_left", "thumb_left"),
        ("hand_right", "hand_tip_right"),
        ("hand_right", "thumb_right"),
    ],
)

#: Kinect SDK v1 order, as SYSU uses: 20 joints, 19 bones.
KINECT_V1 = _topology(
    "kinect_v1",
    "Kinect v1 (20 joints)",
    ["spine_base", "spine_mid", "spine_shoulder", "head"]
    + _side(*_ARM, side="left")
    + _side(*_ARM, side="right")
    + _side(*_LEG, side="left")
    + _side(*_LEG, side="right"),
    [("spine_base", "spine_mid"), ("spine_mid", "spine_shoulder"), ("spine_shoulder", "head")]
    + _limb_bones("spine_shoulder"),
)

#: MSR Action3D, in the files' joint order: 20 joints, 19 bones (``body_model.mat``).
MSR_ACTION3D = _topology(
    "msr_action3d",
    "MSR Action3D (Kinect v1, 20 joints)",
    [
        "shoulder_left",
        "shoulder_right",
        "spine_shoulder",
        "spine_mid",
        "hip_left",
        "hip_right",
        "spine_base",
        "elbow_left",
        "elbow_right",
        "wrist_left",
        "wrist_right",
        "hand_left",
        "hand_right",
        "knee_left",
        "knee_right",
        "ankle_left",
        "ankle_right",
        "foot_left",
        "foot_right",
        "head",
    ],
    [("spine_base", "spine_mid"), ("spine_mid", "spine_shoulder"), ("spine_shoulder", "head")]
    + _limb_bones("spine_shoulder"),
)

#: OpenNI / PrimeSense NiTE (older Kinect v1 and Xtion data sets): 15 joints, 14 bones.
#: The NiTE "torso" joint is ``spine_mid``; there is no spine base, ankle, wrist or
#: hand tip, and the shoulders hang from the neck.
OPENNI_15 = _topology(
    "openni_15",
    "OpenNI / NiTE (15 joints)",
    ["head", "neck", "spine_mid"]
    + _side("shoulder", "elbow", "hand", side="left")
    + _side("shoulder", "elbow", "hand", side="right")
    + _side("hip", "knee", "foot", side="left")
    + _side("hip", "knee", "foot", side="right"),
    [("spine_mid", "neck"), ("neck", "head")]
    + [
        bone
        for side in ("left", "right")
        for bone in (
            ("neck", f"shoulder_{side}"),
            (f"shoulder_{side}", f"elbow_{side}"),
            (f"elbow_{side}", f"hand_{side}"),
            ("spine_mid", f"hip_{side}"),
            (f"hip_{side}", f"knee_{side}"),
            (f"knee_{side}", f"foot_{side}"),
        )
    ],
)

_BUILT_IN = (KINECT_V2, KINECT_V1, MSR_ACTION3D, OPENNI_15)
_REGISTRY: dict[str, Topology] = {t.name: t for t in _BUILT_IN}
_ALIASES = {
    "ntu": "kinect_v2",
    "ntu_rgbd": "kinect_v2",
    "sysu": "kinect_v1",
    "msr": "msr_action3d",
    "openni": "openni_15",
    "nite": "openni_15",
    "primesense": "openni_15",
}

#: Every known topology by name: the built-ins and those added by `register_topology`
#: (a read-only view of the registry).
TOPOLOGIES: Mapping[str, Topology] = MappingProxyType(_REGISTRY)


def _rest_pose() -> dict[str, tuple[float, float, float]]:
    pose = {
        "spine_base": (0.0, 0.0, 0.0),
        "spine_mid": (0.0, 0.25, 0.0),
        "spine_shoulder": (0.0, 0.5, 0.0),
        "neck": (0.0, 0.58, 0.0),
        "head": (0.0, 0.72, 0.0),
    }
    for sx, side in ((-1.0, "left"), (1.0, "right")):
        pose |= {
            f"shoulder_{side}": (0.18 * sx, 0.48, 0.0),
            f"elbow_{side}": (0.20 * sx, 0.22, 0.0),
            f"wrist_{side}": (0.20 * sx, -0.02, 0.0),
            f"hand_{side}": (0.20 * sx, -0.10, 0.0),
            f"hand_tip_{side}": (0.20 * sx, -0.16, 0.0),
            f"thumb_{side}": (0.17 * sx, -0.08, -0.02),
            f"hip_{side}": (0.09 * sx, -0.05, -0.03),
            f"knee_{side}": (0.09 * sx, -0.45, -0.03),
            f"ankle_{side}": (0.09 * sx, -0.85, -0.03),
            f"foot_{side}": (0.09 * sx, -0.90, -0.13),
        }
    return pose


#: An upright rest pose by canonical joint name (metres; x to the subject's right side of
#: the image, y up, z away from the camera, as in the recordings; spine base at the
#: origin): straight spine and arms, shoulders at 167 deg, hips at 122 deg and a little
#: in front of the spine base. It satisfies every anatomical constraint.
REST_POSE: Mapping[str, tuple[float, float, float]] = MappingProxyType(_rest_pose())


def rest_pose(topology: Topology | str) -> np.ndarray:
    """`REST_POSE` in ``topology``'s joint order: ``(J, 3)`` float64, metres.

    Raises `SkvisError` naming the joints `REST_POSE` does not know (a registered
    topology with joint names outside the canonical vocabulary).
    """
    topo = get_topology(topology)
    missing = [n for n in topo.joint_names if n not in REST_POSE]
    if missing:
        raise SkvisError(
            f"topology {topo.name!r}: no rest position for joint(s) {missing}; the rest "
            f"pose knows {sorted(REST_POSE)}"
        )
    return np.array([REST_POSE[n] for n in topo.joint_names], dtype=np.float64)


def _key(name: str) -> str:
    key = str(name).lower().replace("-", "_").replace(" ", "_")
    return _ALIASES.get(key, key)


def get_topology(name: str | Topology) -> Topology:
    """Look a topology up by name (``"kinect_v2"``, ``"kinect_v1"``, ``"msr_action3d"``,
    ``"openni_15"``, or one added by `register_topology`).

    ``"ntu"``, ``"sysu"``, ``"msr"`` and ``"openni"`` are accepted as aliases. A
    `Topology` is returned as is.
    """
    if isinstance(name, Topology):
        return name
    if not isinstance(name, str):
        raise SkvisError(
            f"expected a Topology or a topology name, got {type(name).__name__} {name!r}"
        )
    key = _key(name)
    if key not in _REGISTRY:
        raise SkvisError(
            f"unknown topology {name!r}; expected one of {list(_REGISTRY)} "
            "(add your own with skvis_widgets.skeleton.register_topology)"
        )
    return _REGISTRY[key]


def register_topology(topology: Topology, *, replace: bool = False) -> Topology:
    """Make ``topology`` known by its name, so that ``get_topology(topology.name)``, a
    model's ``metadata["topology"]`` and every ``topology=`` argument can name it.

    Registering the same topology twice is harmless; another topology under a taken
    name raises `SkvisError` unless ``replace=True``. Built-in topologies cannot be
    replaced. Returns the topology.
    """
    if not isinstance(topology, Topology):
        raise SkvisError(f"register_topology: expected a Topology, got {type(topology).__name__}")
    key = _key(topology.name)
    if not key or key != topology.name.lower().replace("-", "_").replace(" ", "_"):
        raise SkvisError(
            f"register_topology: the name {topology.name!r} is empty or an alias of "
            f"{key!r}; choose another name"
        )
    old = _REGISTRY.get(key)
    if old is not None and old != topology:
        if any(old is b for b in _BUILT_IN):
            raise SkvisError(f"register_topology: {key!r} is a built-in topology")
        if not replace:
            raise SkvisError(
                f"register_topology: another topology is registered as {key!r} "
                f"({old.num_joints} joints: {', '.join(old.joint_names)}); pass replace=True"
            )
    _REGISTRY[key] = topology
    return topology


# -- a model's skeleton ------------------------------------------------------------------
def topology_metadata(topology: Topology | str) -> dict[str, Any]:
    """What a model records of its skeleton (JSON-serializable): ``topology`` (the name),
    ``joint_names`` (in the order of the input's joint axis) and ``bones``."""
    topo = get_topology(topology)
    return {
        "topology": topo.name,
        "joint_names": list(topo.joint_names),
        "bones": [list(b) for b in topo.bones],
    }


def model_topology(model: Any) -> Topology | None:
    """The topology recorded in ``model.metadata`` (see `topology_metadata`), or None.

    The name is looked up among the known topologies; when it is unknown (a custom
    topology in a checkpoint), the topology is rebuilt from the recorded joint names
    and bones. Raises `SkvisError` when the recorded joint names disagree with the
    known topology of that name, or when the topology can be neither found nor rebuilt.
    """
    meta = getattr(model, "metadata", None) or {}
    if not isinstance(meta, Mapping):
        return None
    name, names, bones = meta.get("topology"), meta.get("joint_names"), meta.get("bones")
    if name is None and names is None:
        return None
    if isinstance(name, Topology):
        known: Topology | None = name
    else:
        known = _REGISTRY.get(_key(name)) if isinstance(name, str) else None
    if names is None:
        if known is None:
            raise SkvisError(
                f"model.metadata['topology'] is {name!r}, an unknown topology, and the model "
                "records no joint_names/bones; register it with register_topology"
            )
        return known
    names = tuple(str(n) for n in names)
    if known is not None:
        if known.joint_names != names:
            raise SkvisError(
                f"model.metadata: joint_names ({', '.join(names)}) disagree with topology "
                f"{known.name!r} ({', '.join(known.joint_names)})"
            )
        return known
    if bones is None:
        raise SkvisError(
            f"model.metadata names joints but no bones for topology {name!r}; "
            "register the topology with register_topology"
        )
    return Topology(str(name or "model"), names, tuple(tuple(b) for b in bones))


def check_same_joints(
    expected: Topology, expected_what: str, given: Topology, given_what: str
) -> None:
    """Raise `SkvisError` naming both when two topologies' joint names or order differ."""
    if expected.joint_names == given.joint_names:
        return
    a, b = expected.joint_names, given.joint_names
    if set(a) == set(b):
        k = next(i for i in range(len(a)) if a[i] != b[i])
        why = (
            f"the same joints in another order (joint {k} is {a[k]!r} in one, {b[k]!r} in "
            f"the other); map the data with skvis_widgets.skeleton.reorder(sequences, "
            f"{given.name!r}, {expected.name!r})"
        )
    else:
        only = [n for n in a if n not in b]
        extra = [n for n in b if n not in a]
        why = (
            "different joints ("
            + (f"{given.name!r} lacks {', '.join(only)}" if only else "")
            + ("; " if only and extra else "")
            + (f"{expected.name!r} lacks {', '.join(extra)}" if extra else "")
            + ")"
        )
    raise SkvisError(
        f"{expected_what} has topology {expected.name!r} ({len(a)} joints); {given_what} has "
        f"{given.name!r} ({len(b)} joints): {why}"
    )


def check_model_topology(
    model: Any, topology: Topology | str | None, what: str = "the data"
) -> Topology | None:
    """The model's recorded topology, after checking that ``topology`` (the data's, or a
    ``topology=`` argument) names the same joints in the same order.

    Returns the model's topology (None when it records none, and then ``topology``
    is not checked). Raises `SkvisError` naming both topologies when they disagree.
    """
    mine = model_topology(model)
    if mine is not None and topology is not None:
        check_same_joints(mine, "the model", get_topology(topology), what)
    return mine


def reorder(
    sequences: Any, source: Topology | str, target: Topology | str, *, drop: bool = False
) -> Any:
    """Map sequences from ``source``'s joint order to ``target``'s, by joint name.

    ``sequences`` is one ``(T, J, 3)`` array, an ``(N, T, J, 3)`` array or a list of
    ``(T_i, J, 3)`` arrays (the joint axis second to last), with ``J`` the source's
    joint count; the result has the same form with ``target``'s joints. Raises
    `SkvisError` naming the joints one side lacks (a target joint the source has no
    data for, or, unless ``drop=True``, a source joint that would be thrown away).

    Example: MSR Action3D files to the Kinect SDK order,
    ``reorder(seqs, "msr_action3d", "kinect_v1")``.
    """
    src, dst = get_topology(source), get_topology(target)
    lacking = [n for n in dst.joint_names if not src.has(n)]
    extra = [] if drop else [n for n in src.joint_names if not dst.has(n)]
    if lacking or extra:
        raise SkvisError(
            f"reorder {src.name!r} -> {dst.name!r}: "
            + "; ".join(
                part
                for part in (
                    f"{src.name!r} has no {', '.join(lacking)}" if lacking else "",
                    f"{dst.name!r} has no {', '.join(extra)} (pass drop=True to drop them)"
                    if extra
                    else "",
                )
                if part
            )
            + "; reorder maps between topologies with the same joints"
        )
    perm = [src.index(n) for n in dst.joint_names]

    def one(arr: Any, what: str) -> np.ndarray:
        a = np.asarray(arr)
        if a.ndim < 2 or a.shape[-2] != src.num_joints:
            raise SkvisError(
                f"reorder: {what} has shape {a.shape}; expected the {src.num_joints} joints "
                f"of {src.name!r} on the second-to-last axis"
            )
        return a[..., perm, :]

    if isinstance(sequences, np.ndarray):
        return one(sequences, "the array")
    return [one(s, f"sequence {i}") for i, s in enumerate(sequences)]
