"""Checks and model state shared by every layer: one place for each.

- `as_sequence`: THE check of one ``(T, J, 3)`` skeleton sequence (numpy, no model);
- `as_model_sequence` / `as_model_input`: the same for what goes into a model, in
  the model's dtype (one sequence as numpy; a sequence or batch as tensors);
- `check_lengths`, `check_index`, `check_targets`, `check_layer`,
  `check_positive_int`, `check_finite`: the small checks;
- `SkeletonClassifier` (a `typing.Protocol`) and `check_model`: the model contract;
- `eval_view`: the one way the engines run a model in eval mode without touching
  the caller's module (which a training loop or another thread may be using at the
  same time).
"""

from __future__ import annotations

import copy
import threading
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

import numpy as np
import torch
from torch import nn

from .errors import SkvisError
from .skeleton import Topology, get_topology

__all__ = [
    "SkeletonClassifier",
    "as_sequence",
    "as_model_sequence",
    "check_recurrent",
    "check_model",
    "first_weight",
    "fc_weight",
    "as_model_input",
    "check_lengths",
    "check_index",
    "check_targets",
    "check_layer",
    "check_positive_int",
    "check_finite",
    "eval_view",
]


# ---------------------------------------------------------------------------------------------
# The model contract
# ---------------------------------------------------------------------------------------------
@runtime_checkable
class SkeletonClassifier(Protocol):
    """What every engine reads of a model: the contract `SkeletonLSTM` follows.

    `skvis_widgets.adapters.as_recurrent_classifier` wraps any ``nn.Module`` holding
    a recurrent layer and a linear head into an object that follows it.

    Attributes
    ----------
    rnn : nn.LSTM or nn.GRU
        One direction, no projection, any number of layers, ``batch_first`` or not,
        zero initial state.
    fc : nn.Linear
        From the last layer's ``H`` hidden units to the ``C`` class logits.
    num_joints : int or None
        ``J`` of the input ``(B, T, J, 3)``; None where the model does not know it.

    Methods
    -------
    preprocess(x)
        ``(B, T, J, 3)`` -> the recurrent layer's input ``(B, T, F)``, frame by frame
        (frame ``t`` of the output depends on frame ``t`` of the input only).
    hidden_states(x, lengths=None, *, layer=-1)
        ``(B, T, H)`` of one layer, zero past each length.
    forward(x, lengths=None)
        Logits ``(B, C)``: ``fc`` of the last valid frame's hidden state (the module
        is called as ``model(x, lengths)``).
    """

    @property
    def rnn(self) -> nn.RNNBase: ...

    @property
    def fc(self) -> nn.Linear: ...

    @property
    def num_joints(self) -> int | None: ...

    def preprocess(self, x: torch.Tensor) -> torch.Tensor: ...

    def hidden_states(self, x: Any, lengths: Any = None, *, layer: int = -1) -> torch.Tensor: ...

    def __call__(self, x: Any, lengths: Any = None) -> Any: ...

    def modules(self) -> Iterator[nn.Module]: ...


def check_recurrent(rnn: Any, *, where: str = "model.rnn") -> nn.RNNBase:
    """Raise `SkvisError` unless ``rnn`` is a one-direction ``nn.LSTM``/``nn.GRU``."""
    if not isinstance(rnn, (nn.LSTM, nn.GRU)):
        raise SkvisError(
            f"{where} must be an nn.LSTM or nn.GRU, got {type(rnn).__name__}; "
            "wrap your module with as_recurrent_classifier(module, recurrent=..., head=...)"
        )
    if rnn.bidirectional:
        raise SkvisError(f"{where}: bidirectional recurrent layers are not supported")
    if getattr(rnn, "proj_size", 0):
        raise SkvisError(f"{where}: LSTMs with proj_size > 0 are not supported")
    return rnn


def check_model(model: SkeletonClassifier) -> tuple[nn.RNNBase, nn.Linear]:
    """``(rnn, fc)`` of a model that follows the `SkeletonLSTM` protocol, or `SkvisError`."""
    for name in ("preprocess", "rnn", "fc"):
        if not hasattr(model, name):
            raise SkvisError(
                f"{type(model).__name__} has no {name!r}: expected a SkeletonLSTM or a model "
                "wrapped with as_recurrent_classifier(module, recurrent=..., head=...)"
            )
    rnn = check_recurrent(model.rnn)
    fc = model.fc
    if not isinstance(fc, nn.Linear) or fc.in_features != rnn.hidden_size:
        raise SkvisError(
            f"model.fc must be an nn.Linear taking the {rnn.hidden_size} hidden units, got {fc!r}"
        )
    return rnn, fc


