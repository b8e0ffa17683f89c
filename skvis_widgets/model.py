"""The paper's figure 1: a recurrent layer (LSTM or GRU), an FC layer, a softmax.

`SkeletonLSTM` takes ``(B, T, J, 3)`` skeleton sequences (or ``(B, T, J*3)``),
standardizes each input coordinate with statistics kept as buffers inside the
model, runs the recurrent layer(s), and applies the FC layer to the hidden state
of the last valid frame. The engines read its parts through the contract
`skvis_widgets._checks.SkeletonClassifier`: ``preprocess`` (an affine map per frame),
``rnn`` (an ``nn.LSTM`` or ``nn.GRU``, ``batch_first``) and ``fc`` (an ``nn.Linear``).

`probabilities` is the softmax: the one way to get class probabilities from any model
that follows the contract. `save_model`, `load_model` and `load_pretrained` write and
read checkpoints safely. Training is in `skvis_widgets.train`.
"""

from __future__ import annotations

import json
import os
import reprlib
import warnings
import zipfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import _checks
from ._checks import SkeletonClassifier
from .adapters import run_layers
from .data._files import open_regular
from .data.arrays import pad_sequences
from .errors import SkvisError
from .limits import check_memory
from .skeleton import Topology, check_model_topology, get_topology, topology_metadata

__all__ = [
    "SkeletonLSTM",
    "probabilities",
    "accuracy",
    "save_model",
    "load_model",
    "load_pretrained",
    "PRETRAINED",
]

#: Pretrained models shipped with the package: name -> file in skvis_widgets/pretrained/.
PRETRAINED = {"msr_action3d": "msr_action3d.pt"}
_FORMAT = "skvis-widgets/model-v1"


