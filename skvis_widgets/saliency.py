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

The paper's equations, one function each: eqs 1-2 `unit_sensitivity` (and the signed
`instantaneous_jacobian`), eq 3 `normalization_scales` (of the spreads from
`sequence_spread`), eq 4 `sum_axes`, eq 5 `weigh_units` (`class_map` applies it to
cached unit maps; `joint_sensitivity` tile by tile while it computes them).

Reading the maps: eq 3 multiplies each coordinate's derivative by that
coordinate's spread over the sequence, so the joints that move most score high
even in an untrained network. What a trained model adds shows against
``normalize=False`` and against the same map for a model with random weights.

Every function takes a `SkeletonLSTM` or any model that follows its protocol
(see `skvis_widgets.adapters`; wrap your own module with
`as_recurrent_classifier`). They run the model in eval mode and restore its
modes, never touch ``requires_grad`` or ``.grad``, work on the model's device
and dtype (nothing goes to the host inside their loops: one copy per chunk of
sequences), and return numpy arrays (float32, or float64 for a float64 model).
A data set larger than memory streams through `iter_unit_sensitivity` or
``unit_sensitivity(..., out=numpy.memmap(...))``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from . import _lstm_kernel
from ._checks import (
    as_model_input,
    check_index,
    check_layer,
    check_lengths,
    check_model,
    check_positive_int,
    check_targets,
    eval_view,
    fc_weight,
)
from .adapters import LayerState, per_frame_jacobian, run_layers_from
from .colors import COLORMAPS, sensitivity_colors  # re-exported: the colours live in colors
from .errors import SkvisError
from .limits import check_memory
from .skeleton import BODY_PARTS, Topology

__all__ = [
    "unit_sensitivity",
    "iter_unit_sensitivity",
    "prepare_kernel",
    "instantaneous_jacobian",
    "joint_sensitivity",
    "class_map",
    "sequence_spread",
    "normalization_scales",
    "sum_axes",
    "weigh_units",
    "JointSensitivity",
    "UnitRanking",
    "rank_units",
    "body_part_totals",
    "sensitivity_colors",
    "COLORMAPS",
]

Mode = Literal["instantaneous", "through_time"]
_MODES = ("instantaneous", "through_time")

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
# The paper's eqs 3-5: one function each
# ---------------------------------------------------------------------------------------------
def sequence_spread(v: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Population standard deviation over a sequence's valid frames, 0 where constant.

    The spread that eq 3 divides and multiplies by.

    Parameters
    ----------
    v : Tensor, shape (N, T, K)
        A unit's response ``h_t^u`` or a raw coordinate ``x_{t,j,d}`` per frame.
    valid : Tensor of bool, shape (N, T), optional
        Which frames count (all when None).

    Returns
    -------
    Tensor, shape (N, K)
        ``v``'s dtype. A std below ``16 * eps * (1 + max|v|)`` (constant up to rounding,
        or a one-frame sequence) is returned as exactly 0.
    """
    if valid is None:
        valid = torch.ones(v.shape[:2], dtype=torch.bool, device=v.device)
    std, const = _masked_std(v, valid)
    return torch.where(const, torch.zeros_like(std), std)


def normalization_scales(
    response_std: torch.Tensor, input_std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq 3, ``S' = S * sigma_x[j, d] / sigma_h[u]``, as its two factors.

    Parameters
    ----------
    response_std : Tensor, shape (N, K)
        ``sigma_h`` of each response (`sequence_spread`; 0 for a constant one).
    input_std : Tensor, shape (N, F)
        ``sigma_x`` of each raw coordinate (``F = J * 3``).

    Returns
    -------
    row : Tensor, shape (N, K)
        ``1 / sigma_h``, and 0 for a constant response (eq 3 then gives 0, not inf).
    col : Tensor, shape (N, F)
        ``sigma_x`` (0 for a constant coordinate).

    ``S'[n, k, t, f] = S[n, k, t, f] * row[n, k] * col[n, f]``. Both are positive or
    zero, so they commute with ``|.|``: the engine folds them into the small factors of
    its products instead of passing over the ``(N, K, T, F)`` result again.
    """
    row = torch.where(response_std > 0, 1 / response_std, torch.zeros_like(response_std))
    return row, input_std


def sum_axes(sens: Any) -> Any:
    """Eq 4: a joint's sensitivity, ``S_{t,j} = sum_d S'_{t,j,d}`` over the axes x, y, z.

    Parameters
    ----------
    sens : ndarray or Tensor, shape (..., J, 3)

    Returns
    -------
    ndarray or Tensor, shape (..., J)
    """
    return sens.sum(-1)


