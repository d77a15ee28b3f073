"""Synthetic I3D-like feature datasets written in the exact on-disk layouts of UCF-Crime and XD-Violence.

``python -m vad.data.synthetic --layout ucf|xd --out DIR [--videos 40] [--test-videos M] [--crops N] [--dim C]
[--difficulty D] [--seed S] [--like reference]`` writes feature files, list files, a frame-level ``gt-*.npy``,
the annotation text file and ``DIR/dataset.yaml``, so the real loaders read it unchanged.

The generative model, per video (``mu`` (C,) positive channel means shared by the dataset; non-negative after
the final ReLU, like post-ReLU I3D features)::

    scene     = mu * exp(0.25 g0 + 0.3 g)                    a per-video scene (g0 scalar, g ~ N(0, I_C))
    energy_t  = 0.15 v_t + 0.4 s a_t + 0.15 h_t              motion energy (v_t a unit AR(1) process)
    x[t, k]   = relu(exp(energy_t) scene
                     + mu * (0.25 u_t B + 5 s a_t w_class + 0.5 h_t w_distractor + 0.05 c_k + 0.08 e_tk))

``a_t`` is the fraction of snippet ``t``'s 16 frames inside an anomalous event (one to three contiguous events
per abnormal video, training videos included, their positions written to no file); ``s = 1 - difficulty``;
``w_class`` a unit, sparse, non-negative pattern (mostly shared by all anomaly classes, partly class-specific), so
anomalies differ in direction and in magnitude; ``u_t B`` low-rank temporally correlated noise; ``c_k`` a crop
offset and ``e_tk`` per-crop noise. ``h_t`` marks a distractor stretch that a third of all videos (normal and
abnormal) carry, another direction with extra energy, so that feature magnitude alone is an imperfect detector.
On the demo preset at the default difficulty 0.5, the snippet feature norm alone gives a frame AUC of about
0.75-0.8, a linear probe about 0.97, and the small RTFM of ``configs/demo.yaml`` 0.75-0.83 after 15 epochs;
at difficulty 0.95 all are near 0.5-0.6. The shift per channel does not depend on the width, so wider
features need more training videos to learn it.
Video lengths are log-normal (clipped), so some training videos are shorter than 32 snippets. Every video has
its own seeded generator: the same arguments give byte-identical files.

``like="reference"`` takes the real test video names, frame counts and anomaly events from ``../shared/reference``
(UCF: ``UCF_Annotation.txt``, T = ceil(n/16); XD: ``XD_Annotation.txt`` segments, invented frame counts, since the
file has none) and the real training names, so that the scale and imbalance match the real test sets.

``style="ucf-like"`` (``--style ucf-like``, the ``ucf-like`` preset) is a second generative model in the UCF layout
with UCF-Crime's structure: 140/290 abnormal test videos and about 7.5% abnormal test frames, signed class-specific
anomaly patterns shown with either sign (so video means carry little of them), rotated between training and test
for a few classes, subtle classes, 3% mislabelled training videos, cameras and normal activity bursts; see
:func:`ucf_like_video_features`. ``benchmarks/realistic_data.py`` measures what it takes to learn.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import re
import shutil
import string
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vad.cli_errors import add_debug_flag, error_line, exit_now, run_main
from vad.data.config import DatasetConfig
from vad.paths import cache_root

GENERATOR_VERSION = 2  # bump when the generated data changes, so cached datasets are regenerated
FRAMES_PER_SNIPPET = 16
DEFAULT_DIFFICULTY = 0.5
DEFAULT_LENGTH_MEDIAN = 40
ANOMALY_STRENGTH = 5.0      # x mu w: the directional shift of an anomaly at difficulty 0
ANOMALY_ENERGY = 0.4        # log-energy increase of an anomaly at difficulty 0
DISTRACTOR_STRENGTH = 0.5   # the same for the distractor stretches (independent of the difficulty)
DISTRACTOR_ENERGY = 0.15
UCF_CLASSES = ("Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents",
               "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism")
XD_CODES = ("B1", "B2", "B4", "B5", "B6", "G")
UCF_TRAIN_PREFIX = "G:\\UCF_Train_ten_crop_i3d\\"
UCF_TEST_PREFIX = "G:\\UCF_Test_ten_crop_i3d\\"
XD_TRAIN_PREFIX = "E:/DLCode/datasets/ECCV2020XD-Violence/i3d-features/RGB/"
XD_TEST_PREFIX = "E:/DLCode/datasets/ECCV2020XD-Violence/i3d-features/RGBTest/"
LAYOUT_DEFAULTS: dict[str, dict[str, Any]] = {
    "ucf": {"n_crops": 10, "feature_dim": 2048, "val_fraction": 0.1, "test_abnormal_fraction": 0.5},
    "xd": {"n_crops": 5, "feature_dim": 1024, "val_fraction": 0.2, "test_abnormal_fraction": 0.6},
}

PRESETS: dict[str, dict[str, Any]] = {
    "demo": {"layout": "ucf", "videos": 120, "test_videos": 40, "n_crops": 3, "feature_dim": 128},
    "tiny": {"layout": "ucf", "videos": 24, "test_videos": 12, "n_crops": 2, "feature_dim": 32},
    "tiny-xd": {"layout": "xd", "videos": 24, "test_videos": 12, "n_crops": 2, "feature_dim": 32},
    "ucf-shaped": {"layout": "ucf", "videos": 16, "test_videos": 8, "n_crops": 10, "feature_dim": 2048,
                   "length_median": 32},
    "xd-shaped": {"layout": "xd", "videos": 16, "test_videos": 8, "n_crops": 5, "feature_dim": 1024,
                  "length_median": 32},
    "ucf-like": {"layout": "ucf", "style": "ucf-like", "videos": 640, "test_videos": 300, "n_crops": 2,
                 "feature_dim": 64, "length_median": 48, "difficulty": 0.1},
}
"""Named generator settings for :func:`ensure_synthetic`: ``demo`` (the README demo), ``tiny``/``tiny-xd`` (unit
tests), ``ucf-shaped``/``xd-shaped`` (real width and crop count, a handful of short videos, for smoke tests),
``ucf-like`` (UCF-Crime's structure at a small width: a dataset where hyperparameters matter, see
:func:`ucf_like_video_features`)."""
STYLES = ("simple", "ucf-like")


@dataclass(frozen=True)
class PlannedVideo:
    """One video to generate: its name, label, length and anomalous events.

    ``n_frames`` is the raw frame count (UCF: as in ``UCF_Annotation.txt``, ``n_snippets = ceil(n/16)``; XD: the
    mp4 length, ``n_snippets = floor((n-1)/16)``). ``events`` use the annotation file's convention: inclusive
    ``(start, end)`` frames for UCF, end-exclusive for XD.
    """

    name: str
    abnormal: bool
    anomaly_class: str
    n_snippets: int
    n_frames: int
    events: tuple[tuple[int, int], ...] = ()
    planted: bool | None = None
    """Whether the features carry an anomaly (``None``: as ``abnormal``); differs for label-noise videos."""

    def frame_labels(self, layout: str) -> np.ndarray:
        """0/1 ground truth ``(16 * n_snippets,)``: RTFM's ``make_gt_ucf`` rule (UCF) or XDVioDet's (XD)."""
        total = FRAMES_PER_SNIPPET * self.n_snippets
        labels = np.zeros(total, dtype=np.uint8)
        for start, end in self.events:
            stop = end + 1 if layout == "ucf" else end
            labels[start:min(stop, total)] = 1
        return labels


def default_reference_dir() -> Path:
    """``$VAD_REFERENCE_DIR`` or ``../shared/reference`` next to the repository root."""
    configured = os.environ.get("VAD_REFERENCE_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(__file__).resolve().parents[3] / "shared" / "reference"


# ----------------------------------------------------------------------------------------------- planning

def _lengths(rng: np.random.Generator, count: int, median: int) -> np.ndarray:
    """Snippet counts: log-normal around ``median``, clipped to ``[8, 6 * median]``."""
    raw = rng.lognormal(math.log(median), 0.55, size=count)
    return np.clip(np.round(raw), 8, max(9, 6 * median)).astype(np.int64)


def _frame_count(layout: str, n_snippets: int, rng: np.random.Generator) -> int:
    """A raw frame count that the real feature extraction turns into ``n_snippets`` snippets."""
    if layout == "ucf":  # T = ceil(n / 16)
        return FRAMES_PER_SNIPPET * (n_snippets - 1) + int(rng.integers(1, FRAMES_PER_SNIPPET + 1))
    return FRAMES_PER_SNIPPET * n_snippets + 1 + int(rng.integers(0, FRAMES_PER_SNIPPET))  # T = floor((n-1)/16)


def _events(layout: str, n_frames: int, rng: np.random.Generator) -> tuple[tuple[int, int], ...]:
    """One to three non-overlapping anomalous events covering 10-45% of the frames, in annotation convention."""
    n_events = int(rng.choice([1, 2], p=[0.75, 0.25]) if layout == "ucf" else rng.choice([1, 2, 3], p=[.55, .3, .15]))
    n_events = min(n_events, max(1, int(0.55 * n_frames / (FRAMES_PER_SNIPPET + 1))))  # short videos: fewer
    covered = rng.uniform(0.10, 0.45) * n_frames
    shares = rng.dirichlet(np.full(n_events, 3.0))
    lengths = np.maximum(FRAMES_PER_SNIPPET, np.round(covered * shares)).astype(np.int64)
    free = max(0, n_frames - int(lengths.sum()) - n_events)
    gaps = np.floor(rng.dirichlet(np.ones(n_events + 1)) * free).astype(np.int64)
    events, cursor = [], 0
    for length, gap in zip(lengths, gaps[:-1]):
        start = cursor + int(gap)
        end_exclusive = min(start + int(length), n_frames)
        events.append((start, end_exclusive))
        cursor = end_exclusive + 1
    if rng.random() < 0.1:  # like some real annotations, the last event runs to the end of the video
        events[-1] = (events[-1][0], n_frames)
    if layout == "ucf":
        return tuple((s, e - 1 if e < n_frames else n_frames) for s, e in events)  # inclusive ends
    return tuple(events)


def _ucf_names(rng: np.random.Generator, n_train: tuple[int, int], n_test: tuple[int, int]
               ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, class) for train and test: abnormal class-alphabetical first, then normal; names never repeat."""
    def classes(count: int) -> list[str]:
        cycle = np.concatenate([rng.permutation(len(UCF_CLASSES)) for _ in range(count // len(UCF_CLASSES) + 1)])
        return [UCF_CLASSES[i] for i in cycle[:count]]

    counters = dict.fromkeys(UCF_CLASSES, 0)
    normal_number = 0
    out: list[list[tuple[str, str]]] = []
    for n_abnormal, n_normal, normal_pattern in ((*n_train, "Normal_Videos{:03d}_x264"),
                                                 (*n_test, "Normal_Videos_{:03d}_x264")):
        abnormal = []
        for anomaly_class in sorted(classes(n_abnormal), key=UCF_CLASSES.index):
            counters[anomaly_class] += int(rng.integers(1, 4))
            abnormal.append((f"{anomaly_class}{counters[anomaly_class]:03d}_x264", anomaly_class))
        normal = []
        for _ in range(n_normal):
            normal_number += int(rng.integers(1, 4))
            normal.append((normal_pattern.format(normal_number), "Normal"))
        out.append(abnormal + normal)
    return out[0], out[1]


def _xd_names(rng: np.random.Generator, n_train: tuple[int, int], n_test: tuple[int, int]
              ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, first label code) like ``v=abc__#1_label_B1-0-0`` / ``Movie.2001__#00-01-02_00-01-30_label_A``."""
    seen: set[str] = set()
    alphabet = np.array(list(string.ascii_letters + string.digits + "_-"))

    def stem() -> str:
        if rng.random() < 0.6:
            clip = "1" if rng.random() < 0.5 else _clock(rng)
            return f"v={''.join(rng.choice(alphabet, 11))}__#{clip}"
        title = ".".join(w.capitalize() for w in rng.choice(["the", "last", "city", "night", "run", "blue",
                                                             "storm", "road", "house", "river"], 2))
        return f"{title}.{int(rng.integers(1970, 2020))}__#{_clock(rng)}"

    def codes(abnormal: bool) -> tuple[str, str]:
        if not abnormal:
            return "A", "A"
        picked = list(rng.choice(XD_CODES, int(rng.choice([1, 2], p=[0.85, 0.15])), replace=False))
        return picked[0], "-".join(picked + ["0"] * (3 - len(picked)))

    out = []
    for n_abnormal, n_normal in (n_train, n_test):
        groups = []
        for abnormal, count in ((True, n_abnormal), (False, n_normal)):
            group = []
            while len(group) < count:
                first, label = codes(abnormal)
                name = f"{stem()}_label_{label}"
                if name not in seen:
                    seen.add(name)
                    group.append((name, first))
            groups.extend(sorted(group))
        out.append(groups)
    return out[0], out[1]


def _clock(rng: np.random.Generator) -> str:
    start = int(rng.integers(0, 7000))
    end = start + int(rng.integers(20, 400))
    return "_".join(f"{t // 3600:02d}-{t // 60 % 60:02d}-{t % 60:02d}" for t in (start, end))


def _split_counts(total: int, abnormal_fraction: float, what: str) -> tuple[int, int]:
    if total < 2:
        raise ValueError(f"{what}: need at least 2 videos (one abnormal, one normal), got {total}")
    n_abnormal = min(total - 1, max(1, round(total * abnormal_fraction)))
    return n_abnormal, total - n_abnormal


def _plan_random(layout: str, videos: int, test_videos: int, length_median: int,
                 rng: np.random.Generator) -> tuple[list[PlannedVideo], list[PlannedVideo]]:
    train_counts = _split_counts(videos, 0.5, "videos")
    test_counts = _split_counts(test_videos, LAYOUT_DEFAULTS[layout]["test_abnormal_fraction"], "test_videos")
    names = (_ucf_names if layout == "ucf" else _xd_names)(rng, train_counts, test_counts)
    planned = []
    for split_names, (n_abnormal, _) in zip(names, (train_counts, test_counts)):
        lengths = _lengths(rng, len(split_names), length_median)
        split = []
        for index, ((name, anomaly_class), n_snippets) in enumerate(zip(split_names, lengths)):
            n_frames = _frame_count(layout, int(n_snippets), rng)
            abnormal = index < n_abnormal
            events = _events(layout, n_frames, rng) if abnormal else ()
            split.append(PlannedVideo(name, abnormal, anomaly_class, int(n_snippets), n_frames, events))
        planned.append(split)
    return planned[0], planned[1]


# ------------------------------------------------------------------------------------ the ucf-like style

UCF_LIKE = {
    "test_abnormal_fraction": 140 / 290,  # the real test set: 140 abnormal, 150 normal videos
    "normal_test_length": 1.6,            # normal test videos are longer (their median, times length_median)
    "coverage": (0.04, 0.40),             # share of an abnormal video's frames inside its events
    "label_noise": 0.03,                  # training videos whose features contradict their video label
    "val_fraction": 0.25,                 # 160 of the preset's 640 training videos
}
"""Planning constants of the ``ucf-like`` style: together they give about 7.5% abnormal test frames."""


def _ucf_like_events(n_frames: int, rng: np.random.Generator) -> tuple[tuple[int, int], ...]:
    """One or two events (inclusive ends) covering ``UCF_LIKE['coverage']`` of the frames, anywhere in the video."""
    n_events = min(int(rng.choice([1, 2], p=[0.8, 0.2])), max(1, n_frames // (4 * FRAMES_PER_SNIPPET)))
    covered = rng.uniform(*UCF_LIKE["coverage"]) * n_frames
    lengths = np.maximum(FRAMES_PER_SNIPPET, np.round(covered * rng.dirichlet(np.full(n_events, 2.0))))
    free = max(0, n_frames - int(lengths.sum()) - n_events)
    gaps = np.floor(rng.dirichlet(np.full(n_events + 1, 0.7)) * free).astype(np.int64)
    events, cursor = [], 0
    for length, gap in zip(lengths.astype(np.int64), gaps[:-1]):
        start = cursor + int(gap)
        end = min(start + int(length), n_frames) - 1
        events.append((start, end))
        cursor = end + 2
    return tuple(events)


def _plan_ucf_like(videos: int, test_videos: int, length_median: int, rng: np.random.Generator
                   ) -> tuple[list[PlannedVideo], list[PlannedVideo]]:
    """UCF-Crime's proportions: half of the training videos abnormal, 140/290 of the test videos, longer normal
    test videos, short events of variable position, and ``label_noise`` of the training videos mislabelled."""
    train_counts = _split_counts(videos, 0.5, "videos")
    test_counts = _split_counts(test_videos, UCF_LIKE["test_abnormal_fraction"], "test_videos")
    names = _ucf_names(rng, train_counts, test_counts)
    planned = []
    for split_code, (split_names, (n_abnormal, n_normal)) in enumerate(zip(names, (train_counts, test_counts))):
        lengths = _lengths(rng, len(split_names), length_median)
        if split_code == 1:
            lengths[n_abnormal:] = _lengths(rng, n_normal, round(UCF_LIKE["normal_test_length"] * length_median))
        flipped = (rng.random(len(split_names)) < UCF_LIKE["label_noise"]) if split_code == 0 else \
            np.zeros(len(split_names), dtype=bool)
        split = []
        for index, ((name, anomaly_class), n_snippets) in enumerate(zip(split_names, lengths)):
            n_frames = _frame_count("ucf", int(n_snippets), rng)
            abnormal = index < n_abnormal
            planted = abnormal != bool(flipped[index])
            if not abnormal and planted:  # a "normal" training video that holds an anomaly
                anomaly_class = UCF_CLASSES[int(rng.integers(len(UCF_CLASSES)))]
            events = _ucf_like_events(n_frames, rng) if planted else ()
            split.append(PlannedVideo(name, abnormal, anomaly_class, int(n_snippets), n_frames, events, planted))
        planned.append(split)
    return planned[0], planned[1]


# ------------------------------------------------------------------------------------- the real reference

def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"like='reference' needs the authors' reference files, but {path} is missing; pass reference_dir= "
            f"(--reference-dir) or set VAD_REFERENCE_DIR to the folder holding RTFM/ and UR-DMU/"
        )
    return path


def _list_names(path: Path, layout: str) -> list[str]:
    """Video names of a real list file, in order (XD: one per run of crop lines)."""
    names: list[str] = []
    for line in _require(path).read_text().splitlines():
        file_name = line.strip().replace("\\", "/").rsplit("/", 1)[-1]
        if not file_name:
            continue
        name = file_name.removesuffix("_i3d.npy") if layout == "ucf" else file_name.rsplit("__", 1)[0]
        if not names or names[-1] != name or layout == "ucf":
            names.append(name)
    return names


def _subsample(names: list[str], is_abnormal: list[bool], count: int | None, rng: np.random.Generator
               ) -> list[int]:
    """Indices of a stratified random subset of ``count`` videos, in list order (``None``: all)."""
    if count is None or count >= len(names):
        return list(range(len(names)))
    abnormal = [i for i, flag in enumerate(is_abnormal) if flag]
    normal = [i for i, flag in enumerate(is_abnormal) if not flag]
    n_abnormal, n_normal = _split_counts(count, len(abnormal) / len(names), "reference subsample")
    chosen = list(rng.choice(abnormal, n_abnormal, replace=False)) + list(rng.choice(normal, n_normal, replace=False))
    return sorted(int(i) for i in chosen)


def reference_test_videos(layout: str, reference_dir: Path | None = None,
                          seed: int = 0) -> list[PlannedVideo]:
    """The real test set (names in test-list order, frame counts, events) from the reference files.

    UCF: ``RTFM/list/ucf-i3d-test.list`` order, counts and events of ``UR-DMU/list/UCF_Annotation.txt``.
    XD: ``UR-DMU/list/XD_Test.list`` order, segments of ``UR-DMU/list/XD_Annotation.txt``; XD frame counts are not
    published, so each video's count is drawn (seeded) to cover its last segment, and normal videos get lengths
    drawn from the violent ones.
    """
    root = Path(reference_dir) if reference_dir is not None else default_reference_dir()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 300]))
    if layout == "ucf":
        annotated = {}
        for line in _require(root / "UR-DMU/list/UCF_Annotation.txt").read_text().splitlines():
            fields = line.split()
            if fields:
                name = fields[0].rsplit("/", 1)[-1].removesuffix(".mp4")
                bounds = [int(v) for v in fields[3:]]
                events = tuple((s, e) for s, e in zip(bounds[::2], bounds[1::2]) if s >= 0)
                annotated[name] = (int(fields[1]), fields[2], events)
        videos = []
        for name in _list_names(root / "RTFM/list/ucf-i3d-test.list", "ucf"):
            n_frames, anomaly_class, events = annotated[name]
            videos.append(PlannedVideo(name, anomaly_class != "Normal", anomaly_class,
                                       -(-n_frames // FRAMES_PER_SNIPPET), n_frames, events))
        return videos
    segments = {}
    for line in _require(root / "UR-DMU/list/XD_Annotation.txt").read_text().splitlines():
        fields = line.split()
        if fields:
            bounds = [int(v) for v in fields[1:]]
            segments[fields[0].removesuffix(".mp4")] = tuple(zip(bounds[::2], bounds[1::2]))
    names = _list_names(root / "UR-DMU/list/XD_Test.list", "xd")
    ends = np.array([max(e for _, e in segments[n]) for n in names if n in segments])
    videos = []
    for name in names:
        events = segments.get(name, ())
        if events:
            n_frames = int(max(e for _, e in events) + rng.integers(0, 32 * FRAMES_PER_SNIPPET))
        else:
            n_frames = int(rng.choice(ends) + rng.integers(0, 32 * FRAMES_PER_SNIPPET))
        n_frames = max(n_frames, 2 * FRAMES_PER_SNIPPET + 1)
        code = name.rsplit("_label_", 1)[-1].split("-")[0]
        videos.append(PlannedVideo(name, bool(events), code, (n_frames - 1) // FRAMES_PER_SNIPPET, n_frames,
                                   events))
    return videos


def _plan_reference(layout: str, videos: int | None, test_videos: int | None, reference_dir: Path | None,
                    seed: int, rng: np.random.Generator) -> tuple[list[PlannedVideo], list[PlannedVideo]]:
    root = Path(reference_dir) if reference_dir is not None else default_reference_dir()
    test_all = reference_test_videos(layout, root, seed)
    test = [test_all[i] for i in _subsample([v.name for v in test_all], [v.abnormal for v in test_all],
                                            test_videos, rng)]
    train_list = root / ("RTFM/list/ucf-i3d.list" if layout == "ucf" else "UR-DMU/list/XD_Train.list")
    train_names = _list_names(train_list, layout)
    abnormal = [("Normal_" not in n) if layout == "ucf" else ("label_A" not in n) for n in train_names]
    pool = np.array([v.n_snippets for v in test_all])  # train lengths follow the real test lengths
    train = []
    for index in _subsample(train_names, abnormal, videos, rng):
        name = train_names[index]
        n_snippets = max(2, int(round(rng.choice(pool) * rng.uniform(0.8, 1.25))))
        n_frames = _frame_count(layout, n_snippets, rng)
        if layout == "ucf":
            anomaly_class = re.match(r"[A-Za-z]*", name).group() if abnormal[index] else "Normal"
        else:
            anomaly_class = name.rsplit("_label_", 1)[-1].split("-")[0]
        events = _events(layout, n_frames, rng) if abnormal[index] else ()
        train.append(PlannedVideo(name, abnormal[index], anomaly_class, n_snippets, n_frames, events))
    return train, test


# --------------------------------------------------------------------------------------------- features

@dataclass(frozen=True)
class _World:
    """Dataset-wide quantities shared by all videos: channel means, temporal basis, anomaly/distractor patterns."""

    mean: np.ndarray                              # (C,) positive
    temporal_basis: np.ndarray                    # (R, C)
    anomaly_patterns: dict[str, np.ndarray]       # class -> (C,) non-negative, unit norm
    distractor_pattern: np.ndarray                # (C,) non-negative, unit norm

    @classmethod
    def create(cls, feature_dim: int, seed: int) -> _World:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 200]))
        mean = 0.4 * np.exp(0.6 * rng.standard_normal(feature_dim))
        rank = min(16, feature_dim)
        basis = rng.standard_normal((rank, feature_dim)) / math.sqrt(rank)

        def sparse_pattern() -> np.ndarray:
            active = rng.random(feature_dim) < 0.3
            active[rng.integers(feature_dim)] = True
            pattern = np.abs(rng.standard_normal(feature_dim)) * active
            return pattern / np.linalg.norm(pattern)

        shared = sparse_pattern()
        patterns = {}
        for name in (*UCF_CLASSES, *XD_CODES):
            pattern = 0.7 * shared + 0.3 * sparse_pattern()
            patterns[name] = pattern / np.linalg.norm(pattern)
        return cls(mean, basis, patterns, sparse_pattern())


def _ar1(rng: np.random.Generator, length: int, width: int, rho: float) -> np.ndarray:
    """A stationary AR(1) process with unit variance, ``(length, width)``."""
    from scipy.signal import lfilter  # here, not at the top: opening a generated dataset needs no scipy

    noise = rng.standard_normal((length, width))
    noise[0] /= math.sqrt(1.0 - rho * rho)
    return lfilter([math.sqrt(1.0 - rho * rho)], [1.0, -rho], noise, axis=0)


def _stretch(rng: np.random.Generator, length: int) -> np.ndarray:
    """A 0/1 indicator ``(length,)`` of one random contiguous stretch covering 10-30% of the video."""
    span = max(1, round(length * rng.uniform(0.1, 0.3)))
    start = int(rng.integers(0, length - span + 1))
    indicator = np.zeros(length)
    indicator[start:start + span] = 1.0
    return indicator


UCF_LIKE_SHIFTED = {"Abuse": 75.0, "Arrest": 50.0, "Vandalism": 50.0}
"""Classes whose test pattern is rotated away from the training pattern, by this many degrees."""
UCF_LIKE_STRENGTH = {"Abuse": 0.6, "Arrest": 0.7, "Shoplifting": 0.5, "Stealing": 0.6, "Burglary": 0.7,
                     "Vandalism": 0.8}
"""Subtle classes: their anomaly strength relative to the others' (1)."""


@dataclass(frozen=True)
class _UcfLikeWorld:
    """Dataset-wide quantities of the ``ucf-like`` style (see :func:`ucf_like_video_features`)."""

    mean: np.ndarray                              # (C,) positive
    temporal_basis: np.ndarray                    # (R, C)
    cameras: np.ndarray                           # (K, C) log-scale scene factors
    train_patterns: dict[str, np.ndarray]         # class -> (C,) signed, unit norm
    test_patterns: dict[str, np.ndarray]          # class -> (C,): rotated for UCF_LIKE_SHIFTED
    activities: np.ndarray                        # (A, C) signed unit patterns of normal activity bursts

    @classmethod
    def create(cls, feature_dim: int, seed: int) -> _UcfLikeWorld:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 210]))
        mean = 0.4 * np.exp(0.6 * rng.standard_normal(feature_dim))

        def unit(vector: np.ndarray) -> np.ndarray:
            return vector / np.linalg.norm(vector)

        def signed_pattern() -> np.ndarray:
            active = rng.random(feature_dim) < 0.35
            active[rng.integers(feature_dim)] = True
            return unit(rng.standard_normal(feature_dim) * active)

        shared = signed_pattern()
        train, test = {}, {}
        for name in UCF_CLASSES:
            train[name] = unit(0.8 * shared + signed_pattern())
            angle = math.radians(UCF_LIKE_SHIFTED.get(name, 0.0))
            other = signed_pattern()
            other = unit(other - (other @ train[name]) * train[name])
            test[name] = unit(math.cos(angle) * train[name] + math.sin(angle) * other)
        rank = min(16, feature_dim)
        basis = rng.standard_normal((rank, feature_dim)) / math.sqrt(rank)
        for row, name in enumerate(rng.choice(UCF_CLASSES, 4, replace=False)):  # normal motion along anomalies
            basis[row] = 0.6 * train[str(name)] + 0.4 * basis[row]
        cameras = 0.35 * rng.standard_normal((8, feature_dim))
        activities = np.stack([unit(0.3 * shared + signed_pattern()) for _ in range(6)])
        return cls(mean, basis, cameras, train, test, activities)


