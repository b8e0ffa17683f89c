"""MSR Action3D: the text reader and the whole dataset (bundled or from a folder).

W. Li, Z. Zhang, Z. Liu, "Action recognition based on a bag of 3D points",
CVPR Workshops 2010. Non-commercial research use; cite it when you use it.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import SkvisError
from ..skeleton import MSR_ACTION3D
from ._files import DEFAULT_MAX_ABS, check_max_abs, is_number, read_text, to_coordinates
from .dataset import SkeletonDataset
from .normalize import normalize_sequence

__all__ = [
    "MSR_CLASS_NAMES",
    "read_msr_action3d",
    "read_msr_folder",
    "load_msr_action3d",
    "BUNDLE_NAME",
]

MSR_CLASS_NAMES: tuple[str, ...] = (
    "high arm wave",
    "horizontal arm wave",
    "hammer",
    "hand catch",
    "forward punch",
    "high throw",
    "draw X",
    "draw tick",
    "draw circle",
    "hand clap",
    "two hand wave",
    "side boxing",
    "bend",
    "forward kick",
    "side kick",
    "jogging",
    "tennis swing",
    "tennis serve",
    "golf swing",
    "pickup and throw",
)

BUNDLE_NAME = "msr_action3d.npz"
_NAME = re.compile(r"a(\d+)_s(\d+)_e(\d+)")


def read_msr_action3d(path: str | Path, *, max_abs: float = DEFAULT_MAX_ABS) -> np.ndarray:
    """Read one MSR Action3D ``aAA_sSS_eEE_skeleton3D.txt`` file.

    Each frame is 20 lines of ``x y z confidence``; the confidence is dropped.

    Parameters
    ----------
    path : str or Path
        The file, a regular file of at most 32 MiB. Blank lines are skipped.
    max_abs : float, keyword-only
        Plausibility bound in metres: a coordinate with ``|x|``, ``|y|`` or ``|z|``
        above it is an error (default 10 m). ``inf`` turns the bound off, not the
        check that values are finite in float32.

    Returns
    -------
    ndarray, shape (T, 20, 3), float32
        Camera coordinates in metres, joints in `MSR_ACTION3D` order; finite, with
        ``|value| <= max_abs``.

    Raises
    ------
    SkvisError
        For a path that is not a readable regular file (missing, a directory, a FIFO,
        a device, no permission, over 32 MiB), an empty file, a line without exactly
        four numbers (naming the line), a line count that is not a whole number of
        20-joint frames, NaN/inf values (also after the cast to float32), or a
        coordinate beyond ``max_abs`` (naming the line).
    """
    path = Path(path)
    max_abs = check_max_abs(max_abs)
    text = read_text(path, "an MSR Action3D file of 'x y z confidence' lines")
    rows = [ln for ln in text.splitlines() if ln and not ln.isspace()]
    if not rows:
        raise SkvisError(f"{path}: empty file; expected 20 lines of 'x y z confidence' per frame")
    num_rows = len(rows)
    try:
        values = np.loadtxt(rows, dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        values = None
    del rows  # one list of lines at a time: the scan below makes its own
    if values is None or values.shape[1] != 4:
        for k, ln in _numbered_rows(text):
            parts = ln.split()
            if not all(is_number(p) for p in parts):
                raise SkvisError(f"{path}, line {k}: {ln.strip()!r} is not numeric")
            if len(parts) != 4:
                raise SkvisError(
                    f"{path}, line {k}: {len(parts)} values; expected 4 (x y z confidence)"
                )
        raise SkvisError(f"{path}: expected lines of 4 numbers (x y z confidence)")
    if num_rows % MSR_ACTION3D.num_joints:
        raise SkvisError(
            f"{path}: {num_rows} lines is not a whole number of frames of "
            f"{MSR_ACTION3D.num_joints} joints (truncated file, or a wrong joint count?)"
        )

    def bad(row: int, reason: str) -> SkvisError:
        k, ln = next(itertools.islice(_numbered_rows(text), row, None))
        return SkvisError(f"{path}, line {k}: {reason}: {ln.strip()!r}")

    xyz = to_coordinates(values[:, :3], max_abs, bad)
    return xyz.reshape(-1, MSR_ACTION3D.num_joints, 3)


def _numbered_rows(text: str) -> Iterator[tuple[int, str]]:
    """The non-blank lines with their 1-based line numbers."""
    for k, ln in enumerate(text.splitlines(), 1):
        if ln and not ln.isspace():
            yield k, ln


def _parse_name(path: Path) -> tuple[int, int, int]:
    m = _NAME.search(path.name)
    if not m:
        raise SkvisError(f"{path}: name does not match 'aAA_sSS_eEE_skeleton3D.txt'")
    return int(m[1]), int(m[2]), int(m[3])


def _cvpr12_files(root: Path) -> set[str] | None:
    """Names in ``files_used_in_cvpr12_paper.txt`` (the usual 557-recording protocol)."""
    for folder in (root / "real_world_coordinates", root):
        f = folder / "files_used_in_cvpr12_paper.txt"
        if f.is_file():
            return {
                ln.strip().replace("_skeleton3D.txt", "")
                for ln in f.read_text().split()
                if ln.strip()
            }
    return None


def read_msr_folder(root: Path) -> Iterator[tuple[str, int, int, int, bool, np.ndarray]]:
    """Every recording of an MSR Action3D folder, read from its text files.

    Parameters
    ----------
    root : Path
        The dataset folder (with ``real_world_coordinates/`` or the
        ``aAA_sSS_eEE_skeleton3D.txt`` files themselves).

    Yields
    ------
    tuple
        ``(name, action, subject, take, in_protocol, xyz)``, by file name:
        ``in_protocol`` says whether the recording is among those of the usual
        protocol (``files_used_in_cvpr12_paper.txt``; every one without that list);
        ``xyz`` is `read_msr_action3d`'s ``(T, 20, 3)`` array (camera coordinates).
    """
    folder = root / "real_world_coordinates" if (root / "real_world_coordinates").is_dir() else root
    files = sorted(folder.glob("a*_s*_e*_skeleton3D.txt"))
    if not files:
        raise SkvisError(f"{folder}: no MSR Action3D files (aAA_sSS_eEE_skeleton3D.txt)")
    used = _cvpr12_files(root)
    for f in files:
        name = f.name.replace("_skeleton3D.txt", "")
        yield name, *_parse_name(f), used is None or name in used, read_msr_action3d(f)


def _read_bundle():
    with resources.files("skvis_widgets.data").joinpath(BUNDLE_NAME).open("rb") as fh:
        z = np.load(fh, allow_pickle=False)
        positions, offsets = z["positions"], z["offsets"]
        names, actions, subjects, takes = z["names"], z["actions"], z["subjects"], z["takes"]
        used = z["cvpr12"]
    for i, name in enumerate(names):
        xyz = positions[offsets[i] : offsets[i + 1]]
        yield str(name), int(actions[i]), int(subjects[i]), int(takes[i]), bool(used[i]), xyz


def load_msr_action3d(
    root: str | Path | None = None, *, protocol: str = "cvpr12", normalize: bool = True
) -> SkeletonDataset:
    """The whole MSR Action3D dataset (20 actions, 10 subjects, up to 3 takes).

    Parameters
    ----------
    root : path, optional
        A folder of the original ``aAA_sSS_eEE_skeleton3D.txt`` files (or holding
        ``real_world_coordinates/``). ``None`` reads the compact copy bundled with
        the package (made by ``python -m skvis_widgets.data.bundle``).
    protocol : {"cvpr12", "all"}
        ``"cvpr12"`` (default): the 557 recordings of the usual protocol
        (``files_used_in_cvpr12_paper.txt``; it leaves out 10 recordings with
        lost tracking). ``"all"``: every recording that has a skeleton (566).
        For a folder without that list, every recording.
    normalize : bool
        Body-centred normalization (default), as for training.

    All-zero recordings (no skeleton, as ``a13_s09_e02``) are skipped with a
    warning that names them. All-zero *frames* inside a recording are the
    sensor's lost track (20 recordings have them, mostly "bend" and "pickup and
    throw", where the body leaves the view): they are dropped, since normalizing
    them would put the whole body at the camera's origin, metres away.
    """
    if protocol not in ("cvpr12", "all"):
        raise SkvisError(f"protocol must be 'cvpr12' or 'all', got {protocol!r}")
    records = _read_bundle() if root is None else read_msr_folder(Path(root))
    seqs, labels, subjects, ids, frames = [], [], [], [], []
    for name, action, subject, _take, used, xyz in records:
        if protocol == "cvpr12" and not used:
            continue
        tracked = np.any(xyz.reshape(len(xyz), -1), axis=1)
        if not tracked.any():
            warnings.warn(f"MSR Action3D: skipping {name}: all-zero recording", stacklevel=2)
            continue
        xyz = xyz[tracked]
        if normalize:
            xyz, frame = normalize_sequence(xyz, MSR_ACTION3D, return_frame=True)
        else:
            frame = None
        seqs.append(xyz)
        labels.append(action - 1)
        subjects.append(subject)
        ids.append(name)
        frames.append(frame)
    return SkeletonDataset(
        seqs,
        np.array(labels),
        np.array(subjects),
        MSR_CLASS_NAMES,
        MSR_ACTION3D,
        "MSR Action3D",
        frames,
        tuple(ids),
    )