class SkeletonLSTM(nn.Module):
    """LSTM (or GRU) action classifier on skeleton sequences.

    Parameters
    ----------
    num_joints : int
        ``J``; the input has ``J * 3`` features per frame.
    num_classes : int
        ``C``, the FC layer's outputs.
    hidden_size : int
        ``H``, units per recurrent layer.
    cell : {"lstm", "gru"}
    num_layers : int
    dropout : float
        Between recurrent layers and before the FC layer, in training only.
    topology : Topology or str, optional
        The skeleton of the input: recorded in ``metadata`` (name, joint names, bones;
        see `skvis_widgets.skeleton.topology_metadata`) and so in the checkpoint.
        `train_model` records the training data's when none is given.

    Attributes
    ----------
    metadata : dict
        JSON-serializable: ``topology``, ``joint_names``, ``bones`` (the skeleton the
        model reads, which `maximize_activation`, the metrics and the explorer take
        and check data against), class names, accuracy, ...
    """

    #: Buffers ``(J*3,)``: the input's standardization (`set_standardization`).
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(
        self,
        num_joints: int,
        num_classes: int,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        dropout: float = 0.0,
        topology: Topology | str | None = None,
    ) -> None:
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise SkvisError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        self.num_joints = int(num_joints)
        self.num_classes = int(num_classes)
        self.hidden_size = int(hidden_size)
        self.cell = cell
        self.num_layers = int(num_layers)
        self.dropout_p = float(dropout)
        f = self.num_joints * 3
        self.register_buffer("feature_mean", torch.zeros(f))
        self.register_buffer("feature_std", torch.ones(f))
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            f,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size, num_classes)
        self.metadata: dict[str, Any] = {}
        if topology is not None:
            topo = get_topology(topology)
            if topo.num_joints != self.num_joints:
                raise SkvisError(
                    f"topology {topo.name!r} has {topo.num_joints} joints; the model was "
                    f"given num_joints={self.num_joints}"
                )
            self.metadata.update(topology_metadata(topo))

    # -- configuration ------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return {
            "num_joints": self.num_joints,
            "num_classes": self.num_classes,
            "hidden_size": self.hidden_size,
            "cell": self.cell,
            "num_layers": self.num_layers,
            "dropout": self.dropout_p,
        }

    @property
    def input_size(self) -> int:
        return self.num_joints * 3

    def set_standardization(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Per-feature input statistics, ``(J*3,)`` each; a tiny ``std`` counts as 1."""
        std = np.where(np.asarray(std) > 1e-6, std, 1.0)
        self.feature_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    # -- the forward pass ------------------------------------------------------------------
    def _check(self, x: Any, lengths: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, T, J*3)`` input on the model's device and dtype, and checked lengths."""
        if not torch.is_tensor(x):
            try:
                x = np.asarray(x, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise SkvisError(f"input: cannot convert to a float array ({exc})") from None
        shape = tuple(x.shape)
        if len(shape) == 3:
            if shape[-1] != self.input_size:
                raise SkvisError(
                    f"input of shape {shape}: expected (B, T, {self.num_joints}, 3) or "
                    f"(B, T, {self.input_size}) for a model of {self.num_joints} joints"
                )
            x = x.reshape(shape[0], shape[1], self.num_joints, 3)
        x, lens, _ = _checks.as_model_input(
            self, x, lengths, "input", detach=False, batch_only=True
        )
        x = x.reshape(x.shape[0], x.shape[1], self.input_size)
        return x, (None if lengths is None else lens.cpu())

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.feature_mean.to(x.dtype)) / self.feature_std.to(x.dtype)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, J, 3)`` or ``(B, T, J*3)`` -> standardized features ``(B, T, J*3)``."""
        return self._standardize(self._check(x)[0])

    def hidden_states(
        self, x: torch.Tensor, lengths: Any = None, *, layer: int = -1
    ) -> torch.Tensor:
        """Hidden states ``(B, T, H)`` of one recurrent layer (default the last).

        Differentiable. Frames past a sequence's length are zero. A lower layer's
        states are computed without dropout between the layers.
        """
        layer = _checks.check_layer(self.num_layers, layer)
        if layer == self.num_layers - 1:
            return self._top(x, lengths)[0]
        feats, lengths = self._check(x, lengths)
        out = run_layers(self.rnn, self._standardize(feats), layer)[layer]
        if lengths is not None:  # frames past a length: zero, as in the top layer
            valid = torch.arange(out.shape[1])[None] < lengths[:, None]
            out = out * valid[..., None].to(out.device, out.dtype)
        return out

    def _top(self, x: Any, lengths: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last layer's hidden states ``(B, T, H)`` (zero past lengths) and the lengths."""
        feats, lengths = self._check(x, lengths)
        feats = self._standardize(feats)
        if lengths is None:
            out, _ = self.rnn(feats)
            return out, None
        packed = pack_padded_sequence(feats, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=feats.shape[1])
        return out, lengths

    def forward(self, x: torch.Tensor, lengths: Any = None) -> torch.Tensor:
        """Class logits ``(B, C)`` from each sequence's last valid frame.

        ``x`` is ``(B, T, J, 3)`` or ``(B, T, J*3)``, finite, with the model's joint
        count; ``lengths`` (whole numbers in ``1..T``) per sequence. Anything else
        raises `SkvisError` naming the shape or value.
        """
        h, lengths = self._top(x, lengths)
        if lengths is None:
            last = h[:, -1]
        else:
            idx = lengths.to(h.device) - 1
            last = h[torch.arange(h.shape[0], device=h.device), idx]
        return self.fc(self.drop(last))

    def frame_logits(self, x: torch.Tensor, lengths: Any = None) -> torch.Tensor:
        """The FC layer applied at every frame: ``(B, T, C)``."""
        return self.fc(self.drop(self._top(x, lengths)[0]))

    def classify(self, sequence: Any) -> np.ndarray:
        """Class probabilities ``(C,)`` float64 for one ``(T, J, 3)`` sequence.

        `probabilities` of the one sequence: in eval mode without changing the model's
        own ``training`` flags, so it is safe beside a training loop.
        """
        return probabilities(self, [_checks.as_model_sequence(self, sequence)])[0]

    def predict(self, sequences: Iterable[Any], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(N, C)`` float64 for ``(T_i, J, 3)`` sequences
        (`probabilities`)."""
        return probabilities(self, sequences, batch_size=batch_size)


def probabilities(
    model: SkeletonClassifier,
    sequences: Iterable[Any],
    *,
    batch_size: int = 64,
    name: str = "sequences",
) -> np.ndarray:
    """Class probabilities ``(N, C)``: the softmax of ``model``'s logits, in float64.

    The one way the package turns a model's logits into probabilities.

    Parameters
    ----------
    model : SkeletonClassifier
        A `SkeletonLSTM` or any model following the contract (e.g. one wrapped by
        `skvis_widgets.adapters.as_recurrent_classifier`).
    sequences : iterable of array-like, or array-like of shape (N, T, J, 3)
        ``(T_i, J, 3)`` sequences in metres. Every one is checked (shape, joint
        count, frames, finiteness; a `SkvisError` names ``name[i]``) before any is
        run. An ``(N, T, J, 3)`` numpy array or tensor is checked as one batch of
        sequences of the same length (the fast path for many perturbed copies).
    batch_size : int
        Sequences per forward pass; each batch is zero-padded to its longest
        sequence and run with its ``lengths`` (an ``(N, T, J, 3)`` batch, all of
        length ``T``, runs without).

    Returns
    -------
    np.ndarray
        ``(N, C)`` float64, each row summing to 1; ``(0, C)`` for no sequences.

    Notes
    -----
    The model runs under ``torch.no_grad`` in `skvis_widgets._checks.eval_view`: in
    eval mode, without switching the caller's ``training`` flags.
    """
    batch_size = _checks.check_positive_int(batch_size, "batch_size")
    _, fc = _checks.check_model(model)
    p = _checks.first_weight(model)
    batches: Iterable[tuple[torch.Tensor, np.ndarray | None]]
    if isinstance(sequences, (np.ndarray, torch.Tensor)) and sequences.ndim == 4 and len(sequences):
        x, _, _ = _checks.as_model_input(model, sequences, name=name, batch_only=True)
        batches = ((x[i : i + batch_size], None) for i in range(0, len(x), batch_size))
    else:
        checked = [
            _checks.as_model_sequence(model, s, name=f"{name}[{i}]")
            for i, s in enumerate(sequences)
        ]
        batches = (
            (torch.from_numpy(batch).to(p.device), lengths)
            for batch, lengths in (
                pad_sequences(checked[i : i + batch_size], dtype=checked[i].dtype)
                for i in range(0, len(checked), batch_size)
            )
        )
    out = []
    with _checks.eval_view(model) as evaluated, torch.no_grad():
        for x, lengths in batches:
            logits = evaluated(x) if lengths is None else evaluated(x, lengths)
            out.append(torch.softmax(logits.double(), -1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, fc.out_features))


def accuracy(model: SkeletonClassifier, dataset: Any) -> float:
    """Fraction of ``dataset`` (a `SkeletonDataset`) that ``model`` labels correctly.

    A dataset whose topology disagrees with the model's raises `SkvisError`.
    """
    if len(dataset) == 0:
        raise SkvisError("accuracy of an empty dataset")
    if getattr(dataset, "topology", None) is not None:
        check_model_topology(model, dataset.topology, "the dataset")
    probs = probabilities(model, dataset.sequences)
    return float((probs.argmax(-1) == dataset.labels).mean())


# -- saving and loading ----------------------------------------------------------------------
#: The constructor's arguments a checkpoint's config holds (next to ``"metadata"``).
_CONFIG_SIZES = ("num_joints", "num_classes", "hidden_size", "num_layers")
_CONFIG_KEYS = (*_CONFIG_SIZES, "cell", "dropout", "metadata")
_PAYLOAD_KEYS = ("format", "config", "state_dict")
#: Gates per recurrent cell: the row blocks of ``weight_ih``, ``weight_hh`` and the biases.
_GATES = {"lstm": 4, "gru": 3}
#: Refused at load, as no trained model holds them: a value beyond _MAX_ABS in magnitude
#: (trained weights and metre-scale statistics are O(1)), a feature_std below _MIN_STD
#: (set_standardization stores any std <= 1e-6 as 1). Within them no sum in the forward
#: pass of an input below 1e15 m can overflow float32, so the logits are finite.
_MAX_ABS = 1e6
_MIN_STD = 1e-7


def save_model(model: SkeletonLSTM, path: str | Path) -> Path:
    """Write the state dict and a JSON config (with ``model.metadata``) to one file.

    The file holds only tensors and strings, so `load_model` reads it with
    ``torch.load(..., weights_only=True)``: a checkpoint can never run code.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": _FORMAT,
        "config": json.dumps({**model.config, "metadata": model.metadata}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    torch.save(payload, path)
    return path


def _keys(keys: Any) -> str:
    """Keys for a message: sorted by repr (pickled dicts may mix key types), at most 8."""
    names = sorted(reprlib.repr(k) for k in keys)
    more = f", ... ({len(names)} in all)" if len(names) > 8 else ""
    return ", ".join(names[:8]) + more


def _check_keys(found: Any, expected: Any, path: Path, what: str, note: str = "") -> None:
    """`SkvisError` naming the keys ``what`` lacks or has beyond ``expected`` (``note`` ends
    the message)."""
    found, expected = set(found), set(expected)
    if missing := expected - found:
        raise SkvisError(f"{path}: {what} lacks key(s) {_keys(missing)}{note}")
    if extra := found - expected:
        raise SkvisError(f"{path}: {what} has unexpected key(s) {_keys(extra)}{note}")


def _state_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state dict's shapes for a `SkeletonLSTM` of ``config``, without building one.

    ``nn.LSTM`` / ``nn.GRU`` stack their gates' rows: ``weight_ih_l{k}`` is
    ``(gates * H, input of layer k)``, ``weight_hh_l{k}`` ``(gates * H, H)``.
    """
    f, h, c = 3 * config["num_joints"], config["hidden_size"], config["num_classes"]
    g = _GATES[config["cell"]] * h
    shapes: dict[str, tuple[int, ...]] = {"feature_mean": (f,), "feature_std": (f,)}
    for k in range(config["num_layers"]):
        shapes[f"rnn.weight_ih_l{k}"] = (g, f if k == 0 else h)
        shapes[f"rnn.weight_hh_l{k}"] = (g, h)
        shapes[f"rnn.bias_ih_l{k}"] = (g,)
        shapes[f"rnn.bias_hh_l{k}"] = (g,)
    shapes["fc.weight"] = (c, h)
    shapes["fc.bias"] = (c,)
    return shapes


def _check_config(text: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The constructor's arguments and the metadata from the JSON ``config`` string."""
    if not isinstance(text, str):
        raise SkvisError(f"{path}: key 'config' must be a JSON string, got {type(text).__name__}")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested JSON
        raise SkvisError(f"{path}: key 'config' is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise SkvisError(
            f"{path}: key 'config' must hold a JSON object, got {type(config).__name__}"
        )
    _check_keys(config, _CONFIG_KEYS, path, "config")
    for key in _CONFIG_SIZES:
        _checks.check_positive_int(config[key], f"{path}: config key {key!r}")
    cell = config["cell"]
    if not (isinstance(cell, str) and cell in _GATES):
        raise SkvisError(
            f"{path}: config key 'cell' must be one of {list(_GATES)}, got {reprlib.repr(cell)}"
        )
    p = config["dropout"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise SkvisError(
            f"{path}: config key 'dropout' must be a number in [0, 1], got {reprlib.repr(p)}"
        )
    metadata = config.pop("metadata")
    if not isinstance(metadata, dict):
        raise SkvisError(
            f"{path}: config key 'metadata' must be a JSON object, got {type(metadata).__name__}"
        )
    return config, metadata


def _check_state_dict(
    state_dict: Any, config: dict[str, Any], path: Path, file_size: int
) -> dict[str, torch.Tensor]:
    """``state_dict`` if it is exactly what a model of ``config`` holds: keys, shapes, values.

    Only shapes are compared until the tensors are known to be backed by the file's
    bytes, so nothing here allocates more than the file holds.
    """
    if not isinstance(state_dict, dict):
        raise SkvisError(
            f"{path}: key 'state_dict' must be a dict of tensors, got {type(state_dict).__name__}"
        )
    for key, t in state_dict.items():
        if not isinstance(key, str):
            raise SkvisError(f"{path}: state_dict key {reprlib.repr(key)} is not a string")
        if not isinstance(t, torch.Tensor):
            raise SkvisError(f"{path}: state_dict[{key!r}] is a {type(t).__name__}, not a tensor")
        if t.layout != torch.strided or t.is_meta or not t.is_floating_point():
            raise SkvisError(
                f"{path}: state_dict[{key!r}] is a {t.layout} {t.dtype} tensor on {t.device}; "
                "expected a dense floating-point tensor"
            )
    # num_layers bounds the loop in _state_shapes: each layer holds four tensors
    if config["num_layers"] > len(state_dict):
        raise SkvisError(
            f"{path}: config key 'num_layers' is {config['num_layers']}, but the state dict "
            f"holds only {len(state_dict)} tensors (4 per layer)"
        )
    sizes = ", ".join(f"{k} {config[k]!r}" for k in (*_CONFIG_SIZES, "cell"))
    expected = _state_shapes(config)
    _check_keys(state_dict, expected, path, "state_dict", f" for the config ({sizes})")
    for key, shape in expected.items():
        if tuple(state_dict[key].shape) != shape:
            raise SkvisError(
                f"{path}: state_dict[{key!r}] has shape {tuple(state_dict[key].shape)}, the "
                f"config ({sizes}) needs {shape}"
            )
    # A few bytes can pickle a stride-0 view of any shape; sharing or repeating storage is
    # the only way the tensors can hold more bytes than the file.
    nbytes = sum(t.numel() * t.element_size() for t in state_dict.values())
    if nbytes > file_size:
        largest = max(state_dict, key=lambda k: state_dict[k].numel())
        raise SkvisError(
            f"{path}: the state dict's tensors hold {nbytes} bytes, more than the file's "
            f"{file_size}: they repeat their storage (the largest is {largest!r}, shape "
            f"{tuple(state_dict[largest].shape)})"
        )
    for key, t in state_dict.items():  # in float32, the model's dtype: 1e300 is inf there
        name = f"{path}: state_dict[{key!r}]"
        values = t.detach().to("cpu", torch.float32).numpy()
        _checks.check_finite(values, f"{name} (as float32)")
        if values.size and np.abs(values).max() > _MAX_ABS:
            i = np.unravel_index(np.abs(values).argmax(), values.shape)
            raise SkvisError(
                f"{name} holds {values[i]:g} at index {tuple(int(k) for k in i)}, beyond "
                f"{_MAX_ABS:g} in magnitude: not the weights of a trained model"
            )
        if key == "feature_std" and values.size and values.min() < _MIN_STD:
            low = int(values.argmin())
            raise SkvisError(
                f"{name} must be at least {_MIN_STD:g} (the input is divided by it), got "
                f"{values[low]:g} at index {low}"
            )
    return state_dict


def _check_checkpoint(
    payload: Any, path: Path, file_size: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, metadata, state_dict)`` of an unpickled checkpoint, checked before any model
    is built; `SkvisError` naming the key for anything `save_model` would not have written.

    ``config`` holds `SkeletonLSTM`'s arguments; the state dict's keys and shapes are
    those of a model of that config, its tensors finite (as float32) and within
    `_MAX_ABS`, ``feature_std`` at least `_MIN_STD`, and all of them backed by the
    ``file_size`` bytes of the file.
    """
    if not isinstance(payload, dict):
        raise SkvisError(
            f"{path}: not a skvis_widgets model file (a {type(payload).__name__}, not a dict "
            f"with keys {_keys(_PAYLOAD_KEYS)})"
        )
    if payload.get("format") != _FORMAT:
        got = (
            f"format {reprlib.repr(payload['format'])}"
            if "format" in payload
            else "no key 'format'"
        )
        raise SkvisError(
            f"{path}: not a skvis_widgets model file ({got}; format {_FORMAT!r} expected)"
        )
    _check_keys(payload, _PAYLOAD_KEYS, path, "the checkpoint")
    config, metadata = _check_config(payload["config"], path)
    state_dict = _check_state_dict(payload["state_dict"], config, path, file_size)
    return config, metadata, state_dict


def _read_checkpoint(path: Path, map_location: str | torch.device) -> tuple[Any, int]:
    """The unpickled payload of a regular file that is a torch zip archive, and its size.

    The file is opened once, without blocking (a FIFO or a device is refused before any
    read), and refused when loading it could exceed the memory limit (about twice its
    size: the loaded tensors and the model's copy) or when its zip records unpack to more
    than the file holds (`save_model` stores them uncompressed).
    """
    if not path.exists() and not path.is_symlink():
        raise SkvisError(f"{path}: no such model file")
    with open_regular(path, "a skvis_widgets model file") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise SkvisError(f"{path}: empty file, not a skvis_widgets model file")
        check_memory(
            2 * size,
            f"loading the {size}-byte model file {path}",
            "check that it is the right file",
        )
        try:
            with zipfile.ZipFile(f) as archive:
                unpacked = sum(record.file_size for record in archive.infolist())
        except Exception as exc:  # noqa: BLE001 - any failure to read the archive: a bad file
            raise SkvisError(f"{path}: not a skvis_widgets model file ({exc})") from None
        if unpacked > size:
            raise SkvisError(
                f"{path}: its zip records unpack to {unpacked} bytes, more than the file's "
                f"{size} (save_model writes them uncompressed)"
            )
        f.seek(0)
        try:
            payload = torch.load(f, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
            raise SkvisError(f"{path}: not a skvis_widgets model file ({exc})") from None
    return payload, size


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> SkeletonLSTM:
    """Read a model written by `save_model` (safely: ``weights_only=True``), in eval mode.

    Anything `save_model` would not have written raises `SkvisError` naming the key:
    a payload other than ``{"format", "config", "state_dict"}``, a config value of the
    wrong type or range, state dict keys or shapes other than the config's model has,
    NaN, infinite or absurdly large weights (beyond 1e6), a ``feature_std`` below
    1e-7. All of it is checked before the model is built, so a config claiming a huge
    model costs nothing; a file that could take more than the memory limit
    (`skvis_widgets.set_memory_limit`) to load is refused before it is read.
    """
    path = Path(path)
    payload, size = _read_checkpoint(path, map_location)
    config, metadata, state_dict = _check_checkpoint(payload, path, size)
    model = SkeletonLSTM(**config)
    model.load_state_dict(state_dict)  # keys and shapes are checked: this cannot fail
    model.metadata = metadata
    return model.eval()


def load_pretrained(name: str = "msr_action3d") -> SkeletonLSTM:
    """A model shipped with the package, in eval mode, with ``metadata`` filled in.

    ``"msr_action3d"``: trained on the cross-subject training half of MSR Action3D
    by ``python -m skvis_widgets.train msr_action3d``; ``metadata["test_accuracy"]``
    is its measured accuracy on the test half.
    """
    if name not in PRETRAINED:
        raise SkvisError(f"no pretrained model {name!r}; available: {list(PRETRAINED)}")
    ref = resources.files("skvis_widgets.pretrained").joinpath(PRETRAINED[name])
    with resources.as_file(ref) as p:
        return load_model(p)


#: Moved to `skvis_widgets.train` (0.1.0); still importable from here for a while.
_MOVED_TO_TRAIN = ("train_model", "TrainingHistory", "TRAINING_DEFAULTS")


def __getattr__(name: str) -> Any:
    """``from skvis_widgets.model import train_model`` (and the other names of
    `_MOVED_TO_TRAIN`): the training moved to `skvis_widgets.train`, which imports this
    module, so it is looked up when asked for, with a DeprecationWarning."""
    if name in _MOVED_TO_TRAIN:
        warnings.warn(
            f"skvis_widgets.model.{name} moved to skvis_widgets.train.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
