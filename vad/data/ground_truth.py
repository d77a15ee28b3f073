"""Frame-level test ground truth: one 0/1 label per frame, ``frames_per_snippet`` (16) frames per test snippet,
test videos in list order, so its length is ``16 * sum(T_i)``.

Sources: a ``gt-*.npy`` (flat, as RTFM/MGFN/UR-DMU ship it), an S3R ``*.json`` (``{video: {num_frames, labels}}``),
or built from annotations with RTFM's ``make_gt_ucf`` rule (``ucf_mat``, ``ucf_txt``: zeros, then ones on each
event ``[start, end]`` with the end inclusive, clipped to the video's ``16 * T_i`` frames) or XD-Violence's
``make_gt`` rule (``xd_txt``: ones on ``[start, end)``, clipped to ``16 * T_i``). Normal videos are all zeros.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vad.data.annotations import Event, read_ucf_mat, read_ucf_txt, read_xd_txt
from vad.data.dataset import FeatureDataset
from vad.data.errors import DataError
from vad.data.npy import read_npy


@dataclass(frozen=True)
class GroundTruth:
    """``labels`` ``(sum 16*T_i,)`` uint8 0/1 frames in test order; ``offsets`` ``(V+1,)`` frame offsets."""

    labels: np.ndarray
    offsets: np.ndarray
    video_ids: list[str]
    source: Path | None = None

    @property
    def frame_lengths(self) -> np.ndarray:
        """``(V,)`` frames per test video."""
        return np.diff(self.offsets)

    def video(self, index: int) -> np.ndarray:
        """The frame labels of test video ``index``."""
        return self.labels[self.offsets[index]:self.offsets[index + 1]]

    def __len__(self) -> int:
        return len(self.video_ids)


def _frame_offsets(video_ids: Sequence[str], lengths: Sequence[int], frames_per_snippet: int) -> np.ndarray:
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if len(lengths) != len(video_ids):
        raise DataError(f"got {len(lengths)} test video lengths for {len(video_ids)} test videos")
    if len(lengths) and lengths.min() < 1:
        first = int(np.argmin(lengths))
        raise DataError(f"test video {video_ids[first]} has {lengths[first]} snippets; expected at least 1")
    return np.concatenate([[0], np.cumsum(lengths * frames_per_snippet)]).astype(np.int64)


def ground_truth_from_events(video_ids: Sequence[str], labels: Sequence[int], lengths: Sequence[int],
                             events: Mapping[str, Sequence[Event]], end_inclusive: bool, source: Path,
                             frames_per_snippet: int = 16) -> GroundTruth:
    """Frame labels from per-video events (frame ``[start, end]`` or ``[start, end)``), clipped to each video's
    ``frames_per_snippet * T_i`` frames. Abnormal videos need at least one event, normal videos none; an event
    starting a snippet or more past the video's end means the features do not match the annotation."""
    offsets = _frame_offsets(video_ids, lengths, frames_per_snippet)
    out = np.zeros(int(offsets[-1]), dtype=np.uint8)
    for index, (video, label) in enumerate(zip(video_ids, labels)):
        video_events = events.get(video, ())
        if label and not video_events:
            raise DataError(f"{source}: test video {video} is abnormal but has no annotated anomaly event")
        if not label and video_events:
            raise DataError(f"{source}: test video {video} is normal (by its name / the split index) but has "
                            f"annotated events {list(video_events)}")
        n_frames = int(offsets[index + 1] - offsets[index])
        for start, end in video_events:
            if start >= n_frames + frames_per_snippet:
                raise DataError(f"{source}: test video {video} (#{index}): event [{start}, {end}] starts past its "
                                f"{n_frames} frames ({n_frames // frames_per_snippet} snippets x "
                                f"{frames_per_snippet}); do the test features match the annotation?")
            stop = min(end + 1 if end_inclusive else end, n_frames)
            if stop > start:
                out[offsets[index] + start:offsets[index] + stop] = 1
    return GroundTruth(out, offsets, list(video_ids), source)


