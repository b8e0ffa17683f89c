"""The paper's figure 1: a recurrent layer (LSTM or GRU), an FC layer, a softmax.

`SkeletonLSTM` takes ``(B, T, J, 3)`` skeleton sequences (or ``(B, T, J*3)``),
standardizes each input coordinate with statistics kept as buffers inside the
model, runs the recurrent layer(s), and applies the FC layer to the hidden state
of the last valid frame. The saliency engine and the optimizer read its parts
through a small protocol: ``preprocess`` (an affine map per frame), ``rnn`` (an
``nn.LSTM`` or ``nn.GRU``, ``batch_first``) and ``fc`` (an ``nn.Linear``).
"""

from __future__ import annotations

import json
import os
import reprlib
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import _checks
from .data._files import open_regular
from .errors import SkvisError
from .limits import check_memory
from .skeleton import Topology, check_model_topology, get_topology, topology_metadata

__all__ = [
    "SkeletonLSTM",
    "TrainingHistory",
    "train_model",
    "accuracy",
    "save_model",
    "load_model",
    "load_pretrained",
    "PRETRAINED",
    "TRAINING_DEFAULTS",
]

#: The training recipe of the shipped model (`train_model`'s defaults; with
#: ``hidden_size=256, dropout=0.5`` for the model it is ``skvis_widgets.train.DEFAULTS``).
TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 60,
    "batch_size": 32,
    "lr": 0.002,
    "label_smoothing": 0.1,
    "average_last": 20,
    "seed": 0,
}

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
        from .adapters import run_layers  # adapters imports no model code

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

    @torch.no_grad()
    def classify(self, sequence: np.ndarray) -> np.ndarray:
        """Class probabilities ``(C,)`` for one ``(T, J, 3)`` sequence.

        Evaluated in eval mode without changing the model's own ``training`` flags
        (`skvis_widgets._checks.eval_view`), so it is safe beside a training loop.
        """
        x, _, single = _checks.as_model_input(self, sequence)
        if not single:
            raise SkvisError(
                f"sequence: expected shape (T, {self.num_joints}, 3), got {tuple(x.shape)}"
            )
        with _checks.eval_view(self) as model:
            logits = model(x)
        return torch.softmax(logits[0].double(), -1).cpu().numpy()

    @torch.no_grad()
    def predict(self, sequences: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(N, C)`` for a list of ``(T_i, J, 3)`` sequences.

        Every sequence is checked (shape, joint count, frames, finiteness) before any
        is run; the model's ``training`` flags are left as they are (as in `classify`).
        """
        batch_size = _checks.check_positive_int(batch_size, "batch_size")
        checked = []
        for i, s in enumerate(sequences):
            x, _, single = _checks.as_model_input(self, s, name=f"sequences[{i}]")
            if not single:
                raise SkvisError(
                    f"sequences[{i}]: expected shape (T, {self.num_joints}, 3), got "
                    f"{tuple(x.shape)}"
                )
            checked.append(x[0])
        out = []
        with _checks.eval_view(self) as model:
            for i in range(0, len(checked), batch_size):
                chunk = checked[i : i + batch_size]
                lengths = [len(s) for s in chunk]
                x = nn.utils.rnn.pad_sequence(chunk, batch_first=True)
                out.append(torch.softmax(model(x, lengths).double(), -1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.num_classes))


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
    if missing := set(_CONFIG_KEYS) - set(config):
        raise SkvisError(f"{path}: config lacks key(s) {_keys(missing)}")
    if extra := set(config) - set(_CONFIG_KEYS):
        raise SkvisError(f"{path}: config has unknown key(s) {_keys(extra)}")
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
    if missing := set(expected) - set(state_dict):
        raise SkvisError(
            f"{path}: state_dict lacks key(s) {_keys(missing)} for the config ({sizes})"
        )
    if extra := set(state_dict) - set(expected):
        raise SkvisError(
            f"{path}: state_dict has unexpected key(s) {_keys(extra)} for the config ({sizes})"
        )
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
            i = int(values.argmin())
            raise SkvisError(
                f"{name} must be at least {_MIN_STD:g} (the input is divided by it), got "
                f"{values[i]:g} at index {i}"
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
    if missing := set(_PAYLOAD_KEYS) - set(payload):
        raise SkvisError(f"{path}: the checkpoint lacks key(s) {_keys(missing)}")
    if extra := set(payload) - set(_PAYLOAD_KEYS):
        raise SkvisError(f"{path}: the checkpoint has unexpected key(s) {_keys(extra)}")
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


# -- training -------------------------------------------------------------------------------
@dataclass
class TrainingHistory:
    """Per-epoch training loss and accuracies (``val_accuracy`` only with a validation set)."""

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _bone_order(bones: tuple[tuple[int, int], ...], root: int) -> list[tuple[int, int]]:
    """Bones sorted parent-first (a joint's parent bone comes before its children)."""
    placed, order = {root}, []
    while len(order) < len(bones):
        for p, c in bones:
            if p in placed and c not in placed:
                placed.add(c)
                order.append((p, c))
    return order


def _augment(
    seqs: list[np.ndarray],
    rng: np.random.Generator,
    *,
    rotate_deg: float,
    scale: float,
    jitter: float,
    speed: float,
    bone_scale: float = 0.0,
    crop: float = 0.0,
    bones: list[tuple[int, int]] | None = None,
) -> list[np.ndarray]:
    """Small rotations about the vertical (y), scaling, per-bone length changes,
    trimming of the ends, speed changes and jitter: the nuisances between subjects."""
    out = []
    for s in seqs:
        a = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg))
        c, n = np.cos(a), np.sin(a)
        rot = np.array([[c, 0, n], [0, 1, 0], [-n, 0, c]], np.float32)
        s = (s @ rot.T) * rng.uniform(1 - scale, 1 + scale)
        if bone_scale and bones:
            # Longer or shorter bones: move each child with its parent, then stretch the bone.
            f = rng.uniform(1 - bone_scale, 1 + bone_scale, len(bones)).astype(np.float32)
            new = s.copy()
            for k, (p, ch) in enumerate(bones):
                new[:, ch] = new[:, p] + (s[:, ch] - s[:, p]) * f[k]
            s = new
        if crop and len(s) > 8:
            most = max(1, int(len(s) * crop))
            s = s[rng.integers(0, most) : len(s) - rng.integers(0, most)]
        if speed and len(s) > 2:
            t_new = max(2, int(round(len(s) / rng.uniform(1 - speed, 1 + speed))))
            pos = np.linspace(0, len(s) - 1, t_new)
            lo = np.floor(pos).astype(int)
            hi = np.minimum(lo + 1, len(s) - 1)
            w = (pos - lo)[:, None, None].astype(np.float32)
            s = s[lo] * (1 - w) + s[hi] * w
        s = s + rng.normal(0, jitter, s.shape).astype(np.float32)
        out.append(s.astype(np.float32))
    return out


