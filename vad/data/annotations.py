"""Readers for the temporal anomaly annotations of the test videos (frame indices of the original videos).

- UCF-Crime ``.mat`` (RTFM ``Matlab_formate/<Video>_x264.mat``): struct ``Annotation_file`` with ``Anno``
  ``(n_events, 2)`` ``[start, end]``, end inclusive; normal videos hold ``[[-1, -1]]``.
- UCF-Crime text: UR-DMU ``UCF_Annotation.txt`` (``<Class>/<Video>.mp4 <n_frames> <Class> s1 e1 s2 e2``) or the
  official ``Temporal_Anomaly_Annotation.txt`` (``<Video>[.mp4] <Class> s1 e1 s2 e2``); ``-1`` = no event.
- XD-Violence ``XD_Annotation.txt`` / ``annotations.txt``: ``<video>[.mp4] s1 e1 [s2 e2 ...]``, end exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vad.data.errors import DataError
from vad.data.names import file_name

Event = tuple[int, int]


@dataclass(frozen=True)
class UcfAnnotation:
    """One UCF-Crime test video: its frame count (None in the official file), class and events (inclusive)."""

    n_frames: int | None
    event_class: str
    events: tuple[Event, ...]


def _strip_video_suffix(name: str) -> str:
    name = file_name(name)
    return name[:-4] if name.lower().endswith(".mp4") else name


def _events(tokens: list[str], path: Path, number: int, allow_none: bool) -> tuple[Event, ...]:
    if len(tokens) % 2:
        raise DataError(f"{path}: line {number}: expected start/end frame pairs, got {len(tokens)} number(s)")
    try:
        values = [int(token) for token in tokens]
    except ValueError:
        raise DataError(f"{path}: line {number}: expected integer frame indices, got {' '.join(tokens)!r}") from None
    events = []
    for start, end in zip(values[::2], values[1::2]):
        if allow_none and start == -1 and end == -1:
            continue
        if start < 0 or end < start:
            raise DataError(f"{path}: line {number}: event [{start}, {end}] is not a valid frame range "
                            "(0 <= start <= end)")
        events.append((start, end))
    return tuple(events)


def read_ucf_mat(path: str | Path) -> tuple[Event, ...]:
    """The events of one RTFM ``.mat`` annotation (ends inclusive); empty for ``[[-1, -1]]``."""
    import scipy.io

    path = Path(path)
    try:
        record = scipy.io.loadmat(path)["Annotation_file"][0, 0]
        anno = np.asarray(record["Anno"]).astype(np.int64).reshape(-1, 2)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DataError(f"{path}: not a UCF-Crime .mat annotation (struct Annotation_file with field Anno "
                        f"[start, end] rows): {exc}") from None
    return _events([str(value) for value in anno.ravel()], path, 1, allow_none=True)


def read_ucf_txt(path: str | Path) -> dict[str, UcfAnnotation]:
    """Video id (``Abuse028_x264``) -> annotation, from ``UCF_Annotation.txt`` or
    ``Temporal_Anomaly_Annotation.txt``."""
    path = Path(path)
    out: dict[str, UcfAnnotation] = {}
    for number, tokens in _token_lines(path):
        if len(tokens) >= 3 and _is_int(tokens[1]) and not _is_int(tokens[2]):
            n_frames, event_class, rest = int(tokens[1]), tokens[2], tokens[3:]
        elif len(tokens) >= 2 and not _is_int(tokens[1]):
            n_frames, event_class, rest = None, tokens[1], tokens[2:]
        else:
            raise DataError(f"{path}: line {number}: expected '<video> [n_frames] <class> s1 e1 s2 e2'")
        video = _strip_video_suffix(tokens[0])
        if video in out:
            raise DataError(f"{path}: line {number}: video {video} is annotated twice")
        out[video] = UcfAnnotation(n_frames, event_class, _events(rest, path, number, allow_none=True))
    return out


def read_xd_txt(path: str | Path) -> dict[str, tuple[Event, ...]]:
    """Video name -> its violent segments ``[start, end)`` (frames), from ``XD_Annotation.txt``."""
    path = Path(path)
    out: dict[str, tuple[Event, ...]] = {}
    for number, tokens in _token_lines(path):
        video = _strip_video_suffix(tokens[0])
        if video in out:
            raise DataError(f"{path}: line {number}: video {video} is annotated twice")
        events = _events(tokens[1:], path, number, allow_none=False)
        if not events:
            raise DataError(f"{path}: line {number}: video {video} has no segment; expected '<video> s1 e1 ...'")
        out[video] = events
    return out


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def _token_lines(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read annotation file {path}: {exc}") from None
    lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataError(f"annotation file {path} is empty")
    return lines
