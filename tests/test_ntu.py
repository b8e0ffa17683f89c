"""Tests of the NTU RGB+D ``.skeleton`` reader on real files (tests/data/ntu)."""

from __future__ import annotations

import errno
import os
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from skvis_widgets.data.ntu import main_body, read_ntu_skeleton
from skvis_widgets.errors import SkvisError

DATA = Path(__file__).parent / "data" / "ntu"
ONE_BODY_CRLF = DATA / "S001C001P001R001A001.skeleton"
TWO_BODY_LF = DATA / "S001C001P001R001A050.skeleton"
TWO_BODY_CRLF = DATA / "S001C003P008R002A058.skeleton"
ALL_FILES = [ONE_BODY_CRLF, TWO_BODY_LF, TWO_BODY_CRLF]


# --- an independent reference parser: plain line walking, one float() per value ---


def parse_frames(text: str) -> list[dict[str, list[list[float]]]]:
    """Frames as ``{body id: 25 x [x, y, z]}``, written without numpy."""
    lines = [ln.strip() for ln in text.splitlines()]
    num_frames = int(lines[0])
    pos = 1
    frames = []
    for _ in range(num_frames):
        num_bodies = int(lines[pos])
        pos += 1
        bodies = {}
        for _ in range(num_bodies):
            body_id = lines[pos].split()[0]
            num_joints = int(lines[pos + 1])
            joints = [[float(v) for v in lines[pos + 2 + j].split()[:3]] for j in range(num_joints)]
            bodies[body_id] = joints
            pos += 2 + num_joints
        frames.append(bodies)
    return frames


def expected_array(text: str) -> tuple[np.ndarray, list[str]]:
    frames = parse_frames(text)
    ids: list[str] = []
    for bodies in frames:
        for body_id in bodies:
            if body_id not in ids:
                ids.append(body_id)
    out = np.full((len(ids), len(frames), 25, 3), np.nan)
    for t, bodies in enumerate(frames):
        for body_id, joints in bodies.items():
            out[ids.index(body_id), t] = joints
    return out, ids


def body_ids_by_regex(text: str) -> list[str]:
    """Distinct ids of the body lines (the only lines with 10 fields), in order."""
    ids = re.findall(r"^\s*(\d+)(?:[ \t]+\S+){9}[ \t]*\r?$", text, flags=re.MULTILINE)
    return list(dict.fromkeys(ids))


