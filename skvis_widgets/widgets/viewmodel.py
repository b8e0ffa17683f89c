"""What the explorer displays, as pure functions returning frozen data (no widget code).

`SkeletonVis` computes one `Shown` per state (sample, target or unit, view, method,
scaling, iteration) with `sensitivity_view` or `maximization_view` and assigns it to its
``shown`` trait; an observer hands it to the scene, the heatmap, the legends and the
panels. Tests and other front ends can call these functions directly.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from ..colors import ColorScale, fit_scale

__all__ = [
    "Shown",
    "sensitivity_view",
    "maximization_view",
    "describe_step",
    "describe_residuals",
    "largest_change_frame",
]


@dataclass(frozen=True, eq=False)
class Shown:
    """One screen of the explorer.

    Attributes
    ----------
    positions : (T, J, 3) float32
        The sequence drawn (the input, or a step of a maximization), metres.
    values : (T, J) array or None
        The map colouring the joints and filling the heatmap (None: no map).
    scale : ColorScale or None
        How ``values`` become colours (the legends show it).
    original : (T, J, 3) array or None
        The input drawn as a ghost under ``positions`` (activation maximization).
    title : str
        The heatmap's axis label.
    status : str
        The maximization panel's text (HTML; ``""`` in the sensitivity view).
    camera : tuple
        What the camera frames (it is re-aimed only when this changes).
    camera_points : (..., 3) array
        The points it frames: the whole sequence (and the history), not one frame.
    focus : int or None
        The frame to show after a run: where the sequence changed most.
    """

    positions: np.ndarray
    values: np.ndarray | None = None
    scale: ColorScale | None = None
    original: np.ndarray | None = None
    title: str = "frame"
    status: str = ""
    camera: tuple = ()
    camera_points: np.ndarray = field(default_factory=lambda: np.zeros((1, 3)))
    focus: int | None = None

    def colors(self, frame: int) -> np.ndarray | None:
        """``(J, 3)`` RGB of ``frame`` (None: no map, one colour)."""
        if self.values is None or self.scale is None:
            return None
        return self.scale.colors(self.values[frame], frame)

    def all_colors(self) -> np.ndarray | None:
        """``(T, J, 3)`` RGB of every frame (for exports)."""
        if self.values is None or self.scale is None:
            return None
        return self.scale.colors(self.values)


def sensitivity_view(
    sequence: np.ndarray,
    values: np.ndarray,
    *,
    what: str,
    method: str,
    scaling: str = "robust",
    dataset_vmax: float | None = None,
    camera: tuple = (),
    units: str = "normalized",
) -> Shown:
    """The input coloured by its sensitivity map.

    Parameters
    ----------
    sequence : (T, J, 3)
    values : (T, J)
        The map (`Analysis.joint_map`).
    what : str
        The target in words (``"class high throw"``, ``"unit 12"``).
    method : str
        The map's method, in words.
    scaling : str
        A `skvis_widgets.colors.SCALINGS` value; ``"dataset"`` needs ``dataset_vmax``
        (without it, the robust scale is used and the legend says so).
    units : str
        The map's units for the legend: ``"normalized"`` for the paper's eq-3 maps, ``""``
        for methods whose values are raw gradients or attributions.
    """
    quantity = f"sensitivity to {what}, {method}"
    if scaling == "dataset" and dataset_vmax is None:
        scale = fit_scale(values, "robust", quantity=quantity, units=units)
        scale = ColorScale(
            scale.scaling, scale.vmax, scale.quantity, scale.units, scale.cmap,
            scale.note + " (the dataset-wide scale is being computed)",
        )  # fmt: skip
    else:
        scale = fit_scale(
            values,
            scaling,
            vmax=dataset_vmax if scaling == "dataset" else None,
            quantity=quantity,
            units=units,
        )
    return Shown(
        positions=sequence,
        values=values,
        scale=scale,
        title=f"frame (sensitivity to {what})",
        camera=camera,
        camera_points=sequence,
    )


def largest_change_frame(history: np.ndarray, k: int | None = None) -> int:
    """The frame where step ``k`` (default: the last) moved the joints most from the input."""
    h = np.asarray(history)
    k = len(h) - 1 if k is None else k
    disp = np.linalg.norm(h[k] - h[0], axis=-1).sum(-1)  # (T,)
    return int(np.argmax(disp))


def describe_residuals(residuals: np.ndarray, names: tuple[str, ...]) -> str:
    """The worst violation of the bones (cm) and of the angles (degrees), in words."""
    r = np.abs(np.asarray(residuals, dtype=np.float64))
    if r.size == 0:
        return "no constraints measured"
    worst = r.reshape(-1, r.shape[-1]).max(0) if r.ndim > 1 else r
    if len(names) != len(worst):
        return f"largest constraint residual {worst.max():.3g}"
    bones = [v for n, v in zip(names, worst, strict=True) if n.startswith("bone")]
    others = [(v, n) for n, v in zip(names, worst, strict=True) if not n.startswith("bone")]
    parts = []
    if bones:
        parts.append(f"bone lengths within {100 * max(bones):.2g} cm")
    if others:
        v, n = max(others)
        unit = " deg" if n.startswith(("angle", "plane")) else ""
        parts.append(f"worst other: {html.escape(n)} {v:.2g}{unit}")
    return ", ".join(parts)


def describe_step(result, k: int, score_name: str) -> str:
    """The maximization panel's text for step ``k`` of ``result`` (HTML, plain words)."""
    scores = np.asarray(result.scores, dtype=np.float64).reshape(-1)
    n = len(result.history) - 1
    if k == 0:
        step = "the input"
    elif k == n:
        step = "converged" if result.converged else f"step {k} (last)"
        if result.cancelled:
            step += ", cancelled"
    else:
        step = f"step {k}"
    parts = [f"iteration {k}/{n}: <b>{step}</b>"]
    if len(scores) > k:
        change = scores[k] - scores[0]
        parts.append(
            f"score = {html.escape(score_name)}: <b>{scores[k]:.4g}</b> "
            f"(input {scores[0]:.4g}, change {change:+.3g})"
        )
    residuals = result.residuals
    if residuals is not None and len(residuals) > k:
        text = describe_residuals(residuals[k], tuple(result.constraint_names))
        if k == 0:
            # The input is a recording: its bones differ from their mean length by sensor
            # noise; that is not a broken constraint.
            parts.append(f"the input's own deviations from its mean bone lengths: {text}")
        else:
            what = "constraint residuals" if result.constrained else "unconstrained run; residuals"
            parts.append(f"{what} of the synthesized sequence: {text}")
    if k == n and result.message:  # why the run stopped, in the optimizer's words
        parts.append(html.escape(result.message))
    # Where the input itself breaks one of the paper's limits, that limit was widened
    # for the run (default_constraints): say which and how often.
    violation = result.input_violation or {}
    # (bone lengths are never widened: a recording's own length noise is not news)
    broken = sorted(
        ((r, name) for name, r in violation.items() if r > 0 and not name.startswith("bone:")),
        reverse=True,
    )
    if broken:
        parts.append(
            "the input breaks the paper's limits: "
            + ", ".join(f"{html.escape(name)} on {r:.0%} of frames" for r, name in broken[:3])
        )
    return "<br>".join(parts)