def ucf_mat_ground_truth(mat_dir: str | Path, video_ids: Sequence[str], labels: Sequence[int],
                         lengths: Sequence[int], frames_per_snippet: int = 16) -> GroundTruth:
    """RTFM ``make_gt_ucf``: abnormal videos read ``<mat_dir>/<Video>_x264.mat``; normal videos are zeros."""
    mat_dir = Path(mat_dir)
    if not mat_dir.is_dir():
        raise DataError(f"annotations: {mat_dir} is not a folder of <Video>_x264.mat files")
    events = {}
    for video, label in zip(video_ids, labels):
        if not label:
            continue
        candidates = [mat_dir / f"{video}.mat", mat_dir / f"{video.split('_')[0]}_x264.mat"]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise DataError(f"{mat_dir}: no annotation for abnormal test video {video} (expected {candidates[0].name})")
        events[video] = read_ucf_mat(found)
    return ground_truth_from_events(video_ids, labels, lengths, events, True, mat_dir, frames_per_snippet)


def ucf_txt_ground_truth(path: str | Path, video_ids: Sequence[str], labels: Sequence[int],
                         lengths: Sequence[int], frames_per_snippet: int = 16) -> GroundTruth:
    """The same rule from ``UCF_Annotation.txt`` / ``Temporal_Anomaly_Annotation.txt``. Where the file gives
    frame counts n (UR-DMU's), each video's T must be one of the known extraction variants
    (``ceil(n/16)``, ``floor(n/16)``, ``floor((n-1)/16)``); DataError names the first video that is not."""
    path = Path(path)
    annotations = read_ucf_txt(path)
    for index, (video, label, length) in enumerate(zip(video_ids, labels, lengths)):
        if video not in annotations:
            if label:
                raise DataError(f"{path}: no annotation line for abnormal test video {video}")
            continue
        n_frames = annotations[video].n_frames
        if n_frames is None:
            continue
        variants = {math.ceil(n_frames / frames_per_snippet), n_frames // frames_per_snippet,
                    (n_frames - 1) // frames_per_snippet}
        if int(length) not in variants:
            raise DataError(f"{path}: test video {video} (#{index}) has {int(length)} snippets "
                            f"({int(length) * frames_per_snippet} frames) but the annotation gives {n_frames} frames "
                            f"(expected T = ceil({n_frames}/{frames_per_snippet}) = "
                            f"{math.ceil(n_frames / frames_per_snippet)}, or a floor variant); this is the first "
                            "test video whose frame count diverges")
    events = {video: annotation.events for video, annotation in annotations.items()}
    return ground_truth_from_events(video_ids, labels, lengths, events, True, path, frames_per_snippet)


def xd_txt_ground_truth(path: str | Path, video_ids: Sequence[str], labels: Sequence[int],
                        lengths: Sequence[int], frames_per_snippet: int = 16) -> GroundTruth:
    """XD-Violence ``make_gt``: ones on each annotated ``[start, end)``, clipped to ``16 * T_i`` frames."""
    path = Path(path)
    return ground_truth_from_events(video_ids, labels, lengths, read_xd_txt(path), False, path, frames_per_snippet)


def npy_ground_truth(path: str | Path, video_ids: Sequence[str], lengths: Sequence[int],
                     frames_per_snippet: int = 16) -> GroundTruth:
    """A flat ``gt-*.npy``; its length must be ``16 * sum(T_i)``."""
    path = Path(path)
    offsets = _frame_offsets(video_ids, lengths, frames_per_snippet)
    array = read_npy(path, "ground_truth: the frame labels of the test videos")
    labels = _binary_labels(array, path)
    if len(labels) != offsets[-1]:
        raise DataError(f"ground_truth: {path} has {len(labels):,} frame labels but the {len(video_ids)} test "
                        f"videos have {frames_per_snippet} x {int(offsets[-1]) // frames_per_snippet:,} = "
                        f"{int(offsets[-1]):,} frames ({frames_per_snippet} x sum of T_i, list order; difference "
                        f"{len(labels) - int(offsets[-1]):+,}). A flat .npy holds no per-video boundaries, so the "
                        "diverging video cannot be named from it; build the ground truth from the annotations "
                        "(annotations + annotation_format) to locate it")
    return GroundTruth(labels, offsets, list(video_ids), path)


def json_ground_truth(path: str | Path, video_ids: Sequence[str], lengths: Sequence[int],
                      frames_per_snippet: int = 16) -> GroundTruth:
    """S3R's ``{video: {"num_frames": 16*T, "labels": [...]}}``; each video's count must be ``16 * T_i``."""
    path = Path(path)
    offsets = _frame_offsets(video_ids, lengths, frames_per_snippet)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"ground_truth: cannot read {path} as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"ground_truth: {path}: expected an object {{video: {{num_frames, labels}}}}")
    parts = []
    for index, video in enumerate(video_ids):
        entry = data.get(video)
        if not isinstance(entry, dict) or "labels" not in entry:
            raise DataError(f"ground_truth: {path} has no labels for test video {video} (#{index})")
        labels = _binary_labels(np.asarray(entry["labels"], dtype=np.float64), path, video)
        expected = int(offsets[index + 1] - offsets[index])
        if len(labels) != expected:
            raise DataError(f"ground_truth: {path}: test video {video} (#{index}) has {len(labels)} frame labels but "
                            f"its features have {expected // frames_per_snippet} snippets = {expected} frames; "
                            "this is the first test video whose frame count diverges")
        parts.append(labels)
    return GroundTruth(np.concatenate(parts) if parts else np.zeros(0, np.uint8), offsets, list(video_ids), path)


def _binary_labels(array: np.ndarray, path: Path, video: str | None = None) -> np.ndarray:
    where = f"{path}" + (f" (video {video})" if video else "")
    if array.ndim != 1 or array.dtype.kind not in "fiub":
        raise DataError(f"ground_truth: {where} holds an array of shape {array.shape}, dtype {array.dtype}; "
                        "expected a 1-D array of 0/1 frame labels")
    valid = (array == 0) | (array == 1)
    if not valid.all():
        first = int(np.argmin(valid))
        raise DataError(f"ground_truth: {where}: frame {first} has label {array[first]}; expected 0 or 1")
    return array.astype(np.uint8)


def load_ground_truth(dataset: FeatureDataset, lengths: Sequence[int]) -> GroundTruth:
    """The dataset's test ground truth for test features of ``lengths`` snippets (``(V,)``, test list order), from
    ``config.ground_truth`` (``.npy`` / ``.json``) or built from ``config.annotations``. When both are given they
    must agree (DataError naming the first video whose labels differ)."""
    config = dataset.config
    video_ids = [video.id for video in dataset.test]
    labels = [video.label for video in dataset.test]
    fps = config.frames_per_snippet
    built = None
    if config.annotations is not None:
        builders = {"ucf_mat": ucf_mat_ground_truth, "ucf_txt": ucf_txt_ground_truth, "xd_txt": xd_txt_ground_truth}
        built = builders[config.annotation_format](config.annotations, video_ids, labels, lengths, fps)
    if config.ground_truth is None:
        if built is None:
            raise DataError(f"{config.source or config.name}: the dataset has neither ground_truth nor annotations")
        return built
    suffix = config.ground_truth.suffix.lower()
    if suffix == ".npy":
        loaded = npy_ground_truth(config.ground_truth, video_ids, lengths, fps)
    elif suffix == ".json":
        loaded = json_ground_truth(config.ground_truth, video_ids, lengths, fps)
    else:
        raise DataError(f"ground_truth: {config.ground_truth} is neither a .npy nor an S3R .json ground truth")
    if built is not None:
        for index, video in enumerate(video_ids):
            if not np.array_equal(loaded.video(index), built.video(index)):
                raise DataError(f"ground_truth: {config.ground_truth} and the annotations {config.annotations} "
                                f"disagree, first on test video {video} (#{index})")
    return loaded
