"""Activation maximization (Patil et al., section 3.2, eqs 6-14): hill climbing on skeletons.

Starting from a real sequence, `maximize_activation` repeatedly moves every joint along
an ascent direction of a score and pulls the result back onto valid skeletons (eq 14),
recording every iterate, so one sees how the network's response can be strengthened
(the first iterations) and what unrealistic optimum it climbs to (figure 5).

The score
    ``target=c``: the class logit ``o_c = fc(h_{T-1})_c`` of the last frame, what the
    classifier decides on. ``unit=u``: the unit's response at the last frame,
    ``h_{T-1}^u`` of the chosen recurrent layer (its activation "through time": the
    value the whole sequence drives it to).
The direction (``gradient=``)
    ``"full"`` (default): the true gradient of the score w.r.t. every frame's pose
    (autograd through the recurrence, eq 6). ``"paper"``: eq 7,
    ``d_t = sum_u W_c^u dh_t^u / dx_t``, the FC weights times the signed *instantaneous*
    Jacobians (`skvis_widgets.saliency.instantaneous_jacobian`: the previous state held
    fixed); for a unit, that unit's Jacobian row. Eq 7 equals eq 6 only at the last frame:
    at other frames it climbs the per-frame logit ``fc(h_t)_c``, which usually, not
    always, raises the last frame's; the step control below keeps the score honest
    either way.
The step
    The direction is scaled so that the joint that moves most moves ``step_size`` metres:
    ``x + step_size * d / max_{t,j} |d_{t,j}|`` (``|.|`` the Euclidean norm of a joint's
    3-vector). The candidate is then made valid (below) and kept if it raises the score
    (and meets the ``temporal`` bound); otherwise the step is halved, up to
    ``max_halvings`` times. Every iteration starts
    again from the full ``step_size``. So ``scores`` never decrease.
Convergence
    When no halving raises the score, or an accepted step gains less than
    ``tol * max(|score|, 1)`` (relative for scores above 1 in magnitude, absolute below),
    the run stops with ``converged=True``.

Making a candidate valid
    1. ``constraints``: eq 14 via `skvis_widgets.anatomy.project`, with the reference bone
       lengths of the *input* (the mean over its frames, as in the paper), so every
       iterate has exactly the input's mean bone lengths.
    2. ``support`` (not in the paper, off by default): the lowest foot stays on the floor
       (below).
    3. ``temporal`` (not in the paper, off by default): the optimizer may add at most
       ``temporal`` metres/frame^2 of acceleration to any joint (below). When the
       candidate breaks it, its displacement is projected onto the bound and steps 1-2
       run again, up to ``max_rounds`` times; steps 1-2 always run last, so bones, angles
       and support hold exactly and the acceleration bound to ``temporal_tol`` (a
       candidate that still breaks it is rejected like a step that lowers the score).

The default constraint set (`default_constraints`)
    The paper's (bones, three-joint angles, the pelvis plane) for the sequence's
    topology, except where the *input itself* breaks a limit: there the limit is widened
    to what the input shows (rounded outwards to 0.1 degree), and the pelvis-plane
    constraint, whose range `project` cannot change, is dropped (listed in
    ``dropped``). Reason: real MSR Action3D poses break the paper's spine limit (160-180
    degrees) on 99.5 % of frames (median 133: the Kinect v1 spine joint sits behind the
    hip-shoulder line; see `skvis_widgets.anatomy`). With the paper's limits the first
    projection straightens every spine, a change that has nothing to do with the
    network: on the 11 throws of the MSR test split, projecting the input alone moves
    the spine-mid joint by 3.8 cm on average (0.7 cm with the widened set, which only
    evens out the bone lengths) and changes the logit by up to 0.2 either way. With the
    widened set the input's poses are valid up to bone-length noise, the limits that the
    input respects stay the paper's, and the optimizer cannot bend any angle further
    than the subject did. Pass ``constraints=anatomical_constraints(topology)`` for the
    paper's limits unchanged (the climb works with them too, to slightly lower scores).

``support``
    Sequences are in the package's body frame (`skvis_widgets.data.normalize_sequence`):
    ``y`` points up. The support joints are the feet and ankles the topology has.
    ``support=True`` (or ``"frame"``): in every frame the lowest support joint keeps the
    height it had in the input frame: the pose is translated vertically after the
    projection (which keeps bones and angles). The input is left as it is, jumps stay
    jumps, and the optimum cannot float up or sink. ``support="floor"``: one floor plane,
    the lowest support-joint height over the whole input; every frame's lowest foot is put
    on it. That also moves the input's own frames that were off the floor, which can lower
    the score whatever the step: on 5 of the 11 MSR test throws no step is accepted and
    the run stops at the input (``converged=True``, ``iterations_run=0``).

``temporal``
    Real recordings are noisy: MSR Action3D joints accelerate by up to 0.3-0.9
    m/frame^2 between frames (Kinect v1 glitches), and the projection of the input alone
    (its bone lengths made constant) moves joints by a few centimetres, differently in
    each frame. A bound on the pose's own acceleration would reject the input. The bound
    is on the acceleration the optimizer *adds* to the input made valid, ``x_valid`` (the
    input projected, with the support applied; the input itself without constraints):
    ``|a_{t,j}(x - x_valid)| <= temporal`` for every interior frame ``t`` and joint ``j``,
    with ``a_t(v) = v_{t+1} - 2 v_t + v_{t-1}`` (a 3-vector), so that
    ``|a(x)| <= |a(x_valid)| + temporal``. The projection onto that convex set is Dykstra's
    algorithm over three families of frames (``t mod 3``; in a family the constraints
    touch disjoint frames). Alternating it with the anatomical projection converges
    linearly (about a third of the excess goes per round) but slowly once the iterate
    presses on the bound; a candidate still above ``temporal + temporal_tol`` (default
    5 % of ``temporal``) after ``max_rounds`` rounds counts as a failed step (halved like
    one that lowers the score), so every accepted iterate meets the bound to that
    tolerance. This makes the option costly: tens of projections per iteration.

Everything runs in eval mode on the model's device and dtype; the model's modes are
restored, its ``requires_grad`` flags are never touched and no ``.grad`` is left.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch

from ._checks import as_model_input, check_index, check_layer, check_model, eval_view
from .adapters import run_layers
from .anatomy import (
    ConstraintSet,
    anatomical_constraints,
    constraint_residuals,
    project,
    reference_bone_lengths,
)
from .errors import SkvisError
from .limits import check_memory
from .saliency import instantaneous_jacobian
from .skeleton import TOPOLOGIES, Topology, check_same_joints, get_topology, model_topology

__all__ = [
    "MaximizationResult",
    "maximize_activation",
    "ascent_direction",
    "default_constraints",
    "SUPPORT_JOINTS",
]

Gradient = Literal["full", "paper"]
_GRADIENTS = ("full", "paper")

#: Joints that can carry the body, lowest first looked for (the topology keeps those it has).
SUPPORT_JOINTS = ("foot_left", "foot_right", "ankle_left", "ankle_right")

#: The vertical axis of the package's body frame (`normalize_sequence`: y up the body).
_UP = 1


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MaximizationResult:
    """Every iterate of one activation maximization, the input first.

    Arrays are read-only.

    Attributes
    ----------
    history : ndarray, shape (K+1, T, J, 3)
        ``history[0]`` is the input, ``history[k]`` the pose after iteration ``k``;
        metres, the model's float dtype (float32 for a `SkeletonLSTM`).
    scores : ndarray, shape (K+1,), float64
        The score of each entry of ``history``: the class logit or the unit's response at
        the last frame. Non-decreasing.
    residuals : ndarray, shape (K+1, T, R), float64
        How far each frame of each iterate violates each constraint of
        ``constraint_names`` (0 where it holds): metres for bones and ``support:floor``,
        degrees outside the range for angles and the pelvis plane (as
        `skvis_widgets.anatomy.constraint_residuals`), metres/frame^2 above the bound for
        ``temporal:acceleration`` (the largest over the frame's joints). Computed for the
        anatomical constraints even when they were not enforced (``constrained=False``:
        figure 2(a)), if the topology is known. ``residuals[0]`` is the input's: its bone
        lengths vary around their mean.
    constraint_names : tuple of str
        The columns of ``residuals``.
    step_sizes : ndarray, shape (K,), float64
        The accepted step of each iteration in metres (before projection): ``step_size``
        divided by a power of 2.
    converged : bool
        No step raised the score, or the last gain was below the tolerance.
    cancelled : bool
        Stopped by the ``cancel`` event (the iterations done are kept).
    iterations_run : int
        ``K``, the accepted iterations.
    target, unit : int or None
        What was maximized (exactly one is set); ``layer``: the unit's recurrent layer.
    gradient : {"full", "paper"}
    constrained : bool
        Whether the anatomical constraints were enforced.
    constraint_set : ConstraintSet or None
        The anatomical constraints used (enforced, or only measured); None when the
        topology is unknown.
    reference_lengths : ndarray (B,) or None
        The bone lengths enforced (the input's means), metres.
    support : {False, "frame", "floor"}
    temporal : float or None
        The acceleration bound, metres/frame^2.
    message : str
        Why the run stopped, in a sentence. When no step beat the input
        (``iterations_run == 0``) it says so and why, e.g. that making the input valid
        (projecting it onto the constraints) alone lowers the score by 0.16.
    input_violation : mapping of str to float
        For each of the paper's constraints for the topology
        (`skvis_widgets.anatomy.anatomical_constraints`, before `default_constraints`
        widens or drops any), the fraction of the input's frames that break it: by more
        than 1 cm of bone length from the input's mean, or by more than 0.1 degree for
        angles and the pelvis plane. Empty when the topology is unknown.
    """

    history: np.ndarray
    scores: np.ndarray
    residuals: np.ndarray
    constraint_names: tuple[str, ...]
    step_sizes: np.ndarray
    converged: bool
    cancelled: bool
    iterations_run: int
    target: int | None
    unit: int | None
    layer: int
    gradient: str
    constrained: bool
    constraint_set: ConstraintSet | None
    reference_lengths: np.ndarray | None
    support: bool | str
    temporal: float | None
    message: str = ""
    input_violation: Mapping[str, float] = field(default_factory=dict)

    @property
    def final(self) -> np.ndarray:
        """The last iterate, ``(T, J, 3)``."""
        return self.history[-1]

    @property
    def max_residuals(self) -> np.ndarray:
        """The worst frame per iterate and constraint: ``(K+1, R)``."""
        r = self.residuals
        return r.max(axis=1) if r.shape[1] else np.zeros((r.shape[0], r.shape[2]))


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------------------------------------
# Checking the input
# ---------------------------------------------------------------------------------------------
def _dtype(model: Any) -> tuple[torch.dtype, torch.device, type]:
    p = model.rnn.weight_ih_l0
    return p.dtype, p.device, (np.float64 if p.dtype == torch.float64 else np.float32)


def _as_sequence(model: Any, sequence: Any, np_dtype: type) -> np.ndarray:
    """A checked ``(T, J, 3)`` copy of ``sequence`` in the model's dtype."""
    x, _, single = as_model_input(model, sequence)
    if not single:
        raise SkvisError(f"sequence: expected shape (T, J, 3), got {tuple(x.shape)}")
    return np.array(x[0].cpu().numpy(), dtype=np_dtype)


def _what(model: Any, target: Any, unit: Any, layer: Any) -> tuple[int | None, int | None, int]:
    """Checked ``(target, unit, layer)``; the layer is an index >= 0."""
    rnn, fc = check_model(model)
    if (target is None) == (unit is None):
        raise SkvisError(
            "give exactly one of target= (a class) and unit= (a hidden unit); "
            f"got target={target!r}, unit={unit!r}"
        )
    layer = check_layer(rnn.num_layers, layer)
    if target is not None:
        if layer != rnn.num_layers - 1:
            raise SkvisError(f"target={target!r} reads the last layer; layer={layer} is not it")
        return check_index(target, fc.out_features, "target"), None, layer
    return None, check_index(unit, rnn.hidden_size, "unit"), layer


def _topology(model: Any, topology: Any, num_joints: int) -> tuple[Topology | None, str | None]:
    """The sequence's topology and where it came from: ``topology=``, the model's
    recorded one (`skvis_widgets.skeleton.model_topology`), or (source None) the only
    known topology with J joints. A ``topology=`` whose joint names or order differ
    from the model's raises `SkvisError` naming both."""
    mine = model_topology(model)
    if topology is not None:
        topo, source = get_topology(topology), "topology"
        if mine is not None:
            check_same_joints(mine, "the model", topo, "topology=")
    elif mine is not None:
        topo, source = mine, "the model's metadata['topology']"
    else:
        found = [t for t in TOPOLOGIES.values() if t.num_joints == num_joints]
        return (found[0] if len(found) == 1 else None), None
    if topo.num_joints != num_joints:
        raise SkvisError(
            f"{source} {topo.name!r} has {topo.num_joints} joints; the sequence has {num_joints}"
        )
    return topo, source


# ---------------------------------------------------------------------------------------------
# Constraints
# ---------------------------------------------------------------------------------------------
def _angles(x: np.ndarray, a: int, v: int, c: int) -> np.ndarray:
    """Angle at joint v between the arms to a and c, degrees, (T,); NaN where undefined."""
    u, w = x[:, a] - x[:, v], x[:, c] - x[:, v]
    nu, nw = np.linalg.norm(u, axis=-1), np.linalg.norm(w, axis=-1)
    cos = np.einsum("td,td->t", u, w)
    sin = np.linalg.norm(np.cross(u, w), axis=-1)
    ang = np.degrees(np.arctan2(sin, cos))
    return np.where((nu > 1e-12) & (nw > 1e-12), ang, np.nan)


def default_constraints(sequence: Any, topology: Topology | str) -> ConstraintSet:
    """The paper's constraints for ``topology``, widened where ``sequence`` breaks them.

    Parameters
    ----------
    sequence : array_like, shape (T, J, 3)
        The input of a maximization, metres.
    topology : Topology or its name

    Returns
    -------
    ConstraintSet
        Bones as always. A three-joint angle range that the sequence leaves is widened to
        the sequence's own extreme angles, rounded outwards to 0.1 degree; the pelvis-plane
        constraint is dropped (recorded in ``dropped`` with the frame count) if any frame
        breaks it. See the module docstring for why.

    Examples
    --------
    >>> from skvis_widgets.data import load_msr_action3d  # doctest: +SKIP
    >>> seq = load_msr_action3d().sequences[0]  # doctest: +SKIP
    >>> default_constraints(seq, "msr_action3d")["angle:spine"].limits  # doctest: +SKIP
    (119.6, 180.0)
    """
    topo = get_topology(topology)
    x = np.asarray(sequence, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != (topo.num_joints, 3) or x.shape[0] == 0:
        raise SkvisError(
            f"sequence has shape {x.shape}; expected (T, {topo.num_joints}, 3) with T >= 1 "
            f"for topology {topo.name!r}"
        )
    paper = anatomical_constraints(topo)
    limits: dict[str, tuple[float, float]] = {}
    for con in paper.of_kind("angle"):
        ang = _angles(x, *con.joints)
        lo, hi = con.limits  # type: ignore[misc]
        if np.isnan(ang).all():
            continue
        amin, amax = float(np.nanmin(ang)), float(np.nanmax(ang))
        new_lo = min(lo, math.floor(amin * 10) / 10) if amin < lo else lo
        new_hi = max(hi, min(180.0, math.ceil(amax * 10) / 10)) if amax > hi else hi
        if (new_lo, new_hi) != (lo, hi):
            limits[con.name] = (max(0.0, new_lo), new_hi)
    cs = anatomical_constraints(topo, angle_limits=limits)
    if "plane:pelvis" in cs:
        res = constraint_residuals(x, cs)[:, cs.names.index("plane:pelvis")]
        bad = int((res > 0).sum())
        if bad:
            kept = tuple(c for c in cs if c.name != "plane:pelvis")
            why = (
                f"the input breaks it on {bad} of {len(x)} frames, and project() supports "
                "only its paper range (0, 90) degrees"
            )
            cs = replace(cs, constraints=kept, dropped=(*cs.dropped, ("plane:pelvis", why)))
    return cs


def _support_joints(topo: Topology) -> list[int]:
    idx = [topo.index(n) for n in SUPPORT_JOINTS if topo.has(n)]
    if not idx:
        raise SkvisError(
            f"support needs a foot or ankle joint ({', '.join(SUPPORT_JOINTS)}); topology "
            f"{topo.name!r} has none"
        )
    return idx


def _support(x: np.ndarray, joints: list[int], floor: np.ndarray) -> np.ndarray:
    """Translate each frame vertically so that its lowest support joint is at ``floor[t]``."""
    low = x[:, joints, _UP].min(axis=1)
    out = x.copy()
    out[..., _UP] += (floor - low)[:, None].astype(x.dtype)
    return out


def _acceleration(v: np.ndarray) -> np.ndarray:
    """``|v_{t+1} - 2 v_t + v_{t-1}|`` per interior frame and joint: ``(T-2, J)``."""
    a = v[2:] - 2 * v[1:-1] + v[:-2]
    return np.sqrt(np.einsum("tjd,tjd->tj", a, a))


def _bound_acceleration(
    d: np.ndarray, bound: float, tol: float, max_sweeps: int = 500
) -> np.ndarray:
    """The nearest ``d'`` (T, J, 3) with ``|a_t(d')| <= bound`` at every interior frame.

    Dykstra's algorithm over the three families of constraints ``t = 1, 2, 3 (mod 3)``: in
    a family the frames ``t-1, t, t+1`` of different constraints are disjoint, so a
    family's projection is exact and vectorized: an excess ``e`` of ``a_t`` moves the
    three frames by ``(-1, 2, -1) e / 6``.
    """
    n = len(d)
    if n < 3:
        return d
    y = np.asarray(d, dtype=np.float64).copy()
    families = [np.arange(1 + r, n - 1, 3) for r in range(3)]
    families = [c for c in families if c.size]
    incr = [np.zeros_like(y) for _ in families]
    for sweep in range(max_sweeps):
        for k, c in enumerate(families):
            z = y + incr[k]  # a fresh array: y is left to the previous family's increment
            a = z[c + 1] - 2 * z[c] + z[c - 1]
            norm = np.sqrt(np.einsum("tjd,tjd->tj", a, a))[..., None]
            e = a * np.maximum(0.0, 1.0 - bound / np.maximum(norm, 1e-300))
            y = z.copy()
            y[c - 1] -= e / 6
            y[c] += e / 3
            y[c + 1] -= e / 6
            incr[k] = z - y
        if sweep % 5 == 4 and _acceleration(y).max() <= bound + tol:
            break
    return y


# ---------------------------------------------------------------------------------------------
# Score and direction
# ---------------------------------------------------------------------------------------------
def _score_tensor(model: Any, x: torch.Tensor, target: int | None, unit: int | None, layer: int):
    """Scores ``(N,)`` of a batch ``(N, T, J, 3)``: logit ``c`` or unit ``u`` at the last frame."""
    h = run_layers(model.rnn, model.preprocess(x), layer)[layer][:, -1]
    if unit is not None:
        return h[:, unit]
    return model.fc(h)[:, target]


def _score(model, x: np.ndarray, target, unit, layer, device, dtype) -> float:
    with torch.no_grad():
        xt = torch.as_tensor(x[None], device=device, dtype=dtype)
        return float(_score_tensor(model, xt, target, unit, layer)[0])


def _direction(
    model, x: np.ndarray, target, unit, layer, gradient, device, dtype
) -> tuple[np.ndarray, float | None]:
    """The raw ascent direction ``(T, J, 3)`` and, for "full", the score at ``x``."""
    if gradient == "full":
        with torch.enable_grad():
            xt = torch.as_tensor(x[None], device=device, dtype=dtype).requires_grad_(True)
            s = _score_tensor(model, xt, target, unit, layer)[0]
            (g,) = torch.autograd.grad(s, xt)
        return g[0].detach().cpu().numpy(), float(s.detach())
    jac = instantaneous_jacobian(model, x, layer=layer)  # (H, T, J, 3), signed
    if unit is not None:
        return np.array(jac[unit]), None
    w = model.fc.weight.detach()[target].cpu().numpy().astype(jac.dtype)
    return np.tensordot(w, jac, axes=1), None


def ascent_direction(
    model: Any,
    sequence: Any,
    *,
    target: int | None = None,
    unit: int | None = None,
    gradient: Gradient = "full",
    layer: int = -1,
) -> np.ndarray:
    """The direction `maximize_activation` steps along, before scaling: ``(T, J, 3)``.

    Parameters
    ----------
    model : SkeletonLSTM or RecurrentClassifier
    sequence : array_like, shape (T, J, 3)
        Metres.
    target, unit : int
        Exactly one: a class (its logit at the last frame) or a unit of ``layer`` (its
        response at the last frame).
    gradient : {"full", "paper"}
        ``"full"``: ``d score / dx_t`` through time (eq 6). ``"paper"``: eq 7,
        ``sum_u W_c^u dh_t^u / dx_t`` with the instantaneous Jacobians, or ``dh_t^u / dx_t``
        for a unit.
    layer : int
        The unit's recurrent layer (default the last); a target reads the last.

    Returns
    -------
    ndarray, shape (T, J, 3)
        Score units per metre, the model's float dtype.
    """
    target, unit, layer = _what(model, target, unit, layer)
    if gradient not in _GRADIENTS:
        raise SkvisError(f"gradient must be one of {_GRADIENTS}, got {gradient!r}")
    dtype, device, np_dtype = _dtype(model)
    x = _as_sequence(model, sequence, np_dtype)
    # autograd works here even inside the caller's torch.inference_mode()/no_grad()
    with eval_view(model) as model, torch.inference_mode(False), torch.enable_grad():
        d, _ = _direction(model, x, target, unit, layer, gradient, device, dtype)
    return d.astype(np_dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# The optimizer
# ---------------------------------------------------------------------------------------------
def _positive(value: Any, what: str, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SkvisError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise SkvisError(
            f"{what} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}"
        )
    return v


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise SkvisError(f"{what} must be a non-negative int, got {value!r}")
    return int(value)


def maximize_activation(
    model: Any,
    sequence: Any,
    *,
    target: int | None = None,
    unit: int | None = None,
    layer: int = -1,
    iterations: int = 12,
    step_size: float = 0.1,
    constraints: bool | ConstraintSet = True,
    gradient: Gradient = "full",
    topology: Topology | str | None = None,
    support: bool | Literal["frame", "floor"] = False,
    temporal: float | None = None,
    tol: float = 1e-4,
    max_halvings: int = 6,
    max_rounds: int = 10,
    temporal_tol: float | None = None,
    callback: Callable[[int, MaximizationResult], Any] | None = None,
    cancel: Any = None,
    progress: bool = True,
) -> MaximizationResult:
    """Hill-climb a sequence to raise a class logit or a unit's response (section 3.2).

    Parameters
    ----------
    model : SkeletonLSTM or RecurrentClassifier
        Any model with ``preprocess``, ``rnn`` and ``fc`` (`skvis_widgets.adapters`).
    sequence : array_like, shape (T, J, 3)
        The starting sequence, metres, in the body frame (``y`` up). Not modified.
    target : int
        A class ``c``: maximize its logit at the last frame.
    unit : int
        Instead of ``target``: a hidden unit of ``layer``; maximize ``h_{T-1}^u``.
    layer : int
        The unit's recurrent layer, default the last.
    iterations : int
        Most iterations (the paper's figure 5 shows 12).
    step_size : float
        Metres the most-moved joint moves in a full step (see the module docstring). The
        gradient peaks on a few joints and frames, so a step of 0.1 m moves joints by
        about 1.5 cm on average in the first iteration (bundled model, the 11 MSR test
        throws, 12 iterations); 95 % of the full steps raise the score there (98 % at
        0.05 m, 89 % at 0.2 m).
    constraints : bool or ConstraintSet
        True: eq 14 with `default_constraints` (the paper's, widened where the input breaks
        them). A ConstraintSet: those constraints. False: unconstrained steps, figure 2(a).
    gradient : {"full", "paper"}
        The direction: through-time autograd (eq 6) or eq 7 (see `ascent_direction`).
    topology : Topology or str, optional
        The sequence's joints; default ``model.metadata["topology"]``, else the only known
        topology with J joints. Needed for constraints and support.
    support : bool or {"frame", "floor"}
        Keep the lowest foot on the floor (True is "frame"); see the module docstring.
    temporal : float, optional
        Most acceleration, metres/frame^2, the optimizer may add to a joint (relative to
        the input made valid; see the module docstring).
    tol : float
        Stop when an iteration gains less than ``tol * max(|score|, 1)``.
    max_halvings : int
        Halvings of a step that lowers the score before giving up (converged).
    max_rounds : int
        With ``temporal``: most rounds of acceleration bounding and projection per trial.
    temporal_tol : float, optional
        How far above ``temporal`` the result may stay, metres/frame^2; default 5 % of
        ``temporal``.
    callback : callable, optional
        ``callback(iteration, result_so_far)`` after each accepted iteration.
    cancel : threading.Event, optional
        Checked before each iteration and each trial step; once set, the run returns the
        iterations done with ``cancelled=True``.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    MaximizationResult

    Raises
    ------
    SkvisError
        For a sequence of the wrong shape or joint count, with zero frames or NaN; not
        exactly one of ``target`` and ``unit``, or one out of range; an unknown topology
        where constraints or support need one, or one lacking the joints they need; bad
        options.

    Examples
    --------
    >>> from skvis_widgets.model import load_pretrained  # doctest: +SKIP
    >>> r = maximize_activation(load_pretrained(), seq, target=5, progress=False)  # doctest: +SKIP
    >>> r.scores[0] < r.scores[1] <= r.scores[-1]  # doctest: +SKIP
    True
    """
    target, unit, layer = _what(model, target, unit, layer)
    if gradient not in _GRADIENTS:
        raise SkvisError(f"gradient must be one of {_GRADIENTS}, got {gradient!r}")
    iterations = _count(iterations, "iterations")
    max_halvings = _count(max_halvings, "max_halvings")
    max_rounds = max(1, _count(max_rounds, "max_rounds"))
    step_size = _positive(step_size, "step_size")
    tol = _positive(tol, "tol", allow_zero=True)
    if temporal is not None:
        temporal = _positive(temporal, "temporal")
    if temporal_tol is None:
        temporal_tol = 0.05 * (temporal or 0.0)
    temporal_tol = _positive(temporal_tol, "temporal_tol", allow_zero=True)
    if support is True:
        support = "frame"
    if support not in (False, "frame", "floor"):
        raise SkvisError(f"support must be True, False, 'frame' or 'floor', got {support!r}")
    if not isinstance(constraints, (bool, ConstraintSet)):
        raise SkvisError(
            f"constraints must be True, False or a ConstraintSet, got {type(constraints).__name__}"
        )
    if callback is not None and not callable(callback):
        raise SkvisError(f"callback must be callable, got {callback!r}")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise SkvisError(f"cancel must be a threading.Event (with is_set), got {cancel!r}")

    dtype, device, np_dtype = _dtype(model)
    x0 = _as_sequence(model, sequence, np_dtype)
    check_memory(
        (iterations + 1) * x0.nbytes,
        f"the history of {iterations} iterations on a sequence of {x0.shape[0]} frames",
        "run fewer iterations per call and continue from result.final",
    )
    topo, source = _topology(model, topology, x0.shape[1])
    if isinstance(constraints, ConstraintSet):
        given = constraints.topology
        if given.num_joints != x0.shape[1] or (
            source is not None and topo.joint_names != given.joint_names
        ):
            raise SkvisError(
                f"constraints are for topology {given.name!r} ({given.num_joints} joints); "
                f"the sequence has shape {x0.shape}"
                + (f" and {source} is {topo.name!r}" if source is not None else "")
            )
        topo = given
        cset: ConstraintSet | None = constraints
    elif topo is not None:
        cset = default_constraints(x0, topo)
    elif constraints or support:
        raise SkvisError(
            f"cannot tell the topology of a {x0.shape[1]}-joint sequence (no "
            "model.metadata['topology'], and more than one or no known topology has that "
            "many joints); pass topology="
        )
    else:
        cset = None
    constrained = constraints is not False
    ref = reference_bone_lengths(x0, cset.topology) if cset is not None else None
    violation = _input_violation(x0, cset.topology) if cset is not None else {}

    feet: list[int] = []
    floor = None
    if support:
        feet = _support_joints(topo)  # type: ignore[arg-type]
        low = x0[:, feet, _UP].astype(np.float64).min(axis=1)
        floor = low if support == "frame" else np.full(len(x0), low.min())

    names = list(cset.names) if cset is not None else []
    if temporal is not None:
        names.append("temporal:acceleration")
    if support:
        names.append("support:floor")

    def residuals(x: np.ndarray) -> np.ndarray:
        cols = [constraint_residuals(x, cset, ref)] if cset is not None else []
        if temporal is not None:
            acc = np.zeros(len(x))
            if len(x) > 2:
                excess = _acceleration(x.astype(np.float64) - base) - temporal
                acc[1:-1] = np.maximum(excess, 0.0).max(axis=1)
            cols.append(acc[:, None])
        if support:
            low = x[:, feet, _UP].astype(np.float64).min(axis=1)
            cols.append(np.abs(low - floor)[:, None])
        return np.concatenate(cols, axis=1) if cols else np.zeros((len(x), 0))

    def anatomy(y: np.ndarray) -> np.ndarray:
        if constrained:
            y = project(y, cset, ref)
        if support:
            y = _support(y, feet, floor)
        return y

    # the input made valid: what the acceleration bound is measured against
    base = anatomy(x0).astype(np.float64) if temporal is not None else None

    def make_valid(y: np.ndarray) -> tuple[np.ndarray, bool]:
        """The candidate made valid, and whether it meets the acceleration bound."""
        y = anatomy(y)
        if temporal is None or len(y) < 3:
            return y, True
        for _ in range(max_rounds):
            d = y.astype(np.float64) - base
            if _acceleration(d).max() <= temporal + temporal_tol:
                return y, True
            d = _bound_acceleration(d, temporal, 0.1 * temporal_tol)
            y = anatomy((base + d).astype(np_dtype))
        return y, _acceleration(y.astype(np.float64) - base).max() <= temporal + temporal_tol

    history = [x0]
    scores = [0.0]
    res = [residuals(x0)]
    steps: list[float] = []
    converged = cancelled = False
    message = ""

    def snapshot() -> MaximizationResult:
        return MaximizationResult(
            history=_frozen(np.stack(history)),
            scores=_frozen(np.asarray(scores, dtype=np.float64)),
            residuals=_frozen(np.stack(res)),
            constraint_names=tuple(names),
            step_sizes=_frozen(np.asarray(steps, dtype=np.float64)),
            converged=converged,
            cancelled=cancelled,
            iterations_run=len(history) - 1,
            target=target,
            unit=unit,
            layer=layer,
            gradient=gradient,
            constrained=constrained,
            constraint_set=cset,
            reference_lengths=None if ref is None else _frozen(ref),
            support=support,
            temporal=temporal,
            message=message,
            input_violation=MappingProxyType(dict(violation)),
        )

    def stop() -> bool:
        return cancel is not None and bool(cancel.is_set())

    from tqdm.auto import tqdm

    bar = tqdm(total=iterations, desc="activation maximization", disable=not progress)
    try:
        with eval_view(model) as model, torch.inference_mode(False), torch.enable_grad():
            scores[0] = _score(model, x0, target, unit, layer, device, dtype)
            x, current = x0, scores[0]
            for it in range(1, iterations + 1):
                if stop():
                    cancelled = True
                    break
                d, _ = _direction(model, x, target, unit, layer, gradient, device, dtype)
                norm = float(np.linalg.norm(d.astype(np.float64), axis=-1).max())
                if not (norm > 0 and math.isfinite(norm)):
                    converged = True  # a flat (or broken) score: nowhere to go
                    message = (
                        f"stopped after {it - 1} iterations: the score's gradient is zero or "
                        "not finite here, so there is no direction to climb"
                    )
                    break
                step, accepted = step_size, None
                for _ in range(max_halvings + 1):
                    if stop():
                        cancelled = True
                        break
                    cand, ok = make_valid((x + (step / norm) * d).astype(np_dtype))
                    s = _score(model, cand, target, unit, layer, device, dtype) if ok else -math.inf
                    if s > current:
                        accepted = cand, s
                        break
                    step /= 2
                if cancelled:
                    break
                if accepted is None:
                    converged = True
                    if it == 1:
                        message = _why_no_step(
                            scores[0],
                            _score(model, make_valid(x0)[0], target, unit, layer, device, dtype)
                            if (constrained or support or temporal is not None)
                            else None,
                            step_size,
                            max_halvings,
                        )
                    else:
                        message = (
                            f"converged after {it - 1} iterations: no step of up to "
                            f"{step_size:g} m (halved {max_halvings} times) raised the score further"
                        )
                    break
                x, s = accepted
                gain, current = s - current, s
                history.append(x)
                scores.append(s)
                res.append(residuals(x))
                steps.append(step)
                bar.update(1)
                bar.set_postfix(score=f"{s:.4g}")
                if gain <= tol * max(abs(s - gain), 1.0):
                    converged = True
                    message = (
                        f"converged after {it} iterations: the last gain ({gain:.3g}) was "
                        f"below the tolerance"
                    )
                elif it == iterations:
                    message = f"ran all {iterations} iterations (the score still rose)"
                if callback is not None:
                    callback(it, snapshot())
                if converged:
                    break
    finally:
        bar.close()
    if cancelled:
        message = f"cancelled after {len(history) - 1} iterations"
    elif iterations == 0:
        message = "iterations=0: the input only"
    return snapshot()


def _why_no_step(
    score: float, valid_score: float | None, step_size: float, max_halvings: int
) -> str:
    """The sentence for a run in which no step beat the input."""
    head = "no step beat the input, so the result is the input itself: "
    steps = f"no step of up to {step_size:g} m (halved {max_halvings} times)"
    if valid_score is not None and valid_score < score:
        return head + (
            f"making the input valid (projecting it onto the constraints) alone lowers the "
            f"score by {score - valid_score:.3g} (from {score:.4g} to {valid_score:.4g}), and "
            f"{steps} made that up; try constraints=False, a ConstraintSet with wider "
            "limits, or a larger step_size"
        )
    return head + (
        f"{steps} raised the score (the input is a local maximum at this step size); try a "
        "smaller or larger step_size"
    )


def _input_violation(x0: np.ndarray, topology: Topology) -> dict[str, float]:
    """Fraction of the input's frames breaking each of the paper's constraints."""
    paper = anatomical_constraints(topology)
    if not len(paper):
        return {}
    r = constraint_residuals(x0.astype(np.float64), paper)
    out = {}
    for k, con in enumerate(paper):
        tol = 0.01 if con.kind == "bone" else 0.1
        out[con.name] = float((r[:, k] > tol).mean())
    return out
