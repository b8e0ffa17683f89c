"""Does a saliency map tell the truth? Faithfulness and sanity checks for joint maps.

A joint map ``(T, J)`` (from `skvis_widgets.saliency.joint_sensitivity` or any other
attribution summed over the axes) claims that some joint-frame cells matter more to the
model's decision than others. Three checks test that claim against the model itself:

`deletion_curve` / `insertion_curve` (perturbation, "RISE"-style)
    Remove the cells in order of decreasing saliency (or insert them into a sequence
    where everything is removed) and record the class probability after each step. A
    faithful map makes the probability fall faster (rise faster) than random orders of
    the same cells do: its area under the deletion curve is below the random orders'.
    A removed cell is replaced by a *plausible* value, never by a jump to the origin
    unless asked (``replace="zero"``): the joint's own trajectory interpolated from the
    nearest kept frames, or a mean pose.
`randomization_test` (Adebayo et al. 2018, model-parameter randomization)
    Re-initialize the weights, the FC layer first and then down the recurrent stack
    (and each layer alone), and compare the maps of the randomized model with the
    trained model's by Spearman rank correlation. A map that stays the same when the
    weights are random explains the input (e.g. which joints move), not the model.
`planted_signal_dataset` + `topk_hit_rate`
    A synthetic data set built from real poses in which only a known set of joints
    decides the class; a model trained on it should be explained by those joints.

`faithfulness_summary` is the quick deletion check the explorer's panel calls live.

All functions are pure: they return frozen dataclasses (their arrays read-only), never
modify the caller's model (its weights, modes and ``requires_grad`` stay as they were)
and never touch the global random state; randomness comes from explicit seeds.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, cast

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from ._checks import (
    as_model_sequence,
    check_index,
    check_model,
    check_positive_int,
)
from .errors import SkvisError
from .model import probabilities
from .results import freeze_fields
from .saliency import Mode, joint_sensitivity
from .skeleton import Topology, check_model_topology, get_topology

__all__ = [
    "PerturbationCurve",
    "fill_removed",
    "deletion_curve",
    "insertion_curve",
    "FaithfulnessSummary",
    "faithfulness_summary",
    "RandomizationResult",
    "randomization_test",
    "spearman",
    "planted_signal_dataset",
    "topk_hit_rate",
    "planted_signal_model",
    "randomized_model",
    "as_explainer",
    "motion_map",
    "random_map",
    "CONTROLS",
    "PASS",
    "CompareRow",
    "CompareTable",
    "compare_methods",
    "verdict_line",
]

Replace = Literal["interpolate", "mean_pose", "zero"]
_REPLACE = ("interpolate", "mean_pose", "zero")

#: Perturbed sequences per forward pass (bounds memory for long sequences).
_BATCH = 512
#: Bytes of perturbed sequences (float64, with _fill's temporaries) built at once.
_CHUNK_BYTES = 2**26
#: ``steps`` may exceed the number of cells of a tiny sequence up to this (duplicate points).
_MIN_STEPS = 20


@dataclass(frozen=True, eq=False)
class PerturbationCurve:
    """A deletion or insertion curve and its random-order reference.

    Attributes
    ----------
    kind : {"deletion", "insertion"}
    target : int
        The class whose probability is recorded.
    replace : {"interpolate", "mean_pose", "zero"}
        How removed cells were filled.
    fractions : ndarray, shape (S + 1,)
        Fraction of the ``T * J`` joint-frame cells removed (deletion) or inserted
        (insertion) at each step, from 0 to 1.
    probabilities : ndarray, shape (S + 1,)
        ``p(target)`` after each step, cells taken in order of decreasing saliency.
    auc : float
        Area under ``probabilities`` over ``fractions`` (trapezoids; in [0, 1]).
    random_probabilities : ndarray, shape (R, S + 1)
        The same for ``R`` random orders of the cells, one per seed.
    random_auc : ndarray, shape (R,)
    seeds : tuple of int
        The seeds of the random orders.
    """

    kind: str
    target: int
    replace: str
    fractions: np.ndarray
    probabilities: np.ndarray
    auc: float
    random_probabilities: np.ndarray
    random_auc: np.ndarray
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        names = ("fractions", "probabilities", "random_probabilities", "random_auc")
        freeze_fields(self, names, np.float64)
        object.__setattr__(self, "auc", float(self.auc))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))

    @property
    def random_mean(self) -> np.ndarray:
        """The random orders' mean curve, ``(S + 1,)``."""
        return self.random_probabilities.mean(0)

    @property
    def margin(self) -> float:
        """How far the map beats the random orders in AUC (positive: better than random).

        Deletion: ``mean(random_auc) - auc``; insertion: ``auc - mean(random_auc)``.
        """
        diff = float(self.random_auc.mean()) - self.auc
        return diff if self.kind == "deletion" else -diff

    @property
    def score(self) -> float:
        """`margin` relative to the random AUC: ``margin / mean(random_auc)``.

        NaN when the random AUC is below 1e-6 (the model gives the class no
        probability whatever is removed: nothing to explain).
        """
        ref = float(self.random_auc.mean())
        return self.margin / ref if ref >= 1e-6 else math.nan

    @property
    def beats_random(self) -> bool:
        """Whether the map's AUC beats the mean AUC of the random orders (`score` > 0;
        False when there is no verdict)."""
        return self.score > 0


@dataclass(frozen=True, eq=False)
class FaithfulnessSummary:
    """What the explorer's faithfulness panel shows (see `faithfulness_summary`).

    Attributes
    ----------
    deletion : PerturbationCurve
    score : float
        ``(mean(random_auc) - auc) / mean(random_auc)``: 0 for a map no better than a
        random order, up to 1 when deleting the top cells removes the class at once;
        negative for a map worse than random; NaN when the class has no probability
        to lose.
    beats_random : bool
    message : str
        One line for the panel.
    """

    deletion: PerturbationCurve
    score: float
    beats_random: bool
    message: str