def ucf_like_video_features(video: PlannedVideo, world: _UcfLikeWorld, n_crops: int, difficulty: float,
                            test: bool, rng: np.random.Generator) -> np.ndarray:
    """Features ``(T, n_crops, C)`` float32 of one video in the ``ucf-like`` style::

        scene    = mu * exp(camera_k + 0.25 g0 + 0.3 g)            one of 8 cameras, per-video scene
        energy_t = 0.15 v_t + 0.3 s a_t + 0.2 h_t
        x[t, k]  = relu(exp(energy_t) scene + mu * (0.35 u_t B + 4 s r a_t w_class + 1.2 h_t w_activity
                                                    + 0.05 c_k + 0.08 e_tk))

    ``w_class`` is a signed, class-specific unit pattern with a small shared part (so no single direction finds
    every class), rotated between training and test for the classes of ``UCF_LIKE_SHIFTED``; ``r`` a per-video
    strength (log-normal, smaller for the subtle classes of ``UCF_LIKE_STRENGTH``); ``h_t`` normal activity
    bursts in half of all videos along patterns that share the anomalies' common part; the temporal basis ``B``
    has rows along some anomaly patterns, so normal motion partly masks anomalies.
    """
    length, width = video.n_snippets, world.mean.size
    signal = 1.0 - difficulty
    camera = world.cameras[int(rng.integers(len(world.cameras)))]
    scene = world.mean * np.exp(camera + 0.25 * rng.standard_normal() + 0.3 * rng.standard_normal(width))
    energy = 0.15 * _ar1(rng, length, 1, 0.9)[:, 0]
    shift = np.zeros((length, width))
    if video.abnormal if video.planted is None else video.planted:
        per_snippet = video.frame_labels("ucf").reshape(length, FRAMES_PER_SNIPPET).mean(axis=1)
        strength = UCF_LIKE_STRENGTH.get(video.anomaly_class, 1.0) * float(np.clip(rng.lognormal(0.0, 0.35),
                                                                                   0.4, 2.0))
        intensity = strength * per_snippet * np.clip(1.0 + 0.3 * _ar1(rng, length, 1, 0.7)[:, 0], 0.2, None)
        patterns = world.test_patterns if test else world.train_patterns
        sign = 1.0 if rng.random() < 0.5 else -1.0  # an event shows either way (no mean shift to average)
        shift += np.outer(4.0 * sign * signal * intensity, patterns[video.anomaly_class])
        energy += 0.3 * signal * intensity
    if rng.random() < 0.5:  # normal bursts of activity
        for _ in range(int(rng.integers(1, 3))):
            stretch = _stretch(rng, length)
            shift += np.outer(1.2 * stretch, world.activities[int(rng.integers(len(world.activities)))])
            energy += 0.2 * stretch
    temporal = _ar1(rng, length, world.temporal_basis.shape[0], float(rng.uniform(0.8, 0.95)))
    content = np.exp(energy)[:, None] * scene + world.mean * (0.35 * (temporal @ world.temporal_basis) + shift)
    features = rng.standard_normal((length, n_crops, width), dtype=np.float32)
    features *= 0.08
    features += (0.05 * rng.standard_normal((n_crops, width))).astype(np.float32)
    features *= world.mean.astype(np.float32)
    features += content[:, None, :].astype(np.float32)
    return np.maximum(features, 0.0, out=features)


