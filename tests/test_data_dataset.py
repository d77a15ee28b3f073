"""Loading feature datasets in both layouts from small fake files, and every bad-input error of the loader.

The helpers here (``write_dataset`` and the default video sets) also build the fixtures of the other
``test_data_*`` files.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from vad.data import DataError, DatasetConfig, DatasetConfigError, Video, load_dataset

# (name, T snippets, label) in list order: abnormal first, like the authors' lists.
UCF_TRAIN = [("Abuse001_x264", 40, 1), ("Abuse002_x264", 10, 1), ("Arson001_x264", 70, 1), ("Arson002_x264", 33, 1),
             ("Normal_Videos001_x264", 50, 0), ("Normal_Videos002_x264", 5, 0), ("Normal_Videos003_x264", 32, 0),
             ("Normal_Videos004_x264", 64, 0)]
UCF_TEST = [("Abuse028_x264", 12, 1), ("Arson011_x264", 20, 1), ("Normal_Videos_003_x264", 7, 0),
            ("Normal_Videos_006_x264", 9, 0)]
XD_TRAIN = [("Movie.A.2001__#00-01-00_00-02-00_label_B1-0-0", 21, 1), ("v=abc__#1_label_G-B2-0", 35, 1),
            ("Movie.B.2002__#00-03-00_00-04-00_label_A", 17, 0), ("v=def__#2_label_A", 40, 0)]
XD_TEST = [("Movie.C.2003__#00-05-00_00-06-00_label_B6-0-0", 15, 1), ("v=ghi__#3_label_A", 11, 0)]
# Frame events per abnormal test video (UCF: [start, end] inclusive; XD: [start, end) exclusive).
UCF_EVENTS = {"Abuse028_x264": [(20, 60)], "Arson011_x264": [(10, 40), (100, 330)]}
XD_EVENTS = {"Movie.C.2003__#00-05-00_00-06-00_label_B6-0-0": [(0, 30), (100, 250)]}


def features_for(name: str, length: int, n_crops: int, dim: int) -> np.ndarray:
    """Deterministic ``(T, N, C)`` float32 features of one fake video (non-negative, like post-ReLU I3D)."""
    seed = int.from_bytes(name.encode()[-8:].rjust(8, b"\0"), "little") % (2**32)
    return np.random.default_rng(seed).random((length, n_crops, dim), dtype=np.float32) * 3


def write_dataset(root: Path, layout: str = "ucf", train: list | None = None, test: list | None = None,
                  n_crops: int = 2, dim: int = 8, gt: str = "npy", **config: object) -> Path:
    """Write feature files, lists (ucf: CRLF + Windows paths; xd: one line per crop), annotations and a gt .npy
    under ``root``; return the ``dataset.yaml`` path. ``gt``: npy | ucf_txt | xd_txt | none."""
    train = train if train is not None else (UCF_TRAIN if layout == "ucf" else XD_TRAIN)
    test = test if test is not None else (UCF_TEST if layout == "ucf" else XD_TEST)
    (root / "lists").mkdir(parents=True, exist_ok=True)
    for subset, videos in (("train", train), ("test", test)):
        folder = root / "features" / subset
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for name, length, _ in videos:
            feats = features_for(name, length, n_crops, dim)
            if layout == "ucf":
                np.save(folder / f"{name}_i3d.npy", feats)
                lines.append(f"G:\\UCF_{subset.title()}_ten_crop_i3d\\{name}_i3d.npy")
            else:
                for k in range(n_crops):
                    np.save(folder / f"{name}__{k}.npy", np.ascontiguousarray(feats[:, k]))
                    lines.append(f"E:/XD/i3d-features/RGB/{name}__{k}.npy")
        newline = "\r\n" if layout == "ucf" else "\n"
        (root / "lists" / f"{subset}.list").write_bytes((newline.join(lines) + newline).encode())
    values = {"name": f"fake-{layout}", "layout": layout, "feature_root": "features/train",
              "test_feature_root": "features/test", "train_list": "lists/train.list", "test_list": "lists/test.list",
              "n_crops": n_crops, "feature_dim": dim, "split_index": sum(label for _, _, label in train)}
    if gt == "npy":
        np.save(root / "lists" / "gt.npy", expected_ground_truth(layout, test).astype(np.float64))
        values["ground_truth"] = "lists/gt.npy"
    elif gt == "ucf_txt":
        write_ucf_annotation(root / "lists" / "UCF_Annotation.txt", test)
        values.update(annotations="lists/UCF_Annotation.txt", annotation_format="ucf_txt")
    elif gt == "xd_txt":
        lines = [f"{name} " + " ".join(f"{s} {e}" for s, e in XD_EVENTS[name]) for name, _, label in test if label]
        (root / "lists" / "XD_Annotation.txt").write_text("\n".join(lines))
        values.update(annotations="lists/XD_Annotation.txt", annotation_format="xd_txt")
    values.update(config)
    path = root / "dataset.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def write_ucf_annotation(path: Path, test: list, frames: dict[str, int] | None = None) -> None:
    """UR-DMU ``UCF_Annotation.txt`` lines with frame counts (default: 16 * T - 5, so T = ceil(n / 16))."""
    lines = []
    for name, length, label in test:
        n_frames = (frames or {}).get(name, 16 * length - 5)
        cls = name.split("0")[0] if label else "Normal"
        events = [value for event in UCF_EVENTS.get(name, []) for value in event]
        events += [-1] * (4 - len(events))
        folder = cls if label else "Testing_Normal_Videos_Anomaly"
        lines.append(f"{folder}/{name}.mp4 {n_frames} {cls} " + " ".join(map(str, events)) + " ")
    path.write_text("\n".join(lines) + "\n")


def expected_ground_truth(layout: str, test: list) -> np.ndarray:
    """The frame labels the rules give for the fake test videos, computed frame by frame."""
    out = []
    for name, length, _ in test:
        n = 16 * length
        events = (UCF_EVENTS if layout == "ucf" else XD_EVENTS).get(name, [])
        for frame in range(n):
            if layout == "ucf":
                out.append(any(s <= frame <= e for s, e in events))
            else:
                out.append(any(s <= frame < e for s, e in events))
    return np.array(out, dtype=np.uint8)


def edit_config(path: Path, **changes: object) -> Path:
    values = yaml.safe_load(path.read_text())
    values.update(changes)
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------------- layouts


def test_ucf_layout_resolves_windows_paths_and_reads_videos(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, "ucf"))
    assert [v.id for v in ds.train] == [name for name, _, _ in UCF_TRAIN]
    assert [v.label for v in ds.train] == [label for _, _, label in UCF_TRAIN]
    assert [v.anomaly_class for v in ds.test] == ["Abuse", "Arson", "Normal", "Normal"]
    video = ds.train[2]
    assert isinstance(video, Video)
    assert video.files == (tmp_path / "features" / "train" / "Arson001_x264_i3d.npy",)
    feats = ds.read_video(video)
    assert feats.shape == (2, 70, 8) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats, features_for("Arson001_x264", 70, 2, 8).transpose(1, 0, 2))
    assert ds.video_length(ds.test[1]) == 20


def test_xd_layout_groups_crop_lines_into_videos(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, "xd", n_crops=3, dim=6))
    assert [v.id for v in ds.train] == [name for name, _, _ in XD_TRAIN]
    assert [v.label for v in ds.train] == [1, 1, 0, 0]
    assert [v.anomaly_class for v in ds.train] == ["B1", "G", "A", "A"]
    video = ds.train[1]
    assert [f.name for f in video.files] == [f"v=abc__#1_label_G-B2-0__{k}.npy" for k in range(3)]
    np.testing.assert_array_equal(ds.read_video(video), features_for(video.id, 35, 3, 6).transpose(1, 0, 2))


def test_files_are_found_in_sub_folders_and_ties_broken_by_the_listed_path(tmp_path: Path) -> None:
    config = write_dataset(tmp_path, "xd", n_crops=2, gt="none")
    train = tmp_path / "features" / "train"
    for file in list(train.iterdir()):  # UR-DMU layout: dataset/<Class>/<file>
        target = train / "dataset" / ("Normal" if "label_A" in file.name else "Violent") / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        file.rename(target)
    decoy = train / "other" / "v=abc__#1_label_G-B2-0__0.npy"  # same name as a listed file, elsewhere
    decoy.parent.mkdir()
    np.save(decoy, np.zeros((3, 8), np.float32))
    lines = (tmp_path / "lists" / "train.list").read_text().splitlines()
    lines = [line.replace("E:/XD/i3d-features/RGB/", "dataset/Violent/" if "label_A" not in line
                          else "dataset/Normal/") for line in lines]
    (tmp_path / "lists" / "train.list").write_text("\n".join(lines))
    ds = load_dataset(config)
    assert ds.train[1].files[0] == train / "dataset" / "Violent" / "v=abc__#1_label_G-B2-0__0.npy"
    # a name that exists twice with nothing in the listed path to choose between them is an error
    lines[2] = "v=abc__#1_label_G-B2-0__0.npy"
    (tmp_path / "lists" / "train.list").write_text("\n".join(lines))
    with pytest.raises(DataError, match="several files named v=abc__#1_label_G-B2-0__0.npy"):
        load_dataset(config)


def test_labels_from_split_index_when_names_carry_none(tmp_path: Path) -> None:
    train = [("01_0014", 9, 1), ("01_0016", 8, 1), ("02_0001", 7, 0)]
    test = [("01_0015", 6, 1), ("03_0002", 5, 0)]
    config = write_dataset(tmp_path, "ucf", train=train, test=test, gt="none", split_index=2, test_split_index=1)
    ds = load_dataset(config)
    assert [v.label for v in ds.train] == [1, 1, 0] and [v.label for v in ds.test] == [1, 0]
    assert ds.train[0].anomaly_class is None
    edit_config(config, test_split_index=None)
    with pytest.raises(DataError, match=r"test.list: line 1: the name of video 01_0015 carries no label"):
        load_dataset(config)


def test_accepts_a_config_object_and_float64_features(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, "ucf")
    file = tmp_path / "features" / "train" / "Abuse002_x264_i3d.npy"
    np.save(file, np.load(file).astype(np.float64))
    ds = load_dataset(DatasetConfig.from_yaml(path))
    assert ds.read_video(ds.train[1]).dtype == np.float32


# ------------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def ucf(tmp_path: Path) -> Path:
    return write_dataset(tmp_path, "ucf")


def test_missing_feature_file_is_named_at_load(ucf: Path) -> None:
    (ucf.parent / "features" / "train" / "Arson001_x264_i3d.npy").unlink()
    with pytest.raises(DataError, match=r"train.list: 1 listed feature file\(s\) not found under .*features/train.*"
                                        r"Arson001_x264_i3d.npy \(video Arson001_x264, line 3\)"):
        load_dataset(ucf)


def test_feature_file_deleted_after_load(ucf: Path) -> None:
    ds = load_dataset(ucf)
    ds.train[0].files[0].unlink()
    with pytest.raises(DataError, match=r"feature file .*Abuse001_x264_i3d.npy of video Abuse001_x264 is missing"):
        ds.read_video(ds.train[0])


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((10, 2, 7), np.float32), r"shape \(10, 2, 7\); expected \(T, 2, 8\)"),
    (np.zeros((10, 3, 8), np.float32), r"shape \(10, 3, 8\); expected \(T, 2, 8\)"),
    (np.zeros((10, 16), np.float32), r"shape \(10, 16\); expected \(T, 2, 8\)"),
    (np.zeros((0, 2, 8), np.float32), r"shape \(0, 2, 8\); expected \(T, 2, 8\) .* T >= 1"),
    (np.array(["a", "b"]), r"dtype <U1; expected float32"),
])
def test_wrong_shape_width_crops_or_dtype(ucf: Path, array: np.ndarray, message: str) -> None:
    ds = load_dataset(ucf)
    np.save(ds.train[1].files[0], array)
    with pytest.raises(DataError, match=r"Abuse002_x264_i3d.npy: .*" + message):
        ds.read_video(ds.train[1])


def test_unreadable_or_pickled_feature_file(ucf: Path) -> None:
    ds = load_dataset(ucf)
    ds.train[0].files[0].write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match=r"Abuse001_x264_i3d.npy: not a NumPy .npy file .*video Abuse001_x264"):
        ds.read_video(ds.train[0])
    np.save(ds.train[1].files[0], np.array([np.zeros(3)], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Abuse002_x264"):
        ds.read_video(ds.train[1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(ucf: Path, bad: float) -> None:
    ds = load_dataset(ucf)
    feats = np.load(ds.train[3].files[0])
    feats[5, 1, 3] = bad
    np.save(ds.train[3].files[0], feats)
    with pytest.raises(DataError, match=r"Arson002_x264_i3d.npy: video Arson002_x264 has 1 NaN/inf value\(s\), "
                                        r"the first at crop 1, snippet 5, channel 3"):
        ds.read_video(ds.train[3])


def test_xd_crop_of_other_length_or_width(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, "xd"))
    video = ds.train[0]
    np.save(video.files[1], np.zeros((20, 8), np.float32))
    with pytest.raises(DataError, match=r"__1.npy: crop of video .* has 20 snippets but its crop .*__0.npy has 21"):
        ds.read_video(video)
    np.save(video.files[1], np.zeros((21, 9), np.float32))
    with pytest.raises(DataError, match=r"__1.npy: crop of video .* has shape \(21, 9\); expected \(T, 8\)"):
        ds.read_video(video)


def test_empty_and_unreadable_lists(ucf: Path) -> None:
    lists = ucf.parent / "lists"
    (lists / "train.list").write_text("\r\n \r\n")
    with pytest.raises(DataError, match=r"feature list .*train.list is empty"):
        load_dataset(ucf)
    (lists / "train.list").write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(DataError, match=r"feature list .*train.list is not UTF-8 text"):
        load_dataset(ucf)
    (lists / "train.list").unlink()
    with pytest.raises(DataError, match=r"cannot read feature list .*train.list"):
        load_dataset(ucf)


def test_list_line_that_is_not_a_feature_file(ucf: Path) -> None:
    list_path = ucf.parent / "lists" / "test.list"
    list_path.write_text(list_path.read_text() + "G:\\x\\readme.txt\r\n")
    with pytest.raises(DataError, match=r"test.list: line 5: 'G:\\\\x\\\\readme.txt' is not a .npy feature file"):
        load_dataset(ucf)


def test_crop_files_in_a_ucf_layout_list_suggest_the_xd_layout(tmp_path: Path) -> None:
    config = write_dataset(tmp_path, "xd")
    edit_config(config, layout="ucf")
    with pytest.raises(DataError, match=r"line 1: .*__0.npy looks like a per-crop file.*set layout: xd"):
        load_dataset(config)


def test_xd_missing_or_misordered_crop_lines(tmp_path: Path) -> None:
    config = write_dataset(tmp_path, "xd", n_crops=3)
    list_path = tmp_path / "lists" / "train.list"
    lines = list_path.read_text().splitlines()
    list_path.write_text("\n".join(lines[:4] + lines[5:]))  # video 2 loses crop __1
    with pytest.raises(DataError, match=r"train.list: line 5: video v=abc__#1_label_G-B2-0 has crop file __2 where "
                                        r"__1 was expected"):
        load_dataset(config)
    list_path.write_text("\n".join(lines[:5] + lines[6:]))  # video 2 loses its last crop __2
    with pytest.raises(DataError, match=r"line 4: video v=abc__#1_label_G-B2-0 has 2 crop file line\(s\) "
                                        r"\(__0 to __1\); expected 3"):
        load_dataset(config)
    list_path.write_text("\n".join(lines[:-1]))  # the last video loses its last crop
    with pytest.raises(DataError, match=r"video v=def__#2_label_A has 2 crop file line\(s\)"):
        load_dataset(config)
    list_path.write_text("\n".join(lines[:3] + lines[3:6] + lines[:3]))  # a video listed twice
    with pytest.raises(DataError, match=r"line 7: video Movie.A.2001.* is listed twice \(first at line 1\)"):
        load_dataset(config)
    list_path.write_text("\n".join(["E:/XD/no_crop_index.npy"]))
    with pytest.raises(DataError, match=r"line 1: no_crop_index.npy has no crop index"):
        load_dataset(config)


def test_label_contradicting_split_index(ucf: Path) -> None:
    edit_config(ucf, split_index=3)
    with pytest.raises(DataError, match=r"train.list: line 4: video Arson002_x264 \(#3\) is abnormal by its name, "
                                        r"but split index 3 makes the first 3 videos abnormal"):
        load_dataset(ucf)
    edit_config(ucf, split_index=5)
    with pytest.raises(DataError, match=r"line 5: video Normal_Videos001_x264 \(#4\) is normal by its name"):
        load_dataset(ucf)
    edit_config(ucf, split_index=9)
    with pytest.raises(DataError, match=r"split_index 9 is outside the list's 8 videos"):
        load_dataset(ucf)


def test_video_in_both_lists_and_missing_feature_root(ucf: Path) -> None:
    train_list = ucf.parent / "lists" / "train.list"
    test_list = ucf.parent / "lists" / "test.list"
    test_list.write_text(test_list.read_text() + train_list.read_text().splitlines()[0] + "\r\n")
    edit_config(ucf, test_feature_root="features")
    with pytest.raises(DataError, match=r"1 test video\(s\) are also in the train list .* \(first: Abuse001_x264\)"):
        load_dataset(ucf)
    edit_config(ucf, feature_root="nowhere")
    with pytest.raises(DataError, match=r"feature_root: feature folder .*nowhere does not exist"):
        load_dataset(ucf)


def test_config_errors(ucf: Path) -> None:
    edit_config(ucf, split_index=-1)
    with pytest.raises(DatasetConfigError, match=r"dataset.yaml: split_index: expected a non-negative integer"):
        load_dataset(ucf)
    edit_config(ucf, split_index=None, test_split_index="44")
    with pytest.raises(DatasetConfigError, match="test_split_index"):
        load_dataset(ucf)


def test_dataset_reports_list_hashes(ucf: Path) -> None:
    ds = load_dataset(ucf)
    assert ds.train_list_sha256 == hashlib.sha256((ucf.parent / "lists" / "train.list").read_bytes()).hexdigest()
    assert ds.train_list_sha256 != ds.test_list_sha256
    assert math.isclose(ds.config.val_fraction, 0.1)
    assert os.fspath(ds.config.feature_root).endswith("features/train")


def test_single_crop_files_may_drop_the_crop_axis(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, "ucf", n_crops=1, dim=4))
    file = ds.train[0].files[0]
    array = np.load(file)[:, 0]
    np.save(file, array)  # (T, C)
    np.testing.assert_array_equal(ds.read_video(ds.train[0]), array[None])
    np.save(file, np.float32(1.0))
    with pytest.raises(DataError, match=r"Abuse001_x264_i3d.npy: video Abuse001_x264 has features of shape \(\)"):
        ds.read_video(ds.train[0])
