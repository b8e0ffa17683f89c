import warnings
from pathlib import Path

import numpy as np
import pytest

from skvis_widgets import MSR_ACTION3D, SkvisError
from skvis_widgets.data import load_msr_action3d, read_msr_action3d

DATA = Path(__file__).parent / "data" / "msr"
THROW_FREE = DATA / "a01_s01_e01_skeleton3D.txt"
EMPTY = DATA / "a13_s09_e02_skeleton3D.txt"


def numbers_from_text(path: Path) -> list[list[float]]:
    # Independent of the reader: a plain line-by-line parse.
    rows = []
    with open(path) as fh:
        for line in fh:
            if line.strip():
                rows.append([float(v) for v in line.split()])
    return rows


@pytest.fixture(scope="module")
def bundled():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_msr_action3d(protocol="all", normalize=False)


def test_reader_against_text():
    arr = read_msr_action3d(THROW_FREE)
    rows = numbers_from_text(THROW_FREE)
    assert arr.shape == (len(rows) // 20, 20, 3) and arr.dtype == np.float32
    for line in (0, 1, 19, 20, 537, len(rows) - 1):
        t, j = divmod(line, 20)
        np.testing.assert_allclose(arr[t, j], rows[line][:3], rtol=0, atol=1e-6)


def test_first_values_read_by_hand():
    arr = read_msr_action3d(THROW_FREE)
    # "-0.371736 0.371031 2.674849 1.000000" is the first line of the file.
    np.testing.assert_allclose(arr[0, 0], [-0.371736, 0.371031, 2.674849], atol=1e-6)


def test_all_zero_file_reads_and_is_skipped_with_a_named_warning(tmp_path):
    assert not np.any(read_msr_action3d(EMPTY))
    for f in DATA.glob("*.txt"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    with pytest.warns(UserWarning, match="a13_s09_e02"):
        data = load_msr_action3d(tmp_path)
    names = sorted(f.name[:11] for f in DATA.glob("*.txt") if f != EMPTY)
    assert sorted(data.ids) == names and len(names) >= 2
    assert data.class_names[data.labels[list(data.ids).index("a14_s06_e02")]] == "forward kick"
    assert data.subjects[list(data.ids).index("a14_s06_e02")] == 6


def test_bundle_equals_raw_files(bundled):
    assert len(bundled) == 566  # 567 recordings less the all-zero one
    for name in ("a01_s01_e01", "a14_s06_e02"):
        raw = read_msr_action3d(DATA / f"{name}_skeleton3D.txt")
        np.testing.assert_array_equal(bundled.sequences[bundled.ids.index(name)], raw)


def test_cvpr12_protocol():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_msr_action3d(normalize=False)
    assert len(data) == 557  # files_used_in_cvpr12_paper.txt
    assert "a07_s04_e01" not in data.ids and "a01_s01_e01" in data.ids
    with pytest.raises(SkvisError, match="protocol must be"):
        load_msr_action3d(protocol="as1")


def test_bundle_protocol(bundled):
    assert bundled.num_classes == 20 and bundled.topology is MSR_ACTION3D
    assert bundled.class_names[5] == "high throw" and bundled.class_names[13] == "forward kick"
    train, test = bundled.split_cross_subject()
    assert set(train.subjects) == {1, 3, 5, 7, 9} and set(test.subjects) == {2, 4, 6, 8, 10}
    assert len(train) + len(test) == len(bundled)
    assert set(train.labels) == set(test.labels) == set(range(20))


def test_bundle_normalized_by_default():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_msr_action3d()
    first = np.stack([s[0, MSR_ACTION3D.index("spine_base")] for s in data.sequences])
    np.testing.assert_allclose(first, 0, atol=1e-5)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda lines: lines[:-3], "not a whole number of frames"),
        (lambda lines: lines[:7] + ["0.1 0.2 abc 1.0"] + lines[8:], r"line 8: .*not numeric"),
        (lambda lines: lines[:4] + ["0.1 0.2"] + lines[5:], r"line 5: 2 values"),
        (lambda lines: lines[:2] + ["nan 0.2 0.3 1.0"] + lines[3:], r"line 3: NaN"),
        (lambda lines: [], "empty file"),
        (lambda lines: [ln + " 0.5" for ln in lines[:40]], r"line 1: 5 values"),
    ],
    ids=["truncated", "non-numeric", "short-line", "nan", "empty", "wrong-columns"],
)
def test_bad_files(tmp_path, edit, match):
    lines = THROW_FREE.read_text().splitlines()
    bad = tmp_path / "a01_s01_e01_skeleton3D.txt"
    bad.write_text("\n".join(edit(lines)))
    with pytest.raises(SkvisError, match=match) as info:
        read_msr_action3d(bad)
    assert str(bad) in str(info.value)