def weigh_units(sens: Any, weights: Any) -> Any:
    """Eq 5's sum over units: ``sum_u w^u S^u`` with ``w^u = |W_c^u|`` (FC weights).

    Parameters
    ----------
    sens : ndarray or Tensor, shape (N, H, ...)
        Per-unit maps (e.g. ``(N, H, T, J)`` from eq 4, or ``(N, H, T, J, 3)``).
    weights : ndarray or Tensor, shape (N, H) or (H,)
        The class's non-negative unit weights, per sample or shared.

    Returns
    -------
    ndarray or Tensor, shape (N, ...), the type and dtype of ``sens``.
    """
    n, h = sens.shape[:2]
    if torch.is_tensor(sens):
        w = weights.to(sens.dtype).expand(n, h)[:, None, :]
        return (w @ sens.reshape(n, h, -1)).reshape(n, *sens.shape[2:])
    w = np.broadcast_to(np.asarray(weights, dtype=sens.dtype), (n, h))
    # numpy's own einsum loop: a BLAS gemv is no faster here and, with its threads
    # competing for busy cores, can be 50x slower
    return np.einsum("nh,nhk->nk", w, sens.reshape(n, h, -1)).reshape(n, *sens.shape[2:])


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
def _input_jacobian(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Per-frame d(preprocess)/dx: ``(F,)`` diagonal, ``(N, T, F)`` diagonal, or ``(N, T, F', F)``."""
    fn = getattr(model, "preprocess_jacobian", None)
    if callable(fn):
        return fn(x)
    # SkeletonLSTM's own preprocess is the standardization (x - feature_mean) / feature_std.
    # Recognised by name rather than isinstance so that saliency need not import model.py;
    # a subclass that overrides preprocess falls through to the general Jacobian.
    pre = getattr(type(model), "preprocess", None)
    if (
        getattr(pre, "__qualname__", "") == "SkeletonLSTM.preprocess"
        and getattr(pre, "__module__", "") == "skvis_widgets.model"
    ):
        return 1.0 / model.feature_std.to(x.dtype)
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


def _affine_scan(a: torch.Tensor, b: torch.Tensor, c0: torch.Tensor | None = None) -> torch.Tensor:
    """``c_t = a_t * c_{t-1} + b_t`` along dim 1 from ``c_{-1} = c0`` (default 0), in log2(T) steps.

    A Hillis-Steele scan of the affine maps ``c -> a c + b``: products of the
    forget gates only (no division), so as stable as the sequential loop.
    """
    a, b = a.clone(), b.clone()
    if c0 is not None:
        b[:, 0] += a[:, 0] * c0
    d, t = 1, a.shape[1]
    while d < t:
        # the right-hand sides are new tensors made of the old values: no aliasing
        b[:, d:] += a[:, d:] * b[:, :-d]
        if 2 * d < t:
            a[:, d:] = a[:, d:] * a[:, :-d]
        d *= 2
    return b


def _shift(v: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """The previous frame's value along dim 1: ``first`` (default zero) before the first."""
    head = torch.zeros_like(v[:, :1]) if first is None else first[:, None].to(v.dtype)
    return torch.cat([head, v[:, :-1]], 1)


def _local(
    kind: str,
    x_in: torch.Tensor,
    h: torch.Tensor,
    w: tuple[torch.Tensor, ...],
    start: LayerState | None = None,
) -> dict:
    """The gates at every frame and the local derivatives the engine needs, ``(N, T, ...)``.

    ``start`` is the layer's state before the first frame (zero when None), for a
    block of frames that continues a sequence.

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
    h0 = c0 = None
    if start is not None:
        h0, c0 = start if isinstance(start, tuple) else (start, None)
    h_prev = _shift(h, h0)
    if kind == "lstm":
        both = torch.cat([x_in, h_prev], -1) @ torch.cat([w_ih, w_hh], 1).T
        ai, af, ag, ao = (both + (b_ih + b_hh)).chunk(4, -1)
        i, f, o = torch.sigmoid(ai), torch.sigmoid(af), torch.sigmoid(ao)
        g = torch.tanh(ag)
        c = _affine_scan(f, i * g, c0)
        tc = torch.tanh(c)
        ko = o * (1 - tc * tc)  # dh/dc
        cc = torch.stack([g * i * (1 - i), _shift(c, c0) * f * (1 - f), i * (1 - g * g)], 2)
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
    """Signed, scaled ``dh_t^u / dx_t`` for the top layer's ``rows``: ``(N, K, T, F)``.

    The general path (stacked layers, a preprocess with a full Jacobian); a single
    layer with a diagonal preprocess goes through `_Tiles` instead.
    """
    top = caches[-1]
    coef = top["coef"]  # (N, T, G, H)
    g = coef.shape[2]
    w = weights[-1][0].reshape(g, coef.shape[3], -1)  # (G, H, In)
    if rows is not None:
        coef, w = coef[..., rows], w[:, rows]
    coef = coef * valid[:, :, None, None].to(coef.dtype)
    if row_scale is not None:
        coef = coef * row_scale[:, None, None, :]
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
    seed_mask: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Backward through one layer for K cotangents side by side.

    ``inj`` ``(N, K, T, H)`` is dL/dh_t arriving from above at every frame; ``seed``
    ``(N, K, H)`` (rows of max-magnitude 1) arrives at the frames where ``seed_mask``
    ``(N, T)`` is 1. Returns dL/d(layer input) ``(N, K, T, In)``, written into ``out``
    when given (a zeroed tensor of that shape, e.g. a view of the caller's result).

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
    src = inj if inj is not None else seed
    assert src is not None, "a seed or an injection"
    k = src.shape[1]
    if out is None:
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


class _Spread:
    """`sequence_spread` of a sequence seen in blocks of frames.

    Chan, Golub and LeVeque's pairwise update of count, mean and sum of squared
    deviations, in float64, so the blocks give the one-pass value up to rounding.
    """

    def __init__(self) -> None:
        self.cnt: torch.Tensor | None = None

    def add(self, v: torch.Tensor, valid: torch.Tensor) -> None:
        m = valid[..., None].to(torch.float64)
        v64 = v.to(torch.float64)
        cnt = m.sum(1)
        mean = (v64 * m).sum(1) / cnt.clamp(min=1)
        m2 = (((v64 - mean[:, None]) * m) ** 2).sum(1)
        ref = (v64.abs() * m).amax(1)
        if self.cnt is None:
            self.cnt, self.mean, self.m2, self.ref = cnt, mean, m2, ref
            return
        tot = self.cnt + cnt
        share = torch.where(tot > 0, cnt / tot.clamp(min=1), torch.zeros_like(tot))
        d = mean - self.mean
        self.mean = self.mean + d * share
        self.m2 = self.m2 + m2 + d * d * self.cnt * share
        self.cnt, self.ref = tot, torch.maximum(self.ref, ref)

    def result(self, dtype: torch.dtype) -> torch.Tensor:
        assert self.cnt is not None
        std = (self.m2 / self.cnt).sqrt().to(dtype)
        const = std <= _CONST * torch.finfo(dtype).eps * (1 + self.ref.to(dtype))
        return torch.where(const, torch.zeros_like(std), std)


#: Through-time working set per chunk of sequences, in tensor elements.
_WORK = 2**25
#: Per-frame state (gates, local derivatives) per chunk of sequences, in elements.
_STATE = 2**22
#: Elements per tile of a reduced (class or one-unit) map: per-unit values of one tile
#: are made, weighed and dropped while they are in the cache, so a class map never
#: holds its ``(H, T, J, 3)`` intermediate.
_TILE = 2**18
#: Cotangent rows from which a through-time chunk holds one sequence (see `_plan`).
_ROWS = 64
#: Per-frame state per block of frames when the result is a reduced map.
_BLOCK_STATE = 2**19
#: Floats of per-frame state per frame and unit (gates and local derivatives, ~14).
_PER_FRAME = 14


@dataclass
class _Job:
    """One call's checked inputs and what to produce (see `_compute`)."""

    model: Any
    x: torch.Tensor  # (N, T, J, 3) on the model's device and dtype
    lens: torch.Tensor  # (N,) on the device
    mode: str
    layer: int
    normalize: bool
    signed: bool
    rows: torch.Tensor | None  # one unit, or None for all units
    weights: torch.Tensor | None  # (N, H) |W_c| per sample: eq 5 (instantaneous class)
    cot: torch.Tensor | None  # (N, 1, H) W_c per sample: a class logit through time
    kind: str
    result: str  # "units": (N, K, T, F); "coords": (N, T, F)


def _plan(job: _Job, chunk_size: int | None) -> tuple[int, int]:
    """Sequences per chunk and frames per block.

    The batch layout. A chunk of sequences runs the recurrent layer in one batched
    call (amortizing its per-frame overhead); the products that make the ``(H, T, F)``
    result of each sequence are then written one sequence (and, for a reduced map,
    one tile of units and frames) at a time, straight into the caller's result. The
    first engine made the whole chunk's ``(n, H, T, F)`` product, took ``|.|`` in a
    second pass and copied it into the result in a third: with n of 4-10 NTU-size
    sequences that intermediate (50-135 MiB) overflowed the 32 MiB cache, so every
    pass ran at memory speed and a batch cost more per sequence than a loop of
    one-sequence calls (exponent 1.14-1.28 in N). Now the per-chunk memory is the
    per-frame state (`_STATE` elements) and one sequence's result, whatever N.
    """
    rnn = job.model.rnn
    n, t = job.x.shape[:2]
    hdim = rnn.hidden_size
    if job.mode == "through_time":
        k = 1 if (job.rows is not None or job.cot is not None) else hdim
        width = max(job.x[0, 0].numel(), hdim, getattr(rnn, "input_size", 0))
        per_sample = k * t * width * (2 if rnn.num_layers > 1 else 1) + 8 * t * hdim
        default = max(1, _WORK // per_sample)
        if k >= _ROWS:
            # The backward's per-frame product has n * K rows. With every unit (K = H) one
            # sequence fills BLAS's blocks already: more sequences per chunk add no speed,
            # only memory traffic and padding (chunks of 6 ragged MSR sequences, H = 256,
            # ran at 0.7-0.9x a loop of one-sequence calls; one per chunk equals the loop).
            # Class and one-unit maps (K = 1) gain from batching and keep large chunks.
            default = 1
        t_block = t
    else:
        layers = rnn.num_layers
        per_frame = _PER_FRAME * hdim * layers
        if layers > 1 or job.result == "units":
            per_frame += (1 if job.rows is not None else hdim) * hdim * (layers - 1) * 2
        if job.result == "units":
            t_block = t  # the result dwarfs the state: one block
            default = max(1, _STATE // (per_frame * t))
        else:
            # reduced maps: blocks of frames so that a long sequence's state stays
            # bounded; then as many sequences as fit
            t_block = max(1, min(t, _BLOCK_STATE // per_frame))
            default = max(1, _BLOCK_STATE // (per_frame * t_block))
    if chunk_size is None:
        chunk_size = default
    else:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    return min(chunk_size, n), t_block


def _job(
    model: Any,
    sequence: Any,
    lengths: Any,
    *,
    mode: str,
    layer: int,
    normalize: bool,
    units: int | None,
    target: Any,
    result: str,
    name: str,
    signed: bool,
) -> tuple[_Job, bool]:
    """Check a call's arguments once: the `_Job` for the whole batch, and ``single``."""
    _check_mode(mode)
    rnn, fc = check_model(model)
    layer = check_layer(rnn.num_layers, layer)
    x, lens, single = as_model_input(model, sequence, lengths, name)
    hdim = rnn.hidden_size
    rows = weights = cot = None
    if units is not None:
        rows = torch.tensor([check_index(units, hdim, "unit")], device=x.device)
    if target is not None:
        if layer != rnn.num_layers - 1:
            raise SkvisError(
                f"target {target!r} weighs the last layer's units by the FC layer; "
                f"layer={layer} is not the last of {rnn.num_layers}"
            )
        targets = check_targets(target, x.shape[0], fc.out_features).to(x.device)
        w = fc.weight.detach()[targets].to(x.dtype)  # (N, H)
        if mode == "through_time":
            cot = w[:, None, :]  # the logit minus its bias is W_c . h
        else:
            weights = w.abs()  # eq 5's |W_c^u|
    kind = "lstm" if isinstance(rnn, nn.LSTM) else "gru"
    job = _Job(model, x, lens, mode, layer, normalize, signed, rows, weights, cot, kind, result)
    return job, single


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
    result: str,
    name: str = "sequence",
    signed: bool = False,
    out: Any = None,
    t_block: int | None = None,
) -> tuple[np.ndarray, bool]:
    """Checked inputs -> the result ``(N, K, T, F)`` (``result="units"``) or ``(N, T, F)``.

    ``"units"``: every unit (``K = H``), or the one of ``units``; ``"coords"``: one
    unit's, one class's (eq 5 before eq 4) or one class logit's per-coordinate map.
    ``out``: the caller's array to fill, of the result's shape (without ``N`` for a
    single sequence) and dtype, writeable and C-contiguous (e.g. a ``numpy.memmap``).
    ``t_block`` overrides the frames per block (tests). Also returns ``single``.
    """
    job, single = _job(
        model,
        sequence,
        lengths,
        mode=mode,
        layer=layer,
        normalize=normalize,
        units=units,
        target=target,
        result=result,
        name=name,
        signed=signed,
    )
    n, t = job.x.shape[:2]
    f = job.x[0, 0].numel()
    k = 1 if job.rows is not None else model.rnn.hidden_size
    shape = (n, k, t, f) if result == "units" else (n, t, f)
    dtype = _numpy_dtype(job.x.dtype)
    chunk, tb = _plan(job, chunk_size)
    if out is None:
        per = k if result == "units" else 1
        check_memory(
            (n * per * t * f + chunk * per * t * f) * job.x.element_size(),
            f"sensitivity of {n} sequence(s) of {t} frames"
            + (f" for all {k} units" if per > 1 else ""),
            "pass fewer sequences per call or stream them (iter_unit_sensitivity, or "
            "out=numpy.memmap(...))"
            + (", or one unit / class at a time (joint_sensitivity)" if per > 1 else ""),
        )
        res = np.empty(shape, dtype)
    else:
        public = (*shape[:-1], *job.x.shape[2:])  # (..., J, 3)
        res = _check_out(out, public[1:] if single else public, dtype).reshape(shape)
    _run(job, res, chunk, tb if t_block is None else t_block)
    return res, single


def prepare_kernel(dtype: torch.dtype = torch.float32, background: bool = False) -> bool:
    """Compile the CPU kernel of the all-unit instantaneous sensitivity, or load it from
    numba's disk cache.

    On the CPU, `unit_sensitivity` and `instantaneous_jacobian` of an LSTM's first layer
    run through a compiled kernel (`_lstm_kernel`: 1.7x faster than the torch path at
    NTU size). Its first use in a process starts its compile in a background thread
    (about 2 s in a new environment, a fraction of a second from the cache) and takes the
    torch path until it is done; call this first to have every call take the kernel.
    Results are the same either way, up to rounding (tested).

    Parameters
    ----------
    dtype : torch.dtype
        The model's dtype: ``torch.float32`` or ``torch.float64`` (one compile each;
        for any other, the torch path serves every call and this returns False).
    background : bool
        Compile in a daemon thread and return at once (as the explorer does when it
        opens).

    Returns
    -------
    bool
        Whether the kernel is ready (False where numba is missing, or while a background
        compile runs).
    """
    if dtype not in (torch.float32, torch.float64):
        return False
    return _lstm_kernel.ready(_numpy_dtype(dtype), wait=not background)


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return np.dtype(np.float64 if dtype == torch.float64 else np.float32)


def _check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise SkvisError(f"out must be a numpy array (or numpy.memmap), got {type(out).__name__}")
    want = tuple(int(s) for s in shape)
    if out.shape != want or out.dtype != dtype:
        raise SkvisError(
            f"out of shape {out.shape} and dtype {out.dtype}: expected shape {want} and "
            f"dtype {dtype}"
        )
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise SkvisError(f"out of shape {out.shape} must be writeable and C-contiguous")
    return out


def _run(job: _Job, res: np.ndarray, chunk: int, t_block: int) -> None:
    """Fill ``res`` (``(N, K, T, F)`` or ``(N, T, F)``) one chunk of sequences at a time.

    Each chunk runs only up to its longest sequence. Where the result per sequence is
    small next to the work (through time, or a reduced map) and lengths differ, the
    chunks are taken in order of length, so that a chunk's sequences end close together
    (a loop of one-sequence calls gets that for free); an all-unit instantaneous result
    is written in place in the caller's order instead (reordering would cost a copy of
    the largest array in the call).
    """
    n, t = job.x.shape[:2]
    on_host = job.x.device.type == "cpu"
    lens = job.lens.cpu()  # the one copy to the host before the loops
    order: torch.Tensor | None = None
    if (job.mode == "through_time" or job.result != "units") and n > chunk:
        if bool((lens != lens[0]).any()):
            order = torch.argsort(lens, stable=True)
    with eval_view(job.model) as model, torch.no_grad():
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            idx: slice | np.ndarray = slice(start, stop)
            if order is not None:
                idx = order[start:stop].numpy()
            t_max = int(lens[idx].max())
            sel = torch.as_tensor(idx, device=job.x.device) if order is not None else idx
            part = replace(
                job,
                model=model,
                x=job.x[sel, :t_max],
                lens=job.lens[sel],
                weights=None if job.weights is None else job.weights[sel],
                cot=None if job.cot is None else job.cot[sel],
            )
            # On the CPU, in the caller's order, the engine writes into the result itself;
            # otherwise into a tensor on the device, copied to the host once per chunk.
            direct = on_host and order is None
            if direct:
                whole = torch.from_numpy(res[idx])
                dest = whole[..., :t_max, :]
                if t_max < t:
                    whole[..., t_max:, :] = 0
            else:
                shape = (stop - start, *res.shape[1:-2], t_max, res.shape[-1])
                dest = torch.empty(shape, dtype=job.x.dtype, device=job.x.device)
            if job.mode == "instantaneous":
                _instantaneous_chunk(part, dest, t_block, whole if direct else None)
            else:
                _through_time_chunk(part, dest)
            if not direct:
                res[idx, ..., :t_max, :] = dest.cpu().numpy()
                res[idx, ..., t_max:, :] = 0


def _responses(h: torch.Tensor, job: _Job) -> torch.Tensor:
    """The responses whose spread eq 3 divides by: ``(N, T, K)``."""
    if job.cot is not None:
        return h @ job.cot.transpose(1, 2)
    return h if job.rows is None else h[..., job.rows]


def _instantaneous_chunk(
    job: _Job, dest: torch.Tensor, t_block: int, whole: torch.Tensor | None = None
) -> None:
    """Instantaneous maps of one chunk of sequences into ``dest``, a block of frames at a time.

    Blocks continue each other: every block's recurrent run starts from the state the
    previous one ended in. With ``normalize``, eq 3's response spread over the whole
    sequence comes first: from the same forward run when there is one block, else from
    a forward-only pass over the blocks.

    ``whole``: the chunk's rows of the caller's result on the host, all their frames
    (``dest`` is its first ``t`` frames); given, the all-unit maps of an LSTM's first
    layer come from the compiled kernel once it is ready (`_compiled_units`). (Reduced
    maps stay on the torch path: its blocks of frames bound their memory, where the
    kernel keeps O(T H) per sequence, small next to an all-unit result only.)
    """
    model, x = job.model, job.x
    rnn = model.rnn
    n, t = x.shape[:2]
    weights = [_weights(rnn, k) for k in range(job.layer + 1)]
    valid = torch.arange(t, device=x.device) < job.lens[:, None]
    if (
        whole is not None
        and job.result == "units"
        and job.rows is None
        and job.kind == "lstm"
        and job.layer == 0
        and job.cot is None
        and _lstm_kernel.ready(_numpy_dtype(x.dtype))
    ):
        pj = _input_jacobian(model, x)
        if pj.dim() == 1:
            _compiled_units(job, weights[0], pj, valid, whole)
            return
    blocks = [(s, min(t, s + t_block)) for s in range(0, t, t_block)]
    row_scale = col_scale = None
    kept: tuple | None = None  # the one block's forward run, reused below
    if job.normalize:
        if len(blocks) == 1:
            feats = model.preprocess(x)
            outs, _ = run_layers_from(rnn, feats, None, job.layer)
            kept = (feats, outs)
            std_h = sequence_spread(_responses(outs[job.layer], job), valid)
        else:
            acc, carry = _Spread(), None
            for t0, t1 in blocks:
                feats = model.preprocess(x[:, t0:t1])
                outs, carry = run_layers_from(rnn, feats, carry, job.layer)
                acc.add(_responses(outs[job.layer], job), valid[:, t0:t1])
            std_h = acc.result(x.dtype)
        row_scale, col_scale = normalization_scales(
            std_h, sequence_spread(x.reshape(n, t, -1), valid)
        )
    state: list | None = None  # each layer's state before the block
    for t0, t1 in blocks:
        xb = x[:, t0:t1]
        if kept is not None:
            (feats, outs), kept = kept, None
            after = None
        else:
            feats = model.preprocess(xb)
            outs, after = run_layers_from(rnn, feats, state, job.layer)
        ins = [feats, *outs[:-1]]
        caches = [
            _local(job.kind, ins[k], outs[k], weights[k], None if state is None else state[k])
            for k in range(job.layer + 1)
        ]
        pj = _input_jacobian(model, xb)
        vb = valid[:, t0:t1]
        if len(caches) == 1 and pj.dim() == 1:
            _tiles(job, caches[0]["coef"], weights[0][0], pj, row_scale, col_scale, vb, dest, t0)
        else:
            m = _instantaneous(caches, weights, job.rows, pj, row_scale, col_scale, vb)
            if not job.signed:
                m.abs_()
            _store(job, m, dest, t0)
        state = after


def _compiled_units(
    job: _Job,
    w: tuple[torch.Tensor, ...],
    pj: torch.Tensor,
    valid: torch.Tensor,
    whole: torch.Tensor,
) -> None:
    """`_instantaneous_chunk` for every unit of an LSTM's first layer with a
    diagonal preprocess Jacobian ``pj`` (F,), through `_lstm_kernel`, into ``whole``.

    The same quantities as `_local` and `_tiles`, computed on the CPU in compiled loops:
    the forward keeps its local derivatives, and each unit's ``(T, F)`` block of the
    result is written once. Each sequence runs to its own length; its padding frames
    (up to the chunk's ``t``) are set to zero. With torch's intra-op threads above one,
    the sequences' forwards, and each sequence's units, are shared among that many
    threads (as the torch path's matmuls would be).
    """
    model, x = job.model, job.x
    n, t = x.shape[:2]
    w_ih, w_hh, b_ih, b_hh = w
    hdim = w_hh.shape[1]
    xp = (
        torch.addmm(b_ih + b_hh, model.preprocess(x).reshape(n * t, -1), w_ih.T)
        .reshape(n, t, 4 * hdim)
        .numpy()
    )
    whh_t = w_hh.T.contiguous().numpy()
    dtype = xp.dtype
    h = np.zeros((n, t, hdim), dtype)
    coef = np.empty((n, t, 4 * hdim), dtype)
    lens = job.lens.tolist()
    threads = torch.get_num_threads()
    _lstm_kernel.parallel(
        [
            functools.partial(
                _lstm_kernel.forward, xp[i, :length], whh_t, h[i, :length], coef[i, :length]
            )
            for i, length in enumerate(lens)
        ],
        threads,
    )
    row_scale = np.ones((n, hdim), dtype)
    cols = pj.expand(n, -1)
    if job.normalize:
        std_h = sequence_spread(_responses(torch.from_numpy(h), job), valid)
        rs, cs = normalization_scales(std_h, sequence_spread(x.reshape(n, t, -1), valid))
        row_scale = rs.numpy()
        cols = cols * cs
    w4 = w_ih.reshape(4, hdim, -1)  # (G, H, F)
    cuts = np.linspace(0, hdim, min(threads, hdim) + 1).round().astype(int).tolist()
    calls = []
    for i, length in enumerate(lens):
        args = (coef[i, :length], (w4 * cols[i]).numpy(), row_scale[i], job.signed)
        out = whole[i].numpy()
        for u0, u1 in zip(cuts[:-1], cuts[1:], strict=True):
            calls.append(functools.partial(_lstm_kernel.unit_blocks, *args, out, t, u0, u1))
    _lstm_kernel.parallel(calls, threads)


def _store(job: _Job, m: torch.Tensor, dest: torch.Tensor, t0: int) -> None:
    """Frames ``t0..`` of ``m`` ``(n, K, tb, F)`` into ``dest`` as the job's result."""
    tb = m.shape[2]
    if job.result == "units":
        dest[:, :, t0 : t0 + tb] = m
    elif job.weights is not None:
        dest[:, t0 : t0 + tb] = weigh_units(m, job.weights)  # eq 5
    else:
        dest[:, t0 : t0 + tb] = m[:, 0]


def _tiles(
    job: _Job,
    coef: torch.Tensor,
    w_ih: torch.Tensor,
    pj: torch.Tensor,
    row_scale: torch.Tensor | None,
    col_scale: torch.Tensor | None,
    valid: torch.Tensor,
    dest: torch.Tensor,
    t0: int,
) -> None:
    """One layer, a diagonal preprocess: ``sum_g coef[t, g, u] W_ih[g, u, f]`` tile by tile.

    Every scale is positive, so it goes into a small factor: the valid-frame mask and
    ``1 / sigma_h`` into ``coef`` ``(n, tb, G, H)``, the preprocess's Jacobian and
    ``sigma_x`` into ``W_ih``. Each sequence's product is then one batched matmul
    ``(K, tb, G) @ (K, G, F)`` written, for all units, straight into ``dest`` and
    made non-negative in place while it is still in the cache; for a class (eq 5), a
    tile of units at a time is made and weighed, so the ``(H, T, F)`` product never
    exists.
    """
    n, tb, g, hdim = coef.shape
    w = w_ih.reshape(g, hdim, -1)  # (G, H, F)
    if job.rows is not None:
        coef, w = coef[..., job.rows], w[:, job.rows]
    scale = valid[:, :, None, None].to(coef.dtype)
    if row_scale is not None:
        scale = scale * row_scale[:, None, None, :]
    lhs = (coef * scale).permute(0, 3, 1, 2).contiguous()  # (n, K, tb, G)
    cols = pj if col_scale is None else pj * col_scale  # (F,) or (n, F)
    f = w.shape[-1]
    rhs = (w.transpose(0, 1)[None] * cols.reshape(-1, 1, 1, f)).contiguous()  # (1|n, K, G, F)
    k = lhs.shape[1]
    for i in range(n):
        r = rhs[i if rhs.shape[0] > 1 else 0]
        if job.result == "units":
            d = dest[i, :, t0 : t0 + tb]
            if d.is_contiguous():
                torch.bmm(lhs[i], r, out=d)
            else:
                d.copy_(torch.bmm(lhs[i], r))
            if not job.signed:
                d.abs_()
        elif job.weights is None:
            p = torch.bmm(lhs[i], r)[0]
            dest[i, t0 : t0 + tb] = p if job.signed else p.abs_()
        else:
            step = max(1, _TILE // (tb * f))
            acc: torch.Tensor | None = None
            for k0 in range(0, k, step):
                p = torch.bmm(lhs[i, k0 : k0 + step], r[k0 : k0 + step]).abs_()
                part = weigh_units(p[None], job.weights[i : i + 1, k0 : k0 + step])[0]  # eq 5
                acc = part if acc is None else acc.add_(part)
            assert acc is not None
            dest[i, t0 : t0 + tb] = acc


def _through_time_chunk(job: _Job, dest: torch.Tensor) -> None:
    """Through-time maps of one chunk of sequences into ``dest`` (one backward pass)."""
    model, x, lens = job.model, job.x, job.lens
    rnn = model.rnn
    n, t = x.shape[:2]
    feats = model.preprocess(x)
    pj = _input_jacobian(model, x)
    outs, _ = run_layers_from(rnn, feats, None, job.layer)
    h = outs[job.layer]
    valid = torch.arange(t, device=x.device) < lens[:, None]
    row_scale = col_scale = None
    if job.normalize:
        std_h = sequence_spread(_responses(h, job), valid)
        row_scale, col_scale = normalization_scales(
            std_h, sequence_spread(x.reshape(n, t, -1), valid)
        )
    weights = [_weights(rnn, k) for k in range(job.layer + 1)]
    ins = [feats, *outs[:-1]]
    caches = [_local(job.kind, ins[k], outs[k], weights[k]) for k in range(job.layer + 1)]
    cot = job.cot
    if cot is None:
        eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
        cot = (eye if job.rows is None else eye[job.rows])[None].expand(n, -1, -1)
    # Seeds of unit size (the flush threshold is relative to them); scales applied after.
    seed_size = cot.abs().amax(-1)  # (N, K)
    cot = cot / torch.where(seed_size > 0, seed_size, 1)[..., None]
    out_scale = seed_size if row_scale is None else seed_size * row_scale
    seed_mask = (torch.arange(t, device=x.device) == (lens - 1)[:, None]).to(h.dtype)
    t_end = int(lens.max())
    # all units, one layer, a diagonal preprocess: the backward pass writes the result itself
    direct = job.result == "units" and job.layer == 0 and pj.dim() == 1
    if direct:
        dest[:, :, t_end:] = 0
    inj: torch.Tensor | None = None
    for k in range(job.layer, -1, -1):
        inj = _bptt(
            caches[k],
            weights[k],
            t_end,
            inj,
            cot if k == job.layer else None,
            seed_mask,
            dest if direct else None,
        )
    assert inj is not None
    grad = inj
    if pj.dim() == 1:
        cols = pj if col_scale is None else pj * col_scale
        grad.mul_(out_scale[:, :, None, None] * cols.reshape(-1, 1, 1, cols.shape[-1])).abs_()
    else:
        grad = _chain_input(grad, pj)
        if col_scale is not None:
            grad.mul_(col_scale[:, None, None, :])
        grad.mul_(out_scale[:, :, None, None]).abs_()
    if not direct:
        dest.copy_(grad if job.result == "units" else grad[:, 0])


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
    out: np.ndarray | None = None,
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
        Eq 3 (`normalization_scales`): multiply by ``sigma_x[j, d] / sigma_h[u]``, the
        population standard deviations over the sequence's valid frames of the raw
        coordinate and of the unit's response ``h_t^u``. A constant coordinate or unit
        (std below ``16 * eps * (1 + max|v|)``) gives 0, never inf or NaN; so does a
        one-frame sequence.
    layer : int
        Which recurrent layer's units (default the last). For ``layer > 0`` the
        instantaneous Jacobian is the product of the per-layer ones down the stack.
    lengths : array of N ints, optional
        Valid frames of each sequence of a batch; frames past them are 0.
    chunk_size : int, optional
        Sequences per batched recurrent run; the default bounds the per-frame state
        (gates, local derivatives) near 2**22 elements, and through time the working
        set near 2**25. The result, ``N * H * T * J * 3`` values, is written in place
        one sequence at a time.
    out : ndarray, optional
        Where to write the result: a writeable, C-contiguous array of the result's
        shape and dtype, e.g. a ``numpy.memmap`` for a data set larger than memory
        (see also `iter_unit_sensitivity`). Returned.

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
    res, single = _compute(
        model,
        sequence,
        lengths,
        mode=mode,
        layer=layer,
        normalize=normalize,
        chunk_size=chunk_size,
        result="units",
        out=out,
    )
    if out is not None:
        return out
    res = res.reshape(*res.shape[:3], -1, 3)
    return res[0] if single else res


def iter_unit_sensitivity(
    model: Any,
    sequences: Any,
    *,
    lengths: Any = None,
    batch_size: int | None = None,
    mode: Mode = "instantaneous",
    normalize: bool = True,
    layer: int = -1,
    progress: bool = False,
) -> Iterator[tuple[slice, np.ndarray]]:
    """`unit_sensitivity` of a data set, one batch at a time: memory bounded by the batch.

    Parameters
    ----------
    model, mode, normalize, layer
        As in `unit_sensitivity`.
    sequences : array, shape (N, T, J, 3)
        Any array that slices along its first axis without loading the rest (a
        ``numpy.memmap``, an HDF5 or zarr dataset, a list of equal-length sequences).
    lengths : array of N ints, optional
        Valid frames per sequence.
    batch_size : int, optional
        Sequences per yielded batch; default: a result of about 2**25 values (128 MiB
        in float32), at least one sequence.
    progress : bool
        Show a tqdm bar over the sequences.

    Yields
    ------
    sl : slice
        Which sequences of ``sequences`` the batch holds.
    units : ndarray, shape (n, H, T, J, 3)
        Their unit sensitivities, as `unit_sensitivity` gives them (each batch is a
        fresh array; reduce or store it, e.g. into a ``numpy.memmap``, and drop it).

    Stopping the iteration (``break``, or closing the generator) stops the work; no
    state is left behind.

    Examples
    --------
    >>> store = np.lib.format.open_memmap("units.npy", "w+", np.float32, (n, h, t, j, 3))
    >>> for sl, units in iter_unit_sensitivity(model, data):
    ...     store[sl] = units
    """
    rnn, _ = check_model(model)
    shape = getattr(sequences, "shape", None)
    if shape is None:
        sequences = np.asarray(sequences)
        shape = sequences.shape
    if len(shape) != 4 or shape[-1] != 3:
        raise SkvisError(f"sequences: expected shape (N, T, J, 3), got {tuple(shape)}")
    n, t = int(shape[0]), int(shape[1])
    if n == 0:
        raise SkvisError(f"sequences: empty data set (shape {tuple(shape)})")
    if lengths is not None:
        lengths = check_lengths(lengths, n, t, tuple(shape)).numpy()
    if batch_size is None:
        per = rnn.hidden_size * t * int(np.prod(shape[2:]))
        batch_size = max(1, 2**25 // per)
    else:
        batch_size = check_positive_int(batch_size, "batch_size")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="unit sensitivity", unit="seq")
    try:
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            units = unit_sensitivity(
                model,
                sequences[sl],
                mode=mode,
                normalize=normalize,
                layer=layer,
                lengths=None if lengths is None else lengths[sl],
            )
            if bar is not None:
                bar.update(sl.stop - sl.start)
            yield sl, units
    finally:
        if bar is not None:
            bar.close()


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
    res, single = _compute(
        model,
        sequence,
        lengths,
        mode="instantaneous",
        layer=layer,
        normalize=False,
        chunk_size=chunk_size,
        result="units",
        signed=True,
    )
    res = res.reshape(*res.shape[:3], -1, 3)
    return res[0] if single else res


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
    t_block: int | None = None,
) -> tuple[np.ndarray, bool]:
    """Per-coordinate maps ``(N, T, J*3)``: eq 3 for a unit, eq 5 before the sum over d."""
    if (target is None) == (unit is None):
        raise SkvisError(
            f"give exactly one of target= (a class) and unit= (a hidden unit); "
            f"got target={target!r}, unit={unit!r}"
        )
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
        result="coords",
        name=name,
        t_block=t_block,
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

    Exactly one of ``target`` and ``unit`` is given. A class map is made a tile of
    units and frames at a time (and a long sequence a block of frames at a time), so
    its memory is a small multiple of its result plus a working set that does not
    grow with the sequence, never the ``(H, T, J, 3)`` of every unit.

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
    out = sum_axes(maps.reshape(*maps.shape[:2], -1, 3))
    return out[0] if single else out


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
    w = fc_weight(model_or_fc_weight)
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
    out = weigh_units(s, np.abs(w[c]))  # eq 5
    if s.ndim == 5:
        out = sum_axes(out)  # eq 4
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
    w = fc_weight(model_or_fc_weight)
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