def video_features(video: PlannedVideo, layout: str, world: _World, n_crops: int, difficulty: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Features ``(T, n_crops, C)`` float32 of one planned video (the model is in the module docstring).

    Every term is relative to the channel means ``mu``; an anomaly adds ``ANOMALY_STRENGTH (1 - difficulty) mu w``
    (``w`` a unit pattern, so its size in noise deviations does not depend on the width) and raises the energy.
    """
    length, width = video.n_snippets, world.mean.size
    signal = 1.0 - difficulty
    scene = world.mean * np.exp(0.25 * rng.standard_normal() + 0.3 * rng.standard_normal(width))    # (C,)
    energy = 0.15 * _ar1(rng, length, 1, 0.9)[:, 0]                                                   # (T,)
    shift = np.zeros((length, width))
    if video.abnormal:
        per_snippet = video.frame_labels(layout).reshape(length, FRAMES_PER_SNIPPET).mean(axis=1)
        intensity = per_snippet * np.clip(1.0 + 0.25 * _ar1(rng, length, 1, 0.7)[:, 0], 0.3, None)
        pattern = world.anomaly_patterns.get(video.anomaly_class, world.anomaly_patterns[UCF_CLASSES[0]])
        shift += np.outer(ANOMALY_STRENGTH * signal * intensity, pattern)
        energy += ANOMALY_ENERGY * signal * intensity
    if rng.random() < 1 / 3:  # a normal-looking burst of activity in another direction
        stretch = _stretch(rng, length)
        shift += np.outer(DISTRACTOR_STRENGTH * stretch, world.distractor_pattern)
        energy += DISTRACTOR_ENERGY * stretch
    temporal = _ar1(rng, length, world.temporal_basis.shape[0], float(rng.uniform(0.8, 0.95)))
    content = np.exp(energy)[:, None] * scene + world.mean * (0.25 * (temporal @ world.temporal_basis)
                                                              + shift)            # (T, C)
    features = rng.standard_normal((length, n_crops, width), dtype=np.float32)
    features *= 0.08
    features += (0.05 * rng.standard_normal((n_crops, width))).astype(np.float32)                   # crop offsets
    features *= world.mean.astype(np.float32)
    features += content[:, None, :].astype(np.float32)
    return np.maximum(features, 0.0, out=features)


# ----------------------------------------------------------------------------------------------- writing

def _write_text(path: Path, lines: Sequence[str], newline: str, trailing: bool) -> None:
    text = newline.join(lines) + (newline if trailing and lines else "")
    path.write_bytes(text.encode())


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "synthetic.json").is_file():
        raise FileExistsError(f"{out_dir}: not empty and not a synthetic dataset; choose an empty --out folder")
    for entry in out_dir.iterdir() if out_dir.exists() else ():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_annotations(path: Path, layout: str, test: list[PlannedVideo], rng: np.random.Generator) -> None:
    """The annotation text file in the real format, lines in a shuffled order (as the real files differ from
    the test-list order)."""
    lines = []
    for index in rng.permutation(len(test)):
        video = test[int(index)]
        if layout == "ucf":
            bounds = [v for event in video.events for v in event] + [-1] * (4 - 2 * len(video.events))
            folder = video.anomaly_class if video.abnormal else "Testing_Normal_Videos_Anomaly"
            lines.append(f"{folder}/{video.name}.mp4 {video.n_frames} {video.anomaly_class} "
                         + " ".join(str(v) for v in bounds) + " ")
        elif video.abnormal:
            lines.append(" ".join([video.name, *(str(v) for event in video.events for v in event)]))
    _write_text(path, lines, "\n", trailing=layout == "ucf")


def _resolve_settings(layout: str, videos: int | None, test_videos: int | None, n_crops: int | None,
                      feature_dim: int | None, difficulty: float, seed: int, like: str | None,
                      reference_dir: str | Path | None, ground_truth: str, length_median: int | None,
                      name: str | None, style: str = "simple") -> dict[str, Any]:
    """Validate the generator arguments and fill in the layout defaults."""
    if layout not in LAYOUT_DEFAULTS:
        raise ValueError(f"layout: expected one of {', '.join(LAYOUT_DEFAULTS)}, got {layout!r}")
    if like not in (None, "reference"):
        raise ValueError(f"like: expected None or 'reference', got {like!r}")
    if style not in STYLES:
        raise ValueError(f"style: expected one of {', '.join(STYLES)}, got {style!r}")
    if style != "simple" and (layout != "ucf" or like is not None):
        raise ValueError(f"style: {style!r} needs layout 'ucf' and no like=, got layout {layout!r}, like {like!r}")
    if ground_truth not in ("npy", "annotations"):
        raise ValueError(f"ground_truth: expected 'npy' or 'annotations', got {ground_truth!r}")
    if not 0.0 <= float(difficulty) <= 1.0:
        raise ValueError(f"difficulty: expected a number in [0, 1], got {difficulty!r}")
    defaults = LAYOUT_DEFAULTS[layout]
    settings = {
        "layout": layout, "videos": videos, "test_videos": test_videos,
        "n_crops": int(n_crops if n_crops is not None else defaults["n_crops"]),
        "feature_dim": int(feature_dim if feature_dim is not None else defaults["feature_dim"]),
        "difficulty": float(difficulty), "seed": int(seed), "like": like,
        "reference_dir": str(Path(reference_dir).resolve()) if reference_dir is not None else None,
        "ground_truth": ground_truth,
        "length_median": int(length_median if length_median is not None else DEFAULT_LENGTH_MEDIAN),
        "name": name or f"synthetic-{layout}" + ("-reference" if like else ""),
    }
    if style != "simple":  # only then, so the settings (and cache folders) of the simple style stay as they were
        settings["style"] = style
    if like is None:
        if videos is None:
            raise ValueError("videos: a number of training videos is needed unless like='reference'")
        settings["test_videos"] = test_videos if test_videos is not None else max(4, videos // 3)
    for key in ("videos", "test_videos"):
        if settings[key] is not None and int(settings[key]) < 2:
            raise ValueError(f"{key}: need at least 2 videos (one abnormal, one normal), got {settings[key]}")
    for key in ("n_crops", "feature_dim", "length_median"):
        if settings[key] < 1:
            raise ValueError(f"{key}: expected a positive integer, got {settings[key]}")
    return settings


def generate_synthetic(
    out_dir: str | Path,
    layout: str = "ucf",
    videos: int | None = 40,
    test_videos: int | None = None,
    n_crops: int | None = None,
    feature_dim: int | None = None,
    difficulty: float = DEFAULT_DIFFICULTY,
    seed: int = 0,
    like: str | None = None,
    reference_dir: str | Path | None = None,
    ground_truth: str = "npy",
    length_median: int | None = None,
    name: str | None = None,
    style: str = "simple",
) -> Path:
    """Write a synthetic dataset into ``out_dir`` and return its ``dataset.yaml``.

    ``videos`` training videos (half abnormal, abnormal listed first) and ``test_videos`` test videos (default
    ``max(4, videos // 3)``); ``n_crops``/``feature_dim`` default to the real 10x2048 (ucf) or 5x1024 (xd);
    ``difficulty`` in [0, 1] scales the anomaly signal down to nothing at 1; ``length_median`` is the median
    snippet count. ``like="reference"`` uses the real test names, lengths and events (and real training names)
    from ``reference_dir``; there ``videos``/``test_videos`` subsample (``None``: all). ``ground_truth`` picks what
    ``dataset.yaml`` points at: the ``gt-*.npy`` or the annotation file (both are always written).
    ``style="ucf-like"`` (UCF layout only) plans UCF-Crime's proportions and draws the features of
    :func:`ucf_like_video_features` (class patterns, train/test shift, label noise, cameras).
    ``out_dir`` must be empty, missing, or an earlier synthetic dataset (which is replaced).
    """
    settings = _resolve_settings(layout, videos, test_videos, n_crops, feature_dim, difficulty, seed, like,
                                 reference_dir, ground_truth, length_median, name, style)
    out_dir = Path(out_dir).expanduser().resolve()
    plan_rng = np.random.default_rng(np.random.SeedSequence([settings["seed"], 100]))
    if style == "ucf-like":
        train, test = _plan_ucf_like(settings["videos"], settings["test_videos"], settings["length_median"],
                                     plan_rng)
    elif like == "reference":
        train, test = _plan_reference(layout, settings["videos"], settings["test_videos"],
                                      settings["reference_dir"] and Path(settings["reference_dir"]),
                                      settings["seed"], plan_rng)
    else:
        train, test = _plan_random(layout, settings["videos"], settings["test_videos"],
                                   settings["length_median"], plan_rng)
    _prepare_out_dir(out_dir)
    world = _World.create(settings["feature_dim"], settings["seed"])
    ucf_like_world = _UcfLikeWorld.create(settings["feature_dim"], settings["seed"]) if style == "ucf-like" else None
    ucf = layout == "ucf"
    folders = ("UCF_Train_ten_crop_i3d", "UCF_Test_ten_crop_i3d") if ucf else ("RGB", "RGBTest")
    prefixes = (UCF_TRAIN_PREFIX, UCF_TEST_PREFIX) if ucf else (XD_TRAIN_PREFIX, XD_TEST_PREFIX)
    list_names = ("ucf-i3d.list", "ucf-i3d-test.list") if ucf else ("XD_Train.list", "XD_Test.list")
    (out_dir / "list").mkdir()
    for split_code, (planned, folder, prefix, list_name) in enumerate(zip((train, test), folders, prefixes,
                                                                          list_names)):
        (out_dir / folder).mkdir()
        lines = []
        for index, video in enumerate(planned):
            rng = np.random.default_rng(np.random.SeedSequence([settings["seed"], 1 + split_code, index]))
            if ucf_like_world is not None:
                features = ucf_like_video_features(video, ucf_like_world, settings["n_crops"],
                                                   settings["difficulty"], split_code == 1, rng)
            else:
                features = video_features(video, layout, world, settings["n_crops"], settings["difficulty"], rng)
            if ucf:
                np.save(out_dir / folder / f"{video.name}_i3d.npy", features)
                lines.append(f"{prefix}{video.name}_i3d.npy")
            else:
                for crop in range(settings["n_crops"]):
                    np.save(out_dir / folder / f"{video.name}__{crop}.npy", np.ascontiguousarray(features[:, crop]))
                    lines.append(f"{prefix}{video.name}__{crop}.npy")
        # real lists: UCF (RTFM) CRLF with a final CRLF; XD (UR-DMU) LF without a final newline
        _write_text(out_dir / "list" / list_name, lines, "\r\n" if ucf else "\n", trailing=ucf)
    gt_name, annotation_name = ("gt-ucf.npy", "UCF_Annotation.txt") if ucf else ("gt-xd.npy", "XD_Annotation.txt")
    gt = np.concatenate([video.frame_labels(layout) for video in test])
    np.save(out_dir / "list" / gt_name, gt.astype(np.float64 if ucf else np.float32))
    _write_annotations(out_dir / "list" / annotation_name, layout, test, plan_rng)
    use_npy = settings["ground_truth"] == "npy"
    config = DatasetConfig(
        name=settings["name"], layout=layout, feature_root=Path(folders[0]), test_feature_root=Path(folders[1]),
        train_list=Path("list", list_names[0]), test_list=Path("list", list_names[1]),
        ground_truth=Path("list", gt_name) if use_npy else None,
        annotations=None if use_npy else Path("list", annotation_name),
        annotation_format=None if use_npy else ("ucf_txt" if ucf else "xd_txt"),
        n_crops=settings["n_crops"], feature_dim=settings["feature_dim"],
        split_index=sum(video.abnormal for video in train),
        val_fraction=UCF_LIKE["val_fraction"] if style == "ucf-like" else LAYOUT_DEFAULTS[layout]["val_fraction"],
        frames_per_snippet=FRAMES_PER_SNIPPET,
    )
    (out_dir / "synthetic.json").write_text(json.dumps({"generator_version": GENERATOR_VERSION, **settings},
                                                       indent=1, sort_keys=True) + "\n")
    return config.write_yaml(out_dir / "dataset.yaml")


# ------------------------------------------------------------------------------------------------ caching

_GENERATOR_DEFAULTS = {key: parameter.default
                       for key, parameter in inspect.signature(generate_synthetic).parameters.items()
                       if key != "out_dir"}


def _settings_for(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; known: {', '.join(PRESETS)}")
    arguments = {"name": preset, **PRESETS[preset], **overrides}
    unknown = sorted(set(arguments) - set(_GENERATOR_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown generator setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_GENERATOR_DEFAULTS))}"
        )
    return _resolve_settings(**{**_GENERATOR_DEFAULTS, **arguments})


def ensure_synthetic(preset: str, **overrides: Any) -> Path:
    """``dataset.yaml`` of a preset (with overrides), generated once into
    ``cache_root()/synthetic/<preset>-<hash of the settings>/`` and reused afterwards.

    The dataset is built in a temporary folder and renamed into place, so concurrent callers are safe (the
    first rename wins; the others discard their copy) and a killed process never leaves a half dataset.
    """
    settings = _settings_for(preset, overrides)
    digest = hashlib.sha256(json.dumps({"generator_version": GENERATOR_VERSION, **settings},
                                       sort_keys=True).encode()).hexdigest()[:12]
    parent = cache_root() / "synthetic"
    final = parent / f"{preset}-{digest}"
    if (final / "dataset.yaml").is_file():
        return final / "dataset.yaml"
    parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # not a finished dataset (renames are atomic, so only a manual copy can do this)
        shutil.rmtree(final, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=parent))
    try:
        generate_synthetic(building, **settings)
        try:
            os.rename(building, final)
        except OSError:
            if not (final / "dataset.yaml").is_file():
                raise
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return final / "dataset.yaml"


# ---------------------------------------------------------------------------------------------------- CLI

def _count(text: str) -> int | None:
    return None if text == "all" else int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write a synthetic dataset and print the path of its ``dataset.yaml``."""
    parser = argparse.ArgumentParser(prog="python -m vad.data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=sorted(LAYOUT_DEFAULTS), default="ucf")
    parser.add_argument("--out", required=True, type=Path, help="output folder (empty, or an earlier synthetic one)")
    parser.add_argument("--videos", type=_count, default=40, help="training videos ('all' with --like reference)")
    parser.add_argument("--test-videos", type=_count, default=None, help="test videos (default: videos // 3)")
    parser.add_argument("--crops", type=int, default=None, help="crops per video (default: 10 ucf, 5 xd)")
    parser.add_argument("--dim", type=int, default=None, help="feature width (default: 2048 ucf, 1024 xd)")
    parser.add_argument("--difficulty", type=float, default=DEFAULT_DIFFICULTY, help="0 easy ... 1 no signal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--length-median", type=int, default=None, help="median snippets per video")
    parser.add_argument("--like", choices=["reference"], default=None,
                        help="take test names/lengths/events from the authors' reference files")
    parser.add_argument("--reference-dir", type=Path, default=None, help="default: ../shared/reference")
    parser.add_argument("--gt", choices=["npy", "annotations"], default="npy",
                        help="what dataset.yaml points at as ground truth")
    parser.add_argument("--name", default=None, help="dataset name in dataset.yaml")
    parser.add_argument("--style", choices=STYLES, default="simple",
                        help="ucf-like: UCF-Crime's structure (class patterns, shift, label noise; ucf layout)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    try:
        path = generate_synthetic(
            args.out, layout=args.layout, videos=args.videos, test_videos=args.test_videos, n_crops=args.crops,
            feature_dim=args.dim, difficulty=args.difficulty, seed=args.seed, like=args.like,
            reference_dir=args.reference_dir, ground_truth=args.gt, length_median=args.length_median,
            name=args.name, style=args.style,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        if args.debug:
            raise
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    exit_now(run_main(main))
