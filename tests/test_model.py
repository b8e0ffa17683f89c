import json
import os
import pickle
import threading
import warnings
import zipfile

import numpy as np
import pytest
import torch

from skvis_widgets import SkvisError, set_memory_limit
from skvis_widgets import model as model_module
from skvis_widgets.data import SkeletonDataset, load_msr_action3d
from skvis_widgets.model import (
    _MAX_ABS,
    _MIN_STD,
    SkeletonLSTM,
    _state_shapes,
    accuracy,
    load_model,
    load_pretrained,
    save_model,
)
from skvis_widgets.train import train_model


@pytest.fixture(params=[("lstm", 1), ("gru", 1), ("lstm", 2)], ids=["lstm", "gru", "lstm2"])
def model(request, make_model):
    cell, layers = request.param
    m = make_model(20, 7, 16, cell=cell, num_layers=layers)
    m.set_standardization(np.linspace(-0.1, 0.1, 60), np.linspace(0.5, 1.5, 60))
    torch.manual_seed(0)  # the tests' own random inputs
    return m


def test_shapes(model):
    x = torch.randn(3, 11, 20, 3)
    assert model(x).shape == (3, 7)
    assert model(x.reshape(3, 11, 60)).shape == (3, 7)
    assert model.hidden_states(x).shape == (3, 11, 16)
    assert model.frame_logits(x).shape == (3, 11, 7)
    p = model.classify(x[0].numpy())
    assert p.shape == (7,) and p.sum() == pytest.approx(1.0) and (p >= 0).all()


def test_lengths_equal_unpadded_runs(model):
    x = torch.randn(3, 11, 20, 3)
    lengths = [11, 6, 1]
    logits = model(x, lengths)
    hidden = model.hidden_states(x, lengths)
    for b, n in enumerate(lengths):
        alone = model(x[b : b + 1, :n])
        torch.testing.assert_close(logits[b], alone[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            hidden[b, :n], model.hidden_states(x[b : b + 1, :n])[0], atol=1e-5, rtol=1e-5
        )
        assert not hidden[b, n:].any()
    # forward is the FC layer on the last valid hidden state
    last = hidden[torch.arange(3), torch.tensor(lengths) - 1]
    torch.testing.assert_close(model.fc(last), logits, atol=1e-5, rtol=1e-5)


def test_hidden_states_of_lower_layer_are_differentiable(make_model):
    m = make_model(20, 4, 8, num_layers=2, seed=1)
    torch.manual_seed(1)
    x = torch.randn(1, 5, 20, 3, requires_grad=True)
    h0 = m.hidden_states(x, layer=0)
    ref = torch.nn.LSTM(60, 8, batch_first=True)
    ref.load_state_dict(
        {k.replace("_l0", "_l0"): v for k, v in m.rnn.state_dict().items() if "_l0" in k}
    )
    torch.testing.assert_close(h0, ref(m.preprocess(x))[0])
    h0[0, -1, 3].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert m.rnn.weight_ih_l0.grad is not None


def test_save_load_round_trip(model, tmp_path):
    model.metadata = {"class_names": list("abcdefg"), "test_accuracy": 0.5}
    path = save_model(model, tmp_path / "m.pt")
    loaded = load_model(path)
    x = torch.randn(2, 9, 20, 3)
    torch.testing.assert_close(loaded(x, [9, 4]), model(x, [9, 4]), atol=0, rtol=0)
    assert loaded.metadata == model.metadata and loaded.config == model.config
    assert not loaded.training


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_cannot_run_code(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save(
        {"format": "skvis-widgets/model-v1", "config": "{}", "state_dict": {}, "x": Evil()}, bad
    )
    with pytest.raises(SkvisError, match="not a skvis_widgets model file"):
        load_model(bad)
    other = tmp_path / "other.pt"
    other.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(SkvisError, match="not a skvis_widgets model file"):
        load_model(other)
    with pytest.raises(SkvisError, match="no such model file"):
        load_model(tmp_path / "missing.pt")


# -- tampered checkpoints: every one a SkvisError naming the key --------------------------------
@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, make_model):
    m = make_model(20, 7, 16)
    m.metadata = {"class_names": list("abcdefg")}
    return save_model(m, tmp_path_factory.mktemp("ckpt") / "small.pt")


def _payload(path):
    """The checkpoint's payload with its config parsed (so a test can edit it)."""
    p = torch.load(path, weights_only=True)
    p["config"] = json.loads(p["config"])
    return p


class _RawDict(dict):
    """A config that `_save` stores as it is, not as a JSON string."""


def _save(p, path):
    p = dict(p)
    if isinstance(p.get("config"), _RawDict):
        p["config"] = dict(p["config"])
    elif isinstance(p.get("config"), dict):
        p["config"] = json.dumps(p["config"])
    torch.save(p, path)
    return path


def _config(**changes):
    return lambda p: p["config"].update(changes)


def _tensor(key, value):
    return lambda p: p["state_dict"].__setitem__(key, value)


def _entry(key, index, value):
    return lambda p: p["state_dict"][key].__setitem__(index, value)


def _set(key, value):
    return lambda p: p.__setitem__(key, value)


def _drop(*keys):
    def edit(p):
        d = p
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]

    return edit