def maximization_view(
    sequence: np.ndarray, result, k: int, *, score_name: str, camera: tuple = ()
) -> Shown:
    """Step ``k`` of an activation maximization (``result=None``: the input, no run yet).

    The joints are coloured by their displacement from the input (cm), on one scale for
    the whole history; the input is the ghost; ``focus`` is the frame the last step
    moved most.
    """
    if result is None:
        return Shown(
            positions=sequence,
            title="frame (run activation maximization to see a history)",
            status=(f"Shows the input. Press <b>Run</b> to climb the {html.escape(score_name)}."),
            camera=camera,
            camera_points=sequence,
        )
    history = np.asarray(result.history, dtype=np.float32)
    k = int(min(max(k, 0), len(history) - 1))
    disp = 100.0 * np.linalg.norm(history - history[0], axis=-1)  # (K+1, T, J), cm
    top = float(disp.max())
    scale = fit_scale(
        disp[k],
        "dataset",
        vmax=top if top > 0 else 1.0,
        quantity="displacement from the input",
        units="cm",
    )
    scale = ColorScale(
        "history", scale.vmax, scale.quantity, scale.units, scale.cmap,
        "the largest displacement of the run",
    )  # fmt: skip
    return Shown(
        positions=history[k],
        values=disp[k],
        scale=scale,
        original=sequence,
        title="frame (displacement from the input, cm)",
        status=describe_step(result, k, score_name),
        camera=("maximization", id(result)),
        camera_points=np.concatenate([history.reshape(-1, 3), sequence.reshape(-1, 3)]),
        focus=largest_change_frame(history),
    )
