"""Skeleton topologies: joint names, bones and body parts.

Joint names come from one canonical vocabulary shared by every topology
(``spine_base``, ``spine_mid``, ``spine_shoulder``, ``neck``, ``head`` and the
limbs with the side as a suffix: ``shoulder_left``, ``elbow_left``,
``wrist_left``, ``hand_left``, ``hand_tip_left``, ``thumb_left``, ``hip_left``,
``knee_left``, ``ankle_left``, ``foot_left`` and the same ``_right``), so that
anatomical constraints and body parts written once by name serve every topology
that has those joints.

Pure data: this module imports neither torch nor any widget library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import SkvisError

__all__ = [
    "Topology",
    "KINECT_V1",
    "KINECT_V2",
    "MSR_ACTION3D",
    "TOPOLOGIES",
    "BODY_PARTS",
    "get_topology",
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
        """``"elbow_left"`` -> ``"elbow left"`` for display."""
        return self.joint_names[joint].replace("_", " ")


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

TOPOLOGIES: Mapping[str, Topology] = MappingProxyType(
    {t.name: t for t in (KINECT_V2, KINECT_V1, MSR_ACTION3D)}
)


def get_topology(name: str | Topology) -> Topology:
    """Look a topology up by name (``"kinect_v2"``, ``"kinect_v1"``, ``"msr_action3d"``).

    ``"ntu"`` and ``"sysu"`` are accepted as aliases. A `Topology` is returned as is.
    """
    if isinstance(name, Topology):
        return name
    key = str(name).lower().replace("-", "_").replace(" ", "_")
    key = {
        "ntu": "kinect_v2",
        "ntu_rgbd": "kinect_v2",
        "sysu": "kinect_v1",
        "msr": "msr_action3d",
    }.get(key, key)
    if key not in TOPOLOGIES:
        raise SkvisError(f"unknown topology {name!r}; expected one of {list(TOPOLOGIES)}")
    return TOPOLOGIES[key]
