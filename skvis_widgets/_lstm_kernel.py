"""The all-unit instantaneous sensitivity (eqs 1-3) of a one-layer LSTM, compiled (numba).

`saliency` computes it with torch everywhere (any device, stacked layers, GRUs). On the
CPU, for the first layer of an LSTM, the torch path costs 2.6x the LSTM forward plus
writing the result: it recomputes the gates from the forward's outputs, rebuilds the cell
states with a log-depth scan, and forms ``sum_g coef_g W_g`` as a batched matmul of inner
size 4 (which runs at a tenth of the machine's matmul rate), then ``|.|`` in a second
pass. Here the forward itself keeps the local derivatives (`forward`), and one loop
writes each unit's ``(T, F)`` block of the result, the absolute value taken on the way
(`unit_blocks`), so the result is written once.

The first call in a process compiles both (about 2 s, or loads them from numba's disk
cache), in a background thread (`ready`): `saliency` takes the torch path until then, and
where numba is missing.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ._compiled import BackgroundCompile, available, jit

__all__ = ["ready", "forward", "unit_blocks", "parallel"]


@jit
def forward(xp, whh_t, h, coef):
    """The LSTM over frames ``0..T-1`` from the zero state, keeping what eq 1 needs.

    ``xp`` (T, 4H): ``W_ih x_t + b_ih + b_hh`` in PyTorch's gate order (i, f, g, o);
    ``whh_t`` (H, 4H): ``W_hh`` transposed. Writes the outputs ``h`` (T, H) and
    ``coef`` (T, 4H): ``dh_t^u / da_g^u`` for each gate g's pre-activation, the previous
    state held fixed (``c = f c' + i g``, ``h = o tanh(c)``)::

        coef_i = o (1 - tanh^2 c) g i (1 - i)       coef_g = o (1 - tanh^2 c) i (1 - g^2)
        coef_f = o (1 - tanh^2 c) c' f (1 - f)      coef_o = tanh(c) o (1 - o)

    (the same as `saliency._local`'s, which the tests compare). tanh is computed as
    ``expm1(2x) / (expm1(2x) + 2)`` on 2x clipped to +-40 (where tanh is 1 to double
    precision), in double: within 5e-16 of ``numpy.tanh`` (expm1 keeps small arguments
    exact), and a third faster than libm's tanh, which took a quarter of the forward.
    """
    n_t = xp.shape[0]
    hd = whh_t.shape[0]
    a = np.empty(4 * hd, xp.dtype)
    hp = np.zeros(hd, xp.dtype)
    cp = np.zeros(hd, xp.dtype)
    for t in range(n_t):
        np.dot(hp, whh_t, a)  # BLAS gemv
        xt, kt, ht = xp[t], coef[t], h[t]
        for u in range(4 * hd):
            a[u] += xt[u]
        for u in range(2 * hd):
            a[u] = 1.0 / (1.0 + np.exp(-a[u]))
        for u in range(2 * hd, 3 * hd):
            e = math.expm1(min(max(2.0 * a[u], -40.0), 40.0))  # tanh (docstring)
            a[u] = e / (e + 2.0)
        for u in range(3 * hd, 4 * hd):
            a[u] = 1.0 / (1.0 + np.exp(-a[u]))
        for u in range(hd):
            i, f, g, o = a[u], a[hd + u], a[2 * hd + u], a[3 * hd + u]
            c = f * cp[u] + i * g
            e = math.expm1(min(max(2.0 * c, -40.0), 40.0))
            tc = e / (e + 2.0)
            ko = o * (1.0 - tc * tc)
            kt[u] = ko * g * i * (1.0 - i)
            kt[hd + u] = ko * cp[u] * f * (1.0 - f)
            kt[2 * hd + u] = ko * i * (1.0 - g * g)
            kt[3 * hd + u] = tc * o * (1.0 - o)
            cp[u] = c
            hp[u] = o * tc
            ht[u] = hp[u]


@jit
def unit_blocks(coef, w, row_scale, signed, out, t_stop, u0, u1):
    """``out[u, t] = |sum_g coef[t, g, u] w[g, u]| * row_scale[u]`` for units ``u0..u1-1``.

    ``coef`` (T, 4H) from `forward`; ``w`` (4, H, F) is ``W_ih`` with the input's
    Jacobian and eq 3's ``sigma_x`` in its columns, ``row_scale`` eq 3's ``1 / sigma_h``.
    Frames ``T..t_stop-1`` of ``out`` (H, >= t_stop, F) are set to zero (padding);
    ``signed`` keeps the sign (eq 1 itself).
    """
    n_t = coef.shape[0]
    hd = coef.shape[1] // 4
    nf = w.shape[2]
    k4 = np.empty(4, out.dtype)  # the coefficients in the result's dtype
    for u in range(u0, u1):
        w0, w1, w2, w3 = w[0, u], w[1, u], w[2, u], w[3, u]
        s = row_scale[u]
        for t in range(n_t):
            for g in range(4):
                k4[g] = coef[t, g * hd + u] * s
            a0, a1, a2, a3 = k4[0], k4[1], k4[2], k4[3]
            ot = out[u, t]
            if signed:
                for q in range(nf):
                    ot[q] = a0 * w0[q] + a1 * w1[q] + a2 * w2[q] + a3 * w3[q]
            else:
                for q in range(nf):
                    ot[q] = abs(a0 * w0[q] + a1 * w1[q] + a2 * w2[q] + a3 * w3[q])
        for t in range(n_t, t_stop):
            ot = out[u, t]
            for q in range(nf):
                ot[q] = 0.0


def _warm_up(dtype: Any) -> None:
    """Compile (or load) both functions for one dtype on a tiny LSTM."""
    x = np.zeros((2, 8), dtype)
    h, k = np.empty((2, 2), dtype), np.empty((2, 8), dtype)
    forward(x, np.zeros((2, 8), dtype), h, k)
    out = np.empty((2, 3, 3), dtype)
    for signed in (True, False):
        unit_blocks(k, np.zeros((4, 2, 3), dtype), np.ones(2, dtype), signed, out, 3, 0, 2)


def parallel(calls: Sequence[Callable[[], object]], threads: int) -> None:
    """Run ``calls`` (compiled kernels: they release the GIL) on ``threads`` threads, or
    one after the other with one thread. Each call writes its own part of the result, so
    the result does not depend on the number of threads."""
    if threads <= 1 or len(calls) <= 1:
        for call in calls:
            call()
        return
    with _POOL_LOCK:
        size, pool = _POOL.get("size", 0), _POOL.get("pool")
        if pool is None or size < threads:
            if pool is not None:
                pool.shutdown(wait=False)  # its threads end once idle
            pool = ThreadPoolExecutor(threads, thread_name_prefix="skvis-lstm-kernel")
            _POOL.update(size=threads, pool=pool)
    for future in [pool.submit(call) for call in calls]:
        future.result()


_POOL: dict[str, Any] = {}  # the shared thread pool and its size, made on first use
_POOL_LOCK = threading.Lock()

_COMPILES = {
    dt: BackgroundCompile(functools.partial(_warm_up, dt)) for dt in (np.float32, np.float64)
}


def ready(dtype: Any, wait: bool = False) -> bool:
    """Whether the kernel is compiled for ``dtype`` (``numpy.float32`` or ``float64``).

    The first call starts its compile in a background thread and returns False (the
    caller takes the torch path meanwhile); ``wait=True`` compiles in the caller's thread
    instead (or waits for the compile under way). False where numba is missing.
    """
    state = _COMPILES.get(np.dtype(dtype).type)
    if state is None or not available() or state.error is not None:
        return False  # (a compile that failed is not retried: the torch path stays)
    if wait:
        state.ensure()
    elif not state.ready.is_set():
        state.start()
    return state.ready.is_set()
