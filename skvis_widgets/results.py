"""Results that persist: maps, curves and maximization results in one ``.npz`` file.

`save_results(path, name=value, ...)` writes every array as an array of the
``.npz`` and everything else as JSON beside them; `load_results(path)` gives the
same names and values back (the package's result types rebuilt: `MaximizationResult`,
`PerturbationCurve`, `FaithfulnessSummary`, `RandomizationResult`, with their
`ConstraintSet` and `Topology`). Nothing is pickled, so a results file can never run
code: it is read with ``numpy.load(..., allow_pickle=False)`` and ``json``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SkvisError

__all__ = ["save_results", "load_results", "frozen_array", "freeze_fields"]

_FORMAT = "skvis-widgets/results-v1"
_META = "__skvis_results__"


def frozen_array(value: Any, dtype: Any = None) -> np.ndarray:
    """A read-only copy of ``value`` in ``dtype`` (None: its own): the arrays of every
    frozen result of the package. The caller's array stays writable."""
    arr = np.array(value, dtype=dtype)
    arr.flags.writeable = False
    return arr


def freeze_fields(obj: Any, names: tuple[str, ...], dtype: Any = None) -> None:
    """Replace the fields ``names`` of a frozen dataclass ``obj`` (in its
    ``__post_init__``) by `frozen_array` copies in ``dtype``; a None field stays None."""
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            object.__setattr__(obj, name, frozen_array(value, dtype))


def _types() -> dict[str, type]:
    from .anatomy import Constraint, ConstraintSet
    from .metrics import FaithfulnessSummary, PerturbationCurve, RandomizationResult
    from .optimize import MaximizationResult
    from .skeleton import Topology

    return {
        t.__name__: t
        for t in (
            MaximizationResult,
            PerturbationCurve,
            FaithfulnessSummary,
            RandomizationResult,
            ConstraintSet,
            Constraint,
            Topology,
        )
    }


def _encode(value: Any, key: str, arrays: dict[str, np.ndarray], types: dict[str, type]) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufcUS":
            raise SkvisError(
                f"save_results: {key} is an array of dtype {value.dtype}; only numeric, "
                "boolean and string arrays are stored (no pickle)"
            )
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {"__array__": name}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        items = [_encode(v, f"{key}[{i}]", arrays, types) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SkvisError(f"save_results: {key} has a key {k!r}; keys must be strings")
            out[k] = _encode(v, f"{key}[{k!r}]", arrays, types)
        return {"__dict__": out}
    name = type(value).__name__
    if dataclasses.is_dataclass(value) and types.get(name) is type(value):
        fields = {
            f.name: _encode(getattr(value, f.name), f"{key}.{f.name}", arrays, types)
            for f in dataclasses.fields(value)
            if f.init
        }
        return {"__type__": name, "fields": fields}
    raise SkvisError(
        f"save_results: {key} is a {name}; expected arrays, numbers, strings, lists, dicts "
        f"or one of {sorted(types)}"
    )


def _decode(node: Any, arrays: Mapping[str, np.ndarray], types: dict[str, type], path: Path) -> Any:
    if isinstance(node, list):
        return [_decode(v, arrays, types, path) for v in node]
    if not isinstance(node, dict):
        return node
    if "__array__" in node:
        return frozen_array(arrays[node["__array__"]])
    if "__tuple__" in node:
        return tuple(_decode(v, arrays, types, path) for v in node["__tuple__"])
    if "__dict__" in node:
        return {k: _decode(v, arrays, types, path) for k, v in node["__dict__"].items()}
    if "__type__" in node:
        cls = types.get(node["__type__"])
        if cls is None:
            raise SkvisError(f"{path}: unknown result type {node['__type__']!r}")
        fields = {k: _decode(v, arrays, types, path) for k, v in node["fields"].items()}
        if cls.__name__ == "Topology":
            from .skeleton import TOPOLOGIES

            known = TOPOLOGIES.get(fields["name"])
            if known is not None and known.joint_names == tuple(fields["joint_names"]):
                return known
        try:
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise SkvisError(f"{path}: cannot rebuild a {cls.__name__} ({exc})") from None
    raise SkvisError(f"{path}: unexpected entry {sorted(node)!r} in the results metadata")


def save_results(path: str | Path, **results: Any) -> Path:
    """Write named results to ``path`` (an ``.npz``; the suffix is added if missing).

    Values: NumPy arrays (numeric, boolean or strings), numbers, strings, lists and
    dicts of them, and the package's result objects (`MaximizationResult`,
    `PerturbationCurve`, `FaithfulnessSummary`, `RandomizationResult`). Anything else
    raises `SkvisError` naming it. Returns the path written.

    Example: ``save_results("throw.npz", map=joint_map, result=result, note="seed 0")``.
    """
    if not results:
        raise SkvisError("save_results: nothing to save; pass name=value pairs")
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    types = _types()
    arrays: dict[str, np.ndarray] = {}
    meta = {k: _encode(v, k, arrays, types) for k, v in results.items()}
    payload = json.dumps({"format": _FORMAT, "results": meta})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        # numpy's stub types **kwds as if a key could be allow_pickle: none is (_META
        # and the encoded names are not)
        save: Callable[..., None] = np.savez_compressed
        save(f, **arrays, **{_META: np.array(payload)})
    return path


def load_results(path: str | Path) -> dict[str, Any]:
    """The named results `save_results` wrote, as a dict (arrays read-only).

    Reads without pickle; a file that is not a results file raises `SkvisError`.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise SkvisError(f"{path}: no such results file") from None
    except Exception as exc:  # noqa: BLE001 - any read failure means a bad file
        raise SkvisError(f"{path}: not a results file ({exc})") from None
    try:
        meta = json.loads(str(arrays.pop(_META)))
        ok = meta.get("format") == _FORMAT
    except (KeyError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise SkvisError(f"{path}: not a skvis_widgets results file (format {_FORMAT!r})")
    types = _types()
    try:
        return {k: _decode(v, arrays, types, path) for k, v in meta["results"].items()}
    except KeyError as exc:
        raise SkvisError(f"{path}: the results metadata names a missing array {exc}") from None