def test_wrong_joint_count_file(tmp_path):
    # A file written with 21 joints a frame (3 frames, 63 lines) is not whole 20-joint frames.
    lines = THROW_FREE.read_text().splitlines()[:63]
    bad = tmp_path / "a01_s01_e01_skeleton3D.txt"
    bad.write_text("\n".join(lines))
    with pytest.raises(SkvisError, match="63 lines"):
        read_msr_action3d(bad)


def test_folder_without_files(tmp_path):
    with pytest.raises(SkvisError, match="no MSR Action3D files"):
        load_msr_action3d(tmp_path)


def test_lost_track_frames_are_dropped(bundled):
    # a20_s02_e01 has 56 frames in the file, of which 24..55 are all zeros (lost track).
    i = bundled.ids.index("a20_s02_e01")
    assert len(bundled.sequences[i]) == 24
    assert all(np.any(s.reshape(len(s), -1), axis=1).all() for s in bundled.sequences)


def write_edited(tmp_path: Path, edit) -> Path:
    lines = THROW_FREE.read_text().splitlines()
    path = tmp_path / THROW_FREE.name
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


def move_last_value(lines: list[str], frm: int, to: int) -> list[str]:
    """Move the last value of line ``frm`` to the end of line ``to`` (0-based)."""
    lines = list(lines)
    *rest, value = lines[frm].split()
    lines[frm] = " ".join(rest)
    lines[to] = f"{lines[to]} {value}"
    return lines


@pytest.mark.parametrize(
    ("frm", "to", "match"),
    [(4, 5, r"line 5: 3 values"), (5, 4, r"line 5: 5 values"), (30, 900, r"line 31: 3 values")],
)
def test_every_line_has_four_values(tmp_path, frm, to, match):
    # As many values in all as 4 per line, but a 3-value and a 5-value line: refused,
    # not read with the coordinates shifted.
    path = write_edited(tmp_path, lambda lines: move_last_value(lines, frm, to))
    assert len(path.read_text().split()) == 4 * len(path.read_text().splitlines())
    with pytest.raises(SkvisError, match=match):
        read_msr_action3d(path)


@pytest.mark.parametrize("value", ["1e60", "-3.5e38", "1e39"])
def test_float32_overflow_is_an_error_not_a_warning(tmp_path, value):
    def edit(lines):
        lines[4] = f"{value} {lines[4].split(maxsplit=1)[1]}"
        return lines

    path = write_edited(tmp_path, edit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SkvisError, match=r"line 5: .*float32") as info:
            read_msr_action3d(path, max_abs=float("inf"))
        with pytest.raises(SkvisError, match=r"line 5: "):
            read_msr_action3d(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("value", "shown"), [("12.5", "12.5"), ("-0371736", "-371736")])
def test_implausible_coordinate(tmp_path, value, shown):
    def edit(lines):
        fields = lines[20].split()
        fields[2] = value
        lines[20] = " ".join(fields)
        return lines

    path = write_edited(tmp_path, edit)
    with pytest.raises(
        SkvisError, match=rf"line 21: implausible coordinate {shown} m.*max_abs = 10 m"
    ):
        read_msr_action3d(path)
    expected = read_msr_action3d(THROW_FREE)
    expected[1, 0, 2] = float(value)  # line 21: frame 2, joint 1, z
    np.testing.assert_array_equal(read_msr_action3d(path, max_abs=1e6), expected)


@pytest.mark.parametrize("value", ["0.37_1031", "\u0660.5"])
def test_numbers_are_plain_ascii_decimals(tmp_path, value):
    def edit(lines):
        fields = lines[7].split()
        fields[1] = value
        lines[7] = " ".join(fields)
        return lines

    path = write_edited(tmp_path, edit)
    with pytest.raises(SkvisError, match=r"line 8: .*not numeric"):
        read_msr_action3d(path)


def test_crlf_and_blank_lines(tmp_path):
    ref = read_msr_action3d(THROW_FREE)
    lines = THROW_FREE.read_text().splitlines()
    path = tmp_path / THROW_FREE.name
    path.write_bytes(("\r\n".join(lines[:10] + ["", "  "] + lines[10:]) + "\r\n\r\n").encode())
    np.testing.assert_array_equal(read_msr_action3d(path), ref)
    # Line numbers count the blank lines.
    path.write_text("\n".join(lines[:10] + ["", ""] + ["nan 0 0 1"] + lines[11:]))
    with pytest.raises(SkvisError, match=r"line 13: NaN"):
        read_msr_action3d(path)
