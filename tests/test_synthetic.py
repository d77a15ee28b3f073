"""vad.data.synthetic: exact real layouts, ground truth, determinism, planted signal, reference mode, caching."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from vad.data import synthetic
from vad.data.config import DatasetConfig
from vad.data.synthetic import PRESETS, UCF_CLASSES, XD_CODES, ensure_synthetic, generate_synthetic, main
from vad.metrics import frame_metrics

REPO_ROOT = Path(__file__).resolve().parents[1]
UCF_NAME = re.compile(rf"^({'|'.join(UCF_CLASSES)})\d{{3}}_x264$")
XD_ABNORMAL_LABEL = re.compile(rf"_label_({'|'.join(XD_CODES)})(-({'|'.join(XD_CODES)}|0)){{2}}$")


# ------------------------------------------------------------------- independent readers of the written files

def list_files(path: Path) -> list[str]:
    """File names of a list (Windows or POSIX paths)."""
    return [line.replace("\\", "/").rsplit("/", 1)[-1] for line in path.read_text().splitlines()]


def ucf_videos(config: DatasetConfig, split: str) -> list[tuple[str, np.ndarray]]:
    """(name, features (T, N, C)) in list order, read directly from the files."""
    listed = config.train_list if split == "train" else config.test_list
    root = config.feature_root if split == "train" else config.test_root
    return [(name.removesuffix("_i3d.npy"), np.load(root / name)) for name in list_files(listed)]


def xd_videos(config: DatasetConfig, split: str) -> list[tuple[str, np.ndarray]]:
    listed = config.train_list if split == "train" else config.test_list
    root = config.feature_root if split == "train" else config.test_root
    names = list_files(listed)
    videos = []
    for start in range(0, len(names), config.n_crops):
        crops = names[start:start + config.n_crops]
        stem = crops[0].rsplit("__", 1)[0]
        assert crops == [f"{stem}__{k}.npy" for k in range(config.n_crops)]
        videos.append((stem, np.stack([np.load(root / name) for name in crops], axis=1)))
    return videos


def ucf_rule(n_snippets: int, events: list[tuple[int, int]]) -> np.ndarray:
    """RTFM make_gt_ucf: inclusive [s, e], or [s, e) when e + 1 passes the end."""
    total = 16 * n_snippets
    labels = np.zeros(total)
    for start, end in events:
        labels[start:end + 1 if end + 1 <= total else end] = 1
    assert labels.size == total
    return labels


def read_ucf_annotations(path: Path) -> dict[str, tuple[int, str, list[tuple[int, int]]]]:
    out = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"(\w+)/(\w+)\.mp4 (\d+) (\w+) (-?\d+) (-?\d+) (-?\d+) (-?\d+) ", line)
        assert match, line
        folder, name, n_frames, event_class = match.group(1, 2, 3, 4)
        bounds = [int(v) for v in match.group(5, 6, 7, 8)]
        assert folder == (event_class if event_class != "Normal" else "Testing_Normal_Videos_Anomaly")
        out[name] = (int(n_frames), event_class, [(s, e) for s, e in zip(bounds[::2], bounds[1::2]) if s >= 0])
    return out


def read_xd_annotations(path: Path) -> dict[str, list[tuple[int, int]]]:
    out = {}
    for line in path.read_text().splitlines():
        name, *bounds = line.split(" ")
        values = [int(v) for v in bounds]
        assert len(values) >= 2 and len(values) % 2 == 0, line
        out[name] = list(zip(values[::2], values[1::2]))
    return out


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- layouts

def test_ucf_layout_is_exactly_the_real_one(tmp_path: Path) -> None:
    yaml_path = generate_synthetic(tmp_path / "ucf", layout="ucf", videos=40, test_videos=10, n_crops=2,
                                   feature_dim=8, seed=3)
    assert yaml_path == tmp_path / "ucf" / "dataset.yaml"
    config = DatasetConfig.from_yaml(yaml_path)
    assert (config.layout, config.n_crops, config.feature_dim, config.frames_per_snippet) == ("ucf", 2, 8, 16)
    assert config.ground_truth == tmp_path / "ucf" / "list" / "gt-ucf.npy"

    for listed, prefix in ((config.train_list, "G:\\UCF_Train_ten_crop_i3d\\"),
                           (config.test_list, "G:\\UCF_Test_ten_crop_i3d\\")):
        raw = listed.read_bytes()
        assert raw.endswith(b"_i3d.npy\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
        assert all(line.startswith(prefix) for line in raw.decode().split("\r\n")[:-1])

    train, test = ucf_videos(config, "train"), ucf_videos(config, "test")
    assert len(train) == 40 and len(test) == 10
    for videos, normal_name in ((train, r"Normal_Videos\d{3}_x264"), (test, r"Normal_Videos_\d{3}_x264")):
        abnormal = [UCF_NAME.match(name) is not None for name, _ in videos]
        normal = [re.fullmatch(normal_name, name) is not None for name, _ in videos]
        assert all(a != n for a, n in zip(abnormal, normal)), "every name is one of the two real patterns"
        n_abnormal = sum(abnormal)
        assert abnormal == [True] * n_abnormal + [False] * (len(videos) - n_abnormal)  # abnormal first
        classes = [UCF_NAME.match(name).group(1) for name, _ in videos[:n_abnormal]]
        assert classes == sorted(classes, key=UCF_CLASSES.index)  # class-alphabetical like the real list
    assert config.split_index == sum(UCF_NAME.match(name) is not None for name, _ in train) == 20
    assert not {name for name, _ in train} & {name for name, _ in test}
    for _, features in train + test:
        assert features.dtype == np.float32 and features.ndim == 3 and features.shape[1:] == (2, 8)
        assert np.isfinite(features).all() and features.min() >= 0
    lengths = [features.shape[0] for _, features in train]
    assert min(lengths) < 32 <= max(lengths), "some training videos are shorter than 32 snippets"

    gt = np.load(config.ground_truth)
    assert gt.dtype == np.float64 and gt.shape == (16 * sum(f.shape[0] for _, f in test),)
    annotations = read_ucf_annotations(tmp_path / "ucf" / "list" / "UCF_Annotation.txt")
    assert set(annotations) == {name for name, _ in test}
    offset = 0
    for name, features in test:
        n_frames, event_class, events = annotations[name]
        n_snippets = features.shape[0]
        assert n_snippets == -(-n_frames // 16)  # T = ceil(n / 16)
        expected = ucf_rule(n_snippets, events)
        np.testing.assert_array_equal(gt[offset:offset + 16 * n_snippets], expected)
        if event_class == "Normal":
            assert not events and name.startswith("Normal_Videos_")
        else:
            assert name.startswith(event_class) and 1 <= len(events) <= 2 and expected.sum() > 0
        offset += 16 * n_snippets


def test_xd_layout_is_exactly_the_real_one(tmp_path: Path) -> None:
    yaml_path = generate_synthetic(tmp_path / "xd", layout="xd", videos=12, test_videos=10, n_crops=3,
                                   feature_dim=8, seed=1, ground_truth="annotations")
    config = DatasetConfig.from_yaml(yaml_path)
    assert (config.layout, config.n_crops, config.annotation_format, config.ground_truth) == ("xd", 3, "xd_txt", None)
    assert config.annotations == tmp_path / "xd" / "list" / "XD_Annotation.txt"
    raw = config.train_list.read_bytes()
    assert b"\r" not in raw and raw.endswith(b".npy")  # LF, no final newline, like UR-DMU's lists
    assert raw.decode().startswith("E:/DLCode/datasets/ECCV2020XD-Violence/i3d-features/RGB/")
    assert config.test_list.read_text().startswith("E:/DLCode/datasets/ECCV2020XD-Violence/i3d-features/RGBTest/")

    train, test = xd_videos(config, "train"), xd_videos(config, "test")
    assert len(train) == 12 and len(test) == 10
    assert any("__#" in name for name, _ in train + test)  # names with '__' inside: split on the last one
    for videos in (train, test):
        violent = [XD_ABNORMAL_LABEL.search(name) is not None for name, _ in videos]
        normal = [name.endswith("_label_A") for name, _ in videos]
        assert all(v != n for v, n in zip(violent, normal))
        assert violent == sorted(violent, reverse=True)  # violent first
    assert config.split_index == 6
    for _, features in train + test:
        assert features.dtype == np.float32 and features.shape[1:] == (3, 8) and features.min() >= 0
        # the crops show the same content with small perturbations
        assert np.corrcoef(features[:, 0].ravel(), features[:, 1].ravel())[0, 1] > 0.8
        assert not np.array_equal(features[:, 0], features[:, 1])

    gt = np.load(tmp_path / "xd" / "list" / "gt-xd.npy")
    assert gt.shape == (16 * sum(f.shape[0] for _, f in test),)
    annotations = read_xd_annotations(config.annotations)
    assert set(annotations) == {name for name, _ in test if not name.endswith("_label_A")}
    assert not config.annotations.read_bytes().endswith(b"\n")
    offset = 0
    for name, features in test:
        total = 16 * features.shape[0]
        expected = np.zeros(total)
        for start, end in annotations.get(name, []):  # end-exclusive, clipped to 16 T
            assert 0 <= start < end
            expected[start:min(end, total)] = 1
        np.testing.assert_array_equal(gt[offset:offset + total], expected)
        offset += total


def test_generation_is_deterministic(tmp_path: Path) -> None:
    arguments = {"layout": "xd", "videos": 8, "test_videos": 4, "n_crops": 2, "feature_dim": 8, "seed": 5}
    first = all_files(generate_synthetic(tmp_path / "a", **arguments).parent)
    second = all_files(generate_synthetic(tmp_path / "b", **arguments).parent)
    assert first == second and len(first) > 20
    other = all_files(generate_synthetic(tmp_path / "c", **{**arguments, "seed": 6}).parent)
    assert other != first


def test_dataset_folder_can_be_moved(tmp_path: Path) -> None:
    yaml_path = generate_synthetic(tmp_path / "here", videos=4, test_videos=2, n_crops=1, feature_dim=4)
    moved = tmp_path / "elsewhere" / "data"
    shutil.move(str(yaml_path.parent), str(moved))
    config = DatasetConfig.from_yaml(moved / "dataset.yaml")
    for path in (config.feature_root, config.test_root, config.train_list, config.test_list, config.ground_truth):
        assert path.exists() and moved in path.parents


def test_regenerating_into_an_earlier_synthetic_folder_replaces_it(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "d", videos=6, test_videos=2, n_crops=1, feature_dim=4)
    generate_synthetic(tmp_path / "d", layout="xd", videos=4, test_videos=2, n_crops=1, feature_dim=4)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["RGB", "RGBTest", "dataset.yaml", "list",
                                                                  "synthetic.json"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"layout": "shanghai"}, "layout"),
        ({"difficulty": 1.5}, "difficulty"),
        ({"videos": 1}, "videos"),
        ({"test_videos": 1}, "test_videos"),
        ({"like": "real"}, "like"),
        ({"ground_truth": "mat"}, "ground_truth"),
        ({"feature_dim": 0}, "feature_dim"),
        ({"videos": None}, "videos"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path: Path, arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_synthetic(tmp_path / "out", **{"n_crops": 1, "feature_dim": 4, **arguments})


def test_refuses_a_folder_that_is_not_synthetic(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        generate_synthetic(tmp_path, videos=4, n_crops=1, feature_dim=4)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------------------------- signal

def probe_auc(yaml_path: Path) -> tuple[float, float]:
    """Frame AUC of (snippet feature norm, a logistic probe fit on half of the test videos, scored on the rest)."""
    config = DatasetConfig.from_yaml(yaml_path)
    test = ucf_videos(config, "test")
    gt = np.load(config.ground_truth)
    offsets = np.cumsum([0] + [16 * f.shape[0] for _, f in test])
    features = [f.mean(axis=1) for _, f in test]
    frame_labels = [gt[offsets[i]:offsets[i + 1]] for i in range(len(test))]
    norms = np.concatenate([np.repeat(np.linalg.norm(f, axis=1), 16) for f in features])
    fit, held_out = range(0, len(test), 2), range(1, len(test), 2)
    probe = LogisticRegression(max_iter=1000).fit(
        np.concatenate([features[i] for i in fit]),
        np.concatenate([frame_labels[i].reshape(-1, 16).mean(axis=1) > 0.5 for i in fit]))
    scores = np.concatenate([np.repeat(probe.decision_function(features[i]), 16) for i in held_out])
    return (frame_metrics(norms, gt)["auc"],
            frame_metrics(scores, np.concatenate([frame_labels[i] for i in held_out]))["auc"])


def test_planted_signal_is_there_and_the_difficulty_removes_it(tmp_path: Path) -> None:
    common = {"videos": 4, "test_videos": 80, "n_crops": 2, "feature_dim": 32, "seed": 0}
    norm_default, probe_default = probe_auc(generate_synthetic(tmp_path / "default", **common))
    norm_hard, probe_hard = probe_auc(generate_synthetic(tmp_path / "hard", difficulty=0.98, **common))
    assert probe_default > 0.85 and norm_default > 0.6
    assert probe_hard < 0.7 and norm_hard < 0.6
    assert probe_default - probe_hard > 0.2


# --------------------------------------------------------------------------------------- like="reference"

@pytest.mark.reference
def test_like_reference_ucf_matches_the_real_test_set(tmp_path: Path, reference_dir: Path) -> None:
    yaml_path = generate_synthetic(tmp_path / "ucf", like="reference", reference_dir=reference_dir, videos=12,
                                   test_videos=None, n_crops=1, feature_dim=2)
    config = DatasetConfig.from_yaml(yaml_path)
    real_test = list_files(reference_dir / "RTFM/list/ucf-i3d-test.list")
    assert list_files(config.test_list) == real_test  # 290 names in the real (ground-truth) order
    real_train = list_files(reference_dir / "RTFM/list/ucf-i3d.list")
    ours_train = list_files(config.train_list)
    assert len(ours_train) == 12 and ours_train == [n for n in real_train if n in set(ours_train)]
    assert config.split_index == sum("Normal_" not in n for n in ours_train) == 6  # 810 / 1610 of 12
    gt = np.load(config.ground_truth)
    assert gt.shape == (1_114_144,) and gt.sum() == 84_343  # the MANIFEST's numbers: 7.57 % anomalous
    real_lines = (reference_dir / "UR-DMU/list/UCF_Annotation.txt").read_text().splitlines()
    assert sorted((yaml_path.parent / "list/UCF_Annotation.txt").read_text().splitlines()) == sorted(real_lines)
    annotations = read_ucf_annotations(reference_dir / "UR-DMU/list/UCF_Annotation.txt")
    lengths = [np.load(config.test_root / name).shape[0] for name in real_test]
    assert lengths == [-(-annotations[n.removesuffix("_i3d.npy")][0] // 16) for n in real_test]

    subset = DatasetConfig.from_yaml(generate_synthetic(
        tmp_path / "subset", like="reference", reference_dir=reference_dir, videos=4, test_videos=29,
        n_crops=1, feature_dim=2))
    names = list_files(subset.test_list)
    assert len(names) == 29 and names == [n for n in real_test if n in set(names)]
    assert sum("Normal_" not in n for n in names) == 14  # the real 140 / 290 imbalance
    subset_gt = np.load(subset.ground_truth)
    expected = np.concatenate([ucf_rule(-(-annotations[n.removesuffix("_i3d.npy")][0] // 16),
                                        annotations[n.removesuffix("_i3d.npy")][2]) for n in names])
    np.testing.assert_array_equal(subset_gt, expected)


@pytest.mark.reference
def test_like_reference_xd_matches_the_real_test_set(tmp_path: Path, reference_dir: Path) -> None:
    yaml_path = generate_synthetic(tmp_path / "xd", layout="xd", like="reference", reference_dir=reference_dir,
                                   videos=10, test_videos=None, n_crops=1, feature_dim=2)
    config = DatasetConfig.from_yaml(yaml_path)
    real_names = list(dict.fromkeys(n.rsplit("__", 1)[0]
                                    for n in list_files(reference_dir / "UR-DMU/list/XD_Test.list")))
    ours = xd_videos(config, "test")
    assert [name for name, _ in ours] == real_names and len(real_names) == 800
    real_annotations = read_xd_annotations(reference_dir / "UR-DMU/list/XD_Annotation.txt")
    assert read_xd_annotations(config.test_list.parent / "XD_Annotation.txt") == real_annotations  # 500 violent
    gt = np.load(config.test_list.parent / "gt-xd.npy")
    assert gt.shape == (16 * sum(f.shape[0] for _, f in ours),)
    offset = 0
    for name, features in ours:
        total = 16 * features.shape[0]
        segments = real_annotations.get(name, [])
        assert total >= max((e for _, e in segments), default=0) - 16  # lengths cover the segments
        expected = np.zeros(total)
        for start, end in segments:
            expected[start:min(end, total)] = 1
        np.testing.assert_array_equal(gt[offset:offset + total], expected)
        offset += total
    assert 0.99 * 538_324 < gt.sum() <= 538_324


def test_like_reference_without_the_reference_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="reference_dir"):
        generate_synthetic(tmp_path / "out", like="reference", reference_dir=tmp_path / "absent", n_crops=1,
                           feature_dim=2)


# --------------------------------------------------------------------------------------------- CLI, cache

def test_cli_writes_the_dataset_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--layout", "ucf", "--out", str(tmp_path / "d"), "--videos", "6", "--test-videos", "3",
                 "--crops", "2", "--dim", "8", "--difficulty", "0.3", "--seed", "2", "--gt", "annotations"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "d" / "dataset.yaml")
    config = DatasetConfig.from_yaml(tmp_path / "d" / "dataset.yaml")
    assert (config.n_crops, config.feature_dim, config.annotation_format) == (2, 8, "ucf_txt")
    assert main(["--out", str(tmp_path / "bad"), "--difficulty", "2"]) == 2
    assert "difficulty" in capsys.readouterr().err


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    out = tmp_path / "xd"
    result = subprocess.run(
        [sys.executable, "-m", "vad.data.synthetic", "--layout", "xd", "--out", str(out), "--videos", "4",
         "--crops", "2", "--dim", "4"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    config = DatasetConfig.from_yaml(out / "dataset.yaml")
    assert config.layout == "xd" and len(list_files(config.train_list)) == 4 * 2


def test_presets() -> None:
    assert {"demo", "ucf-shaped", "xd-shaped", "tiny"} <= set(PRESETS)
    assert PRESETS["demo"]["layout"] == "ucf" and PRESETS["demo"]["feature_dim"] <= 256
    assert (PRESETS["ucf-shaped"]["n_crops"], PRESETS["ucf-shaped"]["feature_dim"]) == (10, 2048)
    assert (PRESETS["xd-shaped"]["layout"], PRESETS["xd-shaped"]["n_crops"]) == ("xd", 5)
    assert (PRESETS["tiny"]["feature_dim"], PRESETS["tiny"]["n_crops"]) == (32, 2)


def test_ensure_synthetic_generates_once_and_keys_by_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VAD_CACHE_DIR", str(tmp_path / "cold-cache"))  # other tests may have generated "tiny"
    calls = []
    real_generate = synthetic.generate_synthetic
    monkeypatch.setattr(synthetic, "generate_synthetic", lambda *a, **k: calls.append(k) or real_generate(*a, **k))
    first = ensure_synthetic("tiny")
    assert first.name == "dataset.yaml" and re.fullmatch(r"tiny-[0-9a-f]{12}", first.parent.name)
    assert first.parent.parent == synthetic.cache_root() / "synthetic"
    assert DatasetConfig.from_yaml(first).name == "tiny"
    assert ensure_synthetic("tiny") == first and len(calls) == 1
    assert ensure_synthetic("tiny", n_crops=2) == first and len(calls) == 1  # the same settings spelled out
    other = ensure_synthetic("tiny", seed=1)
    assert other != first and len(calls) == 2
    xd = ensure_synthetic("tiny-xd", videos=6, test_videos=4)
    assert DatasetConfig.from_yaml(xd).layout == "xd"
    assert not [p for p in first.parent.parent.iterdir() if p.name.startswith(".")], "no temporary folder left"
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        ensure_synthetic("huge")
    with pytest.raises(ValueError, match="unknown generator setting"):
        ensure_synthetic("tiny", colour="red")


def test_ensure_synthetic_is_safe_for_concurrent_callers() -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_synthetic("tiny", seed=7, videos=6)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len(set(results)) == 1
    config = DatasetConfig.from_yaml(results[0])
    assert len(list_files(config.train_list)) == 6 and np.load(config.ground_truth).size > 0
    assert not [p for p in results[0].parent.parent.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------ round trip through vad.data

@pytest.mark.parametrize("layout", ["ucf", "xd"])
def test_round_trip_through_load_dataset(tmp_path: Path, layout: str) -> None:
    from vad.data import load_dataset, load_ground_truth, load_test_features

    yaml_path = generate_synthetic(tmp_path / layout, layout=layout, videos=8, test_videos=6, n_crops=2,
                                   feature_dim=8, seed=4)
    dataset = load_dataset(yaml_path)
    reader = ucf_videos if layout == "ucf" else xd_videos
    for split, videos in (("train", dataset.train), ("test", dataset.test)):
        on_disk = reader(dataset.config, split)
        assert [v.id for v in videos] == [name for name, _ in on_disk]
        assert [v.label for v in videos] == [int(not (n.startswith("Normal_") or n.endswith("_label_A")))
                                             for n, _ in on_disk]
        for video, (_, features) in zip(videos, on_disk):
            np.testing.assert_array_equal(dataset.read_video(video), features.transpose(1, 0, 2))  # (N, T, C)
    assert [v.anomaly_class for v in dataset.test][0] in (UCF_CLASSES if layout == "ucf" else XD_CODES)
    test = load_test_features(dataset)
    from_npy = load_ground_truth(dataset, test.lengths)
    annotation_file = "UCF_Annotation.txt" if layout == "ucf" else "XD_Annotation.txt"
    with_annotations = dataclasses.replace(
        dataset.config, ground_truth=None, annotations=yaml_path.parent / "list" / annotation_file,
        annotation_format=f"{layout}_txt")
    from_text = load_ground_truth(load_dataset(with_annotations), test.lengths)
    assert from_npy.labels.shape == (16 * int(np.sum(test.lengths)),)
    np.testing.assert_array_equal(np.asarray(from_npy.labels, dtype=float), np.asarray(from_text.labels, dtype=float))
    assert 0 < float(np.sum(from_npy.labels)) < from_npy.labels.size
