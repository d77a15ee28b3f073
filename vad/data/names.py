"""What a video's name tells: its id (from a feature file name), its label and its anomaly class.

UCF-Crime names carry the class as a prefix (``RoadAccidents021_x264`` -> ``RoadAccidents``; normal videos are
``Normal_Videos###_x264`` (train) / ``Normal_Videos_###_x264`` (test), class ``Normal``). XD-Violence names carry
up to three label codes after ``_label_`` (``..._label_B2-G-0``; ``A`` is normal); the class is the first code.
Other names (ShanghaiTech ``01_0014``) carry no label: it then comes from the config's split index.
"""

from __future__ import annotations

import re

FEATURE_SUFFIXES = ("_i3d", "_c3d")
"""Backbone suffixes removed from a one-file-per-video feature name (``Abuse001_x264_i3d.npy``)."""
CROP_SEPARATOR = "__"
"""Separates a video name from its crop index in per-crop file names (``<video>__<k>.npy``)."""
XD_LABEL_MARK = "_label_"
XD_NORMAL_CODE = "A"
UCF_NORMAL_PREFIX = "Normal_"
UCF_NORMAL_CLASS = "Normal"
_UCF_NAME = re.compile(r"^(?P<cls>[A-Za-z]+(?:_[A-Za-z]+)*?)_?\d+(?:_x264)?$")


def file_name(line: str) -> str:
    """The file name of a list line holding a Windows or POSIX path (``G:\\dir\\a.npy`` -> ``a.npy``)."""
    return re.split(r"[\\/]", line.strip())[-1]


def video_id_from_file(name: str) -> str:
    """Video id of a one-file-per-video feature file: ``Abuse001_x264_i3d.npy`` -> ``Abuse001_x264``."""
    stem = name[:-4] if name.endswith(".npy") else name
    for suffix in FEATURE_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def split_crop_name(name: str) -> tuple[str, int] | None:
    """``<video>__<k>.npy`` -> ``(video, k)``, splitting on the LAST ``__``; None when the name has no crop index."""
    stem = name[:-4] if name.endswith(".npy") else name
    video, sep, crop = stem.rpartition(CROP_SEPARATOR)
    if not sep or not video or not crop.isdigit():
        return None
    return video, int(crop)


def label_and_class(video_id: str) -> tuple[int | None, str | None]:
    """``(label, anomaly_class)`` read from a name: label 0 normal / 1 abnormal; ``(None, None)`` if the name
    carries no label (then the split index decides)."""
    if XD_LABEL_MARK in video_id:
        codes = video_id.rsplit(XD_LABEL_MARK, 1)[1]
        first = codes.split("-")[0]
        if not first:
            return None, None
        return (0 if first == XD_NORMAL_CODE else 1), first
    if video_id.startswith(UCF_NORMAL_PREFIX):
        return 0, UCF_NORMAL_CLASS
    match = _UCF_NAME.match(video_id)
    if match:
        return 1, match.group("cls")
    return None, None
