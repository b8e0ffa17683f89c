"""Build the compact MSR Action3D copy shipped inside the package.

    python -m skvis_widgets.data.bundle ../shared/data/msr_action3d

reads every ``aAA_sSS_eEE_skeleton3D.txt`` file (camera coordinates, the
confidence column dropped) and writes ``skvis_widgets/data/msr_action3d.npz``:
all frames concatenated as float32 (exactly the values of the text, rounded to
float32), with per-recording offsets, names, actions, subjects and takes, and
whether each recording is among the 557 of the usual protocol
(``files_used_in_cvpr12_paper.txt``). All recordings are kept, the all-zero one
included, so that the bundled and the raw dataset load identically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .msr import BUNDLE_NAME, read_msr_folder


def build(root: Path, out: Path) -> Path:
    names, actions, subjects, takes, used, arrays = [], [], [], [], [], []
    for name, a, s, e, in_protocol, xyz in read_msr_folder(root):
        names.append(name)
        used.append(in_protocol)
        actions.append(a)
        subjects.append(s)
        takes.append(e)
        arrays.append(xyz)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in arrays])]).astype(np.int64)
    np.savez_compressed(
        out,
        positions=np.concatenate(arrays).astype(np.float32),
        offsets=offsets,
        names=np.array(names),
        actions=np.array(actions, dtype=np.int16),
        subjects=np.array(subjects, dtype=np.int16),
        takes=np.array(takes, dtype=np.int16),
        cvpr12=np.array(used),
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="the MSR Action3D folder (with real_world_coordinates/)")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name(BUNDLE_NAME))
    args = p.parse_args()
    out = build(args.root, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
