"""Models people wrote themselves, seen through the model contract the engines read.

The engines read a classifier through `skvis_widgets._checks.SkeletonClassifier`, the
contract `SkeletonLSTM` follows (``preprocess``, ``rnn``, ``fc``, ``hidden_states``,
``forward``). `as_recurrent_classifier` (`RecurrentClassifier`) wraps any
``nn.Module`` that holds a recurrent layer and a linear head into a model that
follows it, so that every function of `skvis_widgets.saliency` takes it.

The module also holds the two helpers the engine shares with the adapter:
`run_layers` (the hidden states of every layer of an ``nn.LSTM``/``nn.GRU``) and
`per_frame_jacobian` (the Jacobian of a per-frame preprocessing step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from ._checks import as_model_input, check_layer, check_lengths, check_recurrent, first_weight
from .errors import SkvisError

__all__ = [
    "RecurrentClassifier",
    "as_recurrent_classifier",
    "check_recurrent",
    "run_layers",
    "run_layers_from",
    "LayerState",
    "per_frame_jacobian",
]


def _layer_params(rnn: nn.RNNBase, k: int) -> dict[str, torch.Tensor]:
    names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ())
    return {f"{n}_l0": getattr(rnn, f"{n}_l{k}") for n in names}


#: A recurrent layer's state between frames: ``(h, c)`` for an LSTM, ``h`` for a GRU, each
#: ``(B, H)``.
LayerState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def run_layers(rnn: nn.RNNBase, feats: torch.Tensor, upto: int = -1) -> list[torch.Tensor]:
    """Hidden states of layers ``0..upto`` of ``rnn`` from a zero initial state.

    Parameters
    ----------
    rnn : nn.LSTM or nn.GRU
        ``batch_first`` or not; ``feats`` is batch-first either way.
    feats : Tensor, shape (B, T, F)
    upto : int
        The last layer wanted (negative counts from the top).

    Returns
    -------
    list of Tensor, each (B, T, H)
        Layer ``k``'s output at every frame, computed with the module's own weights
        (differentiable; no dropout between layers). No packing: a frame's state
        depends only on earlier frames, so frames before a sequence's length are
        exact whatever the padding after it.
    """
    return run_layers_from(rnn, feats, None, upto)[0]


def run_layers_from(
    rnn: nn.RNNBase, feats: torch.Tensor, state: list[LayerState] | None, upto: int = -1
) -> tuple[list[torch.Tensor], list[LayerState]]:
    """`run_layers` from a given state, and the state each layer ends in.

    Lets a long sequence run in blocks of frames, each block starting where the
    previous one ended (the result equals one run up to rounding).

    Parameters
    ----------
    rnn, feats, upto
        As in `run_layers`.
    state : list of LayerState, optional
        Per layer ``0..upto``: ``(h, c)`` (LSTM) or ``h`` (GRU), each ``(B, H)``; None
        for zeros.

    Returns
    -------
    outs : list of Tensor, each (B, T, H)
    final : list of LayerState
        Each layer's state after the last frame, in the form of ``state``.
    """
    check_recurrent(rnn)
    upto = range(rnn.num_layers)[upto]

    def hx(k: int) -> Any:
        if state is None:
            return None
        s = state[k]
        return tuple(v[None] for v in s) if isinstance(s, tuple) else s[None]

    def unpack(s: Any) -> LayerState:
        return tuple(v[0] for v in s) if isinstance(s, tuple) else s[0]

    if rnn.num_layers == 1:
        inp = feats if rnn.batch_first else feats.transpose(0, 1)
        out, last = rnn(inp, hx(0))
        return [out if rnn.batch_first else out.transpose(0, 1)], [unpack(last)]
    outs, final = [], []
    x = feats
    for k in range(upto + 1):
        # A single-layer twin on the meta device: building it allocates nothing and
        # draws no random numbers; functional_call runs it with layer k's weights.
        make: Callable[..., nn.RNNBase] = type(rnn)  # nn.LSTM or nn.GRU (or a subclass)
        twin = make(x.shape[-1], rnn.hidden_size, bias=rnn.bias, batch_first=True, device="meta")
        x, last = torch.func.functional_call(twin, _layer_params(rnn, k), (x, hx(k)))
        outs.append(x)
        final.append(unpack(last))
    return outs, final


def per_frame_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Jacobian of a per-frame map at every frame: ``(B, T, F_out, F_in)``.

    Parameters
    ----------
    fn : callable
        Maps ``(B, T, ...)`` to ``(B, T, F_out)``, each output frame a differentiable
        function of the same input frame only.
    x : Tensor, shape (B, T, ...)
        ``F_in`` is the number of elements of one frame (``J * 3`` for ``(B, T, J, 3)``).

    Uses ``torch.func.vmap(torch.func.jacrev(...))`` over the frames; a map that
    vmap cannot trace (data-dependent control flow, ``.item()``) falls back to one
    backward pass per output feature over all frames at once.
    """
    b, t = x.shape[:2]
    frames = x.detach().reshape(b * t, *x.shape[2:])

    def one(frame: torch.Tensor) -> torch.Tensor:
        return fn(frame[None, None])[0, 0]

    try:
        jac = torch.func.vmap(torch.func.jacrev(one))(frames)
    except Exception:  # noqa: BLE001 - any vmap failure: take the slow, general road
        with torch.enable_grad():
            inp = frames.clone().requires_grad_(True)
            out = fn(inp[:, None])[:, 0]
            rows = [
                torch.autograd.grad(out[:, k].sum(), inp, retain_graph=True)[0]
                for k in range(out.shape[-1])
            ]
        jac = torch.stack(rows, 1)
    return jac.reshape(b, t, jac.shape[1], -1).detach()


