"""Joint sensitivity of hidden units and class labels: eqs 1-5 of Patil et al.

For a hidden unit ``u`` of the recurrent layer, frame ``t``, joint ``j`` and axis
``d`` the sensitivity is ``S = |dh_t^u / dx_{t,j,d}|`` (eqs 1-2), normalized over
the sequence as ``S' = S * sigma_x[j,d] / sigma_h[u]`` (eq 3), summed over the
axes for a joint (eq 4) and weighted by the FC layer's ``|W_c^u|`` for a class
(eq 5). Layouts: a sequence is ``(T, J, 3)``, a batch ``(N, T, J, 3)`` with
``lengths``; per unit ``(H, T, J, 3)`` (``(N, H, T, J, 3)`` for a batch); per
joint ``(T, J)``.

Two derivatives, both exact (no finite differences, no sampling):

``mode="instantaneous"`` (the paper's)
    ``dh_t / dx_t`` with the previous state ``(h_{t-1}, c_{t-1})`` held fixed: what
    the pose at frame ``t`` does to the units at frame ``t``. For LSTM and GRU cells
    this Jacobian has a closed form in the gate values, computed here for every
    unit and frame at once. For a unit of layer ``k > 0`` of a stacked network it
    is the product of the per-layer instantaneous Jacobians down the stack,
    ``J_k(t) J_{k-1}(t) ... J_0(t) P(t)``, every layer's own previous state held
    fixed, ``P(t)`` the Jacobian of the model's per-frame preprocessing.
``mode="through_time"``
    the usual gradient saliency: the derivative of the unit's response at the
    sequence's last valid frame, ``h_{L-1}^u``, (or of the class logit) w.r.t. the
    pose at every frame, through the recurrence; for all units at once by a
    backward pass through time with ``H`` cotangents side by side. Derivatives
    that decay below 5e-16 of the seed (float32; 1e-123 in float64) are set to 0,
    which keeps the CPU off subnormal arithmetic (see `_bptt`).

Reading the maps: eq 3 multiplies each coordinate's derivative by that
coordinate's spread over the sequence, so the joints that move most score high
even in an untrained network. What a trained model adds shows against
``normalize=False`` and against the same map for a model with random weights.

Every function takes a `SkeletonLSTM` or any model that follows its protocol
(see `skvis_widgets.adapters`; wrap your own module with
`as_recurrent_classifier`). They run the model in eval mode and restore its
modes, never touch ``requires_grad`` or ``.grad``, work on the model's device
and dtype, and return numpy arrays (float32, or float64 for a float64 model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ._checks import (
    as_model_input,
    check_finite,
    check_index,
    check_layer,
    check_model,
    check_positive_int,
    check_targets,
    eval_view,
)
from .adapters import (
    RecurrentClassifier,
    as_recurrent_classifier,
    per_frame_jacobian,
    run_layers,
)
from .colors import COLORMAPS, sensitivity_colors  # re-exported: the colours live in colors
from .errors import SkvisError
from .limits import check_memory
from .model import SkeletonLSTM
from .skeleton import BODY_PARTS, Topology

__all__ = [
    "unit_sensitivity",
    "instantaneous_jacobian",
    "joint_sensitivity",
    "class_map",
    "JointSensitivity",
    "UnitRanking",
    "rank_units",
    "body_part_totals",
    "sensitivity_colors",
    "COLORMAPS",
    "as_recurrent_classifier",
    "RecurrentClassifier",
]

Mode = Literal["instantaneous", "through_time"]
_MODES = ("instantaneous", "through_time")

#: Per-chunk working set, in tensor elements, when ``chunk_size`` is left to us.
_WORK = 2**25

#: A standard deviation below ``_CONST * eps * (1 + max|v|)`` counts as zero: the
#: values are constant up to rounding (eq 3 then gives 0, not inf or NaN).
_CONST = 16.0


# ---------------------------------------------------------------------------------------------
# Input checking and model state
# ---------------------------------------------------------------------------------------------
def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise SkvisError(f"mode must be one of {_MODES}, got {mode!r}")


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
def _input_jacobian(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Per-frame d(preprocess)/dx: ``(F,)`` diagonal, ``(N, T, F)`` diagonal, or ``(N, T, F', F)``."""
    fn = getattr(model, "preprocess_jacobian", None)
    if callable(fn):
        return fn(x)
    if isinstance(model, SkeletonLSTM) and type(model).preprocess is SkeletonLSTM.preprocess:
        return 1.0 / model.feature_std.to(x.dtype)  # (x - mean) / std, per feature
    return per_frame_jacobian(model.preprocess, x)