TAMPERED = {
    # the payload
    "format missing": (_drop("format"), "no key 'format'"),
    "format wrong": (_set("format", "other/v9"), "format 'other/v9'"),
    "config missing": (_drop("config"), "lacks key.*'config'"),
    "state_dict missing": (_drop("state_dict"), "lacks key.*'state_dict'"),
    "extra key": (_set("extra", 1), "unexpected key.*'extra'"),
    "config a dict": (_set("config", _RawDict(hidden_size=16)), "'config' must be a JSON string"),
    "config not JSON": (_set("config", "{not json"), "'config' is not valid JSON"),
    "config deeply nested": (_set("config", "[" * 100_000), "'config' is not valid JSON"),
    "config a list": (_set("config", "[1, 2]"), "'config' must hold a JSON object"),
    # the config
    "config key missing": (_drop("config", "hidden_size"), "config lacks key.*'hidden_size'"),
    "metadata missing": (_drop("config", "metadata"), "config lacks key.*'metadata'"),
    "config key unknown": (
        _config(bidirectional=True),
        "config has unexpected key.*'bidirectional'",
    ),
    "hidden_size 'a'": (_config(hidden_size="a"), "'hidden_size' must be a positive int"),
    "hidden_size -1": (_config(hidden_size=-1), "'hidden_size' must be a positive int"),
    "hidden_size 0": (_config(hidden_size=0), "'hidden_size' must be a positive int"),
    "hidden_size 1.5": (_config(hidden_size=1.5), "'hidden_size' must be a positive int"),
    "hidden_size True": (_config(hidden_size=True), "'hidden_size' must be a positive int"),
    "hidden_size 10**9": (
        _config(hidden_size=10**9),
        r"'rnn.weight_ih_l0'.*hidden_size 1000000000",
    ),
    "num_joints 25": (_config(num_joints=25), r"'feature_mean'\] has shape \(60,\).*needs \(75,\)"),
    "num_classes 'x'": (_config(num_classes="x"), "'num_classes' must be a positive int"),
    "num_layers 0": (_config(num_layers=0), "'num_layers' must be a positive int"),
    "num_layers 2": (_config(num_layers=2), "lacks key.*'rnn.weight_ih_l1'"),
    "num_layers 10**9": (_config(num_layers=10**9), "'num_layers' is 1000000000"),
    "cell 'xyz'": (_config(cell="xyz"), "'cell' must be one of"),
    "cell ['lstm']": (_config(cell=["lstm"]), "'cell' must be one of"),
    "cell 'gru'": (_config(cell="gru"), r"'rnn.weight_ih_l0'\] has shape \(64, 60\).*\(48, 60\)"),
    "dropout 'a'": (_config(dropout="a"), "'dropout' must be a number in"),
    "dropout NaN": (_config(dropout=float("nan")), "'dropout' must be a number in"),
    "dropout 2": (_config(dropout=2.0), "'dropout' must be a number in"),
    "metadata a list": (_config(metadata=[1]), "'metadata' must be a JSON object"),
    # the state dict
    "state_dict a list": (_set("state_dict", [1]), "'state_dict' must be a dict of tensors"),
    "a list, not a tensor": (_tensor("fc.bias", [0.0] * 7), r"\['fc.bias'\] is a list"),
    "key not a string": (_tensor(3, torch.zeros(1)), "state_dict key 3 is not a string"),
    "key missing": (_drop("state_dict", "fc.bias"), "lacks key.*'fc.bias'"),
    "key unexpected": (_tensor("fc.extra", torch.zeros(1)), "unexpected key.*'fc.extra'"),
    "wrong shape": (_tensor("fc.bias", torch.zeros(8)), r"'fc.bias'\] has shape \(8,\)"),
    "int64": (_tensor("fc.bias", torch.zeros(7, dtype=torch.int64)), r"'fc.bias'.*int64"),
    "bool": (_tensor("fc.bias", torch.zeros(7, dtype=torch.bool)), r"'fc.bias'.*bool"),
    "complex": (_tensor("fc.bias", torch.zeros(7, dtype=torch.complex64)), r"'fc.bias'.*complex"),
    "meta tensor": (_tensor("fc.bias", torch.empty(7, device="meta")), r"'fc.bias'.*on meta"),
    "sparse": (_tensor("fc.weight", torch.zeros(7, 16).to_sparse()), r"'fc.weight'.*sparse"),
    "NaN weight": (_entry("rnn.weight_hh_l0", (0, 3), np.nan), r"weight_hh_l0'.*NaN.*\(0, 3\)"),
    "inf weight": (_entry("fc.weight", (2, 0), np.inf), r"'fc.weight'.*infinite.*\(2, 0\)"),
    "float64 beyond float32": (
        _tensor("fc.bias", torch.full((7,), 1e300, dtype=torch.float64)),
        r"'fc.bias'\] \(as float32\).*infinite",
    ),
    "NaN mean": (_entry("feature_mean", 5, np.nan), r"'feature_mean'.*NaN.*\(5,\)"),
    "huge weight": (
        _entry("rnn.weight_ih_l0", (1, 2), 1e30),
        r"weight_ih_l0'.*1e\+30 at index \(1, 2\)",
    ),
    "huge mean": (_tensor("feature_mean", torch.full((60,), 3e38)), "'feature_mean'.*beyond 1e"),
    "zero std": (
        _tensor("feature_std", torch.zeros(60)),
        "'feature_std'.*at least 1e-07.*0 at index 0",
    ),
    "tiny std": (_entry("feature_std", 4, 1e-30), "'feature_std'.*at least.*1e-30 at index 4"),
    "negative std": (_entry("feature_std", 9, -1.0), "'feature_std'.*at least.*-1 at index 9"),
    "NaN std": (_entry("feature_std", 1, np.nan), r"'feature_std'.*NaN.*\(1,\)"),
}


