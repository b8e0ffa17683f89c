"""Every notebook in ``notebooks/`` runs top to bottom, and its cells assert what its text says.

The case-study notebooks state findings (which body part leads a class map, that one
iteration of activation maximization raises the score, that every constraint holds,
...) and each cell that computes a finding asserts it, so a notebook that errors, or
whose text stopped being true of the bundled model and data, fails here.

Notebooks run with nbclient in a ``python3`` kernel whose working directory is
``notebooks/`` (as in JupyterLab and Voila). They are committed without outputs
(``jupyter nbconvert --clear-output --inplace notebooks/*.ipynb``); a test checks that.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def _error_text(exc: Exception) -> str:
    """The failing cell's source and traceback, without terminal colour codes."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", str(exc))


def test_there_are_case_studies():
    names = {p.name for p in ALL}
    for expected in (
        "01_quickstart.ipynb",
        "02_throw_and_kick.ipynb",
        "03_similar_actions.ipynb",
        "04_kinect_v2_ntu.ipynb",
        "05_your_own_model.ipynb",
        "06_bring_your_own_data.ipynb",
    ):
        assert expected in names, f"notebooks/{expected} is missing"


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_saved_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        k
        for k, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} have outputs; clear them with "
        f"'jupyter nbconvert --clear-output --inplace {path.relative_to(NOTEBOOKS.parent)}'"
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_notebook_runs_and_its_claims_hold(path, monkeypatch):
    # the kernel imports this checkout's package, whatever is installed
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join([str(NOTEBOOKS.parent), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{_error_text(exc)}", pytrace=False)
    elapsed = time.perf_counter() - start
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: error outputs {errors}"
    ran = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(ran) == sum(c.cell_type == "code" for c in nb.cells), "some cells did not run"
    print(f"{path.name}: {len(ran)} code cells in {elapsed:.1f} s")