def _chain_input(m: torch.Tensor, pj: torch.Tensor) -> torch.Tensor:
    """``(N, K, T, F')`` gradients w.r.t. the recurrent input -> w.r.t. the raw coordinates."""
    if pj.dim() == 1:
        return m * pj
    if pj.dim() == 3:
        return m * pj[:, None]
    # (einsum picks slow batched layouts here; explicit matmuls are several times faster)
    return (m.transpose(1, 2) @ pj).transpose(1, 2)


def _gate_product(coef: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``out[n, k, t, f] = sum_g coef[n, t, g, k] * w[(n,) g, k, f]``: ``(N, K, T, F)``."""
    n, t, g, k = coef.shape
    f = w.shape[-1]
    # contiguous (N*K, T, G) @ (N*K, G, F): one bmm, no per-matrix strided copies
    lhs = coef.permute(0, 3, 1, 2).reshape(n * k, t, g)
    rhs = w.transpose(-3, -2).expand(n, k, g, f).reshape(n * k, g, f)
    return torch.bmm(lhs, rhs).view(n, k, t, f)


def _weights(rnn: nn.RNNBase, k: int) -> tuple[torch.Tensor, ...]:
    w_ih = getattr(rnn, f"weight_ih_l{k}").detach()
    w_hh = getattr(rnn, f"weight_hh_l{k}").detach()
    if rnn.bias:
        b_ih = getattr(rnn, f"bias_ih_l{k}").detach()
        b_hh = getattr(rnn, f"bias_hh_l{k}").detach()
    else:
        b_ih = b_hh = torch.zeros(w_ih.shape[0], dtype=w_ih.dtype, device=w_ih.device)
    return w_ih, w_hh, b_ih, b_hh


def _affine_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``c_t = a_t * c_{t-1} + b_t`` along dim 1 from ``c_{-1} = 0``, in log2(T) steps.

    A Hillis-Steele scan of the affine maps ``c -> a c + b``: products of the
    forget gates only (no division), so as stable as the sequential loop.
    """
    a, b = a.clone(), b.clone()
    d, t = 1, a.shape[1]
    while d < t:
        # the right-hand sides are new tensors made of the old values: no aliasing
        b[:, d:] += a[:, d:] * b[:, :-d]
        if 2 * d < t:
            a[:, d:] = a[:, d:] * a[:, :-d]
        d *= 2
    return b


def _shift(v: torch.Tensor) -> torch.Tensor:
    """The previous frame's value along dim 1, zero before the first."""
    return torch.cat([torch.zeros_like(v[:, :1]), v[:, :-1]], 1)


def _local(kind: str, x_in: torch.Tensor, h: torch.Tensor, w: tuple[torch.Tensor, ...]) -> dict:
    """The gates at every frame and the local derivatives the engine needs, ``(N, T, ...)``.

    ``coef[n, t, g, u]`` is ``dh_t^u / da_g^u`` (``a_g`` gate ``g``'s pre-activation from
    the input, in PyTorch's gate order) with the previous state held fixed, so the
    instantaneous Jacobian of layer ``k`` is ``sum_g diag(coef[:, :, g]) W_ih[g]``.

    LSTM (gates i, f, g, o; ``c = f c' + i g``, ``h = o tanh(c)``)::

        coef_i = o (1 - tanh^2 c) g i (1 - i)       coef_g = o (1 - tanh^2 c) i (1 - g^2)
        coef_f = o (1 - tanh^2 c) c' f (1 - f)      coef_o = tanh(c) o (1 - o)

    GRU (gates r, z, n; ``n = tanh(W_in x + b_in + r (W_hn h' + b_hn))``,
    ``h = (1 - z) n + z h'``)::

        coef_r = (1 - z)(1 - n^2)(W_hn h' + b_hn) r (1 - r)
        coef_z = (h' - n) z (1 - z)                 coef_n = (1 - z)(1 - n^2)
    """
    w_ih, w_hh, b_ih, b_hh = w
    h_prev = _shift(h)
    if kind == "lstm":
        both = torch.cat([x_in, h_prev], -1) @ torch.cat([w_ih, w_hh], 1).T
        ai, af, ag, ao = (both + (b_ih + b_hh)).chunk(4, -1)
        i, f, o = torch.sigmoid(ai), torch.sigmoid(af), torch.sigmoid(ao)
        g = torch.tanh(ag)
        c = _affine_scan(f, i * g)
        tc = torch.tanh(c)
        ko = o * (1 - tc * tc)  # dh/dc
        cc = torch.stack([g * i * (1 - i), _shift(c) * f * (1 - f), i * (1 - g * g)], 2)
        bo = tc * o * (1 - o)  # dh/da_o
        coef = torch.cat([cc * ko[:, :, None], bo[:, :, None]], 2)
        return {"kind": kind, "coef": coef, "cc": cc, "bo": bo, "ko": ko, "f": f}
    ax = x_in @ w_ih.T + b_ih
    ah = h_prev @ w_hh.T + b_hh
    xr, xz, xn = ax.chunk(3, -1)
    hr, hz, hn = ah.chunk(3, -1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    dn = (1 - z) * (1 - n * n)  # dh/da_n
    cr = dn * hn * r * (1 - r)
    cz = (h_prev - n) * z * (1 - z)
    coef = torch.stack([cr, cz, dn], 2)
    chh = torch.stack([cr, cz, dn * r], 2)  # dh/d(W_hh h' + b_hh), per gate
    return {"kind": kind, "coef": coef, "chh": chh, "z": z}


def _instantaneous(
    caches: list[dict],
    weights: list[tuple[torch.Tensor, ...]],
    rows: torch.Tensor | None,
    pj: torch.Tensor,
    row_scale: torch.Tensor | None,
    col_scale: torch.Tensor | None,
    valid: torch.Tensor,
) -> torch.Tensor:
    """Signed, scaled ``dh_t^u / dx_t`` for the top layer's ``rows``: ``(N, K, T, F)``."""
    top = caches[-1]
    coef = top["coef"]  # (N, T, G, H)
    g = coef.shape[2]
    w = weights[-1][0].reshape(g, coef.shape[3], -1)  # (G, H, In)
    if rows is not None:
        coef, w = coef[..., rows], w[:, rows]
    # Positive per-row and per-column scales commute with |.|: fold them into the small
    # factors instead of passing over the (N, K, T, F) result again.
    coef = coef * valid[:, :, None, None].to(coef.dtype)
    if row_scale is not None:
        coef = coef * row_scale[:, None, None, :]
    if len(caches) == 1 and pj.dim() == 1:
        cols = pj if col_scale is None else pj * col_scale  # (F,) or (N, F)
        if cols.dim() == 1:
            return _gate_product(coef, w * cols)
        return _gate_product(coef, w[None] * cols[:, None, None, :])
    m = _gate_product(coef, w)
    for cache, wl in zip(caches[-2::-1], weights[-2::-1], strict=True):
        c = cache["coef"]
        jac = _gate_product(c, wl[0].reshape(c.shape[2], c.shape[3], -1))  # (N, H, T, In)
        m = (m.transpose(1, 2) @ jac.transpose(1, 2)).transpose(1, 2)
    m = _chain_input(m, pj)
    return m if col_scale is None else m * col_scale[:, None, None, :]


def _bptt(
    cache: dict,
    w: tuple[torch.Tensor, ...],
    t_end: int,
    inj: torch.Tensor | None,
    seed: torch.Tensor | None,
    seed_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Backward through one layer for K cotangents side by side.

    ``inj`` ``(N, K, T, H)`` is dL/dh_t arriving from above at every frame; ``seed``
    ``(N, K, H)`` (rows of max-magnitude 1) arrives at the frames where ``seed_mask``
    ``(N, T)`` is 1. Returns dL/d(layer input) ``(N, K, T, In)``.

    Derivatives through time decay geometrically; once they reach subnormal floats,
    every CPU operation on them slows down ~100x. So the carried state and the
    local derivatives are flushed to zero below `_flush_below` (5e-16 in float32,
    1e-123 in float64, relative to the seed), a cut far below what float32 can
    show next to the seed, instead of changing the process-wide FTZ flag.
    """
    w_ih, w_hh = w[0], w[1]
    tiny = _flush_below(w_ih.dtype)
    n, t_all = cache["coef"].shape[:2]
    hdim = cache["coef"].shape[3]
    k = (inj if inj is not None else seed).shape[1]
    out = w_ih.new_zeros(n, k, t_all, w_ih.shape[1])
    dh = w_ih.new_zeros(n, k, hdim)
    if cache["kind"] == "lstm":
        w_both = torch.cat([w_ih, w_hh], 1)  # one matmul per step for both paths
        cc, bo, ko, f = (_flush(cache[name].clone(), tiny) for name in ("cc", "bo", "ko", "f"))
        dc = torch.zeros_like(dh)
        for t in range(t_end - 1, -1, -1):
            if seed is not None:
                dh = dh + seed_mask[:, t, None, None] * seed
            if inj is not None:
                dh = dh + inj[:, :, t]
            dct = dc + dh * ko[:, None, t]
            da = torch.cat([dct[:, :, None] * cc[:, None, t], (dh * bo[:, None, t])[:, :, None]], 2)
            both = da.reshape(n, k, -1) @ w_both
            out[:, :, t] = both[..., : w_ih.shape[1]]
            dh = _flush(both[..., w_ih.shape[1] :], tiny)
            dc = _flush(dct * f[:, None, t], tiny)
        return out
    coef, chh, z = (_flush(cache[name].clone(), tiny) for name in ("coef", "chh", "z"))
    for t in range(t_end - 1, -1, -1):
        if seed is not None:
            dh = dh + seed_mask[:, t, None, None] * seed
        if inj is not None:
            dh = dh + inj[:, :, t]
        out[:, :, t] = (dh[:, :, None] * coef[:, None, t]).reshape(n, k, -1) @ w_ih
        dh = (dh[:, :, None] * chh[:, None, t]).reshape(n, k, -1) @ w_hh + dh * z[:, None, t]
        dh = _flush(dh, tiny)
    return out


def _flush_below(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).tiny) ** 0.4


def _flush(v: torch.Tensor, tiny: float) -> torch.Tensor:
    """Zero the entries below ``tiny`` in magnitude (in place; ``v`` is a fresh tensor)."""
    return v.masked_fill_(v.abs() < tiny, 0)


def _masked_std(v: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Population std over the valid frames of ``v`` ``(N, T, K)``, and whether it is ~0."""
    m = valid[..., None].to(v.dtype)
    cnt = m.sum(1)
    mean = (v * m).sum(1) / cnt
    std = ((((v - mean[:, None]) * m) ** 2).sum(1) / cnt).sqrt()
    ref = (v.abs() * m).amax(1)
    const = std <= _CONST * torch.finfo(v.dtype).eps * (1 + ref)
    return std, const


def _sensitivity_chunk(
    model: Any,
    x: torch.Tensor,
    lengths: torch.Tensor,
    *,
    mode: str,
    layer: int,
    rows: torch.Tensor | None,
    cot: torch.Tensor | None,
    normalize: bool,
    signed: bool = False,
) -> torch.Tensor:
    """``|d response / dx|`` (eq 3-normalized if asked): ``(N, K, T, J*3)``, 0 past lengths.

    ``signed=True`` (instantaneous mode only) skips the ``|.|``.

    The responses are the units ``rows`` of ``layer`` (all when None), or for
    ``mode="through_time"`` the combinations ``cot`` ``(N, K, H)`` of them (a class
    logit minus its bias is ``W_c . h``).
    """
    rnn = model.rnn
    n, t = x.shape[:2]
    feats = model.preprocess(x)
    pj = _input_jacobian(model, x)
    outs = run_layers(rnn, feats, layer)
    h = outs[layer]
    valid = torch.arange(t, device=x.device) < lengths[:, None]
    if cot is not None:
        resp = h @ cot.transpose(1, 2)
    elif rows is not None:
        resp = h[..., rows]
    else:
        resp = h
    row_scale = col_scale = None
    if normalize:
        std_h, const_h = _masked_std(resp, valid)
        row_scale = torch.where(const_h, torch.zeros_like(std_h), 1 / std_h)
        std_x, const_x = _masked_std(x.reshape(n, t, -1), valid)
        col_scale = torch.where(const_x, torch.zeros_like(std_x), std_x)
    kind = "lstm" if isinstance(rnn, nn.LSTM) else "gru"
    weights = [_weights(rnn, k) for k in range(layer + 1)]
    ins = [feats, *outs[:-1]]
    caches = [_local(kind, ins[k], outs[k], weights[k]) for k in range(layer + 1)]
    if mode == "instantaneous":
        out = _instantaneous(caches, weights, rows, pj, row_scale, col_scale, valid)
        return out if signed else out.abs_()
    hdim = h.shape[-1]
    if cot is None:
        eye = torch.eye(hdim, dtype=h.dtype, device=h.device)
        cot = (eye if rows is None else eye[rows])[None].expand(n, -1, -1)
    # Seeds of unit size (the flush threshold is relative to them); scales applied after.
    seed_size = cot.abs().amax(-1)  # (N, K)
    cot = cot / torch.where(seed_size > 0, seed_size, 1)[..., None]
    out_scale = seed_size if row_scale is None else seed_size * row_scale
    seed_mask = (torch.arange(t, device=x.device) == (lengths - 1)[:, None]).to(h.dtype)
    t_end = int(lengths.max())
    grad, inj = None, None
    for k in range(layer, -1, -1):
        grad = _bptt(caches[k], weights[k], t_end, inj, cot if k == layer else None, seed_mask)
        inj = grad
    grad = _chain_input(grad, pj)
    cols = 1 if col_scale is None else col_scale[:, None, None, :]
    return grad.mul_(out_scale[:, :, None, None] * cols).abs_()


def _compute(
    model: Any,
    sequence: Any,
    lengths: Any,
    *,
    mode: str,
    layer: int,
    normalize: bool,
    chunk_size: int | None,
    units: int | None = None,
    target: Any = None,
    reduce: Callable[[torch.Tensor, torch.Tensor, slice], torch.Tensor],
    name: str = "sequence",
    signed: bool = False,
    all_units: bool = False,
) -> tuple[np.ndarray, bool]:
    """Run the engine chunk by chunk; ``reduce(sens (n,K,T,F), targets, slice)`` per chunk.

    ``all_units``: ``reduce`` keeps every unit (the result is ``(n, H, T, F)``), which
    counts in the memory estimate checked before any work starts.
    """
    _check_mode(mode)
    rnn, fc = check_model(model)
    layer = check_layer(rnn.num_layers, layer)
    x, lens, single = as_model_input(model, sequence, lengths, name)
    n, t = x.shape[:2]
    hdim = rnn.hidden_size
    rows = cot_w = None
    targets = torch.zeros(n, dtype=torch.int64)
    if units is not None:
        rows = torch.tensor([check_index(units, hdim, "unit")], device=x.device)
    if target is not None:
        if layer != rnn.num_layers - 1:
            raise SkvisError(
                f"target {target!r} weighs the last layer's units by the FC layer; "
                f"layer={layer} is not the last of {rnn.num_layers}"
            )
        targets = check_targets(target, n, fc.out_features)
        if mode == "through_time":
            cot_w = fc.weight.detach()[targets.to(x.device)][:, None, :]  # (N, 1, H)
    k = 1 if (rows is not None or cot_w is not None) else hdim
    width = max(x[0, 0].numel(), hdim, getattr(rnn, "input_size", 0))
    per_sample = k * t * width * (2 if rnn.num_layers > 1 else 1) + 8 * t * hdim
    if chunk_size is None:
        chunk_size = max(1, _WORK // per_sample)
    else:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    itemsize = x.element_size()
    result = n * (hdim if all_units else 1) * t * x[0, 0].numel() * itemsize
    check_memory(
        result + per_sample * min(chunk_size, n) * itemsize,
        f"sensitivity of {n} sequence(s) of {t} frames"
        + (f" for all {hdim} units" if all_units else ""),
        "pass fewer sequences per call (a slice of the batch) or a smaller chunk_size"
        + (", or one unit / class at a time (joint_sensitivity)" if all_units else ""),
    )
    out: np.ndarray | None = None
    with eval_view(model) as model, torch.no_grad():
        for start in range(0, n, chunk_size):
            sl = slice(start, min(n, start + chunk_size))
            sens = _sensitivity_chunk(
                model,
                x[sl],
                lens[sl],
                mode=mode,
                layer=layer,
                rows=rows,
                cot=None if cot_w is None else cot_w[sl],
                normalize=normalize,
                signed=signed,
            )
            part = reduce(sens, targets[sl], sl).cpu().numpy()
            if chunk_size >= n:  # one chunk: no copy
                return part, single
            if out is None:
                out = np.empty((n, *part.shape[1:]), dtype=part.dtype)
            out[sl] = part
    assert out is not None
    return out, single


def _class_weights(model: Any, targets: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return model.fc.weight.detach()[targets.to(like.device)].abs().to(like.dtype)  # (n, H)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def unit_sensitivity(
    model: Any,
    sequence: Any,
    *,
    mode: Mode = "instantaneous",
    normalize: bool = True,
    layer: int = -1,
    lengths: Any = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Sensitivity of every hidden unit to every input coordinate (eqs 1-3).

    Parameters
    ----------
    model : SkeletonLSTM or RecurrentClassifier
        Any model following the protocol of `skvis_widgets.adapters`.
    sequence : array or Tensor, shape (T, J, 3) or (N, T, J, 3)
        Joint positions (metres). Not modified.
    mode : {"instantaneous", "through_time"}
        ``"instantaneous"``: ``|dh_t^u / dx_{t,j,d}|`` with the previous state held
        fixed (the paper's eq 1-2). ``"through_time"``: ``|dh_{L-1}^u / dx_{t,j,d}|``,
        the response at the last valid frame through the recurrence.
    normalize : bool
        Eq 3: multiply by ``sigma_x[j, d] / sigma_h[u]``, the population standard
        deviations over the sequence's valid frames of the raw coordinate and of the
        unit's response ``h_t^u``. A constant coordinate or unit (std below
        ``16 * eps * (1 + max|v|)``) gives 0, never inf or NaN; so does a one-frame
        sequence.
    layer : int
        Which recurrent layer's units (default the last). For ``layer > 0`` the
        instantaneous Jacobian is the product of the per-layer ones down the stack.
    lengths : array of N ints, optional
        Valid frames of each sequence of a batch; frames past them are 0.
    chunk_size : int, optional
        Sequences per chunk; the default keeps the working set near 2**25 elements
        (128 MiB in float32) whatever the batch. The result itself is
        ``N * H * T * J * 3`` values.

    Returns
    -------
    ndarray, shape (H, T, J, 3), or (N, H, T, J, 3) for a batch
        float32 (float64 for a float64 model), non-negative.

    Examples
    --------
    >>> model = SkeletonLSTM(20, 20, 16)
    >>> unit_sensitivity(model, np.random.rand(30, 20, 3)).shape
    (16, 30, 20, 3)
    """

    def reduce(s: torch.Tensor, _t: torch.Tensor, _sl: slice) -> torch.Tensor:
        return s.reshape(*s.shape[:3], -1, 3)

    out, single = _compute(
        model,
        sequence,
        lengths,
        mode=mode,
        layer=layer,
        normalize=normalize,
        chunk_size=chunk_size,
        reduce=reduce,
        all_units=True,
    )
    return out[0] if single else out


def instantaneous_jacobian(
    model: Any,
    sequence: Any,
    *,
    layer: int = -1,
    lengths: Any = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """The signed instantaneous Jacobian ``dh_t^u / dx_{t,j,d}`` of every unit.

    What `unit_sensitivity` with ``normalize=False`` takes the absolute value of: the
    previous state held fixed, so frame ``t``'s pose acts on frame ``t``'s units only.
    Activation maximization's eq 7 weights these rows by the FC layer,
    ``d_t = sum_u W_c^u dh_t^u / dx_t``.

    Parameters
    ----------
    model, sequence, layer, lengths, chunk_size
        As in `unit_sensitivity`.

    Returns
    -------
    ndarray, shape (H, T, J, 3), or (N, H, T, J, 3) for a batch
        Units of the layer's output per metre; float32 (float64 for a float64 model);
        0 past a sequence's length.
    """

    def reduce(s: torch.Tensor, _t: torch.Tensor, _sl: slice) -> torch.Tensor:
        return s.reshape(*s.shape[:3], -1, 3)

    out, single = _compute(
        model,
        sequence,
        lengths,
        mode="instantaneous",
        layer=layer,
        normalize=False,
        chunk_size=chunk_size,
        reduce=reduce,
        signed=True,
        all_units=True,
    )
    return out[0] if single else out


def _coordinate_maps(
    model: Any,
    sequence: Any,
    *,
    target: Any,
    unit: int | None,
    mode: str,
    normalize: bool,
    layer: int,
    lengths: Any,
    chunk_size: int | None,
    name: str = "sequence",
) -> tuple[np.ndarray, bool]:
    """Per-coordinate maps ``(N, T, J*3)``: eq 3 for a unit, eq 5 before the sum over d."""
    if (target is None) == (unit is None):
        raise SkvisError(
            f"give exactly one of target= (a class) and unit= (a hidden unit); "
            f"got target={target!r}, unit={unit!r}"
        )
    instantaneous_class = target is not None and mode == "instantaneous"

    def reduce(s: torch.Tensor, targets: torch.Tensor, _sl: slice) -> torch.Tensor:
        if instantaneous_class:  # eq 5: sum_u |W_c^u| S'^u
            w = _class_weights(model, targets, s)[:, None, :]  # (n, 1, H)
            return (w @ s.reshape(*s.shape[:2], -1)).reshape(s.shape[0], *s.shape[2:])
        return s[:, 0]

    return _compute(
        model,
        sequence,
        lengths,
        mode=mode,
        layer=layer,
        normalize=normalize,
        chunk_size=chunk_size,
        units=unit,
        target=target,
        reduce=reduce,
        name=name,
    )


def joint_sensitivity(
    model: Any,
    sequence: Any,
    *,
    target: Any = None,
    unit: int | None = None,
    mode: Mode = "instantaneous",
    normalize: bool = True,
    layer: int = -1,
    lengths: Any = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Sensitivity of one hidden unit (eq 4) or one class (eq 5) to each joint over time.

    Parameters
    ----------
    model, sequence, mode, normalize, lengths, chunk_size
        As in `unit_sensitivity`.
    target : int or sequence of N ints
        A class ``c``. Instantaneous: eq 5, ``sum_u |W_c^u| sum_d S'^u_{t,j,d}``
        with ``W`` the FC layer's weight. Through time: ``sum_d |d o_c / dx_{t,j,d}|``
        for the class logit ``o_c`` of the last valid frame (gradient saliency; with
        ``normalize=True`` scaled by ``sigma_x / sigma(o_c)``, the std of the logit
        ``fc(h_t)_c`` over the frames).
    unit : int
        A hidden unit of ``layer``: eq 4, ``sum_d S'^u_{t,j,d}``.
    layer : int
        With ``unit`` only; a ``target`` always refers to the last layer.

    Exactly one of ``target`` and ``unit`` is given.

    Returns
    -------
    ndarray, shape (T, J), or (N, T, J) for a batch
    """
    maps, single = _coordinate_maps(
        model,
        sequence,
        target=target,
        unit=unit,
        mode=mode,
        normalize=normalize,
        layer=layer,
        lengths=lengths,
        chunk_size=chunk_size,
    )
    out = maps.reshape(*maps.shape[:2], -1, 3).sum(-1)
    return out[0] if single else out


def _fc_weight(model_or_fc_weight: Any) -> np.ndarray:
    w = model_or_fc_weight
    if hasattr(w, "fc"):
        w = w.fc.weight
    elif isinstance(w, nn.Linear):
        w = w.weight
    if torch.is_tensor(w):
        w = w.detach().cpu().numpy()
    w = np.asarray(w)
    if w.ndim != 2:
        raise SkvisError(f"FC weight must be (C, H), got shape {w.shape}")
    return check_finite(w, "FC weight")


def class_map(unit_sens: Any, model_or_fc_weight: Any, target: int) -> np.ndarray:
    """Eq 5 from unit sensitivities already computed: ``sum_u |W_c^u| S'^u_{t,j}``.

    The explorer computes `unit_sensitivity` once per sample and re-weights it
    for each class it shows (a matrix-vector product; milliseconds for
    NTU-sized sequences).

    Parameters
    ----------
    unit_sens : ndarray, shape (H, T, J, 3), (H, T, J), (N, H, T, J, 3) or (N, H, T, J)
        From `unit_sensitivity` (any mode; either summed over the axes or not).
    model_or_fc_weight : model, nn.Linear or array (C, H)
        Where ``W`` comes from.
    target : int
        The class ``c``.

    Returns
    -------
    ndarray, shape (T, J), or (N, T, J) for a batch; the dtype of ``unit_sens``.
    """
    w = _fc_weight(model_or_fc_weight)
    s = np.asarray(unit_sens)
    if s.ndim == 5 or (s.ndim == 4 and s.shape[-1] != 3):
        batch = True
    elif s.ndim in (3, 4):
        batch = False
        s = s[None]
    else:
        raise SkvisError(
            f"unit_sens: expected (H, T, J, 3), (H, T, J) or a batch of them, got {s.shape}"
        )
    if s.shape[1] != w.shape[1]:
        raise SkvisError(
            f"unit_sens of shape {np.shape(unit_sens)} has {s.shape[1]} units; "
            f"the FC layer has {w.shape[1]}"
        )
    c = check_index(target, w.shape[0], "target")
    weights = np.abs(w[c]).astype(s.dtype, copy=False)
    flat = s.reshape(s.shape[0], s.shape[1], -1)
    # numpy's own einsum loop: a BLAS gemv is no faster here and, with its threads
    # competing for busy cores, can be 50x slower
    out = np.einsum("h,nhk->nk", weights, flat)
    out = out.reshape(s.shape[0], *s.shape[2:])
    if s.ndim == 5:
        out = out.sum(-1)
    # every entry of unit_sens reaches the result times a finite weight, so a NaN or
    # inf anywhere shows here, in the small result
    if not np.isfinite(out).all():
        raise SkvisError(
            f"unit_sens of shape {np.shape(unit_sens)} contains NaN or infinite values"
        )
    return out if batch else out[0]


class JointSensitivity:
    """Eq 5 (or eq 3 for one unit) per input coordinate, in Captum's shape and vocabulary.

    Parameters
    ----------
    forward_func : SkeletonLSTM or RecurrentClassifier
        The model (Captum calls it ``forward_func``).

    Examples
    --------
    >>> attr = JointSensitivity(model).attribute(x, target=5)  # x (N, T, J, 3)
    >>> attr.shape == x.shape
    True

    ``mode="through_time", normalize=False`` equals
    ``captum.attr.Saliency(model).attribute(x, target=c, abs=True)``.
    """

    multiplies_by_inputs = False

    def __init__(self, forward_func: Any) -> None:
        check_model(forward_func)
        self.forward_func = forward_func

    def has_convergence_delta(self) -> bool:
        return False

    def attribute(
        self,
        inputs: torch.Tensor | tuple[torch.Tensor],
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        unit: int | None = None,
        mode: Mode = "instantaneous",
        normalize: bool = True,
        layer: int = -1,
        chunk_size: int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor]:
        """Attributions of the same shape, dtype and device as ``inputs``.

        Parameters
        ----------
        inputs : Tensor, shape (N, T, J, 3), or a 1-tuple of it
        target : int or sequence of N ints
            A class: instantaneous, ``A_{t,j,d} = sum_u |W_c^u| S'^u_{t,j,d}`` (eq 5
            before the sum over d); through time, ``|d o_c / dx_{t,j,d}|`` (normalized
            as in `joint_sensitivity`).
        additional_forward_args : lengths, or a 1-tuple ``(lengths,)``
            What ``forward_func(inputs, lengths)`` takes besides the inputs.
        unit : int
            Instead of ``target``: one hidden unit of ``layer``, ``S'^u_{t,j,d}``.
        mode, normalize, layer, chunk_size
            As in `joint_sensitivity`.
        """
        as_tuple = isinstance(inputs, tuple)
        if as_tuple:
            if len(inputs) != 1:
                raise SkvisError(f"JointSensitivity takes one input tensor, got {len(inputs)}")
            (x,) = inputs
        else:
            x = inputs
        if not torch.is_tensor(x) or x.dim() != 4:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise SkvisError(f"inputs: expected a tensor of shape (N, T, J, 3), got {shape}")
        lengths = additional_forward_args
        if isinstance(lengths, tuple):
            if len(lengths) != 1:
                raise SkvisError("additional_forward_args: expected (lengths,)")
            (lengths,) = lengths
        if torch.is_tensor(lengths):
            lengths = lengths.detach().cpu().numpy()
        maps, _ = _coordinate_maps(
            self.forward_func,
            x,
            target=target,
            unit=unit,
            mode=mode,
            normalize=normalize,
            layer=layer,
            lengths=lengths,
            chunk_size=chunk_size,
            name="inputs",
        )
        out = torch.as_tensor(maps).reshape(x.shape).to(device=x.device, dtype=x.dtype)
        return (out,) if as_tuple else out


# ---------------------------------------------------------------------------------------------
# Helpers for the explorer
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitRanking:
    """Hidden units of the last layer ranked for one class, most important first.

    Attributes
    ----------
    units : ndarray (H,) int64
        Unit indices, best first.
    scores : ndarray (H,)
        The ranking score of ``units[k]``.
    weights : ndarray (H,)
        The signed FC weight ``W_c^u`` of ``units[k]`` (positive: excitatory).
    by : str
    target : int
    """

    units: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    by: str
    target: int


def rank_units(
    model_or_fc_weight: Any,
    target: int,
    *,
    by: Literal["weight", "sensitivity"] = "weight",
    unit_sens: Any = None,
) -> UnitRanking:
    """Rank the last layer's units for class ``target``.

    Parameters
    ----------
    model_or_fc_weight : model, nn.Linear or array (C, H)
    target : int
    by : {"weight", "sensitivity"}
        ``"weight"``: ``|W_c^u|``. ``"sensitivity"``: ``|W_c^u| * mean(S'^u)``, the
        unit's mean share of the eq-5 class map, from ``unit_sens``.
    unit_sens : ndarray, shape (H, ...) or (N, H, ...)
        From `unit_sensitivity` (a batch counts its zero padding in the mean).

    Returns
    -------
    UnitRanking
        Ties keep the lower unit index first.
    """
    w = _fc_weight(model_or_fc_weight)
    c = check_index(target, w.shape[0], "target")
    row = w[c].astype(np.float64)
    if by == "weight":
        if unit_sens is not None:
            raise SkvisError("unit_sens is only used with by='sensitivity'")
        scores = np.abs(row)
    elif by == "sensitivity":
        if unit_sens is None:
            raise SkvisError("by='sensitivity' needs unit_sens (from unit_sensitivity)")
        s = np.asarray(unit_sens)
        if s.ndim in (3, 4) and s.shape[0] == w.shape[1] and not (s.ndim == 4 and s.shape[-1] != 3):
            mean = s.reshape(s.shape[0], -1).mean(1)
        elif s.ndim in (4, 5) and s.shape[1] == w.shape[1]:
            mean = np.moveaxis(s, 1, 0).reshape(s.shape[1], -1).mean(1)
        else:
            raise SkvisError(
                f"unit_sens of shape {s.shape}: expected (H, T, J[, 3]) or (N, H, T, J[, 3]) "
                f"with H = {w.shape[1]}"
            )
        if not np.isfinite(mean).all():
            raise SkvisError(f"unit_sens of shape {s.shape} contains NaN or infinite values")
        scores = np.abs(row) * mean.astype(np.float64)
    else:
        raise SkvisError(f"by must be 'weight' or 'sensitivity', got {by!r}")
    order = np.argsort(-scores, kind="stable")
    return UnitRanking(order.astype(np.int64), scores[order], row[order], by, c)


def body_part_totals(joint_map: Any, topology: Topology) -> dict[str, np.ndarray]:
    """Sum a joint map over the joints of each body part.

    Parameters
    ----------
    joint_map : ndarray, shape (T, J) (any leading dims, joints last)
        E.g. `joint_sensitivity` or `class_map`.
    topology : Topology
        Gives the joints of each part (`BODY_PARTS`).

    Returns
    -------
    dict
        Part name -> ``(T,)`` totals (the leading dims), for every part of
        `BODY_PARTS`, in its order; a part without joints in ``topology`` is zeros.
    """
    m = np.asarray(joint_map)
    if m.ndim < 1 or m.shape[-1] != topology.num_joints:
        raise SkvisError(
            f"joint_map of shape {m.shape}: expected (T, {topology.num_joints}) for topology "
            f"{topology.name!r}"
        )
    out = {}
    for part in BODY_PARTS:
        idx = list(topology.part_indices(part))
        out[part] = m[..., idx].sum(-1) if idx else np.zeros(m.shape[:-1], dtype=m.dtype)
    return out