@pytest.mark.parametrize("edit, match", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_checkpoint_raises_naming_the_key(small_checkpoint, tmp_path, edit, match):
    p = _payload(small_checkpoint)
    edit(p)
    with pytest.raises(SkvisError, match=match):
        load_model(_save(p, tmp_path / "bad.pt"))


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "empty file"),
        (bytes(range(256)) * 16, "not a skvis_widgets model file"),
        ("half", "not a skvis_widgets model file"),
    ],
    ids=["empty", "random bytes", "truncated"],
)
def test_broken_file_raises(small_checkpoint, tmp_path, data, match):
    if data == "half":
        data = small_checkpoint.read_bytes()[: small_checkpoint.stat().st_size // 2]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data)
    with pytest.raises(SkvisError, match=match):
        load_model(bad)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_values_at_the_load_bounds_keep_logits_finite(cell, tmp_path):
    # The worst model load_model accepts: every value +-_MAX_ABS, feature_std _MIN_STD.
    m = SkeletonLSTM(25, 60, hidden_size=64, cell=cell, num_layers=2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in m.state_dict().values():
            t.copy_(torch.where(torch.rand(t.shape, generator=g) < 0.5, -_MAX_ABS, _MAX_ABS))
        m.feature_std.fill_(_MIN_STD)
    loaded = load_model(save_model(m, tmp_path / "edge.pt"))
    for size in (10.0, 1e14):  # the readers' plausibility bound; below the documented 1e15 m
        x = torch.where(torch.rand(3, 10, 25, 3, generator=g) < 0.5, -size, size)
        with torch.no_grad():
            assert torch.isfinite(loaded(x)).all()


def test_state_shapes_are_the_models():
    # _state_shapes restates nn.LSTM/nn.GRU's parameter layout: check it against them.
    for cell in ("lstm", "gru"):
        for layers in (1, 2, 3):
            m = SkeletonLSTM(4, 3, hidden_size=5, cell=cell, num_layers=layers)
            shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
            assert _state_shapes(m.config) == shapes


def _must_not_call(what):
    def refuse(*args, **kwargs):
        raise AssertionError(f"load_model called {what} before checking the checkpoint")

    return refuse


def test_sizes_checked_before_any_model_is_built(small_checkpoint, tmp_path, monkeypatch):
    # hidden_size 20,000 with the small tensors: 6.4 GB if the model were built first.
    p = _payload(small_checkpoint)
    p["config"]["hidden_size"] = 20_000
    small = _save(p, tmp_path / "claims_huge.pt")
    # A 4 kB file whose tensors are stride-0 views of one float each, shaped like a
    # hidden_size 8,000 model: the shapes match, the model would take 1 GB.
    p = _payload(small_checkpoint)
    p["config"]["hidden_size"] = h = 8_000
    shapes = _state_shapes(p["config"])
    for key in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"):
        p["state_dict"][key] = torch.zeros(1).expand(*shapes[key])
    p["state_dict"]["fc.weight"] = torch.zeros(1).expand(7, h)
    views = _save(p, tmp_path / "views.pt")
    assert views.stat().st_size < 10_000
    monkeypatch.setattr(model_module, "SkeletonLSTM", _must_not_call("SkeletonLSTM"))
    with pytest.raises(SkvisError, match=r"'rnn.weight_ih_l0'\] has shape \(64, 60\).*20000"):
        load_model(small)
    with pytest.raises(SkvisError, match=r"hold \d+ bytes, more than the file's \d+.*weight_hh"):
        load_model(views)


def test_compressed_checkpoint_refused_before_unpickling(tmp_path, monkeypatch):
    # Recompressed, zip records of zeros unpack ~1000x: a 2 MB file could ask for 2 GB.
    m = SkeletonLSTM(20, 7, hidden_size=64)
    with torch.no_grad():
        for t in m.state_dict().values():
            t.fill_(0.5)
    plain = save_model(m, tmp_path / "plain.pt")
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for record in src.infolist():
            dst.writestr(record.filename, src.read(record.filename))
    assert packed.stat().st_size * 10 < plain.stat().st_size
    monkeypatch.setattr(torch, "load", _must_not_call("torch.load"))
    with pytest.raises(SkvisError, match=r"unpack to \d+ bytes, more than the file's"):
        load_model(packed)


def test_file_over_the_memory_limit_refused(small_checkpoint):
    previous = set_memory_limit(1000)
    try:
        with pytest.raises(SkvisError, match="more than the memory limit"):
            load_model(small_checkpoint)
    finally:
        set_memory_limit(previous)
    assert load_model(small_checkpoint).hidden_size == 16


def test_directory_and_legacy_format_refused(small_checkpoint, tmp_path):
    with pytest.raises(SkvisError, match="not a regular file"):
        load_model(tmp_path)
    legacy = tmp_path / "legacy.pt"
    p = torch.load(small_checkpoint, weights_only=True)
    torch.save(p, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(SkvisError, match="not a skvis_widgets model file.*not a zip file"):
        load_model(legacy)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    result = []

    def load():
        try:
            load_model(fifo)
        except SkvisError as exc:
            result.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # blocked in open(): give it a writer so that it returns
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join()
        pytest.fail("load_model blocked on a FIFO")
    assert result and "not a regular file" in str(result[0])


def test_float64_checkpoint_loads_as_float32(small_checkpoint, tmp_path):
    p = _payload(small_checkpoint)
    p["state_dict"] = {k: v.double() for k, v in p["state_dict"].items()}
    m = load_model(_save(p, tmp_path / "f64.pt"))
    ref = load_model(small_checkpoint)
    assert m.fc.weight.dtype == torch.float32
    for a, b in zip(m.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_wrong_input_raises(model):
    with pytest.raises(SkvisError, match=r"\(2, 5, 25, 3\).*20 joints"):
        model(torch.zeros(2, 5, 25, 3))
    with pytest.raises(SkvisError, match="zero frames"):
        model(torch.zeros(2, 0, 20, 3))
    with pytest.raises(SkvisError, match="lengths must be in 1..5"):
        model(torch.zeros(2, 5, 20, 3), [5, 0])
    with pytest.raises(SkvisError, match=r"\(4, 25, 3\).*model expects 20 joints"):
        model.classify(np.zeros((4, 25, 3)))
    with pytest.raises(SkvisError, match="NaN"):
        model.classify(np.full((4, 20, 3), np.nan))
    with pytest.raises(SkvisError, match="cell must be"):
        SkeletonLSTM(20, 3, cell="rnn")


def _toy(seed=0):
    # Two classes told apart by the motion of one hand: learnable in a few epochs.
    rng = np.random.default_rng(seed)
    from skvis_widgets.skeleton import MSR_ACTION3D

    base = np.zeros((20, 3), np.float32)
    ix = MSR_ACTION3D.index
    for name, pos in {
        "spine_base": (0, 0, 0), "spine_mid": (0, 0.25, 0), "spine_shoulder": (0, 0.5, 0),
        "head": (0, 0.7, 0), "shoulder_left": (-0.2, 0.45, 0), "shoulder_right": (0.2, 0.45, 0),
        "hip_left": (-0.1, -0.05, 0), "hip_right": (0.1, -0.05, 0),
    }.items():  # fmt: skip
        base[ix(name)] = pos
    seqs, labels = [], []
    for i in range(40):
        y = i % 2
        t = np.linspace(0, 1, 12)[:, None]
        s = np.repeat(base[None], 12, 0) + rng.normal(0, 0.01, (12, 20, 3)).astype(np.float32)
        s[:, ix("hand_right"), 1] += (0.5 * t if y else -0.5 * t)[:, 0]
        seqs.append(s)
        labels.append(y)
    return SkeletonDataset.from_arrays(
        seqs, labels, MSR_ACTION3D, ["down", "up"], np.arange(40) % 4
    )


def test_training_learns_is_reproducible_and_keeps_global_rng():
    data = _toy()
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        m = SkeletonLSTM(20, 2, hidden_size=8)
        # a short fast recipe (the defaults are the shipped model's 60-epoch one)
        hist = train_model(
            m,
            data,
            epochs=15,
            batch_size=8,
            lr=0.005,
            label_smoothing=0.0,
            average_last=0,
            seed=3,
            progress=False,
        )
        results.append((m, hist))
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    torch.manual_seed(123)
    m3 = SkeletonLSTM(20, 2, hidden_size=8)
    torch.manual_seed(0)
    train_model(m3, data, epochs=1, batch_size=8, seed=3, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG untouched
    (m1, h1), (m2, h2) = results
    assert h1.loss == h2.loss
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert h1.loss[-1] < h1.loss[0]
    assert accuracy(m1, data) >= 0.9
    assert not m1.training


def test_training_rejects_mismatched_data():
    with pytest.raises(SkvisError, match="dataset has 20 joints, the model expects 25"):
        train_model(SkeletonLSTM(25, 2), _toy(), epochs=1, progress=False)
    with pytest.raises(SkvisError, match="2 classes.*3 outputs"):
        train_model(SkeletonLSTM(20, 3), _toy(), epochs=1, progress=False)


def test_pretrained_msr_action3d_accuracy(pretrained_model):
    model = pretrained_model
    assert not model.training
    md = model.metadata
    assert md["dataset"] == "MSR Action3D" and md["topology"] == "msr_action3d"
    assert len(md["class_names"]) == 20 and md["hidden_size"] == model.hidden_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, test = load_msr_action3d().split_cross_subject()
    acc = accuracy(model, test)
    assert acc >= 0.70
    assert acc == pytest.approx(md["test_accuracy"], abs=1e-9)
    with pytest.raises(SkvisError, match="no pretrained model"):
        load_pretrained("ntu120")


def test_lower_layer_states_leave_the_global_rng_alone(make_model):
    m = make_model(20, 4, 8, num_layers=2)
    before = torch.random.get_rng_state()
    m.hidden_states(torch.zeros(1, 3, 20, 3), layer=0)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_probabilities_is_the_softmax_of_each_sequence_alone(model):
    """Batched, padded, with lengths: equal to a softmax written here of each
    sequence's logits run alone, for any model of the contract."""
    from skvis_widgets.adapters import as_recurrent_classifier
    from skvis_widgets.model import probabilities

    rng = np.random.default_rng(3)
    seqs = [rng.normal(0, 0.3, (t, 20, 3)).astype(np.float32) for t in (6, 1, 9, 4, 9)]
    wrapped = as_recurrent_classifier(
        model, recurrent="rnn", head="fc", preprocess=model.preprocess
    )
    for m in (model, wrapped):
        got = probabilities(m, seqs, batch_size=2)
        assert got.shape == (5, 7) and got.dtype == np.float64
        for k, s in enumerate(seqs):
            with torch.no_grad():
                z = m(torch.from_numpy(s)[None])[0].double().numpy()
            ref = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            np.testing.assert_allclose(got[k], ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(model.predict(seqs), probabilities(model, seqs))
    np.testing.assert_array_equal(model.classify(seqs[2]), probabilities(model, seqs[2:3])[0])
    assert probabilities(model, []).shape == (0, 7)
    with pytest.raises(SkvisError, match=r"walks\[1\]: .*19 joints"):
        probabilities(model, [seqs[0], seqs[1][:, :19]], name="walks")
    with pytest.raises(SkvisError, match="batch_size must be a positive int"):
        probabilities(model, seqs, batch_size=0)


def test_training_names_still_importable_from_model_with_a_warning():
    import skvis_widgets.train as train

    with pytest.warns(DeprecationWarning, match="moved to skvis_widgets.train.train_model"):
        from skvis_widgets.model import train_model as old
    assert old is train.train_model
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        model_module.nothing  # noqa: B018