def _find(module: nn.Module, sub: nn.Module) -> str | None:
    for name, m in module.named_modules():
        if m is sub:
            return name
    return None


class RecurrentClassifier(nn.Module):
    """A user's module seen through the model contract (`skvis_widgets._checks.SkeletonClassifier`).

    Adapts a module holding an ``nn.LSTM``/``nn.GRU`` and an ``nn.Linear`` head; also
    called `as_recurrent_classifier`. It holds the wrapped module (so ``.to()``,
    ``.eval()``, ``.parameters()`` reach it) and reads the recurrent layer and the head
    from it at every call. Its ``forward(x, lengths)`` is the contract's: ``head``
    applied to the last valid frame's hidden state of the last layer, with no dropout
    between layers; if the wrapped module's own forward does something else,
    explanations describe this forward, not that one.

    Parameters
    ----------
    module : nn.Module
        The user's classifier. Its recurrent layer may be ``batch_first`` or not.
    recurrent, head : str or nn.Module
        The recurrent layer and the linear head, as (dotted) attribute names of
        ``module`` or as the submodules themselves.
    preprocess : callable, optional
        Maps the input to the recurrent layer's input ``(B, T, F)``, frame by frame
        and differentiably (e.g. the module's own normalization). It receives
        ``(B, T, J*3)`` when ``preprocess_input="features"`` (the default) or
        ``(B, T, J, 3)`` when ``"joints"``. None: the input coordinates go to the
        recurrent layer as they are.
    num_joints : int, optional
        ``J``; inferred as ``F / 3`` without a preprocess. Known, it lets a wrong
        joint count fail early with a `SkvisError` naming the shape.

    Notes
    -----
    Every function in `skvis_widgets.saliency` takes it. The instantaneous sensitivity
    chains the preprocess's per-frame Jacobian (``torch.func.jacrev`` under ``vmap``).

    Examples
    --------
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lstm = nn.LSTM(60, 32)  # (T, B, F)
    ...         self.out = nn.Linear(32, 20)
    >>> model = as_recurrent_classifier(Net(), recurrent="lstm", head="out")
    >>> model.num_joints, model.num_classes
    (20, 20)
    """

    #: The preprocess callable (kept out of nn.Module's registry; see __init__).
    _pre_fn: Callable[[torch.Tensor], torch.Tensor] | None

    def __init__(
        self,
        module: nn.Module,
        recurrent: str | nn.Module,
        head: str | nn.Module,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        preprocess_input: Literal["features", "joints"] = "features",
        num_joints: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise SkvisError(f"expected an nn.Module to adapt, got {type(module).__name__}")
        if preprocess_input not in ("features", "joints"):
            raise SkvisError(
                f"preprocess_input must be 'features' or 'joints', got {preprocess_input!r}"
            )
        self.module = module
        self._rnn_path = self._locate(recurrent, "recurrent", "extra_rnn")
        self._head_path = self._locate(head, "head", "extra_head")
        check_recurrent(self.rnn, where=f"recurrent {self._rnn_path or type(self.rnn).__name__!r}")
        if not isinstance(self.fc, nn.Linear):
            raise SkvisError(f"head must be an nn.Linear, got {type(self.fc).__name__}")
        if self.fc.in_features != self.rnn.hidden_size:
            raise SkvisError(
                f"head takes {self.fc.in_features} inputs but the recurrent layer has "
                f"{self.rnn.hidden_size} hidden units"
            )
        if isinstance(preprocess, nn.Module) and _find(module, preprocess) is None:
            self.extra_preprocess = preprocess  # registered: moves with .to()
        if preprocess is not None and not callable(preprocess):
            raise SkvisError(f"preprocess must be callable, got {type(preprocess).__name__}")
        # Stored outside nn.Module's registry: it may be a bound method or a submodule
        # that `module` already holds.
        self.__dict__["_pre_fn"] = preprocess
        self.preprocess_input = preprocess_input
        if num_joints is None and preprocess is None:
            if self.rnn.input_size % 3:
                raise SkvisError(
                    f"the recurrent layer takes {self.rnn.input_size} features, not J * 3; "
                    "give a preprocess that maps (B, T, J, 3) to them"
                )
            num_joints = self.rnn.input_size // 3
        self.num_joints = None if num_joints is None else int(num_joints)

    def _locate(self, sub: str | nn.Module, what: str, extra: str) -> str | None:
        """The dotted path of ``sub`` in the module ("" for the module itself), or None
        for a submodule from outside it, then registered on the adapter as ``extra``."""
        if isinstance(sub, str):
            try:
                self.module.get_submodule(sub)
            except AttributeError:
                raise SkvisError(
                    f"{type(self.module).__name__} has no submodule {sub!r} ({what}); it has: "
                    f"{[n for n, _ in self.module.named_modules() if n]}"
                ) from None
            return sub
        if not isinstance(sub, nn.Module):
            raise SkvisError(f"{what} must be an attribute name or a submodule, got {sub!r}")
        path = _find(self.module, sub)
        if path is None:
            setattr(self, extra, sub)
        return path

    # -- the protocol -------------------------------------------------------------------------
    @property
    def rnn(self) -> nn.RNNBase:
        if self._rnn_path is None:
            return cast(nn.RNNBase, self.extra_rnn)
        return cast(nn.RNNBase, self.module.get_submodule(self._rnn_path))

    @property
    def fc(self) -> nn.Linear:
        if self._head_path is None:
            return cast(nn.Linear, self.extra_head)
        return cast(nn.Linear, self.module.get_submodule(self._head_path))

    @property
    def hidden_size(self) -> int:
        return self.rnn.hidden_size

    @property
    def num_layers(self) -> int:
        return self.rnn.num_layers

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def _param(self) -> torch.Tensor:
        return first_weight(self)

    def _input(self, x: Any) -> torch.Tensor:
        if not torch.is_tensor(x):
            try:
                x = torch.as_tensor(np.asarray(x, dtype=np.float32))
            except (TypeError, ValueError) as exc:
                raise SkvisError(f"input: cannot convert to a float array ({exc})") from None
        j = self.num_joints
        shape = tuple(x.shape)
        if x.dim() == 3 and j is not None and x.shape[-1] == 3 * j:
            x = x.reshape(*x.shape[:2], j, 3)
        if x.dim() == 4:
            if x.shape[-1] != 3 or (j is not None and x.shape[-2] != j):
                raise SkvisError(
                    f"input of shape {shape}: expected (B, T, {j or 'J'}, 3)"
                    + (f" for a model of {j} joints" if j is not None else "")
                )
            return as_model_input(self, x, None, "input", detach=False, batch_only=True)[0]
        if not (x.dim() == 3 and j is None and self.preprocess_input == "features"):
            raise SkvisError(
                f"input of shape {shape}: expected (B, T, {j or 'J'}, 3)"
                + (f" or (B, T, {3 * j})" if j is not None else "")
            )
        # (B, T, F) features for a preprocess of unknown joint count
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise SkvisError(f"input of shape {shape} has no samples or zero frames")
        p = self._param()
        x = x.to(device=p.device, dtype=p.dtype if not x.is_floating_point() else x.dtype)
        if not torch.isfinite(x.detach()).all():
            raise SkvisError(f"input of shape {shape} contains NaN or infinite values")
        return x

    def preprocess(self, x: Any) -> torch.Tensor:
        """``(B, T, J, 3)`` (or ``(B, T, J*3)``) -> the recurrent layer's input ``(B, T, F)``."""
        x = self._input(x)
        shape = tuple(x.shape)
        if self.preprocess_input == "features" and x.dim() == 4:
            x = x.reshape(*x.shape[:2], -1)
        fn = self._pre_fn
        if fn is None:
            out = x
        else:
            try:
                out = fn(x)
            except SkvisError:
                raise
            except (RuntimeError, ValueError, IndexError) as exc:
                raise SkvisError(
                    f"preprocess failed on input of shape {shape} (wrong joint count?): {exc}"
                ) from None
        f = self.rnn.input_size
        if (
            not torch.is_tensor(out)
            or out.dim() != 3
            or tuple(out.shape[:2]) != shape[:2]
            or (out.shape[-1] != f)
        ):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise SkvisError(
                f"input of shape {shape} gives recurrent input {got}; the recurrent layer "
                f"expects (B, T, {f}) (wrong joint count?)"
            )
        return out

    def preprocess_jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """d preprocess / d x per frame: ``(F,)`` (diagonal, shared) or ``(B, T, F, J*3)``."""
        if self._pre_fn is None:
            return torch.ones(x[0, 0].numel(), dtype=x.dtype, device=x.device)
        return per_frame_jacobian(self.preprocess, x)

    def hidden_states(self, x: Any, lengths: Any = None, *, layer: int = -1) -> torch.Tensor:
        """Hidden states ``(B, T, H)`` of one layer (default the last); zero past each length."""
        layer = check_layer(self.num_layers, layer)
        feats = self.preprocess(x)
        h = run_layers(self.rnn, feats, layer)[layer]
        if lengths is None:
            return h
        lengths = check_lengths(lengths, h.shape[0], h.shape[1]).to(h.device)
        return h * (torch.arange(h.shape[1], device=h.device) < lengths[:, None])[..., None]

    def forward(self, x: Any, lengths: Any = None) -> torch.Tensor:
        """Class logits ``(B, C)`` from each sequence's last valid frame."""
        h = self.hidden_states(x, lengths)
        if lengths is None:
            last = h[:, -1]
        else:
            idx = check_lengths(lengths, h.shape[0], h.shape[1]).to(h.device) - 1
            last = h[torch.arange(h.shape[0], device=h.device), idx]
        return self.fc(last)

    def frame_logits(self, x: Any, lengths: Any = None) -> torch.Tensor:
        """The head applied at every frame: ``(B, T, C)``."""
        return self.fc(self.hidden_states(x, lengths))

    def extra_repr(self) -> str:
        return (
            f"recurrent={self._rnn_path!r}, head={self._head_path!r}, num_joints={self.num_joints}"
        )


#: Adapt a module holding an ``nn.LSTM``/``nn.GRU`` and an ``nn.Linear`` head: the name the
#: README and the notebooks use for `RecurrentClassifier`.
as_recurrent_classifier = RecurrentClassifier
