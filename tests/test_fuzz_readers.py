"""Hostile input into both skeleton readers: mutated real files, and paths that are not files.

The fuzz tests mutate the real recordings in tests/data (byte changes, line deletions,
duplications and swaps, truncations, numbers edited digit by digit) and require every
outcome to be a `SkvisError` or an array of the documented shape and dtype, finite and
within the plausibility bound, equal to what an independent parse of the same text
gives. They are bounded (a fixed number of derandomized examples) to stay fast.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_ntu import expected_array  # the independent NTU parser

from skvis_widgets.data import read_msr_action3d, read_ntu_skeleton
from skvis_widgets.errors import SkvisError

DATA = Path(__file__).parent / "data"
NTU_FILES = sorted((DATA / "ntu").glob("*.skeleton"))
MSR_FILES = sorted((DATA / "msr").glob("*_skeleton3D.txt"))
ORIGINAL = {path: path.read_bytes() for path in NTU_FILES + MSR_FILES}
READERS = [read_ntu_skeleton, read_msr_action3d]
BOUND = 10.0  # the readers' default max_abs, in metres

# About 40 ms an NTU case (a 0.3 MB file read, and parsed again by the reference), 15 ms
# an MSR one: a few seconds each.
FUZZ = dict(
    deadline=None,
    derandomize=True,
    database=None,  # nothing written to the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- mutations ---

_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _edit_number(draw, token: bytes) -> bytes:
    """One edit of a number as a slip of the keyboard or of the disk would make it."""
    kind = draw(
        st.sampled_from(
            ["drop_char", "add_digit", "drop_dot", "add_dot", "sign", "exponent", "word"]
        )
    )
    if kind == "drop_char" and token:
        i = draw(st.integers(0, len(token) - 1))
        return token[:i] + token[i + 1 :]
    if kind == "add_digit":
        i = draw(st.integers(0, len(token)))
        return token[:i] + draw(st.sampled_from([b"0", b"1", b"7", b"9"])) + token[i:]
    if kind == "drop_dot":
        return token.replace(b".", b"", 1)
    if kind == "add_dot":
        i = draw(st.integers(0, len(token)))
        return token[:i] + b"." + token[i:]
    if kind == "sign":
        return (
            token[1:] if token[:1] in (b"-", b"+") else draw(st.sampled_from([b"-", b"+"])) + token
        )
    if kind == "exponent":
        return token + draw(
            st.sampled_from([b"e1", b"e-1", b"e2", b"e38", b"e39", b"e60", b"e400"])
        )
    return draw(st.sampled_from([b"nan", b"inf", b"-inf", b"1e60", b"", b"0_1", b"1.5.2", b"x"]))


@st.composite
def mutated(draw, files: list[Path]) -> tuple[Path, bytes]:
    """A real file and one to three mutations of it."""
    path = draw(st.sampled_from(files))
    data = ORIGINAL[path]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["byte", "delete", "duplicate", "swap", "truncate", "number", "number"])
        )
        lines = data.splitlines(keepends=True)
        if kind == "byte" and data:
            i = draw(st.integers(0, len(data) - 1))
            new = draw(st.integers(0, 255) | st.sampled_from(list(b" \t\r\n.-0e")))
            data = data[:i] + bytes([new]) + data[i + 1 :]
        elif kind in ("delete", "duplicate") and lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines[i : i + 1] = [] if kind == "delete" else [lines[i], lines[i]]
            data = b"".join(lines)
        elif kind == "swap" and lines:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            data = b"".join(lines)
        elif kind == "truncate":
            near_end = draw(st.booleans())  # where a cut is hardest to see
            lo = max(0, len(data) - 200) if near_end else 0
            data = data[: draw(st.integers(lo, len(data)))]
        elif kind == "number" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            spans = [m.span() for m in _NUMBER.finditer(lines[i])]
            if spans:
                # Mostly x, y or z, the values that are read.
                k = draw(st.integers(0, min(2, len(spans) - 1)) | st.integers(0, len(spans) - 1))
                a, b = spans[k]
                lines[i] = lines[i][:a] + _edit_number(draw, lines[i][a:b]) + lines[i][b:]
                data = b"".join(lines)
    return path, data


# --- what an outcome may be ---


def check_ntu(data: bytes, file: Path) -> str:
    try:
        arr = read_ntu_skeleton(file)
    except SkvisError as exc:
        assert str(file) in str(exc)
        return "error"
    assert arr.dtype == np.float32
    assert arr.ndim == 4 and arr.shape[2:] == (25, 3) and arr.shape[1] >= 1
    absent = np.isnan(arr).all(axis=(2, 3))
    np.testing.assert_array_equal(np.isnan(arr).any(axis=(2, 3)), absent)  # whole bodies only
    present = arr[~absent]
    assert np.isfinite(present).all() and (np.abs(present) <= BOUND).all()
    expected, _ = expected_array(data.decode("ascii", errors="replace"))
    np.testing.assert_array_equal(arr, expected.astype(np.float32))
    return "array"


def check_msr(data: bytes, file: Path) -> str:
    try:
        arr = read_msr_action3d(file)
    except SkvisError as exc:
        assert str(file) in str(exc)
        return "error"
    assert arr.dtype == np.float32
    assert arr.ndim == 3 and arr.shape[1:] == (20, 3) and arr.shape[0] >= 1
    assert np.isfinite(arr).all() and (np.abs(arr) <= BOUND).all()
    values = np.array([float(v) for v in data.decode("ascii").split()])
    np.testing.assert_array_equal(arr, values.reshape(-1, 20, 4)[..., :3].astype(np.float32))
    return "array"


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "mutated"


@settings(max_examples=100, **FUZZ)
@given(case=mutated(NTU_FILES))
def test_fuzz_ntu(fuzz_file, case):
    path, data = case
    file = fuzz_file.with_suffix(".skeleton")
    file.write_bytes(data)
    event(check_ntu(data, file))


@settings(max_examples=200, **FUZZ)
@given(case=mutated(MSR_FILES))
def test_fuzz_msr(fuzz_file, case):
    path, data = case
    file = fuzz_file.with_name(path.name)
    file.write_bytes(data)
    event(check_msr(data, file))


@pytest.mark.parametrize("path", NTU_FILES + MSR_FILES, ids=lambda p: p.name)
def test_unmutated_files_pass_the_same_checks(tmp_path, path):
    file = tmp_path / path.name
    file.write_bytes(ORIGINAL[path])
    check = check_ntu if path.suffix == ".skeleton" else check_msr
    assert check(ORIGINAL[path], file) == "array"


# --- paths that are not a regular file ---


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_directory_and_missing_file(tmp_path, reader):
    with pytest.raises(SkvisError, match="a directory, not a regular file") as info:
        reader(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(SkvisError, match=r"nothere: cannot read \(FileNotFoundError"):
        reader(tmp_path / "nothere")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_fifo_is_refused_without_blocking(tmp_path, reader):
    fifo = tmp_path / "pipe.skeleton"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            reader(fifo)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        # Blocked in open(): a writer that comes and goes lets it return (at EOF).
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=30)
        pytest.fail(f"{reader.__name__} blocked on a FIFO")
    assert isinstance(outcome[0], SkvisError), outcome
    assert "a FIFO (named pipe), not a regular file" in str(outcome[0])
    assert str(fifo) in str(outcome[0])


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero on this platform")
@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_device_is_refused_before_reading(reader):
    with pytest.raises(SkvisError, match=r"^/dev/zero: a character device, not a regular file"):
        reader("/dev/zero")


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_file_over_the_size_limit_is_refused_unread(tmp_path, reader):
    big = tmp_path / "big.skeleton"
    with open(big, "wb") as fh:
        fh.truncate(33 * 2**20)  # sparse: no disk used, and never read
    with pytest.raises(SkvisError, match=r"big\.skeleton: 33\.0 MiB or more, larger than the 32"):
        reader(big)


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_permission_error_names_the_path(tmp_path, monkeypatch, reader):
    locked = tmp_path / "locked.skeleton"
    locked.write_bytes(ORIGINAL[NTU_FILES[0]])

    # Root reads a chmod 000 file anyway: the refusal comes from the open itself.
    def refuse(file, flags, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", file)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(SkvisError, match=r"cannot read \(PermissionError: Permission denied"):
        reader(locked)


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("max_abs", [0, -1.0, float("nan"), "10", None, True])
def test_max_abs_must_be_a_positive_number(reader, max_abs):
    path = NTU_FILES[0] if reader is read_ntu_skeleton else MSR_FILES[0]
    with pytest.raises(SkvisError, match="max_abs must be a positive number"):
        reader(path, max_abs=max_abs)
