"""Readers, normalization and `SkeletonDataset`."""

from .arrays import as_sequence, pad_sequences
from .clean import CleaningReport, fill_gaps, lost_tracking
from .dataset import SkeletonDataset
from .msr import MSR_CLASS_NAMES, load_msr_action3d, read_msr_action3d
from .normalize import BodyFrame, body_frame, normalize_sequence
from .ntu import main_body, read_ntu_skeleton

__all__ = [
    "fill_gaps",
    "lost_tracking",
    "CleaningReport",
    "SkeletonDataset",
    "as_sequence",
    "pad_sequences",
    "BodyFrame",
    "body_frame",
    "normalize_sequence",
    "read_msr_action3d",
    "load_msr_action3d",
    "MSR_CLASS_NAMES",
    "read_ntu_skeleton",
    "main_body",
]
