"""Random tampering of saved checkpoints into `load_model`.

Every outcome must be a `SkvisError` or a model that loads and gives finite logits
(of the right shape) on a finite input: no other exception, no NaN or inf out.
Bytes are flipped, cut, deleted or inserted; the payload is edited (top-level keys
dropped, renamed, added or replaced; config keys dropped, renamed, added or given
random JSON values, or the whole config replaced; state dict entries dropped, renamed,
added, perturbed, or replaced by tensors of random shape, dtype and values, NaN and inf
included).
Bounded: a fixed number of derandomized examples, a few seconds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from skvis_widgets import SkvisError
from skvis_widgets.model import SkeletonLSTM, load_model, save_model

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CONFIGS = [("lstm", 1), ("gru", 2)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One small saved checkpoint (path) per (cell, layers), and a scratch file to write to."""
    root = tmp_path_factory.mktemp("fuzz_ckpt")
    files = {}
    for cell, layers in CONFIGS:
        torch.manual_seed(0)
        m = SkeletonLSTM(4, 3, hidden_size=5, cell=cell, num_layers=layers)
        m.set_standardization(np.linspace(-0.2, 0.2, 12), np.linspace(0.1, 1.0, 12))
        m.metadata = {"class_names": ["a", "b", "c"]}
        files[cell, layers] = save_model(m, root / f"{cell}{layers}.pt")
    return files, root / "tampered.pt"


def _outcome(path) -> str:
    try:
        model = load_model(path)
    except SkvisError:
        event("refused")
        return "refused"
    event("loaded")
    rng = np.random.default_rng(0)
    shape = (6, model.num_joints, 3)
    x = torch.as_tensor(  # a typical input, and one at the readers' plausibility bound
        np.stack([rng.normal(0.0, 0.5, shape), rng.choice([-10.0, 10.0], shape)]),
        dtype=torch.float32,
    )
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, model.num_classes)
    assert torch.isfinite(logits).all(), logits
    return "loaded"


# -- bytes ----------------------------------------------------------------------------------
@st.composite
def byte_edits(draw):
    kind = draw(st.sampled_from(["flip", "cut", "delete", "insert"]))
    at = draw(st.floats(0, 1, exclude_max=True))  # where, as a fraction of the file
    if kind == "flip":
        return kind, [(at, draw(st.integers(1, 255)))] + draw(
            st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=7)
        )
    if kind == "insert":
        return kind, (at, draw(st.binary(min_size=1, max_size=16)))
    return kind, (at, draw(st.integers(1, 64)))


def _apply_bytes(data: bytes, edit) -> bytes:
    kind, arg = edit
    b = bytearray(data)
    if kind == "flip":
        for at, mask in arg:
            b[int(at * len(b))] ^= mask
        return bytes(b)
    at, what = arg
    i = int(at * len(b))
    if kind == "cut":
        return bytes(b[:i])
    if kind == "delete":
        return bytes(b[:i] + b[i + what :])
    return bytes(b[:i] + what + b[i:])


@SETTINGS
@given(which=st.sampled_from(CONFIGS), edit=byte_edits())
@example(which=("lstm", 1), edit=("flip", []))  # untouched: must load
def test_corrupted_bytes(saved, which, edit):
    files, path = saved
    path.write_bytes(_apply_bytes(files[which].read_bytes(), edit))
    outcome = _outcome(path)
    if edit == ("flip", []):
        assert outcome == "loaded"


# -- payload edits --------------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.uint8,
    torch.bool,
    torch.complex64,
]


@st.composite
def tensors(draw, like: torch.Tensor):
    """A random tensor: often ``like``'s shape (so that deeper checks are reached)."""
    shape = draw(
        st.one_of(
            st.just(tuple(like.shape)),
            st.lists(st.integers(0, 6), max_size=3).map(tuple),
        )
    )
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.sampled_from([0.0, 1e-30, 1e-3, 1.0, 30.0, 1e20, 3e38]))
    seed = draw(st.integers(0, 2**16))
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    t = t * scale
    special = draw(st.sampled_from([None, math.nan, math.inf, -math.inf, 0.0, -1.0]))
    if special is not None and t.numel():
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = special
    if dtype.is_complex:
        return t.to(dtype)
    if not dtype.is_floating_point:
        return t.nan_to_num(0, 0, 0).clamp(-100, 100).to(dtype)
    return t.to(dtype)


@st.composite
def payload_edits(draw, payload):
    """Apply 1-3 random edits to ``payload`` (config parsed into a dict) in place."""
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(["top", "config", "state_dict"]))
        if target == "top":
            keys = sorted(payload, key=str)
            op = draw(st.sampled_from(["drop", "rename", "add", "replace"]))
            key = draw(st.sampled_from(keys)) if keys else "format"
            if op == "drop":
                payload.pop(key, None)
            elif op == "rename":
                payload[key + "_"] = payload.pop(key, None)
            elif op == "add":
                payload[draw(st.text(max_size=6))] = draw(json_values)
            else:
                payload[key] = draw(json_values | st.text(max_size=30))
        elif target == "config":
            cfg = payload.get("config")
            if not isinstance(cfg, dict):
                continue
            op = draw(st.sampled_from(["drop", "rename", "add", "value", "value", "whole"]))
            key = draw(st.sampled_from(sorted(cfg))) if cfg else "hidden_size"
            if op == "drop":
                cfg.pop(key, None)
            elif op == "rename":
                cfg[key + "x"] = cfg.pop(key, None)
            elif op == "add":
                cfg[draw(st.text(max_size=6))] = draw(json_values)
            elif op == "value":
                cfg[key] = draw(json_values | st.integers(-5, 10**6))
            else:
                payload["config"] = draw(st.text(max_size=40) | json_values.map(json.dumps))
        else:
            sd = payload.get("state_dict")
            if not isinstance(sd, dict) or not sd:
                continue
            ops = ["drop", "rename", "add", "tensor", "tensor", "perturb", "perturb", "value"]
            op = draw(st.sampled_from(ops))
            key = draw(st.sampled_from(sorted(sd, key=str)))
            if op == "drop":
                del sd[key]
            elif op == "rename":
                sd[f"{key}.x"] = sd.pop(key)
            elif op == "add":
                sd[draw(st.text(max_size=8))] = draw(tensors(sd[key]))
            elif op == "tensor":
                sd[key] = draw(tensors(sd[key]))
            elif op == "perturb":  # same shape and dtype: often still a valid model
                scale = draw(st.sampled_from([1e-3, 1.0, 1e3, 1e5, 1e7]))
                noise = torch.randn(sd[key].shape, generator=torch.Generator().manual_seed(1))
                sd[key] = sd[key] + scale * noise
            else:
                sd[key] = draw(json_values)
    return payload


@SETTINGS
@given(which=st.sampled_from(CONFIGS), data=st.data())
def test_tampered_payload(saved, which, data):
    files, path = saved
    payload = torch.load(files[which], weights_only=True)
    payload["config"] = json.loads(payload["config"])
    data.draw(payload_edits(payload))
    if isinstance(payload.get("config"), dict):
        payload["config"] = json.dumps(payload["config"])
    torch.save(payload, path)
    _outcome(path)