def _pad(seqs: list[np.ndarray], num_joints: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs])
    batch = np.zeros((len(seqs), int(lengths.max()), num_joints, 3), np.float32)
    for k, s in enumerate(seqs):
        batch[k, : len(s)] = s
    return torch.from_numpy(batch), lengths


def train_model(
    model: SkeletonLSTM,
    train: Any,
    val: Any = None,
    *,
    epochs: int = TRAINING_DEFAULTS["epochs"],
    batch_size: int = TRAINING_DEFAULTS["batch_size"],
    lr: float = TRAINING_DEFAULTS["lr"],
    lr_step: int | None = None,
    weight_decay: float = 0.0,
    frame_loss: float = 0.0,
    label_smoothing: float = TRAINING_DEFAULTS["label_smoothing"],
    average_last: int = TRAINING_DEFAULTS["average_last"],
    rotate_deg: float = 30.0,
    scale: float = 0.1,
    bone_scale: float = 0.1,
    crop: float = 0.125,
    jitter: float = 0.01,
    speed: float = 0.15,
    seed: int = TRAINING_DEFAULTS["seed"],
    progress: bool = True,
    callback: Any = None,
    threads: int | None = 1,
    device: str | torch.device | None = None,
) -> TrainingHistory:
    """Train a `SkeletonLSTM` on a `SkeletonDataset` (the paper's recipe, plus augmentation).

    The defaults are the shipped model's recipe (`TRAINING_DEFAULTS`; the paper's
    rate was 0.005 over 150 epochs). Adam with initial rate ``lr``, divided by 10 after
    ``lr_step`` epochs (default two thirds of ``epochs``); gradients clipped to
    norm 1. Each batch is augmented with rotations of up to ``rotate_deg`` about
    the vertical axis, scaling by up to ``scale``, per-bone length changes of up
    to ``bone_scale``, trimming up to a fraction ``crop`` off each end, speed
    changes of up to ``speed`` and Gaussian jitter of ``jitter`` metres. The loss is the cross-entropy of the last
    valid frame's logits plus ``frame_loss`` times the mean cross-entropy of every
    frame's logits (which gives the recurrent layer a signal at every step).
    Input standardization is computed from ``train`` and stored in the model.
    ``average_last=k`` ends with the mean of the weights after each of the last
    ``k`` epochs (Polyak / stochastic weight averaging), which generalizes better
    on small data sets.

    The model records the data's topology and class names in ``metadata`` (a model
    that already records a topology must match the data's: same joint names in the
    same order, else `SkvisError` naming both).

    ``threads``: torch's CPU threads while training (default 1, restored after;
    None leaves torch's setting). ``device``: move the model there first (default:
    where it is).

    Reproducible: the same ``seed``, data, thread count, device and torch build give
    the same model (the global random state is left as it was). A different thread
    count changes the order of floating-point sums and so the model (on MSR Action3D,
    0.949 vs 0.889 test accuracy at 1 and 2 threads from the same seed).
    ``callback(epoch, history)`` runs after each epoch (for a live explorer);
    returning True from it stops training.
    """
    from tqdm.auto import tqdm

    if threads is not None:
        threads = _checks.check_positive_int(threads, "threads")
    if device is not None:
        try:
            model.to(torch.device(device))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise SkvisError(f"device={device!r}: cannot move the model there ({exc})") from None
    for data, what in ((train, "the training data"), (val, "the validation data")):
        if data is not None and getattr(data, "topology", None) is not None:
            check_model_topology(model, data.topology, f"{what} ({getattr(data, 'name', '')!r})")
    if getattr(train, "topology", None) is not None and "topology" not in model.metadata:
        model.metadata.update(topology_metadata(train.topology))
    if getattr(train, "class_names", None) is not None:
        model.metadata.setdefault("class_names", list(train.class_names))
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(
            model,
            train,
            val,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            lr_step=lr_step,
            weight_decay=weight_decay,
            frame_loss=frame_loss,
            label_smoothing=label_smoothing,
            average_last=average_last,
            rotate_deg=rotate_deg,
            scale=scale,
            bone_scale=bone_scale,
            crop=crop,
            jitter=jitter,
            speed=speed,
            seed=seed,
            progress=progress,
            callback=callback,
            tqdm=tqdm,
        )
    finally:
        torch.set_num_threads(old_threads)