def _array(value: Any, name: str) -> np.ndarray:
    """``value`` (a tensor, on any device, or anything numpy reads) as a numpy array."""
    if torch.is_tensor(value):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise SkvisError(f"{name}: cannot be read as an array ({exc})") from None


def first_weight(model: SkeletonClassifier) -> torch.Tensor:
    """``model.rnn.weight_ih_l0``: where the model lives (device) and computes (dtype)."""
    return cast(torch.Tensor, model.rnn.weight_ih_l0)  # every nn.LSTM/nn.GRU has it


def fc_weight(model_or_weight: Any) -> np.ndarray:
    """The FC layer's weight ``(C, H)`` as a numpy array, in its own dtype.

    ``model_or_weight``: a model with an ``fc`` layer (`SkeletonClassifier`), an
    ``nn.Linear``, or the weight itself (a tensor or an array). Raises `SkvisError`
    for a model without ``fc`` (saying how to wrap it), a weight that is not 2-D, or
    a NaN or infinite entry (naming its index).
    """
    w = model_or_weight
    if isinstance(w, nn.Module) and not isinstance(w, nn.Linear):
        w = getattr(getattr(w, "fc", None), "weight", None)
        if not isinstance(w, torch.Tensor):
            raise SkvisError(
                f"{type(model_or_weight).__name__} has no `fc` layer with a weight; wrap "
                "your model with skvis_widgets.adapters.as_recurrent_classifier(module, "
                "recurrent=..., head=...)"
            )
    elif hasattr(w, "fc"):
        w = w.fc.weight
    elif isinstance(w, nn.Linear):
        w = w.weight
    w = _array(w, "FC weight")
    if w.ndim != 2 or not np.issubdtype(w.dtype, np.number):
        raise SkvisError(f"FC weight must be a (C, H) array of numbers, got shape {w.shape}")
    return check_finite(w, "FC weight")


