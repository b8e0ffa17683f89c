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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch

from ._checks import as_model_sequence, check_index, check_layer, check_model, eval_view
from .adapters import run_layers
from .anatomy import ConstraintSet, anatomical_constraints, constraint_residuals
from .errors import SkvisError
from .limits import check_memory
from .results import frozen_array
from .saliency import instantaneous_jacobian
from .sequence_constraints import (
    SUPPORT_JOINTS,
    Acceleration,
    Anatomy,
    BoundAcceleration,
    BoundAnatomy,
    BoundConstraint,
    BoundSupport,
    SequenceConstraint,
    Support,
    make_valid,
)
from .skeleton import TOPOLOGIES, Topology, check_same_joints, get_topology, model_topology

__all__ = [
    "MaximizationResult",
    "Anatomy",
    "Support",
    "Acceleration",
    "maximize_activation",
    "ascent_direction",
    "default_constraints",
    "SUPPORT_JOINTS",
]

Gradient = Literal["full", "paper"]
_GRADIENTS = ("full", "paper")


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


# ---------------------------------------------------------------------------------------------
# Checking the input
# ---------------------------------------------------------------------------------------------
def _dtype(model: Any) -> tuple[torch.dtype, torch.device, type]:
    p = model.rnn.weight_ih_l0
    return p.dtype, p.device, (np.float64 if p.dtype == torch.float64 else np.float32)


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
        breaks it (`ConstraintSet.widened_to`). See the module docstring for why.

    Examples
    --------
    >>> from skvis_widgets.data import load_msr_action3d  # doctest: +SKIP
    >>> seq = load_msr_action3d().sequences[0]  # doctest: +SKIP
    >>> default_constraints(seq, "msr_action3d")["angle:spine"].limits  # doctest: +SKIP
    (119.6, 180.0)
    """
    topo = get_topology(topology)
    return anatomical_constraints(topo).widened_to(sequence)


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
    x = as_model_sequence(model, sequence, dtype=np_dtype)
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
    constraints: bool | ConstraintSet | Sequence[SequenceConstraint] = True,
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
    constraints : bool, ConstraintSet or list of constraint objects
        True: eq 14 with `default_constraints` (the paper's, widened where the input breaks
        them). A ConstraintSet: those constraints. False: unconstrained steps, figure 2(a).
        A list: the constraint objects of `skvis_widgets.sequence_constraints`
        (``[Anatomy(), Support("floor"), Acceleration(0.01)]``; any object with their
        ``bind``), applied in that order; ``support`` and ``temporal`` add theirs after
        them.
    gradient : {"full", "paper"}
        The direction: through-time autograd (eq 6) or eq 7 (see `ascent_direction`).
    topology : Topology or str, optional
        The sequence's joints; default ``model.metadata["topology"]``, else the only known
        topology with J joints. Needed for constraints and support.
    support : bool or {"frame", "floor"}
        Keep the lowest foot on the floor (True is "frame"; `Support`); see the module
        docstring.
    temporal : float, optional
        Most acceleration, metres/frame^2, the optimizer may add to a joint (relative to
        the input made valid; `Acceleration`; see the module docstring).
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
    step_size = _positive(step_size, "step_size")
    tol = _positive(tol, "tol", allow_zero=True)
    wanted = _constraint_list(constraints, support, temporal, temporal_tol, max_rounds)
    if callback is not None and not callable(callback):
        raise SkvisError(f"callback must be callable, got {callback!r}")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise SkvisError(f"cancel must be a threading.Event (with is_set), got {cancel!r}")

    dtype, device, np_dtype = _dtype(model)
    x0 = as_model_sequence(model, sequence, dtype=np_dtype)
    check_memory(
        (iterations + 1) * x0.nbytes,
        f"the history of {iterations} iterations on a sequence of {x0.shape[0]} frames",
        "run fewer iterations per call and continue from result.final",
    )
    bound = _bind(wanted, x0, *_topology(model, topology, x0.shape[1]))
    climb = _Climb(model, target, unit, layer, gradient, device, dtype, np_dtype)
    trace = _Trace(x0, bound, target, unit, layer, gradient)

    from tqdm.auto import tqdm

    bar = tqdm(total=iterations, desc="activation maximization", disable=not progress)
    try:
        with eval_view(model) as view, torch.inference_mode(False), torch.enable_grad():
            climb.model = view
            trace.scores[0] = climb.score(x0)
            _run(
                climb, trace, bound, iterations, step_size, max_halvings, tol, cancel, bar, callback
            )
    finally:
        bar.close()
    if trace.cancelled:
        trace.message = f"cancelled after {len(trace.history) - 1} iterations"
    elif iterations == 0:
        trace.message = "iterations=0: the input only"
    return trace.result()


def _constraint_list(
    constraints: Any, support: Any, temporal: Any, temporal_tol: Any, max_rounds: Any
) -> list[Any]:
    """The constraint objects asked for, the keywords mapped onto them: ``constraints``
    (True, False, a ConstraintSet or a list), then ``temporal``, then ``support`` (the
    order of the residual columns before the constraint objects existed)."""
    max_rounds = max(1, _count(max_rounds, "max_rounds"))
    if temporal is not None:
        temporal = _positive(temporal, "temporal")
    if temporal_tol is not None:
        temporal_tol = _positive(temporal_tol, "temporal_tol", allow_zero=True)
    if support is True:
        support = "frame"
    if support not in (False, "frame", "floor"):
        raise SkvisError(f"support must be True, False, 'frame' or 'floor', got {support!r}")
    if isinstance(constraints, bool):
        out: list[Any] = [Anatomy(enforce=constraints)]
    elif isinstance(constraints, ConstraintSet):
        out = [Anatomy(constraints)]
    elif isinstance(constraints, (list, tuple)) and all(
        callable(getattr(c, "bind", None)) for c in constraints
    ):
        out = list(constraints)
    else:
        raise SkvisError(
            "constraints must be True, False, a ConstraintSet or a list of constraint "
            f"objects (Anatomy, Support, Acceleration), got {type(constraints).__name__}"
        )
    if temporal is not None:
        out.append(Acceleration(temporal, temporal_tol, max_rounds))
    if support:
        out.append(Support(support))
    return out


def _bind(
    wanted: list[Any], x0: np.ndarray, topo: Topology | None, source: str | None
) -> list[BoundConstraint]:
    """Each constraint bound to the input: the pose ones first, then the trajectory ones
    (which measure against the input made valid by the pose ones). Where no `Anatomy` is
    in the list and the topology is known, the anatomical residuals are still measured
    (figure 2(a))."""
    anatomies = [c for c in wanted if isinstance(c, Anatomy)]
    for c in anatomies:
        if c.constraint_set is not None:
            _check_constraint_topology(c.constraint_set, x0, topo, source)
            topo, source = c.constraint_set.topology, source or "constraints"
    if not anatomies and topo is not None:
        wanted = [Anatomy(enforce=False), *wanted]
    if topo is None:
        if any((isinstance(c, Anatomy) and c.enforce) or isinstance(c, Support) for c in wanted):
            raise SkvisError(
                f"cannot tell the topology of a {x0.shape[1]}-joint sequence (no "
                "model.metadata['topology'], and more than one or no known topology has "
                "that many joints); pass topology="
            )
        wanted = [c for c in wanted if not isinstance(c, Anatomy)]  # nothing to measure with
    bound: list[Any] = [None] * len(wanted)
    for k, c in enumerate(wanted):
        if c.kind != "trajectory":
            bound[k] = c.bind(x0, topo, None)
    poses = [b for b in bound if b is not None]
    for k, c in enumerate(wanted):
        if bound[k] is None:
            bound[k] = c.bind(x0, topo, lambda y: make_valid(poses, y)[0])
    return bound


def _check_constraint_topology(
    given: ConstraintSet, x0: np.ndarray, topo: Topology | None, source: str | None
) -> None:
    if given.topology.num_joints != x0.shape[1] or (
        source is not None and topo is not None and topo.joint_names != given.topology.joint_names
    ):
        raise SkvisError(
            f"constraints are for topology {given.topology.name!r} "
            f"({given.topology.num_joints} joints); the sequence has shape {x0.shape}"
            + (f" and {source} is {topo.name!r}" if source is not None and topo else "")
        )


@dataclass(eq=False)
class _Climb:
    """The score and the ascent direction of one run (the model in eval mode)."""

    model: Any
    target: int | None
    unit: int | None
    layer: int
    gradient: str
    device: torch.device
    dtype: torch.dtype
    np_dtype: type

    def score(self, x: np.ndarray) -> float:
        return _score(self.model, x, self.target, self.unit, self.layer, self.device, self.dtype)

    def direction(self, x: np.ndarray) -> np.ndarray:
        return _direction(
            self.model,
            x,
            self.target,
            self.unit,
            self.layer,
            self.gradient,
            self.device,
            self.dtype,
        )[0]


@dataclass(eq=False)
class _Trace:
    """What a run has produced so far (every accepted iterate) and why it stopped."""

    x0: np.ndarray
    bound: list[BoundConstraint]
    target: int | None
    unit: int | None
    layer: int
    gradient: str
    history: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    residuals: list[np.ndarray] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    converged: bool = False
    cancelled: bool = False
    message: str = ""
    anatomy: BoundAnatomy | None = field(init=False, default=None)
    violation: dict[str, float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.history = [self.x0]
        self.scores = [0.0]
        self.residuals = [self.measure(self.x0)]
        for b in self.bound:
            if isinstance(b, BoundAnatomy):
                self.anatomy = b
                break
        if self.anatomy is not None:
            self.violation = _input_violation(self.x0, self.anatomy.constraint_set.topology)

    def measure(self, x: np.ndarray) -> np.ndarray:
        cols = [b.residuals(x) for b in self.bound]
        return np.concatenate(cols, axis=1) if cols else np.zeros((len(x), 0))

    def accept(self, x: np.ndarray, score: float, step: float) -> None:
        self.history.append(x)
        self.scores.append(score)
        self.residuals.append(self.measure(x))
        self.steps.append(step)

    def result(self) -> MaximizationResult:
        support = next((b.mode for b in self.bound if isinstance(b, BoundSupport)), False)
        temporal = next((b.bound for b in self.bound if isinstance(b, BoundAcceleration)), None)
        anatomy = self.anatomy
        return MaximizationResult(
            history=frozen_array(np.stack(self.history)),
            scores=frozen_array(np.asarray(self.scores, dtype=np.float64)),
            residuals=frozen_array(np.stack(self.residuals)),
            constraint_names=tuple(n for b in self.bound for n in b.names),
            step_sizes=frozen_array(np.asarray(self.steps, dtype=np.float64)),
            converged=self.converged,
            cancelled=self.cancelled,
            iterations_run=len(self.history) - 1,
            target=self.target,
            unit=self.unit,
            layer=self.layer,
            gradient=self.gradient,
            constrained=anatomy is not None and anatomy.enforced,
            constraint_set=anatomy.constraint_set if anatomy else None,
            reference_lengths=frozen_array(anatomy.reference_lengths) if anatomy else None,
            support=support,
            temporal=temporal,
            message=self.message,
            input_violation=MappingProxyType(dict(self.violation)),
        )


def _run(
    climb: _Climb,
    trace: _Trace,
    bound: list[BoundConstraint],
    iterations: int,
    step_size: float,
    max_halvings: int,
    tol: float,
    cancel: Any,
    bar: Any,
    callback: Callable[[int, MaximizationResult], Any] | None,
) -> None:
    """The iterations: a direction, a trial step halved until it raises the score."""

    def stop() -> bool:
        return cancel is not None and bool(cancel.is_set())

    x, current = trace.x0, trace.scores[0]
    for it in range(1, iterations + 1):
        if stop():
            trace.cancelled = True
            return
        d = climb.direction(x)
        norm = float(np.linalg.norm(d.astype(np.float64), axis=-1).max())
        if not (norm > 0 and math.isfinite(norm)):
            trace.converged = True  # a flat (or broken) score: nowhere to go
            trace.message = (
                f"stopped after {it - 1} iterations: the score's gradient is zero or "
                "not finite here, so there is no direction to climb"
            )
            return
        accepted = _trial_steps(climb, bound, x, d, norm, current, step_size, max_halvings, stop)
        if accepted is None:  # cancelled
            trace.cancelled = True
            return
        if accepted is False:
            trace.converged = True
            trace.message = _why_stopped(climb, trace, bound, it, step_size, max_halvings)
            return
        x, s, step = accepted
        gain, current = s - current, s
        trace.accept(x, s, step)
        bar.update(1)
        bar.set_postfix(score=f"{s:.4g}")
        if gain <= tol * max(abs(s - gain), 1.0):
            trace.converged = True
            trace.message = (
                f"converged after {it} iterations: the last gain ({gain:.3g}) was below the "
                "tolerance"
            )
        elif it == iterations:
            trace.message = f"ran all {iterations} iterations (the score still rose)"
        if callback is not None:
            callback(it, trace.result())
        if trace.converged:
            return


def _trial_steps(
    climb: _Climb,
    bound: list[BoundConstraint],
    x: np.ndarray,
    d: np.ndarray,
    norm: float,
    current: float,
    step_size: float,
    max_halvings: int,
    stop: Callable[[], bool],
) -> tuple[np.ndarray, float, float] | Literal[False] | None:
    """The first step along d (scaled so that its largest joint move, ``norm``, becomes
    the step; halved up to ``max_halvings`` times) whose valid candidate raises the
    score: (candidate, score, step); False if none does; None if cancelled."""
    step = step_size
    for _ in range(max_halvings + 1):
        if stop():
            return None
        cand, ok = make_valid(bound, (x + (step / norm) * d).astype(climb.np_dtype))
        s = climb.score(cand) if ok else -math.inf
        if s > current:
            return cand, s, step
        step /= 2
    return False


def _why_stopped(
    climb: _Climb,
    trace: _Trace,
    bound: list[BoundConstraint],
    it: int,
    step_size: float,
    max_halvings: int,
) -> str:
    """The sentence for a run in which no step raised the score at iteration ``it``."""
    if it > 1:
        return (
            f"converged after {it - 1} iterations: no step of up to "
            f"{step_size:g} m (halved {max_halvings} times) raised the score further"
        )
    enforcing = any(b.enforced for b in bound)
    valid = climb.score(make_valid(bound, trace.x0)[0]) if enforcing else None
    return _why_no_step(trace.scores[0], valid, step_size, max_halvings)


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
