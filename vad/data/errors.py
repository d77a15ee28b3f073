"""The one error type of the data layer."""

from __future__ import annotations


class DataError(ValueError):
    """Bad data on disk (a missing or malformed feature file, list, annotation or ground truth, a stale split).

    The message names the file, the video and what was expected.
    """