def split_blocks(text: str) -> tuple[str, list[list[list[str]]]]:
    """File -> (newline, frames of body blocks, each block its 27 lines)."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    pos = 1
    frames = []
    for _ in range(int(lines[0])):
        num_bodies = int(lines[pos])
        pos += 1
        blocks = []
        for _ in range(num_bodies):
            blocks.append(lines[pos : pos + 27])
            pos += 27
        frames.append(blocks)
    return newline, frames


def join_blocks(newline: str, frames: list[list[list[str]]]) -> str:
    lines = [str(len(frames))]
    for blocks in frames:
        lines.append(str(len(blocks)))
        for block in blocks:
            lines.extend(block)
    return newline.join(lines) + newline


def reference_motion(arr: np.ndarray) -> np.ndarray:
    """Per body: sum over joints and axes of the variance over frames where it is present."""
    motion = []
    for body in arr.astype(np.float64):
        present = [frame for frame in body if not np.isnan(frame).any()]
        motion.append(float(np.var(np.stack(present), axis=0).sum()))
    return np.array(motion)


# --- shapes, values, line endings ---


def test_fixtures_are_what_they_claim():
    assert b"\r\n" in ONE_BODY_CRLF.read_bytes()
    assert b"\r\n" in TWO_BODY_CRLF.read_bytes()
    assert b"\r" not in TWO_BODY_LF.read_bytes()
    assert len(body_ids_by_regex(ONE_BODY_CRLF.read_text())) == 1
    assert len(body_ids_by_regex(TWO_BODY_LF.read_text())) == 2
    assert len(body_ids_by_regex(TWO_BODY_CRLF.read_text())) == 2


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.stem)
def test_shape_dtype_and_values(path):
    text = path.read_text()
    arr = read_ntu_skeleton(path)
    num_frames = int(text.splitlines()[0])
    ids = body_ids_by_regex(text)
    assert arr.dtype == np.float32
    assert arr.shape == (len(ids), num_frames, 25, 3)
    expected, parsed_ids = expected_array(text)
    assert parsed_ids == ids
    np.testing.assert_array_equal(np.isnan(arr), np.isnan(expected))
    np.testing.assert_array_equal(arr, expected.astype(np.float32))


def test_str_path_and_specific_values():
    arr = read_ntu_skeleton(str(ONE_BODY_CRLF))
    assert arr.shape == (1, 103, 25, 3)
    # Lines 5, 8 and 2885 of the file, read by eye.
    np.testing.assert_array_equal(arr[0, 0, 0], np.float32([0.2181153, 0.1725972, 3.785547]))
    np.testing.assert_array_equal(arr[0, 0, 3], np.float32([0.2128507, 0.8079225, 3.581995]))
    np.testing.assert_array_equal(arr[0, 102, 24], np.float32([0.1140334, 0.7601054, 3.444]))

    two = read_ntu_skeleton(TWO_BODY_LF)
    assert two.shape == (2, 74, 25, 3)
    # Line 5: body 72057594037932185, joint 0 of frame 1; line 32: joint 0 of the second body.
    np.testing.assert_array_equal(two[0, 0, 0], np.float32([-0.8514767, 0.1916033, 3.384463]))
    np.testing.assert_array_equal(two[1, 0, 0], np.float32([0.251114, 0.1789744, 3.758003]))
    # Last line: joint 24 of the second body in frame 74.
    np.testing.assert_array_equal(two[1, 73, 24], np.float32([0.3202337, 0.03610823, 3.446667]))

    crlf = read_ntu_skeleton(TWO_BODY_CRLF)
    assert crlf.shape == (2, 70, 25, 3)
    np.testing.assert_array_equal(crlf[0, 0, 0], np.float32([0.7201789, 0.1647426, 3.561895]))


def test_crlf_and_lf_give_identical_arrays(tmp_path):
    for path in (ONE_BODY_CRLF, TWO_BODY_CRLF):
        lf = tmp_path / path.name
        lf.write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
        assert b"\r" not in lf.read_bytes()
        np.testing.assert_array_equal(read_ntu_skeleton(lf), read_ntu_skeleton(path))
    crlf = tmp_path / ("crlf_" + TWO_BODY_LF.name)
    crlf.write_bytes(TWO_BODY_LF.read_bytes().replace(b"\n", b"\r\n"))
    np.testing.assert_array_equal(read_ntu_skeleton(crlf), read_ntu_skeleton(TWO_BODY_LF))


def test_missing_final_newline_and_trailing_blank_lines(tmp_path):
    data = TWO_BODY_LF.read_bytes()
    ref = read_ntu_skeleton(TWO_BODY_LF)
    for variant, payload in (("nonl", data.rstrip(b"\n")), ("blank", data + b"\n \n\n")):
        path = tmp_path / f"{variant}.skeleton"
        path.write_bytes(payload)
        np.testing.assert_array_equal(read_ntu_skeleton(path), ref)


def edited_two_body_file(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """A050 with bodies removed from some frames: the second id is met first."""
    newline, frames = split_blocks(TWO_BODY_LF.read_text())
    first_id = frames[0][0][0].split()[0]
    second_id = frames[0][1][0].split()[0]
    for t in range(5):  # frames 1..5: only the second body
        frames[t] = [b for b in frames[t] if b[0].split()[0] == second_id]
    for t in range(10, 20):  # frames 11..20: only the first body
        frames[t] = [b for b in frames[t] if b[0].split()[0] == first_id]
    frames[30] = []  # frame 31: nobody
    path = tmp_path / "S001C001P001R001A050_edited.skeleton"
    path.write_text(join_blocks(newline, frames), newline="")
    return path, [second_id, first_id], [first_id, second_id]


def test_nan_exactly_where_a_body_is_absent(tmp_path):
    path, order, _ = edited_two_body_file(tmp_path)
    text = path.read_text()
    arr = read_ntu_skeleton(path)
    assert body_ids_by_regex(text) == order
    assert arr.shape == (2, 74, 25, 3)

    absent = np.zeros((2, 74), dtype=bool)
    absent[1, 0:5] = True  # the first id of the original file is now body 1
    absent[0, 10:20] = True
    absent[:, 30] = True
    np.testing.assert_array_equal(np.isnan(arr).all(axis=(2, 3)), absent)
    np.testing.assert_array_equal(np.isnan(arr).any(axis=(2, 3)), absent)

    # Elsewhere the values are the original file's, with the bodies swapped.
    orig = read_ntu_skeleton(TWO_BODY_LF)
    np.testing.assert_array_equal(arr[0][~absent[0]], orig[1][~absent[0]])
    np.testing.assert_array_equal(arr[1][~absent[1]], orig[0][~absent[1]])
    expected, _ = expected_array(text)
    np.testing.assert_array_equal(arr, expected.astype(np.float32))


def test_frames_without_any_body(tmp_path):
    newline, frames = split_blocks(ONE_BODY_CRLF.read_text())
    path = tmp_path / "nobody.skeleton"
    path.write_text(join_blocks(newline, [[] for _ in frames]), newline="")
    arr = read_ntu_skeleton(path)
    assert arr.shape == (0, 103, 25, 3)
    assert arr.dtype == np.float32
    with pytest.raises(SkvisError, match="shape"):
        main_body(arr)


# --- main_body ---


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.stem)
def test_main_body_picks_most_motion(path):
    arr = read_ntu_skeleton(path)
    chosen = main_body(arr)
    assert chosen.shape == (arr.shape[1], 25, 3)
    assert chosen.dtype == np.float32
    k = int(np.argmax(reference_motion(arr)))
    np.testing.assert_array_equal(chosen, arr[k])


def test_main_body_choice_is_not_always_the_first_body():
    choices = {}
    for path in (TWO_BODY_LF, TWO_BODY_CRLF):
        arr = read_ntu_skeleton(path)
        motion = reference_motion(arr)
        choices[path.stem] = int(np.argmax(motion))
        assert abs(motion[0] - motion[1]) > 1e-3  # a clear winner, not a tie
    assert sorted(choices.values()) == [0, 1]


def test_main_body_single_body_is_returned():
    arr = read_ntu_skeleton(ONE_BODY_CRLF)
    chosen = main_body(arr)
    np.testing.assert_array_equal(chosen, arr[0])
    chosen[0, 0, 0] = 123.0  # a copy: the input is untouched
    assert arr[0, 0, 0, 0] != 123.0


def test_main_body_ignores_absent_frames_and_keeps_them_nan(tmp_path):
    path, _, _ = edited_two_body_file(tmp_path)
    arr = read_ntu_skeleton(path)
    motion = reference_motion(arr)
    k = int(np.argmax(motion))
    chosen = main_body(arr)
    np.testing.assert_array_equal(chosen, arr[k])
    assert np.isnan(chosen[30]).all()


def test_main_body_synthetic_partial_presence():
    rng = np.random.default_rng(0)
    arr = np.full((3, 40, 25, 3), np.nan, dtype=np.float32)
    arr[0] = rng.normal(0, 0.1, (40, 25, 3))  # present throughout, small motion
    arr[1, 20:] = rng.normal(0, 1.0, (20, 25, 3))  # present half the time, large motion
    arr[2, :3] = 5.0  # present, motionless
    np.testing.assert_array_equal(main_body(arr), arr[1])
    # Scaled up, the body present throughout wins.
    arr[0] *= 100
    np.testing.assert_array_equal(main_body(arr), arr[0])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((40, 25, 3)),
        np.zeros((2, 40, 20, 3)),
        np.zeros((2, 40, 25, 4)),
        np.zeros((0, 40, 25, 3)),
        np.zeros((2, 0, 25, 3)),
        np.full((2, 4, 25, 3), "a"),
    ],
    ids=["3d", "20joints", "4axes", "nobody", "noframes", "strings"],
)
def test_main_body_rejects_wrong_input(bad):
    with pytest.raises(SkvisError):
        main_body(bad)


def test_main_body_all_nan():
    with pytest.raises(SkvisError, match="finite"):
        main_body(np.full((2, 5, 25, 3), np.nan))


# --- bad input ---


def edit_lines(src: Path, dst: Path, edits: dict[int, str | None]) -> Path:
    """Copy ``src`` to ``dst`` replacing (1-based) lines; None deletes the line."""
    lines = src.read_bytes().decode().splitlines(keepends=True)
    for number in sorted(edits, reverse=True):
        new = edits[number]
        ending = lines[number - 1][len(lines[number - 1].rstrip("\r\n")) :]
        if new is None:
            del lines[number - 1]
        else:
            lines[number - 1] = new + ending
    dst.write_bytes("".join(lines).encode())
    return dst


def truncate_lines(src: Path, dst: Path, keep: int) -> Path:
    lines = src.read_bytes().decode().splitlines(keepends=True)
    dst.write_bytes("".join(lines[:keep]).encode())
    return dst


def replace_field(line: str, index: int, value: str) -> str:
    fields = line.split()
    fields[index] = value
    return " ".join(fields)


def line_of(path: Path, number: int) -> str:
    return path.read_bytes().decode().splitlines()[number - 1]


def check_error(path: Path, line: int, *words: str) -> str:
    with pytest.raises(SkvisError) as info:
        read_ntu_skeleton(path)
    msg = str(info.value)
    assert path.name in msg
    assert f"line {line}:" in msg
    for word in words:
        assert word in msg, msg
    return msg


# One-body file: frame t (1-based) starts at line 2 + 28 (t - 1): body count, body line,
# joint count, 25 joint lines. Two-body A050: frames of 55 lines, the second body's
# body line at line 30, its joint count at 31, its joints from 32.


def test_empty_file(tmp_path):
    check_error(truncate_lines(ONE_BODY_CRLF, tmp_path / "empty.skeleton", 0), 1, "empty")
    blank = tmp_path / "blank.skeleton"
    blank.write_bytes(b" \r\n\r\n")
    check_error(blank, 1, "empty")


@pytest.mark.parametrize("first", ["abc", "103.0", "", "103 1", "1_03", "1" * 5000])
def test_first_line_not_a_frame_count(tmp_path, first):
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "first.skeleton", {1: first})
    check_error(path, 1, "frame count")


@pytest.mark.parametrize("first", ["0", "-3"])
def test_zero_frames(tmp_path, first):
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "zero.skeleton", {1: first})
    check_error(path, 1, "positive frame count")


@pytest.mark.parametrize(
    ("keep", "line", "frame"),
    [
        (1 + 28 * 50, 1 + 28 * 50 + 1, "frame 51 of 103"),  # cut between frames
        (1000, 1001, "frame 36 of 103"),  # cut among the joint lines of frame 36
        (1 + 28 * 10 + 1, 1 + 28 * 10 + 2, "frame 11 of 103"),  # after a body count
        (1 + 28 * 10 + 2, 1 + 28 * 10 + 3, "frame 11 of 103"),  # after a body line
    ],
)
def test_truncated_file(tmp_path, keep, line, frame):
    path = truncate_lines(ONE_BODY_CRLF, tmp_path / "cut.skeleton", keep)
    check_error(path, line, "truncated", frame)


def test_more_frames_announced_than_present(tmp_path):
    path = edit_lines(TWO_BODY_LF, tmp_path / "more.skeleton", {1: "75"})
    check_error(path, 4072, "truncated", "frame 75 of 75")


def test_truncated_two_body_file_mid_second_body(tmp_path):
    path = truncate_lines(TWO_BODY_CRLF, tmp_path / "cut2.skeleton", 1 + 55 * 3 + 40)
    check_error(path, 1 + 55 * 3 + 41, "truncated", "frame 4 of 70")


@pytest.mark.parametrize(
    ("line", "value"), [(2, "1.5"), (2, "x"), (2 + 28 * 10, "one"), (2, "-1"), (2, "0_1")]
)
def test_body_count_not_an_integer(tmp_path, line, value):
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "bodies.skeleton", {line: value})
    check_error(path, line, "body count")


def test_body_count_larger_than_bodies(tmp_path):
    # Frame 1 claims 2 bodies: the second "body line" is frame 2's body count.
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "claim2.skeleton", {2: "2"})
    check_error(path, 30, "body line")


@pytest.mark.parametrize(
    ("src", "line", "value"),
    [
        (ONE_BODY_CRLF, 4, "24"),
        (ONE_BODY_CRLF, 4, "26"),
        (TWO_BODY_LF, 31, "20"),
        (TWO_BODY_LF, 31, "x"),
    ],
)
def test_joint_count_not_25(tmp_path, src, line, value):
    path = edit_lines(src, tmp_path / "joints.skeleton", {line: value})
    check_error(path, line, "joint count 25")


# A joint line has 12 fields: one that lost any (the tracking state last) is refused.
@pytest.mark.parametrize(("line", "keep"), [(5, 2), (100, 1), (2884, 0), (5, 11), (2885, 11)])
def test_joint_line_with_too_few_numbers(tmp_path, line, keep):
    short = " ".join(line_of(ONE_BODY_CRLF, line).split()[:keep])
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "short.skeleton", {line: short})
    check_error(path, line, "x y z")


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [(5, 0, "abc"), (100, 2, "3.4x"), (32, 1, "--1"), (5, 0, "-0.85_14767"), (6, 2, "\u0663.4")],
)
def test_joint_line_non_numeric(tmp_path, line, field, value):
    src = TWO_BODY_LF
    new = replace_field(line_of(src, line), field, value)
    path = edit_lines(src, tmp_path / "text.skeleton", {line: new})
    check_error(path, line, "numeric")


@pytest.mark.parametrize(
    ("line", "field", "value"), [(6, 0, "nan"), (7, 2, "inf"), (2800, 1, "-inf"), (9, 0, "1e300")]
)
def test_joint_line_not_finite(tmp_path, line, field, value):
    new = replace_field(line_of(ONE_BODY_CRLF, line), field, value)
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "nan.skeleton", {line: new})
    check_error(path, line, "finite")


def test_duplicate_body_in_a_frame(tmp_path):
    body_line = line_of(TWO_BODY_LF, 3)
    path = edit_lines(TWO_BODY_LF, tmp_path / "dup.skeleton", {30: body_line})
    check_error(path, 30, "twice")


def test_text_after_the_last_frame(tmp_path):
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "less.skeleton", {1: "102"})
    check_error(path, 2858, "end of the file")


def test_only_the_first_three_values_are_read(tmp_path):
    # Junk in the columns after x y z is not this reader's business.
    new = replace_field(line_of(ONE_BODY_CRLF, 5), 8, "junk")
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "cols.skeleton", {5: new})
    np.testing.assert_array_equal(read_ntu_skeleton(path), read_ntu_skeleton(ONE_BODY_CRLF))


def test_joint_line_with_an_extra_field(tmp_path):
    line = line_of(TWO_BODY_LF, 40)
    path = edit_lines(TWO_BODY_LF, tmp_path / "13.skeleton", {40: line + " 0"})
    check_error(path, 40, "12 fields", "got 13")


# --- a file cut inside its last line, implausible coordinates ---


@pytest.mark.parametrize("src", [TWO_BODY_LF, ONE_BODY_CRLF], ids=lambda p: p.stem)
def test_cut_anywhere_in_the_last_line(tmp_path, src):
    """Only a cut of the line ending itself leaves the data whole and is accepted."""
    newline, frames = split_blocks(src.read_text())
    whole = tmp_path / "first_frames.skeleton"  # the first 4 frames: quick to read 70 times
    whole.write_text(join_blocks(newline, frames[:4]), newline="")
    data = whole.read_bytes()
    ref = read_ntu_skeleton(whole)
    last = data.rstrip(b"\r\n")
    start = last.rfind(b"\n") + 1
    number = data[:start].count(b"\n") + 1
    path = tmp_path / "cut.skeleton"
    accepted = 0
    for n in range(start + 1, len(data)):
        path.write_bytes(data[:n])
        if n >= len(last):
            np.testing.assert_array_equal(read_ntu_skeleton(path), ref)
            accepted += 1
        else:
            check_error(path, number, "12 fields")
    assert accepted == len(newline) and len(last) - start > 60


@pytest.mark.parametrize(
    ("line", "field", "value", "shown"),
    [
        (5, 0, "02181153", "2.18115e+06"),  # a deleted "."
        (5, 2, "-12.5", "-12.5"),
        (2885, 1, "7.601054e1", "76.0105"),
    ],
)
def test_implausible_coordinate(tmp_path, line, field, value, shown):
    new = replace_field(line_of(ONE_BODY_CRLF, line), field, value)
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "far.skeleton", {line: new})
    check_error(path, line, f"implausible coordinate {shown} m", "max_abs = 10 m")
    # A larger bound accepts the file, with the value as written.
    arr = read_ntu_skeleton(path, max_abs=1e7)
    frame, joint = divmod(line - 5 - (line - 2) // 28 * 3, 25)
    assert arr[0, frame, joint, field] == np.float32(float(value))
    with pytest.raises(SkvisError, match="max_abs = 1 m"):
        read_ntu_skeleton(ONE_BODY_CRLF, max_abs=1)  # real heads are 1.5 m up and 3 m away


def test_max_abs_inf_still_refuses_float32_overflow(tmp_path):
    new = replace_field(line_of(ONE_BODY_CRLF, 9), 0, "-1e39")
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "big.skeleton", {9: new})
    with pytest.raises(SkvisError, match=r"line 9: .*float32"):
        read_ntu_skeleton(path, max_abs=float("inf"))
    new = replace_field(line_of(ONE_BODY_CRLF, 9), 0, "-1e30")
    path = edit_lines(ONE_BODY_CRLF, tmp_path / "big.skeleton", {9: new})
    assert read_ntu_skeleton(path, max_abs=float("inf"))[0, 0, 4, 0] == np.float32(-1e30)


# --- what the body ids may ask for ---


def many_ids_file(path: Path, num_frames: int, one_id_per_frame: bool) -> Path:
    """Frames of one body each, real joint lines, the body id new in every frame."""
    newline, frames = split_blocks(ONE_BODY_CRLF.read_text())
    blocks = [frames[t % len(frames)][0] for t in range(num_frames)]
    if one_id_per_frame:
        blocks = [[replace_field(b[0], 0, str(t))] + b[1:] for t, b in enumerate(blocks)]
    path.write_text(join_blocks(newline, [[b] for b in blocks]), newline="")
    return path


def minimal_ids_file(path: Path, num_frames: int) -> Path:
    """The same with the shortest lines the format allows: 0.8 MB for 1,000 frames."""
    joint = "0.1 0.2 3 0 0 0 0 0 0 0 0 2\n"
    frames = [f"1\n{t} 0 0 0 0 0 0 0 0 2\n25\n" + joint * 25 for t in range(num_frames)]
    path.write_text(f"{num_frames}\n" + "".join(frames))
    return path


@pytest.mark.parametrize("minimal", [False, True], ids=["real-lines", "minimal-lines"])
def test_many_body_ids_in_a_small_file_are_refused_early(tmp_path, minimal):
    """1,000 ids x 1,000 frames: a 300 MB array from a file of 2.8 or 0.8 MB."""
    path = tmp_path / "ids.skeleton"
    path = minimal_ids_file(path, 1000) if minimal else many_ids_file(path, 1000, True)
    assert path.stat().st_size < 3e6
    tracemalloc.start()
    try:
        with pytest.raises(SkvisError) as info:
            read_ntu_skeleton(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert path.name in msg and "distinct body" in msg and "MiB" in msg, msg
    line = int(re.search(r"line (\d+):", msg)[1])
    assert (line - 3) % 28 == 0 and line < 3 + 28 * 200  # a body line, well before the end
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_many_short_lived_body_ids_are_still_read(tmp_path):
    """A new id in each of 103 frames (a 3 MB array from a 0.3 MB file) is within the cap."""
    path = many_ids_file(tmp_path / "ids.skeleton", 103, True)
    arr = read_ntu_skeleton(path)
    ref = read_ntu_skeleton(ONE_BODY_CRLF)
    assert arr.shape == (103, 103, 25, 3)
    diagonal = np.eye(103, dtype=bool)
    np.testing.assert_array_equal(arr[diagonal], ref[0])
    assert np.isnan(arr[~diagonal]).all()
    # The same frames under one id: one body.
    same = many_ids_file(tmp_path / "same.skeleton", 103, False)
    np.testing.assert_array_equal(read_ntu_skeleton(same), ref)


# --- paths that are not a readable file ---


def test_os_errors_name_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "missing.skeleton"
    with pytest.raises(SkvisError, match=r"missing\.skeleton: cannot read \(FileNotFoundError"):
        read_ntu_skeleton(missing)
    with pytest.raises(SkvisError, match=r"a directory, not a regular file"):
        read_ntu_skeleton(tmp_path)
    # Root reads a chmod 000 file anyway: the refusal comes from the open itself.
    locked = tmp_path / ONE_BODY_CRLF.name
    locked.write_bytes(ONE_BODY_CRLF.read_bytes())

    def refuse(file, flags, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", file)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(
        SkvisError, match=r"cannot read \(PermissionError: Permission denied"
    ) as info:
        read_ntu_skeleton(locked)
    assert str(locked) in str(info.value)
