"""Which joint map? Attribution methods behind one entry point, `explain`.

Every method answers the same question, "which joints at which frames drive the
score ``o`` of this sequence?", with a ``(T, J)`` map (``(N, T, J)`` for a batch),
``o`` being a class logit at the sequence's last valid frame (``target=``) or a
hidden unit's response there (``unit=``, recurrent models only). `METHODS` lists
them with a one-line description and whether they need a recurrent model.

The paper's maps ("paper", "paper_through_time") come from
`skvis_widgets.saliency.joint_sensitivity` (eqs 1-5, eq-3 normalized). The other
methods treat the model as a differentiable function of the ``(N, T, J, 3)`` input:
any ``nn.Module`` mapping a batch to ``(N, C)`` logits works. For a recurrent model
(`SkeletonLSTM` or a `RecurrentClassifier`) the score is read at each sequence's last
valid frame of an unpacked forward pass, so one backward pass through autograd's fused
LSTM/GRU kernel gives the gradient for a whole padded batch (frames past a length get
exactly 0: the seed enters at frame ``L - 1``).

Signed maps (``abs=False``) are the per-joint sums over x, y, z of the signed
attributions; ``abs=True`` (the default) sums their magnitudes. The paper's maps are
magnitudes by definition (eq 2 takes ``|.|``) and have no signed variant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ._checks import (
    as_model_input,
    check_index,
    check_lengths,
    check_model,
    check_positive_int,
    check_targets,
    eval_view,
)
from .errors import SkvisError
from .limits import memory_limit
from .results import freeze_fields
from .skeleton import BODY_PARTS, Topology, get_topology, model_topology

if TYPE_CHECKING:  # metrics imports this module lazily (one direction): types only
    from .metrics import Replace

__all__ = [
    "METHODS",
    "DEFAULT_METHOD",
    "MethodInfo",
    "Explanation",
    "explain",
    "is_recurrent",
    "BASELINES",
]


@dataclass(frozen=True)
class MethodInfo:
    """What `METHODS` says about a method.

    Attributes
    ----------
    label : str
        A short label for a selector (the paper's method says so).
    description : str
        One sentence: what the map is.
    recurrent_only : bool
        True when the method needs an LSTM/GRU with an FC head (`check_model`).
    signed : bool
        Whether ``abs=False`` gives a signed map.
    """

    label: str
    description: str
    recurrent_only: bool
    signed: bool


#: Method name -> `MethodInfo`, in the order a selector lists them.
METHODS: Mapping[str, MethodInfo] = MappingProxyType(
    {
        "paper": MethodInfo(
            "eq 5, instantaneous (the paper's)",
            "the paper's class map: |dh_t/dx_t| with the previous state held fixed, eq-3 "
            "normalized (times each coordinate's spread), weighted by |W_c| (eq 5)",
            True,
            False,
        ),
        "paper_through_time": MethodInfo(
            "eq 5, through time",
            "|d o_c / dx_t| through the recurrence, eq-3 normalized (times each coordinate's "
            "spread over the sequence, divided by the logit's spread)",
            True,
            False,
        ),
        "gradient": MethodInfo(
            "gradient",
            "|d o / dx_t| through time, summed over x, y, z (gradient saliency)",
            False,
            True,
        ),
        "gradient_x_input": MethodInfo(
            "gradient x input",
            "d o / dx_t times x_t (metres), summed over x, y, z",
            False,
            True,
        ),
        "integrated_gradients": MethodInfo(
            "integrated gradients",
            "(x - b) times the mean gradient on the straight path from a baseline pose b "
            "to x; the attributions add up to o(x) - o(b)",
            False,
            True,
        ),
        "smoothgrad": MethodInfo(
            "SmoothGrad",
            "the gradient averaged over copies of the sequence with Gaussian noise "
            "(metres) on every coordinate",
            False,
            True,
        ),
        "occlusion": MethodInfo(
            "occlusion",
            "how much o drops when a joint's stretch of frames (or a joint, a body part, "
            "a time window) is replaced by a plausible fill (as in the deletion curves)",
            False,
            True,
        ),
    }
)

#: The explorer's first map, chosen from `skvis_widgets.metrics.compare_methods` on all 273
#: MSR test sequences (README, "Can the map be trusted?"): the plain gradient passes every
#: check (beats random deletion on 94% of sequences, randomization rho 0.48, planted joint
#: found 100%, map changes 12% under 1 cm perturbations) where the paper's map ranks joints
#: mostly by their motion (83% vs the motion control's 81%, rho 0.91, planted 37%);
#: SmoothGrad (`CompareTable.recommended`) is within a point on every column at 16 times
#: the cost, and integrated gradients misses the planted joint (48%). It needs no recurrent
#: model, so every explorer opens with it.
DEFAULT_METHOD = "gradient"

#: The named baselines of integrated gradients.
BASELINES = ("mean_pose", "rest_pose", "zeros")
_OCCLUDE = ("windows", "joints", "parts", "frames")


@dataclass(frozen=True, eq=False)
class Explanation:
    """A map and what was computed on the way (``explain(..., return_info=True)``).

    Attributes
    ----------
    map : ndarray, shape (T, J) or (N, T, J)
        What `explain` returns; 0 past each sequence's length.
    method : str
    targets : ndarray (N,) of int, or None
        The class of each sequence (None for a unit map).
    unit : int or None
    scores : ndarray (N,)
        The explained score ``o`` (logit or unit response) of each sequence.
    baseline_scores : ndarray (N,) or None
        Integrated gradients: ``o`` at the baseline.
    completeness_error : ndarray (N,) or None
        Integrated gradients: ``|sum of signed attributions - (o(x) - o(baseline))|``,
        the quadrature error of the path integral (shrinks with ``n_steps``).
    options : dict
        The method's options as used (after defaults).
    """

    map: np.ndarray
    method: str
    targets: np.ndarray | None
    unit: int | None
    scores: np.ndarray
    baseline_scores: np.ndarray | None = None
    completeness_error: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = ("map", "targets", "scores", "baseline_scores", "completeness_error")
        freeze_fields(self, names)


# ---------------------------------------------------------------------------------------------
# The model: recurrent (paper's protocol) or any module mapping (N, T, J, 3) to (N, C)
# ---------------------------------------------------------------------------------------------
def is_recurrent(model: Any) -> bool:
    """Whether ``model`` follows the recurrent protocol (an LSTM/GRU with an FC head)."""
    try:
        check_model(model)
    except SkvisError:
        return False
    return True


def _param(model: Any) -> tuple[torch.device, torch.dtype]:
    if not isinstance(model, nn.Module):
        raise SkvisError(f"model must be a torch nn.Module, got {type(model).__name__}")
    p = next(iter(model.parameters()), None)
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)


def _as_input(
    model: Any, sequences: Any, lengths: Any, recurrent: bool
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(x (N, T, J, 3), lengths (N,) on CPU, single)`` checked, on the model's device/dtype."""
    if recurrent:
        x, lens, single = as_model_input(model, sequences, lengths, "sequences")
        return x, lens.cpu(), single
    device, dtype = _param(model)
    try:
        x = torch.as_tensor(
            sequences.detach() if torch.is_tensor(sequences) else np.asarray(sequences),
            dtype=dtype,
        )
    except (TypeError, ValueError) as exc:
        raise SkvisError(f"sequences: cannot convert to a float array ({exc})") from None
    shape = tuple(x.shape)
    single = x.dim() == 3
    if single:
        if lengths is not None:
            raise SkvisError(f"sequences: lengths are for a batch (N, T, J, 3), got {shape}")
        x = x[None]
    if x.dim() != 4 or x.shape[-1] != 3 or 0 in x.shape:
        raise SkvisError(f"sequences: expected shape (T, J, 3) or (N, T, J, 3), got {shape}")
    if not torch.isfinite(x).all():
        raise SkvisError("sequences: contains NaN or infinite values")
    n, t = x.shape[:2]
    lens = torch.full((n,), t) if lengths is None else check_lengths(lengths, n, t, shape)
    return x.to(device), lens, single


def _score_fn(
    model: Any, recurrent: bool, unit: int | None
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``f(x, lengths, targets) -> (B,)``: the explained score of each sequence of ``x``.

    Recurrent models run unpacked (autograd's fused LSTM/GRU kernels) and are read at
    frame ``length - 1``; a frame's state depends only on earlier frames, so padding
    after a length changes nothing before it. Any other model sees each sequence cut
    to its length (groups of equal length share a pass).
    """
    if recurrent:
        fc = model.fc

        def f(x: torch.Tensor, lens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            h = model.hidden_states(x)
            rows = torch.arange(h.shape[0], device=h.device)
            last = h[rows, lens.to(h.device) - 1]
            if unit is not None:
                return last[:, unit]
            w = fc.weight[targets.to(h.device)]
            out = (last * w).sum(-1)
            return out if fc.bias is None else out + fc.bias[targets.to(h.device)]

        return f

    def g(x: torch.Tensor, lens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if bool((lens == t).all()):
            out = model(x)
            return out.gather(1, targets.to(out.device)[:, None])[:, 0]
        order, vals = [], []
        for length in torch.unique(lens).tolist():
            idx = torch.nonzero(lens == length)[:, 0]
            out = model(x[idx.to(x.device), :length])
            order.append(idx)
            vals.append(out.gather(1, targets[idx].to(out.device)[:, None])[:, 0])
        # back to the batch's order without in-place writes (autograd sees every piece)
        inverse = torch.argsort(torch.cat(order))
        return torch.cat(vals)[inverse.to(x.device)]

    return g


def _chunk(model: Any, x: torch.Tensor) -> int:
    """Sequences per pass, from what autograd keeps per frame (a bound, not an estimate
    to the byte): the layers' gates and states for a recurrent model."""
    rnn = getattr(model, "rnn", None)
    width = int(x[0, 0].numel())
    if isinstance(rnn, nn.RNNBase):
        width += 12 * rnn.hidden_size * rnn.num_layers
    else:
        width *= 64  # unknown architecture: a generous guess per coordinate
    per_seq = x.shape[1] * width * x.element_size() * 2
    budget = min(memory_limit() // 4, 2**28)
    return max(1, int(budget // max(per_seq, 1)))


def _by_length(lens: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Index groups of at most ``size`` sequences of similar length (shortest first), so
    that a group is padded only to its own longest sequence."""
    order = torch.argsort(lens, stable=True)
    return [order[i : i + size] for i in range(0, len(order), size)]


def _grad(
    score: Callable[..., torch.Tensor],
    x: torch.Tensor,
    lens: torch.Tensor,
    targets: torch.Tensor,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d score / dx (B, T, J, 3), score (B,))``, one backward pass per group of
    ``chunk`` sequences, each group cut to its longest length (exact: frames after a
    sequence's length do not reach its score)."""
    grads = torch.zeros_like(x)
    scores = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for idx in _by_length(lens, chunk):
        top = int(lens[idx].max())
        dev = idx.to(x.device)
        xi = x[dev, :top].detach().requires_grad_(True)
        with torch.enable_grad():
            s = score(xi, lens[idx], targets[idx])
            (g,) = torch.autograd.grad(s.sum(), xi)
        grads[dev, :top] = g
        scores[dev] = s.detach()
    return grads, scores


def _valid(lens: torch.Tensor, t: int, like: torch.Tensor) -> torch.Tensor:
    """``(N, T, 1, 1)`` mask of the valid frames."""
    m = torch.arange(t)[None] < lens[:, None]
    return m.to(like.device, like.dtype)[:, :, None, None]


# ---------------------------------------------------------------------------------------------
# The methods
# ---------------------------------------------------------------------------------------------
def _baseline(model: Any, x: torch.Tensor, lens: torch.Tensor, baseline: Any) -> torch.Tensor:
    n, t, j, _ = x.shape
    valid = _valid(lens, t, x)
    if isinstance(baseline, str):
        if baseline == "zeros":
            return torch.zeros_like(x)
        if baseline == "mean_pose":  # the sequence's own mean pose, standing still
            mean = (x * valid).sum(1, keepdim=True) / lens.to(x.device, x.dtype)[
                :, None, None, None
            ]
            return mean.expand_as(x).contiguous()
        if baseline == "rest_pose":
            stored = getattr(model, "feature_mean", None)
            if stored is None or stored.numel() != j * 3:
                raise SkvisError(
                    "baseline='rest_pose' is the training set's mean pose, which this model "
                    "does not record (no feature_mean of J*3 values); pass a (J, 3) array"
                )
            return stored.to(x.device, x.dtype).reshape(1, 1, j, 3).expand_as(x).contiguous()
        raise SkvisError(f"baseline must be one of {BASELINES} or an array, got {baseline!r}")
    arr = torch.as_tensor(np.asarray(baseline), dtype=x.dtype, device=x.device)
    if arr.shape == (j, 3):
        arr = arr.reshape(1, 1, j, 3)
    elif arr.shape == (t, j, 3):
        arr = arr[None]
    elif arr.shape != x.shape:
        raise SkvisError(
            f"baseline of shape {tuple(arr.shape)}: expected (J, 3) = ({j}, 3), (T, J, 3) or "
            f"the batch's shape {tuple(x.shape)}"
        )
    if not torch.isfinite(arr).all():
        raise SkvisError("baseline: contains NaN or infinite values")
    return arr.expand_as(x).contiguous()


def gauss_legendre(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alpha`` in (0, 1) and weights (summing to 1) of ``n_steps``-point
    Gauss-Legendre quadrature on [0, 1] (Captum's default rule for integrated gradients)."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return 0.5 * (nodes + 1), 0.5 * weights


def _integrated_gradients(
    score: Callable[..., torch.Tensor],
    model: Any,
    x: torch.Tensor,
    lens: torch.Tensor,
    targets: torch.Tensor,
    *,
    baseline: Any,
    n_steps: int,
    chunk: int,
) -> tuple[torch.Tensor, dict[str, Any]]:
    base = _baseline(model, x, lens, baseline)
    alphas, weights = gauss_legendre(n_steps)
    a = torch.as_tensor(alphas, dtype=x.dtype, device=x.device)
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    total = torch.zeros_like(x)
    diff = x - base
    # every (sequence, step) pair is one row of a batch: groups of whole sequences' steps,
    # of similar lengths, cut to the group's longest
    for idx in _by_length(lens, max(1, chunk // n_steps)):
        k, top, dev = len(idx), int(lens[idx].max()), idx.to(x.device)
        b, d = base[dev, :top], diff[dev, :top]
        path = b[:, None] + a[None, :, None, None, None] * d[:, None]  # (k, S, top, J, 3)
        g, _ = _grad(
            score,
            path.reshape(k * n_steps, *path.shape[2:]),
            lens[idx].repeat_interleave(n_steps),
            targets[idx].repeat_interleave(n_steps),
            chunk,
        )
        g = g.reshape(k, n_steps, *path.shape[2:])
        total[dev, :top] = (g * w[None, :, None, None, None]).sum(1)
    attr = diff * total
    with torch.no_grad():
        s_x = score(x, lens, targets)
        s_b = score(base, lens, targets)
    err = (attr.sum((1, 2, 3)) - (s_x - s_b)).abs()
    return attr, {
        "scores": s_x,
        "baseline_scores": s_b,
        "completeness_error": err,
    }


def _occlusion(
    score: Callable[..., torch.Tensor],
    model: Any,
    x: torch.Tensor,
    lens: torch.Tensor,
    targets: torch.Tensor,
    *,
    occlude: str,
    window: int,
    stride: int,
    replace: Replace,
    mean_pose: Any,
    topology: Topology | None,
    chunk: int,
) -> torch.Tensor:
    """``(N, T, J)`` mean drop of the score over the occlusions covering each cell."""
    from .metrics import fill_removed  # metrics imports this module lazily: one direction

    n, t, j, _ = x.shape
    out = torch.zeros(n, t, j, dtype=torch.float64)
    with torch.no_grad():
        full = score(x, lens, targets).double().cpu()
    for b in range(n):
        length = int(lens[b])
        masks = _occlusion_masks(occlude, length, j, window, stride, topology)  # (M, L, J)
        seq = x[b, :length].double().cpu().numpy()
        pose = None if mean_pose is None else np.asarray(mean_pose, np.float64)
        drops = np.empty(len(masks))
        for i in range(0, len(masks), chunk):
            m = masks[i : i + chunk]
            filled = fill_removed(seq, m, replace=replace, mean_pose=pose)
            xb = torch.as_tensor(filled, dtype=x.dtype, device=x.device)
            with torch.no_grad():
                s = score(xb, torch.full((len(m),), length), targets[b].repeat(len(m)))
            drops[i : i + len(m)] = full[b].item() - s.double().cpu().numpy()
        cover = masks.sum(0)
        summed = np.tensordot(drops, masks.astype(np.float64), axes=(0, 0))
        out[b, :length] = torch.from_numpy(summed / np.maximum(cover, 1))
    return out


def _occlusion_masks(
    occlude: str, t: int, j: int, window: int, stride: int, topology: Topology | None
) -> np.ndarray:
    """``(M, T, J)`` bool: the cells each occlusion removes."""
    if occlude == "joints":
        return np.broadcast_to(np.eye(j, dtype=bool)[:, None, :], (j, t, j)).copy()
    if occlude == "parts":
        if topology is None:
            raise SkvisError(
                "occlude='parts' needs the skeleton's body parts: pass topology= (the model "
                "records none)"
            )
        per_part = []
        for part in BODY_PARTS:
            idx = list(topology.part_indices(part))
            if idx:
                m = np.zeros((t, j), bool)
                m[:, idx] = True
                per_part.append(m)
        return np.stack(per_part)
    starts = list(range(0, max(t - window, 0) + 1, stride))
    if starts[-1] + window < t:  # the last frames are covered too
        starts.append(t - window)
    spans = [(s, min(t, s + window)) for s in starts]
    if occlude == "frames":
        masks = np.zeros((len(spans), t, j), bool)
        for k, (a, b) in enumerate(spans):
            masks[k, a:b] = True
        return masks
    masks = np.zeros((len(spans) * j, t, j), bool)
    for k, (a, b) in enumerate(spans):
        for q in range(j):
            masks[k * j + q, a:b, q] = True
    return masks


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------
_COMMON = {"return_info", "chunk_size"}
_OPTIONS = {
    "paper": set(),
    "paper_through_time": set(),
    "gradient": set(),
    "gradient_x_input": set(),
    "integrated_gradients": {"baseline", "n_steps"},
    "smoothgrad": {"noise", "n_samples", "seed", "generator"},
    "occlusion": {"occlude", "window", "stride", "replace", "mean_pose", "topology"},
}


def explain(
    model: Any,
    sequences: Any,
    *,
    target: Any = None,
    unit: int | None = None,
    method: str = "paper",
    lengths: Any = None,
    abs: bool = True,  # noqa: A002 - Captum's name for it
    **options: Any,
) -> Any:
    """A joint map of one sequence or a batch, by any method of `METHODS`.

    Parameters
    ----------
    model : nn.Module
        A `SkeletonLSTM` / `RecurrentClassifier`, or (for the methods that are not
        ``recurrent_only``) any module mapping ``(N, T, J, 3)`` metres to ``(N, C)``
        logits. Run in eval mode without touching its flags (`eval_view`); its
        ``requires_grad`` and ``.grad`` are left alone.
    sequences : array or Tensor, shape (T, J, 3) or (N, T, J, 3)
        Joint positions in metres.
    target : int or sequence of N ints
        The class whose logit ``o_c`` (at the last valid frame) is explained.
    unit : int
        Instead of ``target``: a hidden unit of the last recurrent layer, its response
        at the last valid frame (recurrent models only; the paper's methods use eq 4).
    method : str
        A key of `METHODS`.
    lengths : sequence of N ints, optional
        Valid frames of each sequence of a batch; the map is 0 past them.
    abs : bool
        Sum the magnitudes of the per-coordinate attributions over x, y, z (True) or
        their signed values (False: positive where the coordinate's value raises the
        score). The paper's methods are magnitudes only: ``abs=False`` raises.
    **options
        ``return_info`` (bool): return an `Explanation` instead of the map.
        ``chunk_size`` (int): sequences per forward/backward pass (default from the
        memory limit, `skvis_widgets.set_memory_limit`).
        integrated_gradients: ``baseline`` ("mean_pose": the sequence's mean pose over
        its valid frames, at every frame (default); "rest_pose": the training set's mean
        pose, the model's ``feature_mean``; "zeros"; or a ``(J, 3)``, ``(T, J, 3)`` or
        batch-shaped array), ``n_steps`` (default 32; Gauss-Legendre nodes, as Captum's
        default). smoothgrad: ``noise`` (standard deviation in metres, default 0.01),
        ``n_samples`` (default 16), ``seed`` (default 0) or ``generator`` (a
        ``torch.Generator``). occlusion: ``occlude`` ("windows": each joint over windows
        of ``window`` frames every ``stride`` frames (defaults 4 and 2); "joints": each
        joint over all frames; "parts": each body part; "frames": all joints over a
        window), ``replace`` and ``mean_pose`` as in `metrics.deletion_curve`
        ("interpolate" by default), ``topology`` (for "parts"; default the model's).

    Returns
    -------
    ndarray, shape (T, J) or (N, T, J)
        float32 (float64 for a float64 model); or an `Explanation` with
        ``return_info=True`` (the completeness error of integrated gradients is there).

    Raises
    ------
    SkvisError
        Unknown method or option, a recurrent-only method or ``unit=`` on a model that is
        not recurrent, ``abs=False`` for the paper's maps, bad shapes or values.

    Examples
    --------
    >>> from skvis_widgets.model import SkeletonLSTM
    >>> model = SkeletonLSTM(20, 4, 8)
    >>> seq = np.random.default_rng(0).normal(0, 0.3, (12, 20, 3))
    >>> explain(model, seq, target=1, method="gradient").shape
    (12, 20)
    """
    if method not in METHODS:
        raise SkvisError(f"method must be one of {list(METHODS)}, got {method!r}")
    bad = set(options) - _OPTIONS[method] - _COMMON
    if bad:
        raise SkvisError(
            f"method {method!r} takes no option(s) {sorted(bad)}; it takes "
            f"{sorted(_OPTIONS[method] | _COMMON)}"
        )
    info = METHODS[method]
    recurrent = is_recurrent(model)
    if (info.recurrent_only or unit is not None) and not recurrent:
        what = f"method {method!r}" if info.recurrent_only else "unit="
        try:
            check_model(model)
        except SkvisError as exc:
            why = str(exc)
        raise SkvisError(
            f"{what} needs a recurrent model (an LSTM/GRU with an FC head: the paper's "
            f"eqs 1-5 differentiate its hidden units); {why}"
        )
    if not abs and not info.signed:
        raise SkvisError(
            f"method {method!r} gives magnitudes only (eq 2 takes |dh/dx|); use abs=True"
        )
    if (target is None) == (unit is None):
        raise SkvisError(
            f"give exactly one of target= (a class) and unit= (a hidden unit); got "
            f"target={target!r}, unit={unit!r}"
        )
    return_info = bool(options.pop("return_info", False))
    chunk_size = options.pop("chunk_size", None)

    x, lens, single = _as_input(model, sequences, lengths, recurrent)
    n, t, j, _ = x.shape
    if recurrent:
        rnn, fc = check_model(model)
        num_out, hidden = fc.out_features, rnn.hidden_size
    else:
        with torch.no_grad(), eval_view(model) as m:
            num_out = int(m(x[:1, : int(lens[0])]).shape[-1])
        hidden = 0
    targets = (
        check_targets(target, n, num_out)
        if target is not None
        else torch.zeros(n, dtype=torch.int64)
    )
    if unit is not None:
        unit = check_index(unit, hidden, "unit")
    chunk = (
        check_positive_int(chunk_size, "chunk_size") if chunk_size is not None else _chunk(model, x)
    )
    used: dict[str, Any] = {}
    extra: dict[str, Any] = {}

    if method in ("paper", "paper_through_time"):
        from .saliency import Mode, joint_sensitivity

        kind: Mode = "instantaneous" if method == "paper" else "through_time"
        arr = joint_sensitivity(
            model,
            x if not single else x[0],
            target=None if unit is not None else (targets if not single else int(targets[0])),
            unit=unit,
            mode=kind,
            lengths=None if single else lens,
        )
        out = torch.as_tensor(np.asarray(arr)).reshape(n, t, j)
        with torch.no_grad(), eval_view(model) as m:
            scores = _score_fn(m, True, unit)(x, lens, targets)
    else:
        with eval_view(model) as m:
            score = _score_fn(m, recurrent, unit)
            if method in ("gradient", "gradient_x_input"):
                g, scores = _grad(score, x, lens, targets, chunk)
                attr = g * x if method == "gradient_x_input" else g
            elif method == "integrated_gradients":
                used = {
                    "baseline": options.get("baseline", "mean_pose"),
                    "n_steps": check_positive_int(options.get("n_steps", 32), "n_steps"),
                }
                attr, extra = _integrated_gradients(score, m, x, lens, targets, chunk=chunk, **used)
                scores = extra.pop("scores")
            elif method == "smoothgrad":
                g, scores, used = _smoothgrad(score, x, lens, targets, chunk, options)
                # SmoothGrad averages maps: the magnitude is taken per noisy copy
                attr = (g.abs() if abs else g).mean(0)
            else:
                used = _occlusion_options(model, j, options)
                occ = _occlusion(score, m, x, lens, targets, chunk=chunk, **used)
                with torch.no_grad():
                    scores = score(x, lens, targets)
                attr = None
                out = occ.abs() if abs else occ
        if attr is not None:  # not occlusion
            attr = attr * _valid(lens, t, attr)
            out = attr.abs().sum(-1) if abs else attr.sum(-1)
    dtype = np.float64 if x.dtype == torch.float64 else np.float32
    result = out.detach().cpu().numpy().astype(dtype)
    result = result[0] if single else result
    if not return_info:
        return result

    def npy(v: Any) -> np.ndarray | None:
        return None if v is None else v.detach().double().cpu().numpy()

    return Explanation(
        map=result,
        method=method,
        targets=None if unit is not None else targets.numpy(),
        unit=unit,
        scores=scores.detach().double().cpu().numpy(),
        baseline_scores=npy(extra.get("baseline_scores")),
        completeness_error=npy(extra.get("completeness_error")),
        options={k: v for k, v in used.items() if k != "generator"},
    )


def _smoothgrad(
    score: Callable[..., torch.Tensor],
    x: torch.Tensor,
    lens: torch.Tensor,
    targets: torch.Tensor,
    chunk: int,
    options: dict[str, Any],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Gradients ``(S, N, T, J, 3)`` at ``S = n_samples`` noisy copies of ``x``, the
    scores at ``x`` and the options used. The noise is drawn in float64 on the CPU from
    ``generator`` (or ``seed``), so a seed gives the same copies on every device."""
    noise = float(options.get("noise", 0.01))
    if not np.isfinite(noise) or noise < 0:
        raise SkvisError(f"noise must be a standard deviation >= 0 in metres, got {noise!r}")
    n_samples = check_positive_int(options.get("n_samples", 16), "n_samples")
    gen = options.get("generator")
    seed = options.get("seed", 0)
    if gen is None:
        gen = torch.Generator().manual_seed(int(seed))
    elif not isinstance(gen, torch.Generator):
        raise SkvisError(f"generator must be a torch.Generator, got {gen!r}")
    n = len(x)
    eps = torch.randn((n_samples, *x.shape), generator=gen, dtype=torch.float64)
    noisy = (x[None].double().cpu() + noise * eps).to(x.device, x.dtype)
    g, _ = _grad(
        score,
        noisy.reshape(n_samples * n, *x.shape[1:]),
        lens.repeat(n_samples),
        targets.repeat(n_samples),
        chunk,
    )
    g = g.reshape(n_samples, *x.shape)
    with torch.no_grad():
        s = score(x, lens, targets)
    return g, s, {"noise": noise, "n_samples": n_samples, "seed": seed}


def _occlusion_options(model: Any, j: int, options: dict[str, Any]) -> dict[str, Any]:
    occlude = options.get("occlude", "windows")
    if occlude not in _OCCLUDE:
        raise SkvisError(f"occlude must be one of {_OCCLUDE}, got {occlude!r}")
    window = check_positive_int(options.get("window", 4), "window")
    stride = check_positive_int(options.get("stride", max(1, window // 2)), "stride")
    topology = options.get("topology")
    if topology is not None:
        topology = get_topology(topology)
        if topology.num_joints != j:
            raise SkvisError(
                f"topology {topology.name!r} has {topology.num_joints} joints, the sequences {j}"
            )
    else:
        try:
            topology = model_topology(model)
        except SkvisError:
            topology = None
    replace = options.get("replace", "interpolate")
    return {
        "occlude": occlude,
        "window": window,
        "stride": stride,
        "replace": replace,
        "mean_pose": options.get("mean_pose"),
        "topology": topology,
    }