def _train(model: SkeletonLSTM, train: Any, val: Any, *, tqdm: Any, **kw: Any) -> TrainingHistory:
    """The training loop of `train_model` (arguments checked there)."""
    epochs, batch_size, lr, seed = kw["epochs"], kw["batch_size"], kw["lr"], kw["seed"]
    lr_step, weight_decay, frame_loss = kw["lr_step"], kw["weight_decay"], kw["frame_loss"]
    label_smoothing = kw["label_smoothing"]
    average_last = min(int(kw["average_last"]), int(epochs))  # at most every epoch
    rotate_deg, scale, bone_scale = kw["rotate_deg"], kw["scale"], kw["bone_scale"]
    crop, jitter, speed = kw["crop"], kw["jitter"], kw["speed"]
    progress, callback = kw["progress"], kw["callback"]

    if train.num_joints != model.num_joints:
        raise SkvisError(
            f"dataset has {train.num_joints} joints, the model expects {model.num_joints}"
        )
    if train.num_classes != model.num_classes:
        raise SkvisError(
            f"dataset has {train.num_classes} classes, the model has {model.num_classes} outputs"
        )
    bones = _bone_order(train.topology.bones, train.topology.root)
    frames = np.concatenate([s.reshape(len(s), -1) for s in train.sequences])
    model.set_standardization(frames.mean(0), frames.std(0))
    rng = np.random.default_rng(seed)
    device = model.feature_mean.device
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, lr_step or max(1, (2 * epochs) // 3), 0.1)
    history = TrainingHistory()
    averaged: dict[str, torch.Tensor] = {}
    labels = torch.as_tensor(train.labels)
    import time

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bar = tqdm(range(epochs), desc="training", disable=not progress)
        for epoch in bar:
            model.train()
            order = rng.permutation(len(train))
            total, correct, count = 0.0, 0, 0
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                seqs = _augment(
                    [train.sequences[k] for k in idx],
                    rng,
                    rotate_deg=rotate_deg,
                    scale=scale,
                    jitter=jitter,
                    speed=speed,
                    bone_scale=bone_scale,
                    crop=crop,
                    bones=bones,
                )
                x, lengths = _pad(seqs, model.num_joints)
                y = labels[idx].to(device)
                x = x.to(device)
                frame = model.frame_logits(x, lengths)
                last = frame[torch.arange(len(idx)), lengths.to(device) - 1]
                loss = nn.functional.cross_entropy(last, y, label_smoothing=label_smoothing)
                if frame_loss:
                    mask = (torch.arange(x.shape[1])[None] < lengths[:, None]).to(device)
                    ce = nn.functional.cross_entropy(
                        frame.transpose(1, 2), y[:, None].expand(-1, x.shape[1]), reduction="none"
                    )
                    loss = loss + frame_loss * (ce * mask).sum() / mask.sum()
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                total += float(loss.detach()) * len(idx)
                correct += int((last.argmax(-1) == y).sum())
                count += len(idx)
            sched.step()
            if average_last and epoch >= epochs - average_last:
                k = epoch - (epochs - average_last)
                state = {n: v.detach().clone() for n, v in model.state_dict().items()}
                if k == 0:
                    averaged = state
                else:  # the running mean of the last k + 1 epochs' weights
                    averaged = {n: averaged[n] + (state[n] - averaged[n]) / (k + 1) for n in state}
                if epoch == epochs - 1:
                    model.load_state_dict(averaged)
            history.loss.append(total / count)
            history.train_accuracy.append(correct / count)
            postfix = {"loss": f"{total / count:.3f}", "train": f"{correct / count:.2f}"}
            if val is not None:
                acc = accuracy(model, val)
                history.val_accuracy.append(acc)
                postfix["val"] = f"{acc:.3f}"
            bar.set_postfix(postfix)
            if callback is not None and callback(epoch, history):
                break
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def accuracy(model: SkeletonLSTM, dataset: Any) -> float:
    """Fraction of ``dataset`` that ``model`` labels correctly (a dataset whose topology
    disagrees with the model's raises `SkvisError`)."""
    if len(dataset) == 0:
        raise SkvisError("accuracy of an empty dataset")
    if getattr(dataset, "topology", None) is not None:
        check_model_topology(model, dataset.topology, "the dataset")
    probs = model.predict(dataset.sequences)
    return float((probs.argmax(-1) == dataset.labels).mean())
