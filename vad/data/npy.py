"""Opening one ``.npy`` array from disk safely (no pickles), with a sentence for a file that is not one."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from vad.data.errors import DataError

NPY_MAGIC = b"\x93NUMPY"
"""The first six bytes of every ``.npy`` file (numpy.lib.format)."""


def read_npy(path: str | Path, what: str, *, mmap_mode: Literal["r"] | None = None) -> np.ndarray:
    """The array in ``path`` (``allow_pickle=False``; ``mmap_mode="r"`` maps it). A file that does not start
    with the ``.npy`` magic raises "not a NumPy .npy file"; a damaged header or body, or object (pickled) data,
    raises a :class:`DataError` naming the file and ``what`` it should hold (e.g. "the features of video X")."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(NPY_MAGIC))
    except OSError as exc:
        raise DataError(f"{path}: cannot open {what} ({exc.strerror or exc})") from None
    if head != NPY_MAGIC:
        raise DataError(f"{path}: not a NumPy .npy file (it should hold {what}); write it with numpy.save")
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read {what}: the .npy file is truncated or damaged ({exc})") from None
    except Exception as exc:  # a garbled header fails inside numpy's parser (ValueError, SyntaxError, TokenError)
        reason = ("it holds Python objects, not numbers" if "pickled" in str(exc)
                  else f"damaged header: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        raise DataError(f"{path}: cannot read {what} as a numeric .npy array ({reason})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path}: {what} is not a single array")
    return array