def check_layer(num_layers: int, layer: Any) -> int:
    """``layer`` (negative counts from the top) as an index in ``0..num_layers-1``."""
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise SkvisError(f"layer must be an int, got {layer!r}")
    try:
        return range(num_layers)[layer]
    except IndexError:
        raise SkvisError(f"layer {layer!r} out of range for {num_layers} layer(s)") from None


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------
def as_sequence(
    seq: Any,
    topology: Topology | str | None = None,
    *,
    num_joints: int | None = None,
    name: str = "sequence",
    dtype: Any = np.float32,
) -> np.ndarray:
    """THE check of one skeleton sequence: a finite ``(T, J, 3)`` array (metres).

    Parameters
    ----------
    seq : array-like or torch.Tensor
        ``(T, J, 3)``, or ``(T, J*3)`` when ``J`` is known (from ``topology`` or
        ``num_joints``).
    topology : Topology or str, optional
        Fixes ``J`` and names the joints in the messages.
    num_joints : int, optional
        ``J`` where no topology is known; given with ``topology`` it must agree.
    name : str
        What the messages call the input (a parameter name, ``"sample 3"``, ...).
    dtype : numpy dtype
        Of the result (float32 by default).

    Returns
    -------
    np.ndarray
        ``(T, J, 3)`` in ``dtype``; it shares memory with ``seq`` where no
        conversion was needed (copy it before writing to it).

    Raises
    ------
    SkvisError
        Naming ``name``, the shape and what was expected, for ragged or non-numeric
        input (strings, bools, complex numbers), a wrong number of dimensions or
        coordinates, a wrong joint count (naming the topology), zero frames, and
        NaN or infinite values (naming the first frame, joint index and joint name).
    """
    topo = None if topology is None else get_topology(topology)
    if topo is not None:
        if num_joints is not None and int(num_joints) != topo.num_joints:
            raise SkvisError(
                f"{name}: num_joints={num_joints} disagrees with topology {topo.name!r} "
                f"({topo.num_joints} joints)"
            )
        num_joints = topo.num_joints
    arr = _array(seq, name)
    if arr.dtype == object:  # numbers held as Python objects (or ragged rows)
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise SkvisError(
                f"{name}: cannot convert to real numbers ({exc}); expected a (T, J, 3) "
                "array of coordinates in metres"
            ) from None
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise SkvisError(
            f"{name}: has dtype {arr.dtype}; expected real numbers (coordinates in metres)"
        )
    if arr.ndim == 2 and num_joints is not None and arr.shape[1] == num_joints * 3:
        arr = arr.reshape(arr.shape[0], num_joints, 3)
    want = "(T, J, 3)"
    if topo is not None:
        want += f" with J = {num_joints} for topology {topo.name!r}"
    elif num_joints is not None:
        want += f" with J = {num_joints}"
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise SkvisError(f"{name}: expected shape {want}, got {arr.shape}")
    if num_joints is not None and arr.shape[1] != num_joints:
        whose = f"topology {topo.name!r}" if topo is not None else "num_joints"
        raise SkvisError(
            f"{name}: has {arr.shape[1]} joints (shape {arr.shape}); {whose} expects "
            f"{num_joints} joints"
        )
    if arr.shape[0] == 0:
        raise SkvisError(f"{name}: has zero frames (shape {arr.shape}); expected T >= 1")
    with np.errstate(over="ignore"):  # a value too big for dtype becomes inf: reported below
        arr = arr.astype(dtype, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        t, j, _ = (int(i) for i in np.argwhere(bad)[0])
        joint = f" {topo.joint_names[j]!r}" if topo is not None else ""
        raise SkvisError(
            f"{name}: contains NaN or infinite values (first at frame {t}, joint {j}{joint}; "
            f"{int(bad.sum())} in all); expected finite coordinates in metres"
        )
    return arr


def check_lengths(
    lengths: Any, n: int, t: int, shape: tuple[int, ...] | None = None
) -> torch.Tensor:
    """``lengths`` of a batch ``(n, t, ...)`` as an int64 CPU tensor, each in ``1..t``.

    Only whole numbers are lengths: ``2.7`` or ``True`` is an error, not a truncation.
    """
    where = f" for shape {shape}" if shape is not None else f" for a batch of {n} x {t} frames"
    arr = _array(lengths, "lengths").reshape(-1)
    # numpy turns [True, 3] into ints: look for the bools before it does
    mixed = isinstance(lengths, (list, tuple)) and any(
        isinstance(v, (bool, np.bool_)) for v in lengths
    )
    if (
        mixed
        or arr.dtype == bool
        or not (
            np.issubdtype(arr.dtype, np.integer)
            or (
                np.issubdtype(arr.dtype, np.floating)
                and np.all(np.isfinite(arr))
                and np.all(arr == np.round(arr))
            )
        )
    ):
        raise SkvisError(f"lengths must be whole numbers of frames{where}, got {lengths!r}")
    if len(arr) != n:
        raise SkvisError(f"{len(arr)} lengths for a batch of {n}{where}")
    if (arr < 1).any() or (arr > t).any():
        raise SkvisError(f"lengths must be in 1..{t}{where}, got {arr.tolist()}")
    return torch.as_tensor(arr.astype(np.int64))


def as_model_input(
    model: SkeletonClassifier,
    sequence: Any,
    lengths: Any = None,
    name: str = "sequence",
    *,
    detach: bool = True,
    batch_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(x (N, T, J, 3), lengths (N,), single)`` on the model's device and dtype.

    The one check of what goes into a model: a ``(T, J, 3)`` sequence (unless
    ``batch_only``) or an ``(N, T, J, 3)`` batch, with the model's joint count, at
    least one frame and one sample, finite, and whole-number ``lengths`` in
    ``1..T``. ``detach=False`` keeps a tensor input in the autograd graph.
    """
    p = first_weight(model)
    if torch.is_tensor(sequence):
        x = sequence.detach() if detach else sequence
    else:
        try:
            arr = np.asarray(sequence, dtype=np.float64 if p.dtype == torch.float64 else np.float32)
        except (TypeError, ValueError) as exc:
            raise SkvisError(f"{name}: cannot convert to a float array ({exc})") from None
        # shares the caller's memory when it can; nothing below writes to x
        x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    shape = tuple(x.shape)
    single = x.dim() == 3 and not batch_only
    if single:
        x = x[None]
    if x.dim() != 4 or x.shape[-1] != 3:
        want = "(N, T, J, 3)" if batch_only else "(T, J, 3) or (N, T, J, 3)"
        raise SkvisError(f"{name}: expected shape {want}, got {shape}")
    j = getattr(model, "num_joints", None)
    if j is not None and x.shape[2] != j:
        raise SkvisError(
            f"{name}: has {x.shape[2]} joints (shape {shape}); the model expects {j} joints"
        )
    if x.shape[0] == 0:
        raise SkvisError(f"{name}: empty batch (shape {shape})")
    if x.shape[1] == 0:
        raise SkvisError(f"{name}: has zero frames (shape {shape}); expected T >= 1")
    if x.is_complex():
        raise SkvisError(f"{name}: expected real numbers, got dtype {x.dtype}")
    x = x.to(device=p.device, dtype=p.dtype)
    finite = torch.isfinite(x.detach())
    if not finite.all():
        bad = torch.nonzero(~finite)[0].tolist()
        where = f"frame {bad[1]}, joint {bad[2]}" + (f" of sample {bad[0]}" if not single else "")
        raise SkvisError(f"{name}: contains NaN or infinite values (first at {where})")
    n, t = x.shape[:2]
    if lengths is None:
        lens = torch.full((n,), t, dtype=torch.int64)
    else:
        if single:
            raise SkvisError(f"{name}: lengths are for a batch (N, T, J, 3), got shape {shape}")
        lens = check_lengths(lengths, n, t, shape)
    return x, lens.to(p.device), single


def as_model_sequence(
    model: SkeletonClassifier, seq: Any, *, name: str = "sequence", dtype: Any = None
) -> np.ndarray:
    """One checked ``(T, J, 3)`` sequence for ``model``, as a numpy copy.

    The checks are `as_model_input`'s (the model's joint count, at least one frame,
    finite); a batch ``(N, T, J, 3)`` is refused. The values are first cast to the
    model's dtype, so a float32 model sees what it would compute on.

    Parameters
    ----------
    dtype : numpy dtype, optional
        Of the result; None gives the model's (float32 or float64).

    Returns
    -------
    np.ndarray
        ``(T, J, 3)``, a new array (never the caller's memory).
    """
    x, _, single = as_model_input(model, seq, name=name)
    if not single:
        raise SkvisError(f"{name}: expected shape (T, J, 3), got {tuple(x.shape)}")
    if dtype is None:
        dtype = np.float64 if x.dtype == torch.float64 else np.float32
    return np.array(x[0].cpu().numpy(), dtype=dtype)


def check_index(value: Any, size: int, what: str) -> int:
    """An int in ``0..size-1`` (no bools, no floats), or `SkvisError` naming ``what``."""
    if torch.is_tensor(value) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SkvisError(f"{what} must be an int, got {value!r}")
    if not 0 <= value < size:
        raise SkvisError(f"{what} {value} out of range 0..{size - 1}")
    return int(value)


def check_targets(target: Any, n: int, num_classes: int) -> torch.Tensor:
    """One class per sample: an int, or a sequence / tensor of ``n`` ints."""
    arr = _array(target, "target")
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise SkvisError(f"target must be an int or {n} ints, got {target!r}")
    for c in arr:
        check_index(int(c), num_classes, "target")
    return torch.as_tensor(arr, dtype=torch.int64)


def check_positive_int(value: Any, name: str) -> int:
    """A positive int (no bools, no floats), or `SkvisError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SkvisError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_finite(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` itself if every entry is finite; else `SkvisError` naming the first bad index."""
    if not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise SkvisError(
            f"{name} of shape {arr.shape} contains NaN or infinite values (first at index {bad})"
        )
    return arr


# ---------------------------------------------------------------------------------------------
# Eval mode without touching the caller's module
# ---------------------------------------------------------------------------------------------
M = TypeVar("M")

_FALLBACK_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_warned_copy = False


def _modules(model: Any) -> list[nn.Module]:
    return list(model.modules()) if isinstance(model, nn.Module) else []


@contextmanager
def eval_view(model: M) -> Iterator[M]:
    """The model in eval mode, without changing ``model`` or any of its submodules.

    A model already in eval mode is yielded as it is. Otherwise the module tree is
    copied with every parameter and buffer *shared* (no tensor is copied, so the
    view sees the caller's weights, even as a training loop updates them), and the
    copy is put in eval mode. The caller's ``training`` flags are never written, so a
    training loop or another thread using the same model is unaffected.

    Where a module cannot be copied (an attribute that refuses ``deepcopy``), the
    flags are switched on the model itself under a per-model lock and restored
    afterwards, with a warning once.
    """
    mods = _modules(model)
    if not any(m.training for m in mods):
        yield model
        return
    module = cast(nn.Module, model)  # it has modules in training mode
    shared: dict[int, Any] = {}
    for m in mods:
        for t in (*m._parameters.values(), *m._buffers.values()):
            if t is not None:
                shared[id(t)] = t
    try:
        view = copy.deepcopy(model, shared)
    except Exception as exc:  # noqa: BLE001 - anything deepcopy refuses: use the lock
        global _warned_copy
        if not _warned_copy:
            _warned_copy = True
            warnings.warn(
                f"{type(model).__name__} cannot be copied for evaluation ({exc}); switching its "
                "training flags under a lock instead (a training loop in another thread may "
                "see eval mode meanwhile)",
                RuntimeWarning,
                stacklevel=3,
            )
        with _LOCKS_GUARD:
            lock = _FALLBACK_LOCKS.setdefault(module, threading.RLock())
        with lock:
            flags = [(m, m.training) for m in mods]
            module.eval()
            try:
                yield model
            finally:
                for m, was in flags:
                    m.training = was
        return
    cast(nn.Module, view).eval()
    yield view
