import numpy as np
import pytest

from skvis_widgets import KINECT_V2, SkvisError
from skvis_widgets.data import SkeletonDataset


def make(n=6, t=5, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(25, 3)).astype(np.float32)
    return [base + 0.01 * rng.normal(size=(t + i, 25, 3)).astype(np.float32) for i in range(n)]


def test_from_arrays_normalizes_and_indexes():
    seqs = make()
    ds = SkeletonDataset.from_arrays(
        seqs, [0, 1, 2, 0, 1, 2], "kinect_v2", ["a", "b", "c"], [1, 2, 3, 4, 5, 6]
    )
    assert len(ds) == 6 and ds.topology is KINECT_V2 and ds.num_classes == 3
    seq, label = ds[4]
    assert seq.shape == (9, 25, 3) and label == 1
    np.testing.assert_allclose(seq[0, 0], 0, atol=1e-5)  # spine base at the origin
    np.testing.assert_allclose(ds.frames[4].invert(seq), seqs[4], atol=1e-5)
    raw = SkeletonDataset.from_arrays(seqs, [0] * 6, KINECT_V2, ["a"], normalize=False)
    np.testing.assert_array_equal(raw.sequences[2], seqs[2])


def test_subset_and_split():
    ds = SkeletonDataset.from_arrays(
        make(), [0, 1, 0, 1, 0, 1], KINECT_V2, ["a", "b"], [1, 2, 3, 4, 5, 6]
    )
    sub = ds.subset([5, 0])
    assert list(sub.subjects) == [6, 1] and list(sub.labels) == [1, 0]
    np.testing.assert_array_equal(sub.sequences[0], ds.sequences[5])
    train, test = ds.split_cross_subject()
    assert list(train.subjects) == [1, 3, 5] and list(test.subjects) == [2, 4, 6]
    train, test = ds.split_cross_subject(train_subjects=[2])
    assert list(train.subjects) == [2] and len(test) == 5
    batch, lengths = ds.padded([0, 3])
    assert batch.shape == (2, 8, 25, 3) and list(lengths) == [5, 8]
    assert not batch[0, 5:].any()


def test_bad_arrays():
    seqs = make()
    with pytest.raises(SkvisError, match="label 3 is out of range"):
        SkeletonDataset.from_arrays(seqs, [0, 1, 2, 3, 0, 0], KINECT_V2, ["a", "b", "c"])
    with pytest.raises(SkvisError, match="label -1 is out of range"):
        SkeletonDataset.from_arrays(seqs, [0, 1, 2, -1, 0, 0], KINECT_V2, ["a", "b", "c"])
    with pytest.raises(SkvisError, match=r"sequence 2: has 20 joints .* expects 25"):
        SkeletonDataset.from_arrays(seqs[:2] + [np.zeros((4, 20, 3))], [0, 0, 0], KINECT_V2, ["a"])
    nan = [s.copy() for s in seqs]
    nan[1][2, 3, 0] = np.nan
    with pytest.raises(SkvisError, match="sequence 1: contains NaN.*frame 2, joint 3"):
        SkeletonDataset.from_arrays(nan, [0] * 6, KINECT_V2, ["a"], clean=False)
    with pytest.raises(SkvisError, match="sequence 1: lost tracking.*frame 2, joint 3"):
        SkeletonDataset.from_arrays(
            [0.3 * s for s in nan], [0] * 6, KINECT_V2, ["a"], clean="refuse"
        )
    with pytest.raises(SkvisError, match="zero frames"):
        SkeletonDataset.from_arrays([np.zeros((0, 25, 3))], [0], KINECT_V2, ["a"])
    with pytest.raises(SkvisError, match="expected 6 labels"):
        SkeletonDataset.from_arrays(seqs, [0, 1], KINECT_V2, ["a", "b"])
    with pytest.raises(SkvisError, match="unknown"):
        SkeletonDataset.from_arrays(seqs, [0] * 6, "kinect_v7", ["a"])
    ds = SkeletonDataset.from_arrays(seqs, [0] * 6, KINECT_V2, ["a"])
    with pytest.raises(SkvisError, match="subjects are unknown"):
        ds.split_cross_subject()


def test_pad_sequences_is_the_one_padder():
    from skvis_widgets.data import pad_sequences

    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(t, 4, 3)) for t in (3, 1, 5)]
    batch, lengths = pad_sequences(seqs)
    assert batch.shape == (3, 5, 4, 3) and batch.dtype == np.float32
    assert lengths.dtype == np.int64 and lengths.tolist() == [3, 1, 5]
    for k, s in enumerate(seqs):  # each row: the sequence, then zeros
        np.testing.assert_array_equal(batch[k, : len(s)], s.astype(np.float32))
        assert not batch[k, len(s) :].any()
    wide, _ = pad_sequences(seqs, dtype=np.float64)
    np.testing.assert_array_equal(wide[2], seqs[2])  # no float32 rounding
    empty, none = pad_sequences([], num_joints=4)
    assert empty.shape == (0, 1, 4, 3) and none.shape == (0,)
    with pytest.raises(SkvisError, match="no sequences and no num_joints"):
        pad_sequences([])
    with pytest.raises(SkvisError, match=r"sequence 1 has shape \(2, 5, 3\); expected \(T, 4, 3\)"):
        pad_sequences([seqs[0], np.zeros((2, 5, 3))])
