"""Feature lists as the authors ship them, parsed into videos (names, labels, anomaly classes, crop files).

- ``ucf`` layout (RTFM ``.list``): one line per video naming its ``(T, N, C)`` file, absolute Windows or POSIX
  paths, CRLF or LF.
- ``xd`` layout (XD-Violence / UR-DMU lists): one line per crop file ``<video>__<k>.npy``; the lines of a video are
  consecutive with ``k = 0 .. N-1`` in order.

Labels come from the names (see :mod:`vad.data.names`) and are cross-checked against the authors' index split
(the first ``split_index`` videos abnormal, the rest normal); names that carry no label take it from the index.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from vad.data.errors import DataError
from vad.data.names import file_name, label_and_class, split_crop_name, video_id_from_file


@dataclass(frozen=True)
class ListedVideo:
    """One video of a list before its files are resolved on disk."""

    id: str
    label: int | None
    anomaly_class: str | None
    file_names: tuple[str, ...]
    """The file name of each crop file (one name in the ``ucf`` layout)."""
    entries: tuple[str, ...]
    """The list lines themselves (paths as written), to break ties between files of the same name."""
    line: int
    """1-based number of the video's first line in the list."""


def read_list_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-blank lines; DataError if unreadable, not text, or empty."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read feature list {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"feature list {path} is not UTF-8 text (byte {exc.start}): "
                        "expected one path per line") from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataError(f"feature list {path} is empty: expected one feature file path per line")
    return lines


def parse_list(path: str | Path, layout: str, n_crops: int | None = None) -> list[ListedVideo]:
    """The videos of a feature list in list order (labels from names only; see :func:`with_labels`).

    ``n_crops``: expected crop files per video in the ``xd`` layout (inferred from the first video when None).
    """
    path = Path(path)
    lines = read_list_lines(path)
    if layout == "ucf":
        videos = _parse_video_per_line(path, lines)
    elif layout == "xd":
        videos = _parse_crop_per_line(path, lines, n_crops)
    else:
        raise DataError(f"{path}: unknown layout {layout!r}; expected 'ucf' or 'xd'")
    seen: dict[str, int] = {}
    for video in videos:
        if video.id in seen:
            raise DataError(f"{path}: line {video.line}: video {video.id} is listed twice "
                            f"(first at line {seen[video.id]})")
        seen[video.id] = video.line
    return videos


def _check_npy(path: Path, number: int, entry: str) -> str:
    name = file_name(entry)
    if not name.endswith(".npy"):
        raise DataError(f"{path}: line {number}: {entry!r} is not a .npy feature file")
    return name


def _parse_video_per_line(path: Path, lines: list[tuple[int, str]]) -> list[ListedVideo]:
    videos = []
    for number, entry in lines:
        name = _check_npy(path, number, entry)
        if split_crop_name(name) is not None:
            raise DataError(f"{path}: line {number}: {name} looks like a per-crop file (<video>__<k>.npy); "
                            "this dataset's layout is 'ucf' (one (T, N, C) file per video): set layout: xd")
        video_id = video_id_from_file(name)
        label, anomaly_class = label_and_class(video_id)
        videos.append(ListedVideo(video_id, label, anomaly_class, (name,), (entry,), number))
    return videos


def _parse_crop_per_line(path: Path, lines: list[tuple[int, str]], n_crops: int | None) -> list[ListedVideo]:
    groups: list[tuple[str, int, list[str], list[str]]] = []  # (video, first line, names, entries)
    for number, entry in lines:
        name = _check_npy(path, number, entry)
        parsed = split_crop_name(name)
        if parsed is None:
            raise DataError(f"{path}: line {number}: {name} has no crop index; expected <video>__<k>.npy "
                            "(xd layout: one line per crop file)")
        video, crop = parsed
        if groups and groups[-1][0] == video:
            expected = len(groups[-1][2])
        else:
            if groups:
                _check_crop_count(path, groups[-1], n_crops)
                n_crops = n_crops or len(groups[-1][2])
            groups.append((video, number, [], []))
            expected = 0
        if crop != expected:
            raise DataError(f"{path}: line {number}: video {video} has crop file __{crop} where __{expected} "
                            "was expected (a video's crop files must be on consecutive lines, in order from __0)")
        groups[-1][2].append(name)
        groups[-1][3].append(entry)
    _check_crop_count(path, groups[-1], n_crops)
    videos = []
    for video, number, names, entries in groups:
        label, anomaly_class = label_and_class(video)
        videos.append(ListedVideo(video, label, anomaly_class, tuple(names), tuple(entries), number))
    return videos


def _check_crop_count(path: Path, group: tuple[str, int, list[str], list[str]], n_crops: int | None) -> None:
    video, number, names, _ = group
    if n_crops is not None and len(names) != n_crops:
        raise DataError(f"{path}: line {number}: video {video} has {len(names)} crop file line(s) "
                        f"(__0 to __{len(names) - 1}); expected {n_crops} (__0 to __{n_crops - 1})")


def with_labels(videos: list[ListedVideo], split_index: int | None, source: Path) -> list[ListedVideo]:
    """Fill in labels from ``split_index`` (first ``split_index`` videos abnormal) where names carry none, and
    cross-check the names' labels against it; DataError naming the first mismatching video."""
    if split_index is not None and not 0 <= split_index <= len(videos):
        raise DataError(f"{source}: split_index {split_index} is outside the list's {len(videos)} videos")
    out = []
    for position, video in enumerate(videos):
        if split_index is None:
            if video.label is None:
                raise DataError(f"{source}: line {video.line}: the name of video {video.id} carries no label "
                                "(UCF 'Normal_' / XD '_label_A') and the dataset config has no split index "
                                "(split_index / test_split_index) to take it from")
            out.append(video)
            continue
        expected = 1 if position < split_index else 0
        if video.label is not None and video.label != expected:
            said = "normal" if video.label == 0 else "abnormal"
            raise DataError(f"{source}: line {video.line}: video {video.id} (#{position}) is {said} by its name, "
                            f"but split index {split_index} makes the first {split_index} videos abnormal and "
                            "the rest normal")
        out.append(dataclasses.replace(video, label=expected))
    return out
