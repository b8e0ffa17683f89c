"""The package's one error type."""

from __future__ import annotations


class SkvisError(ValueError):
    """Bad input: a malformed file, a wrong shape, NaNs, an unknown joint, ...

    Messages name the file, the line or the offending shape, and what was expected.
    """