@dataclass(frozen=True, eq=False)
class RandomizationResult:
    """Spearman correlation of the maps of randomized models with the trained model's.

    Attributes
    ----------
    names : tuple of str
        One per randomization: ``"fc"``, ``"fc+rnn.l1"``, ``"fc+rnn.l1+rnn.l0"`` (the
        cascade, top down) and ``"rnn.l1"``, ``"rnn.l0"`` (a layer alone).
    kinds : tuple of str
        ``"cascade"`` or ``"single"`` for each name.
    correlation : ndarray, shape (R,)
        Mean over the samples of Spearman's rho between the two maps of a sample (NaN
        samples, from constant maps, left out).
    per_sample : ndarray, shape (R, N)
    indices : ndarray, shape (N,)
        The samples of the data set that were used.
    targets : ndarray, shape (N,)
        The class each map was computed for (the sample's true label).
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    correlation: np.ndarray
    per_sample: np.ndarray
    indices: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "kinds", tuple(self.kinds))
        freeze_fields(self, ("correlation", "per_sample"), np.float64)
        freeze_fields(self, ("indices", "targets"), np.int64)

    def __getitem__(self, name: str) -> float:
        """The correlation of one randomization, by name."""
        try:
            return float(self.correlation[self.names.index(name)])
        except ValueError:
            raise SkvisError(f"no randomization {name!r}; there are {list(self.names)}") from None

    @property
    def full_cascade(self) -> float:
        """The correlation with every layer randomized (the cascade's last step)."""
        last = max(i for i, k in enumerate(self.kinds) if k == "cascade")
        return float(self.correlation[last])

    def as_dict(self) -> dict[str, float]:
        return {n: float(c) for n, c in zip(self.names, self.correlation, strict=True)}


# ---------------------------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------------------------
def _check_saliency(saliency: Any, shape: tuple[int, int]) -> np.ndarray:
    try:
        if torch.is_tensor(saliency):
            saliency = saliency.detach().cpu().numpy()
        sal = np.asarray(saliency, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SkvisError(f"saliency: cannot convert to a float array ({exc})") from None
    if sal.shape != shape:
        raise SkvisError(
            f"saliency of shape {sal.shape} does not match the sequence: expected (T, J) = {shape}"
        )
    if not np.isfinite(sal).all():
        t, j = np.argwhere(~np.isfinite(sal))[0]
        raise SkvisError(
            f"saliency: contains NaN or infinite values (first at frame {t}, joint {j})"
        )
    return sal


def _check_seeds(seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = (seeds,)
    try:
        out = tuple(seeds)
    except TypeError:
        raise SkvisError(f"seeds must be a sequence of ints, got {seeds!r}") from None
    if not out or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in out
    ):
        raise SkvisError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    return tuple(int(s) for s in out)


def _check_pose(pose: Any, j: int, name: str = "mean_pose") -> np.ndarray:
    try:
        arr = np.asarray(pose, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SkvisError(f"{name}: cannot convert to a float array ({exc})") from None
    if arr.shape != (j, 3):
        raise SkvisError(f"{name}: expected shape (J, 3) = ({j}, 3), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise SkvisError(f"{name}: contains NaN or infinite values")
    return arr


# ---------------------------------------------------------------------------------------------
# Perturbation
# ---------------------------------------------------------------------------------------------
def _fill(seq: np.ndarray, removed: np.ndarray, replace: str, pose: np.ndarray) -> np.ndarray:
    """``(B, T, J, 3)``: ``seq`` with the cells ``removed[b]`` (``(B, T, J)``) filled in.

    ``interpolate``: each removed cell of joint ``j`` gets the linear interpolation of
    ``j``'s position between its nearest kept frames before and after (the nearest one
    when only one side has a kept frame; ``pose[j]`` when no frame of ``j`` is kept).
    ``mean_pose`` / ``zero``: ``pose[j]`` (the zero pose for ``zero``).
    """
    b, t, j = removed.shape
    keep = ~removed[..., None]
    if replace != "interpolate":
        return np.where(keep, seq[None], pose[None, None])
    tt = np.arange(t)[None, :, None]
    prev = np.maximum.accumulate(np.where(removed, -1, tt), axis=1)
    nxt = np.minimum.accumulate(np.where(removed, t, tt)[:, ::-1], axis=1)[:, ::-1]
    has_prev, has_next = prev >= 0, nxt < t
    jj = np.arange(j)[None, None, :]
    before = seq[np.clip(prev, 0, t - 1), jj]  # (B, T, J, 3)
    after = seq[np.clip(nxt, 0, t - 1), jj]
    both = has_prev & has_next
    w = np.where(both, (tt - prev) / np.maximum(nxt - prev, 1), np.where(has_prev, 0.0, 1.0))
    value = before + (after - before) * w[..., None]
    value = np.where((has_prev | has_next)[..., None], value, pose[None, None])
    return np.where(keep, seq[None], value)


def _fill_pose(seq: np.ndarray, replace: str, mean_pose: Any) -> np.ndarray:
    """The ``(J, 3)`` pose that fills a cell when ``replace`` has nothing better."""
    j = seq.shape[1]
    if replace not in _REPLACE:
        raise SkvisError(f"replace must be one of {_REPLACE}, got {replace!r}")
    if mean_pose is not None:
        return _check_pose(mean_pose, j)
    if replace == "mean_pose":
        raise SkvisError(
            "replace='mean_pose' needs mean_pose, a (J, 3) array (e.g. the data set's)"
        )
    if replace == "zero":
        return np.zeros((j, 3))
    return seq.mean(0)  # a joint with no kept frame stands still at its mean over the sequence


def fill_removed(
    sequence: Any, removed: Any, *, replace: Replace = "interpolate", mean_pose: Any = None
) -> np.ndarray:
    """Copies of ``sequence`` with the ``removed`` cells filled as the deletion curves do.

    The one definition of a plausible removal, shared by `deletion_curve`,
    `insertion_curve` and occlusion (`skvis_widgets.methods.explain`).

    Parameters
    ----------
    sequence : array_like, shape (T, J, 3)
        Metres.
    removed : array_like of bool, shape (B, T, J) or (T, J)
        The joint-frame cells to replace in each copy.
    replace, mean_pose
        As in `deletion_curve`.

    Returns
    -------
    ndarray, shape (B, T, J, 3) (or (T, J, 3)), float64
    """
    seq = np.asarray(sequence, dtype=np.float64)
    mask = np.asarray(removed, dtype=bool)
    single = mask.ndim == 2
    if single:
        mask = mask[None]
    if seq.ndim != 3 or seq.shape[-1] != 3 or mask.ndim != 3 or mask.shape[1:] != seq.shape[:2]:
        raise SkvisError(
            f"fill_removed: sequence of shape {seq.shape} (expected (T, J, 3)) and removed of "
            f"shape {np.shape(removed)} (expected (B, T, J) with the sequence's T and J)"
        )
    out = _fill(seq, mask, replace, _fill_pose(seq, replace, mean_pose))
    return out[0] if single else out


def _auc(fractions: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return ((probs[..., 1:] + probs[..., :-1]) / 2 * np.diff(fractions)).sum(-1)


def _curve(
    kind: str,
    model: Any,
    sequence: Any,
    saliency: Any,
    *,
    target: Any,
    steps: int,
    replace: str,
    mean_pose: Any,
    seeds: Any,
) -> PerturbationCurve:
    _, fc = check_model(model)
    seq = as_model_sequence(model, sequence, dtype=np.float64)
    t, j = seq.shape[:2]
    sal = _check_saliency(saliency, (t, j))
    target = check_index(target, fc.out_features, "target")
    seeds = _check_seeds(seeds)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise SkvisError(f"steps must be a positive int, got {steps!r}")
    if steps > max(t * j, _MIN_STEPS):
        raise SkvisError(
            f"steps={steps} for a sequence of {t} x {j} = {t * j} joint-frame cells: a curve "
            f"has at most one point per cell, so steps can be at most {max(t * j, _MIN_STEPS)}"
        )
    pose = _fill_pose(seq, replace, mean_pose)

    n = t * j
    fractions = np.linspace(0.0, 1.0, int(steps) + 1)
    counts = np.rint(fractions * n).astype(np.int64)
    # A rank per cell for each order: the map's (ties by position), then the random ones.
    ranks = np.empty((1 + len(seeds), n), dtype=np.int64)
    ranks[0, np.argsort(-sal.reshape(-1), kind="stable")] = np.arange(n)
    for r, s in enumerate(seeds, 1):
        ranks[r] = np.random.default_rng(s).permutation(n)
    # (order, step) pairs in chunks: the perturbed sequences never exist all at once
    pairs = len(ranks) * len(fractions)
    chunk = max(1, min(_BATCH, _CHUNK_BYTES // (seq.nbytes * 4)))
    probs = np.empty(pairs)
    for start in range(0, pairs, chunk):
        idx = np.arange(start, min(pairs, start + chunk))
        order, step = np.divmod(idx, len(fractions))
        first = ranks[order] < counts[step][:, None]  # (chunk, cells)
        removed = first if kind == "deletion" else ~first
        batch = _fill(seq, removed.reshape(-1, t, j), replace, pose)
        probs[idx] = probabilities(model, batch, batch_size=_BATCH)[:, target]
    grid = probs.reshape(len(ranks), len(fractions))  # (order, step)
    aucs = _auc(fractions, grid)
    return PerturbationCurve(
        kind=kind,
        target=target,
        replace=replace,
        fractions=fractions,
        probabilities=grid[0],
        auc=float(aucs[0]),
        random_probabilities=grid[1:],
        random_auc=aucs[1:],
        seeds=seeds,
    )


def deletion_curve(
    model: Any,
    sequence: Any,
    saliency: Any,
    *,
    target: int,
    steps: int = 20,
    replace: Replace = "interpolate",
    mean_pose: Any = None,
    seeds: Sequence[int] = (0, 1, 2),
) -> PerturbationCurve:
    """Remove joint-frame cells, most salient first; record ``p(target)`` after each step.

    Parameters
    ----------
    model : SkeletonLSTM or RecurrentClassifier
        Run in eval mode (its modes are restored), without gradients.
    sequence : array_like, shape (T, J, 3)
        One sequence, metres, body-centred (as the model was trained on).
    saliency : array_like, shape (T, J)
        The map to test: cells are removed in order of decreasing value (ties in
        row-major order). Pass magnitudes (``abs``) for signed attributions.
    target : int
        The class whose probability is recorded (usually the predicted one).
    steps : int
        The curve has ``steps + 1`` points, ``k / steps`` of the ``T * J`` cells
        removed at point ``k``.
    replace : {"interpolate", "mean_pose", "zero"}
        ``"interpolate"`` (default): a removed cell of joint ``j`` gets ``j``'s
        position interpolated linearly in time from the nearest kept frames of
        ``j`` (held constant past the first/last kept frame); a joint with no kept
        frame stands at ``mean_pose[j]`` if given, else at its mean position over
        the sequence. ``"mean_pose"``: ``mean_pose[j]``, which must be given (e.g.
        the training set's mean pose). ``"zero"``: the origin of the body frame
        (a jump to the spine base; off-manifold, only on request).
    mean_pose : array_like, shape (J, 3), optional
    seeds : sequence of int
        One random order of the cells per seed: the reference.

    Returns
    -------
    PerturbationCurve
        ``probabilities`` (S + 1,), ``auc``, ``random_probabilities`` (R, S + 1),
        ``random_auc`` (R,), ``fractions``; ``beats_random`` / ``score``.

    Notes
    -----
    All ``(1 + R) * (S + 1)`` perturbed sequences go through the model as one
    batch (in chunks of 512). With ``"interpolate"`` a scattered removal is
    repaired well by the neighbouring frames while a removed stretch is not, so
    maps that pick whole stretches of a joint have an advantage over the (scattered)
    random orders; ``"mean_pose"`` has no such bias (and is less plausible).

    Examples
    --------
    >>> import numpy as np
    >>> from skvis_widgets.model import SkeletonLSTM
    >>> model = SkeletonLSTM(20, 4, 8).eval()
    >>> seq = np.random.default_rng(0).normal(0, 0.3, (12, 20, 3)).astype(np.float32)
    >>> curve = deletion_curve(model, seq, np.abs(seq).sum(-1), target=1, steps=4)
    >>> curve.probabilities.shape, curve.random_auc.shape
    ((5,), (3,))
    """
    return _curve(
        "deletion",
        model,
        sequence,
        saliency,
        target=target,
        steps=steps,
        replace=replace,
        mean_pose=mean_pose,
        seeds=seeds,
    )


def insertion_curve(
    model: Any,
    sequence: Any,
    saliency: Any,
    *,
    target: int,
    steps: int = 20,
    replace: Replace = "interpolate",
    mean_pose: Any = None,
    seeds: Sequence[int] = (0, 1, 2),
) -> PerturbationCurve:
    """Start from every cell removed and put the cells back, most salient first.

    The mirror of `deletion_curve` (same parameters and result): at step ``k`` the
    top ``k / steps`` of the cells are the sequence's own and the rest are filled
    in as ``replace`` says. With ``"interpolate"`` the start (nothing kept) is
    every joint standing still at its mean position over the sequence (or at
    ``mean_pose``), and an inserted cell of a joint anchors its trajectory. A
    faithful map makes ``p(target)`` rise faster than the random orders: a higher
    ``auc`` than ``random_auc``.
    """
    return _curve(
        "insertion",
        model,
        sequence,
        saliency,
        target=target,
        steps=steps,
        replace=replace,
        mean_pose=mean_pose,
        seeds=seeds,
    )


def faithfulness_summary(
    model: Any,
    sequence: Any,
    saliency: Any,
    target: int,
    *,
    steps: int = 10,
    replace: Replace = "interpolate",
    mean_pose: Any = None,
    seeds: Sequence[int] = (0, 1, 2),
) -> FaithfulnessSummary:
    """The deletion check, sized for a live panel: curve, random reference and a score.

    One forward pass of ``(1 + len(seeds)) * (steps + 1)`` perturbed sequences (44 by
    default; a few tens of milliseconds for ``T = 40``, ``J = 20``, ``H = 256`` on a CPU).
    Parameters as in `deletion_curve`.

    Returns
    -------
    FaithfulnessSummary
        ``deletion`` (the `PerturbationCurve`: plot ``fractions`` against
        ``probabilities`` and ``random_probabilities``), ``score`` =
        ``(mean(random_auc) - auc) / mean(random_auc)``, ``beats_random`` and a
        one-line ``message``.
    """
    curve = deletion_curve(
        model,
        sequence,
        saliency,
        target=target,
        steps=steps,
        replace=replace,
        mean_pose=mean_pose,
        seeds=seeds,
    )
    ref = curve.random_auc
    if math.isnan(curve.score):
        message = (
            f"class {curve.target} has probability {curve.probabilities[0]:.3f}: "
            "nothing to delete, no verdict"
        )
    else:
        verdict = "beats" if curve.beats_random else "does not beat"
        message = (
            f"deleting the most salient cells first: AUC {curve.auc:.3f} vs "
            f"{ref.mean():.3f} (min {ref.min():.3f}, max {ref.max():.3f}) for random orders; "
            f"the map {verdict} random (score {curve.score:+.2f})"
        )
    return FaithfulnessSummary(curve, curve.score, curve.beats_random, message)


# ---------------------------------------------------------------------------------------------
# Model-parameter randomization
# ---------------------------------------------------------------------------------------------
def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation of two maps (flattened); NaN if either is constant."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise SkvisError(f"maps of different sizes: {a.shape} and {b.shape}")
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / den if den > 0 else math.nan


def _layer_groups(model: Any) -> dict[str, list[tuple[nn.Module, str, float]]]:
    """Layer name -> its parameters ``(module, attribute, init bound)``, top layer first.

    Bounds are PyTorch's default initializations: ``U(-1/sqrt(H), 1/sqrt(H))`` for
    every weight and bias of a recurrent layer, ``U(-1/sqrt(in), 1/sqrt(in))`` for
    the linear layer.
    """
    rnn, fc = check_model(model)
    groups: dict[str, list[tuple[nn.Module, str, float]]] = {
        "fc": [(fc, n, 1 / math.sqrt(fc.in_features)) for n, _ in fc.named_parameters()]
    }
    names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ())
    bound = 1 / math.sqrt(rnn.hidden_size)
    for k in range(rnn.num_layers - 1, -1, -1):
        groups[f"rnn.l{k}"] = [(rnn, f"{n}_l{k}", bound) for n in names]
    return groups


def _randomized(model: Any, layers: Sequence[str], seed: int) -> Any:
    """A deep copy of ``model`` whose ``layers`` are re-initialized from ``seed``.

    Each layer draws from its own generator (seeded by ``seed`` and the layer's
    name), so the FC layer gets the same random weights in every randomization.
    """
    clone = copy.deepcopy(model)
    groups = _layer_groups(clone)
    with torch.no_grad():
        for name in layers:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + sum(map(ord, name)))
            for module, attr, bound in groups[name]:
                p = getattr(module, attr)
                fresh = torch.empty(p.shape, dtype=torch.float64)
                fresh.uniform_(-bound, bound, generator=gen)
                p.copy_(fresh.to(device=p.device, dtype=p.dtype))
    return clone


def randomized_model(model: Any, *, seed: int = 0) -> Any:
    """A copy of ``model`` with every learned weight re-initialized (the caller's is untouched).

    A recurrent model (`check_model`) gets the full cascade of `randomization_test`
    (PyTorch's default initializations, one seeded generator per layer); any other
    module gets ``reset_parameters()`` on each submodule that has one, under a forked,
    seeded global generator. The input standardization (statistics, not weights) is kept.
    """
    try:
        groups = _layer_groups(model)
    except SkvisError:
        if not isinstance(model, nn.Module):
            raise SkvisError(f"model must be an nn.Module, got {type(model).__name__}") from None
        clone = copy.deepcopy(model)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for m in clone.modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
        return clone
    return _randomized(model, list(groups), seed)


Explainer = Callable[[Any, np.ndarray, int], Any]


def as_explainer(method: str | Explainer, normalize: bool = True) -> Explainer:
    """``method`` as a function ``(model, sequence (T, J, 3), target) -> (T, J) map``.

    ``"instantaneous"`` or ``"through_time"``: `joint_sensitivity` of that mode (eq 5,
    ``normalize`` as there); a callable is returned as it is. Anything else raises
    `SkvisError`. The map of `randomization_test` and of the data-set runners.
    """
    if callable(method):
        return method
    if method not in ("instantaneous", "through_time"):
        raise SkvisError(
            f"method must be 'instantaneous', 'through_time' or a callable "
            f"(model, sequence, target) -> (T, J) map, got {method!r}"
        )

    mode = cast(Mode, method)

    def explain(model: Any, seq: np.ndarray, target: int) -> np.ndarray:
        return joint_sensitivity(model, seq, target=target, mode=mode, normalize=normalize)

    return explain


def randomization_test(
    model: Any,
    dataset: Any,
    *,
    method: str | Explainer = "instantaneous",
    normalize: bool = True,
    samples: int = 8,
    indices: Sequence[int] | None = None,
    cascade: bool = True,
    single: bool = True,
    seed: int = 0,
) -> RandomizationResult:
    """The model-parameter randomization test (Adebayo et al. 2018) for joint maps.

    Parameters
    ----------
    model : SkeletonLSTM or RecurrentClassifier
        The trained model. It is deep-copied; the caller's model is not modified.
    dataset : SkeletonDataset, or anything with ``sequences`` and ``labels``
    method : {"instantaneous", "through_time"} or callable
        The map: `joint_sensitivity` with this mode for the sample's true class, or
        ``method(model, sequence, target) -> (T, J)`` (e.g. Integrated Gradients).
    normalize : bool
        Eq 3 normalization, for the named methods.
    samples : int
        How many samples to draw (without replacement, from ``seed``) when
        ``indices`` is not given.
    indices : sequence of int, optional
        The samples to use.
    cascade, single : bool
        Which randomizations: the cascade (FC layer, then also the recurrent layers
        from the top down; its last step randomizes every learned weight) and/or each
        layer alone.
    seed : int
        Seeds the sample draw and the new weights (explicit generators; the global
        random state is left as it was).

    Returns
    -------
    RandomizationResult
        ``names``, ``correlation`` (mean Spearman rho per randomization),
        ``per_sample`` and the ``indices`` used. Low ``|rho|`` is what a map that
        depends on the model should show. The input standardization (statistics,
        not learned weights) is kept.
    """
    check_model(model)
    explain = as_explainer(method, normalize)
    try:
        seqs, labels = dataset.sequences, np.asarray(dataset.labels)
    except AttributeError:
        raise SkvisError(
            f"dataset must have .sequences and .labels (a SkeletonDataset), got {type(dataset).__name__}"
        ) from None
    if getattr(dataset, "topology", None) is not None:
        check_model_topology(model, dataset.topology, "the dataset")
    n = len(seqs)
    if n == 0:
        raise SkvisError("randomization_test: the data set is empty")
    if len(labels) != n:
        raise SkvisError(f"{n} sequences but {len(labels)} labels")
    if indices is None:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise SkvisError(f"samples must be a positive int, got {samples!r}")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(n, size=min(int(samples), n), replace=False))
    else:
        idx = np.asarray(indices).reshape(-1)
        if (
            idx.size == 0
            or not np.issubdtype(idx.dtype, np.integer)
            or (idx < 0).any()
            or (idx >= n).any()
        ):
            raise SkvisError(f"indices must be ints in 0..{n - 1}, got {indices!r}")
    if not (cascade or single):
        raise SkvisError("randomization_test: nothing to do (cascade=False and single=False)")
    num_classes = check_model(model)[1].out_features
    targets = np.array([check_index(int(labels[i]), num_classes, "target") for i in idx])
    sequences = [
        as_model_sequence(model, seqs[i], name=f"dataset sequence {i}", dtype=np.float64)
        for i in idx
    ]

    layers = list(_layer_groups(model))  # fc, then the recurrent layers top down
    plan: list[tuple[str, str, list[str]]] = []
    if cascade:
        plan += [
            ("+".join(layers[: k + 1]), "cascade", layers[: k + 1]) for k in range(len(layers))
        ]
    if single:
        plan += [(name, "single", [name]) for name in layers if not (cascade and name == "fc")]

    def maps(m: Any) -> list[np.ndarray]:
        return [
            np.asarray(explain(m, s, int(c)), np.float64)
            for s, c in zip(sequences, targets, strict=True)
        ]

    with torch.random.fork_rng(devices=[]):  # a callable explainer may draw random numbers
        reference = maps(copy.deepcopy(model))
        rho = np.array(
            [
                [
                    spearman(a, b)
                    for a, b in zip(reference, maps(_randomized(model, lay, seed)), strict=True)
                ]
                for _, _, lay in plan
            ]
        )
    with np.errstate(invalid="ignore"):
        mean = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in rho])
    return RandomizationResult(
        names=tuple(p[0] for p in plan),
        kinds=tuple(p[1] for p in plan),
        correlation=mean,
        per_sample=rho,
        indices=idx,
        targets=targets,
    )


# ---------------------------------------------------------------------------------------------
# Planted signal
# ---------------------------------------------------------------------------------------------
def _joint_indices(
    joints: Iterable[str | int], topology: Topology | None, j: int
) -> tuple[int, ...]:
    out = []
    for q in joints:
        if isinstance(q, str):
            if topology is None:
                raise SkvisError(f"joint {q!r} given by name: pass topology= to resolve it")
            out.append(topology.index(q))
        elif isinstance(q, (int, np.integer)) and not isinstance(q, bool) and 0 <= q < j:
            out.append(int(q))
        else:
            raise SkvisError(f"joint {q!r}: expected a name or an index in 0..{j - 1}")
    if not out or len(set(out)) != len(out):
        raise SkvisError(f"expected distinct joints, got {list(joints)!r}")
    return tuple(out)


def planted_signal_dataset(
    base_sequences: Sequence[Any],
    topology: Topology | str,
    joints: Sequence[str | int],
    *,
    samples_per_class: int = 60,
    frames: int = 32,
    amplitude: float = 0.06,
    axis: int = 1,
    noise: float = 0.003,
    seed: int = 0,
) -> Any:
    """Two classes that only the motion of ``joints`` tells apart.

    Each sample takes a random sequence of ``base_sequences`` (real motion, drawn
    for either class alike), resampled to ``frames`` frames. The planted joints
    then hold their first-frame position, plus Gaussian jitter (``noise`` metres),
    and make one smooth move of ``amplitude`` metres along ``axis`` (1: y, up the
    body) at a random moment: up for class 0, down for class 1. The rest of the
    body moves as in the real recording and carries no information about the
    class, so a model that learns the task can only use the planted joints.

    Parameters
    ----------
    base_sequences : sequence of (T_i, J, 3) arrays
        Body-centred real sequences (e.g. ``load_msr_action3d().sequences``).
    topology : Topology or its name
    joints : sequence of joint names or indices
        The planted joints (e.g. ``["hand_right"]``).
    samples_per_class : int
    frames : int
    amplitude : float
        Metres.
    axis : {0, 1, 2}
    noise : float
        Metres, standard deviation.
    seed : int

    Returns
    -------
    SkeletonDataset
        ``class_names`` ``("<joints> up", "<joints> down")``, not re-normalized;
        ``ids`` name the base sequence of each sample.
    """
    from .data.dataset import SkeletonDataset

    topology = get_topology(topology)
    j = topology.num_joints
    planted = list(_joint_indices(joints, topology, j))
    if axis not in (0, 1, 2):
        raise SkvisError(f"axis must be 0, 1 or 2, got {axis!r}")
    if not isinstance(frames, (int, np.integer)) or frames < 4:
        raise SkvisError(f"frames must be an int >= 4, got {frames!r}")
    if not isinstance(samples_per_class, (int, np.integer)) or samples_per_class < 1:
        raise SkvisError(f"samples_per_class must be a positive int, got {samples_per_class!r}")
    base = []
    for i, s in enumerate(base_sequences):
        arr = np.asarray(s, dtype=np.float64)
        if arr.ndim != 3 or arr.shape[1:] != (j, 3) or len(arr) < 2 or not np.isfinite(arr).all():
            raise SkvisError(
                f"base sequence {i}: expected a finite (T, {j}, 3) array with T >= 2, got shape {arr.shape}"
            )
        base.append(arr)
    if not base:
        raise SkvisError("planted_signal_dataset: no base sequences")
    # One start for every sample: the class shows in the planted joints' position
    # alone, not only relative to where they were at the first frame.
    start = np.mean([s[0, planted] for s in base], axis=0)
    rng = np.random.default_rng(seed)
    tt = np.arange(frames, dtype=np.float64)
    seqs, labels, ids = [], [], []
    for i in range(2 * samples_per_class):
        c = i % 2
        b = int(rng.integers(len(base)))
        src = base[b]
        pos = np.linspace(0, len(src) - 1, frames)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, len(src) - 1)
        w = (pos - lo)[:, None, None]
        seq = src[lo] * (1 - w) + src[hi] * w
        onset = rng.uniform(0.25, 0.75) * (frames - 1)
        width = max(1.0, frames / 16)
        move = amplitude * (1 if c == 0 else -1) / (1 + np.exp(-(tt - onset) / width))
        still = start[None] + rng.normal(0, noise, (frames, len(planted), 3))
        still[:, :, axis] += move[:, None]
        seq[:, planted] = still
        seqs.append(seq.astype(np.float32))
        labels.append(c)
        ids.append(f"planted {i} (base {b})")
    what = "+".join(topology.joint_names[q] for q in planted)
    return SkeletonDataset.from_arrays(
        seqs,
        labels,
        topology,
        (f"{what} up", f"{what} down"),
        normalize=False,
        name=f"planted signal ({what})",
        ids=ids,
    )


def topk_hit_rate(maps: Any, planted_joints: Sequence[int], k: int | None = None) -> float:
    """How often the ``k`` most sensitive joints of a map are planted ones.

    Parameters
    ----------
    maps : (T, J) array, (N, T, J) array or a list of (T_i, J) arrays
        Joint maps; a joint's score is its map summed over the frames.
    planted_joints : sequence of int
    k : int, optional
        Default: the number of planted joints.

    Returns
    -------
    float
        The mean over the maps of ``|top-k ∩ planted| / min(k, len(planted))``: 1 when
        every map ranks the planted joints first.
    """
    if isinstance(maps, np.ndarray) and maps.ndim == 2:
        maps = [maps]
    items = [np.asarray(m, dtype=np.float64) for m in maps]
    if not items:
        raise SkvisError("topk_hit_rate: no maps")
    j = items[0].shape[-1]
    for i, m in enumerate(items):
        if m.ndim != 2 or m.shape[1] != j or not np.isfinite(m).all():
            raise SkvisError(f"map {i}: expected a finite (T, {j}) array, got shape {m.shape}")
    planted = set(_joint_indices(planted_joints, None, j))
    k = len(planted) if k is None else k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= j:
        raise SkvisError(f"k must be an int in 1..{j}, got {k!r}")
    denom = min(int(k), len(planted))
    hits = [
        len(planted & set(np.argsort(-m.sum(0), kind="stable")[: int(k)].tolist())) / denom
        for m in items
    ]
    return float(np.mean(hits))


# ---------------------------------------------------------------------------------------------
# All checks, all methods: the verdict table
# ---------------------------------------------------------------------------------------------
#: The model-free rows of `compare_methods`.
CONTROLS = ("motion", "random")
_CONTROL_LABELS = {"motion": "control: motion (no model)", "random": "control: random map"}


def motion_map(sequence: Any) -> np.ndarray:
    """The motion control ``(T, J)``: each joint's distance from its mean position (metres)."""
    seq = np.asarray(sequence, np.float64)
    return np.linalg.norm(seq - seq.mean(0), axis=-1)


def random_map(sequence: Any, target: int = 0) -> np.ndarray:
    """The random-attribution control ``(T, J)``: uniform values, a fixed function of the
    sequence's length and the target (the same map for every model)."""
    rng = np.random.default_rng(len(sequence) * 7919 + int(target))
    return rng.random(np.shape(sequence)[:2])


def planted_signal_model(
    train_sequences: Sequence[Any],
    test_sequences: Sequence[Any],
    topology: Topology | str,
    joints: Sequence[str] = ("hand_right",),
    *,
    hidden_size: int = 16,
    epochs: int = 20,
    seed: int = 0,
) -> tuple[Any, Any, list[int], float]:
    """A small LSTM trained on a `planted_signal_dataset` built from real poses.

    Returns ``(model, held_out, planted_joint_indices, held_out_accuracy)``: 100 samples
    per class from ``train_sequences`` for training, 30 per class from
    ``test_sequences`` held out; the planted joints make a 6 cm move over 24 frames.
    """
    from .model import SkeletonLSTM
    from .train import train_model

    topology = get_topology(topology)
    tr = planted_signal_dataset(
        train_sequences, topology, joints, samples_per_class=100, seed=seed, frames=24,
        amplitude=0.06,
    )  # fmt: skip
    te = planted_signal_dataset(
        test_sequences, topology, joints, samples_per_class=30, seed=seed + 1, frames=24,
        amplitude=0.06,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SkeletonLSTM(topology.num_joints, 2, hidden_size)
    train_model(
        model, tr, epochs=epochs, lr=0.01, progress=False, seed=seed,
        rotate_deg=10, scale=0.05, bone_scale=0, crop=0, speed=0, jitter=0.005,
    )  # fmt: skip
    acc = float((model.predict(te.sequences).argmax(1) == te.labels).mean())
    return model, te, [topology.index(j) for j in joints], acc


@dataclass(frozen=True)
class CompareRow:
    """One method's verdicts (see `compare_methods`); fractions in [0, 1], NaN when not run.

    Attributes
    ----------
    method : str
        A key of `skvis_widgets.methods.METHODS`, or ``"motion"`` / ``"random"``.
    label : str
    deletion_auc, deletion_random_auc : float
        Mean AUC of ``p(predicted class)`` deleting cells by the map / by random orders
        (interpolated fills); lower is better.
    deletion_beats : float
        Share of sequences whose deletion AUC is below their random orders' mean.
    insertion_auc, insertion_random_auc, insertion_beats : float
        The same for insertion (higher is better).
    rho_full : float
        Spearman rho with the trained model's map after re-initializing every learned
        weight (the full cascade); near 1: the map does not depend on what was learned.
    planted_top1 : float
        Share of the planted-signal model's held-out maps whose top joint is planted.
    stability_change : float
        Mean relative L2 change of the map (normalized to sum 1) under small anatomically
        valid perturbations that keep the prediction; lower is more stable.
    stability_ris : float
        Median over sequences of the relative input stability (RIS, Agarwal et al.
        2022): the largest ratio of the map's relative change to the input's.
    seconds : float
        Time spent on the row.
    """

    method: str
    label: str
    deletion_auc: float
    deletion_random_auc: float
    deletion_beats: float
    insertion_auc: float
    insertion_random_auc: float
    insertion_beats: float
    rho_full: float
    planted_top1: float
    stability_change: float
    stability_ris: float
    seconds: float

    @property
    def is_control(self) -> bool:
        return self.method in CONTROLS


@dataclass(frozen=True)
class CompareTable:
    """The table `compare_methods` returns: ``rows`` (one `CompareRow` per method and
    control), the ``settings`` used, and whether the run was ``cancelled`` (then the rows
    hold the methods finished)."""

    rows: tuple[CompareRow, ...]
    settings: tuple[tuple[str, Any], ...]
    cancelled: bool = False

    def __getitem__(self, method: str) -> CompareRow:
        for r in self.rows:
            if r.method == method:
                return r
        raise SkvisError(f"no row {method!r}; there are {[r.method for r in self.rows]}")

    def __contains__(self, method: object) -> bool:
        return any(r.method == method for r in self.rows)

    def to_markdown(self) -> str:
        """A markdown table, one line per row."""
        head = (
            "| map | deletion AUC ↓ | random | beats random | insertion AUC ↑ | random "
            "| beats random | ρ all ↓ | planted top-1 ↑ | map change ↓ | RIS ↓ |"
        )
        lines = [head, "|" + "---|" * 11]

        def f(v: float, fmt: str) -> str:
            return "–" if not np.isfinite(v) else format(v, fmt)

        for r in self.rows:
            lines.append(
                f"| {r.label} | {f(r.deletion_auc, '.3f')} | {f(r.deletion_random_auc, '.3f')} "
                f"| {f(r.deletion_beats, '.0%')} | {f(r.insertion_auc, '.3f')} "
                f"| {f(r.insertion_random_auc, '.3f')} | {f(r.insertion_beats, '.0%')} "
                f"| {f(r.rho_full, '.2f')} | {f(r.planted_top1, '.2f')} "
                f"| {f(r.stability_change, '.0%')} | {f(r.stability_ris, '.3g')} |"
            )
        return "\n".join(lines)

    def recommended(self) -> str:
        """The method (not a control) that passes most checks, ties broken by the
        deletion beat rate: the explorer's default (see `verdict_line`)."""
        rows = [r for r in self.rows if not r.is_control]
        if not rows:
            raise SkvisError("the table has no method rows")

        def key(r: CompareRow) -> tuple[int, float]:
            return (sum(_checks_passed(r, self).values()), np.nan_to_num(r.deletion_beats))

        return max(rows, key=key).method


#: Thresholds of the verdicts (`verdict_line`): a map passes a check at these values.
PASS = MappingProxyType(
    {"deletion_beats": 0.75, "rho_full": 0.5, "planted_top1": 0.8, "stability_change": 0.5}
)


def _checks_passed(row: CompareRow, table: CompareTable | None = None) -> dict[str, bool]:
    out = {
        "deletion": row.deletion_beats >= PASS["deletion_beats"],
        "randomization": row.rho_full < PASS["rho_full"],
        "planted": row.planted_top1 >= PASS["planted_top1"],
        "stability": row.stability_change < PASS["stability_change"],
    }
    return out


def verdict_line(row: CompareRow, table: CompareTable | None = None) -> str:
    """One line a reader understands: what the table says about ``row``'s map.

    E.g. "gradient: beats random deletion on 94% of sequences; passes the randomization
    check (ρ 0.48); finds the planted joint (100%); stable under small perturbations (map
    changes 9%)". With the ``table`` a map that fails the randomization check and beats
    random deletion no more often than the motion control is said to "rank joints mostly
    by their motion".
    """
    parts = []
    if row.method == "random":
        return f"{row.label}: the calibration row (about 50% beats random by construction)"
    if row.method == "motion":
        return f"{row.label}: which joints move, without the model"
    if np.isfinite(row.deletion_beats):
        parts.append(f"beats random deletion on {row.deletion_beats:.0%} of sequences")
    if np.isfinite(row.rho_full):
        if row.rho_full < PASS["rho_full"]:
            parts.append(f"passes the randomization check (ρ {row.rho_full:.2f})")
        else:
            motion = table["motion"] if table is not None and "motion" in table else None
            if motion is not None and row.deletion_beats <= motion.deletion_beats + 0.05:
                parts.append(
                    f"ranks joints mostly by their motion (ρ {row.rho_full:.2f} with random "
                    f"weights; the motion control beats random deletion on "
                    f"{motion.deletion_beats:.0%})"
                )
            else:
                parts.append(
                    f"fails the randomization check: barely changes with random weights "
                    f"(ρ {row.rho_full:.2f})"
                )
    if np.isfinite(row.planted_top1):
        found = "finds" if row.planted_top1 >= PASS["planted_top1"] else "misses"
        parts.append(f"{found} the planted joint ({row.planted_top1:.0%})")
    if np.isfinite(row.stability_change):
        how = "stable" if row.stability_change < PASS["stability_change"] else "unstable"
        parts.append(
            f"{how} under small anatomical perturbations (map changes {row.stability_change:.0%})"
        )
    return f"{row.label}: " + ("; ".join(parts) if parts else "no verdict")


def _perturbations(
    model: Any, seq: np.ndarray, topology: Topology, k: int, noise: float, seed: int
) -> list[np.ndarray]:
    """Up to ``k`` copies of ``seq`` moved by ``noise`` metres per coordinate and projected
    onto the anatomical constraints (bone lengths of ``seq``), keeping the prediction."""
    from .anatomy import anatomical_constraints, project, reference_bone_lengths

    cons = anatomical_constraints(topology)
    ref = reference_bone_lengths(seq, topology)
    rng = np.random.default_rng(seed)
    base = project(seq, cons, ref)  # compare on the constraint set
    pred = int(np.argmax(model.classify(base)))
    out = [base]
    for _ in range(k):
        moved = project(base + rng.normal(0, noise, seq.shape), cons, ref)
        if int(np.argmax(model.classify(moved))) == pred:
            out.append(moved)
    return out


def _stability(maps: list[np.ndarray], seqs: list[np.ndarray]) -> tuple[float, float]:
    """``(mean relative change, RIS)`` of the maps of ``seqs[1:]`` against ``seqs[0]``'s."""
    if len(maps) < 2:
        return math.nan, math.nan
    e0 = np.abs(maps[0]).astype(np.float64)
    tot = e0.sum()
    if tot <= 0:
        return math.nan, math.nan
    e0 = e0 / tot
    x0 = seqs[0]
    changes, ris = [], []
    for e, x in zip(maps[1:], seqs[1:], strict=True):
        e = np.abs(e).astype(np.float64)
        e = e / max(e.sum(), 1e-300)
        changes.append(np.linalg.norm(e - e0) / np.linalg.norm(e0))
        # RIS: elementwise relative changes; denominators guarded (a map cell below 1e-3 of
        # the mean cell, a coordinate within 1 cm of the body-frame origin)
        rel_e = (e - e0) / np.maximum(e0, 1e-3 / e0.size)
        rel_x = (x - x0) / np.maximum(np.abs(x0), 0.01)
        ris.append(np.linalg.norm(rel_e) / max(np.linalg.norm(rel_x), 1e-6))
    return float(np.mean(changes)), float(np.max(ris))


def compare_methods(
    model: Any,
    dataset: Any,
    *,
    methods: Sequence[str] | None = None,
    samples: int | None = None,
    indices: Sequence[int] | None = None,
    controls: bool = True,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 20,
    seeds: Sequence[int] = (0, 1, 2),
    randomization_samples: int = 16,
    planted: tuple[Any, Any, Sequence[int]] | None = None,
    stability_samples: int | None = 64,
    perturbations: int = 3,
    noise: float = 0.01,
    seed: int = 0,
    progress: bool = True,
    cancel: Any = None,
    callback: Callable[[int, int], Any] | None = None,
) -> CompareTable:
    """Every faithfulness and sanity check, for every method, in one table.

    Per method of `skvis_widgets.methods.METHODS` (default all) and the model-free
    controls (``controls``: "motion", "random"), on the sequences of ``dataset``:
    deletion and insertion AUC for the *predicted* class against ``len(seeds)`` random
    orders (`deletion_curve`, interpolated fills), the share of sequences where the map
    beats random, the full-cascade `randomization_test` correlation (true class,
    ``randomization_samples``), the planted-joint top-1 rate (`topk_hit_rate`) when
    ``planted = (model, dataset, joints)`` is given (`planted_signal_model`), and the
    stability under anatomically valid perturbations: each coordinate moved by
    ``noise`` metres (Gaussian), projected with `skvis_widgets.anatomy.project`,
    ``perturbations`` copies of each of ``stability_samples`` sequences, those that keep
    the prediction (Agarwal et al. 2022, as used by Pellano et al. 2024).

    Parameters
    ----------
    model : SkeletonLSTM or RecurrentClassifier
        The checks need the recurrent protocol (its layers are re-initialized).
    dataset : SkeletonDataset
    methods : sequence of str, optional
    samples : int, optional
        A seeded subsample of the data set (default all); or ``indices``.
    options : mapping, optional
        Method name -> options for `explain` (e.g. ``{"integrated_gradients":
        {"n_steps": 16}}``).
    steps, seeds
        Of the deletion and insertion curves.
    progress, cancel
        A tqdm bar over methods; ``cancel`` (a `threading.Event`) is checked between
        sequences; a cancelled run returns the rows it finished, ``cancelled=True``.
    callback : callable, optional
        ``callback(done, total)`` after each sequence's deletion and insertion curves
        (``total``: sequences times rows), e.g. for a widget's progress bar.

    Returns
    -------
    CompareTable
        ``rows``, ``to_markdown()``, ``recommended()``; `verdict_line` per row.
    """
    from tqdm.auto import tqdm

    from .methods import METHODS, explain

    rnn, _fc = check_model(model)
    names = list(METHODS) if methods is None else list(methods)
    bad = [m for m in names if m not in METHODS]
    if bad:
        raise SkvisError(f"unknown methods {bad}; expected some of {list(METHODS)}")
    options = dict(options or {})
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise SkvisError(f"cancel must be a threading.Event (with is_set), got {cancel!r}")
    try:
        all_seqs, _ = dataset.sequences, np.asarray(dataset.labels)
    except AttributeError:
        raise SkvisError(
            f"dataset must have .sequences and .labels, got {type(dataset).__name__}"
        ) from None
    topology = check_model_topology(model, getattr(dataset, "topology", None), "the dataset")
    topology = topology or getattr(dataset, "topology", None)
    n_all = len(all_seqs)
    if indices is not None:
        from .data.arrays import as_indices

        idx = as_indices(indices, n_all)
    elif samples is not None and samples < n_all:
        samples = check_positive_int(samples, "samples")
        idx = np.sort(np.random.default_rng(seed).choice(n_all, samples, replace=False))
    else:
        idx = np.arange(n_all)
    seqs = [
        as_model_sequence(model, all_seqs[i], name=f"dataset sequence {i}", dtype=np.float64)
        for i in idx
    ]
    preds = model.predict(seqs).argmax(1)
    n_stab = len(idx) if stability_samples is None else min(len(idx), int(stability_samples))
    stab_sets = []
    if n_stab and topology is not None and perturbations > 0:
        for k in range(n_stab):
            stab_sets.append(
                _perturbations(model, seqs[k], topology, perturbations, noise, seed + k)
            )

    rows: list[CompareRow] = []
    cancelled = False
    kinds = names + (list(CONTROLS) if controls else [])
    bar = tqdm(total=len(kinds), desc="compare methods", disable=not progress)

    for name in kinds:
        t0 = time.perf_counter()
        if name in CONTROLS:

            def control(m: Any, s: Any, c: int, name: str = name) -> np.ndarray:
                return motion_map(s) if name == "motion" else random_map(s, c)

            explainer: Explainer = control

            label = _CONTROL_LABELS[name]
        else:
            opts = dict(options.get(name, {}))

            def method_map(m: Any, s: Any, c: int, name: str = name, opts: dict = opts) -> Any:
                return explain(m, s, target=int(c), method=name, **opts)

            explainer = method_map

            label = METHODS[name].label
        acc: dict[str, list[float]] = {k: [] for k in ("d", "dr", "dw", "i", "ir", "iw")}
        for s, c in zip(seqs, preds, strict=True):
            if callback is not None:
                callback(len(rows) * len(seqs) + len(acc["d"]), len(kinds) * len(seqs))
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            sal = np.asarray(explainer(model, s, int(c)), np.float64)
            for kind, fn in (("d", deletion_curve), ("i", insertion_curve)):
                curve = fn(model, s, np.abs(sal), target=int(c), steps=steps, seeds=seeds)
                acc[kind].append(curve.auc)
                acc[kind + "r"].append(float(curve.random_auc.mean()))
                acc[kind + "w"].append(float(curve.beats_random))
        if cancelled:
            break
        rho = randomization_test(
            model, dataset, method=explainer, samples=randomization_samples,
            single=False, seed=seed,
        ).full_cascade  # fmt: skip
        hit = math.nan
        if planted is not None:
            pmodel, pset, pjoints = planted
            pmaps = [
                np.abs(np.asarray(explainer(pmodel, s, int(c)), np.float64))
                for s, c in zip(pset.sequences, pset.labels, strict=True)
            ]
            hit = topk_hit_rate(pmaps, list(pjoints), 1)
        change, ris = [], []
        for group in stab_sets:
            c = int(np.argmax(model.classify(group[0])))
            ch, r = _stability([explainer(model, g, c) for g in group], group)
            change.append(ch)
            ris.append(r)
        with np.errstate(invalid="ignore"):
            stab_change = float(np.nanmean(change)) if np.isfinite(change).any() else math.nan
            stab_ris = float(np.nanmedian(ris)) if np.isfinite(ris).any() else math.nan
        rows.append(
            CompareRow(
                method=name,
                label=label,
                deletion_auc=float(np.mean(acc["d"])),
                deletion_random_auc=float(np.mean(acc["dr"])),
                deletion_beats=float(np.mean(acc["dw"])),
                insertion_auc=float(np.mean(acc["i"])),
                insertion_random_auc=float(np.mean(acc["ir"])),
                insertion_beats=float(np.mean(acc["iw"])),
                rho_full=float(rho),
                planted_top1=float(hit),
                stability_change=stab_change,
                stability_ris=stab_ris,
                seconds=time.perf_counter() - t0,
            )
        )
        bar.update(1)
    bar.close()
    settings = (
        ("samples", len(idx)),
        ("steps", steps),
        ("seeds", tuple(seeds)),
        ("randomization_samples", randomization_samples),
        ("stability_samples", len(stab_sets)),
        ("perturbations", perturbations),
        ("noise", noise),
        ("seed", seed),
        ("options", tuple((k, tuple(sorted(v.items()))) for k, v in options.items())),
        ("hidden_size", rnn.hidden_size),
    )
    return CompareTable(rows=tuple(rows), settings=settings, cancelled=cancelled)
