"""The authors' real list files (../shared/reference) parsed into videos, labels and anomaly classes; counts from
the reference MANIFEST."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from vad.data import DataError, parse_list, with_labels

UCF_TRAIN_CLASSES = {"Robbery": 145, "RoadAccidents": 127, "Stealing": 95, "Burglary": 87, "Abuse": 48, "Assault": 47,
                     "Arrest": 45, "Fighting": 45, "Vandalism": 45, "Arson": 41, "Explosion": 29, "Shoplifting": 29,
                     "Shooting": 27, "Normal": 800}
UCF_TEST_CLASSES = {"RoadAccidents": 23, "Shooting": 23, "Explosion": 21, "Shoplifting": 21, "Burglary": 13, "Arson": 9,
                    "Arrest": 5, "Fighting": 5, "Robbery": 5, "Stealing": 5, "Vandalism": 5, "Assault": 3, "Abuse": 2,
                    "Normal": 150}
XD_TRAIN_CLASSES = {"A": 2049, "B1": 445, "B2": 336, "B4": 381, "B5": 36, "B6": 393, "G": 314}
pytestmark = pytest.mark.reference

XD_TEST_CLASSES = {"A": 300, "B1": 120, "B2": 84, "B4": 101, "B5": 8, "B6": 96, "G": 91}


def _csv_ids(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return [row["video-id"] for row in csv.DictReader(handle)]


def test_rtfm_ucf_train_list(reference_dir: Path) -> None:
    path = reference_dir / "RTFM" / "list" / "ucf-i3d.list"
    assert b"\r\n" in path.read_bytes() and b"G:\\UCF_Train_ten_crop_i3d\\" in path.read_bytes()
    videos = with_labels(parse_list(path, "ucf"), 810, path)
    assert len(videos) == 1610
    assert [v.label for v in videos] == [1] * 810 + [0] * 800
    assert videos[0].id == "Abuse001_x264" and videos[0].file_names == ("Abuse001_x264_i3d.npy",)
    assert videos[810].id == "Normal_Videos001_x264" and videos[-1].line == 1610
    assert Counter(v.anomaly_class for v in videos) == UCF_TRAIN_CLASSES
    assert [v.id for v in videos] == _csv_ids(reference_dir / "S3R" / "data" / "ucf-crime" / "ucf-crime.training.csv")


def test_split_index_cross_check_on_the_real_list(reference_dir: Path) -> None:
    path = reference_dir / "RTFM" / "list" / "ucf-i3d.list"
    videos = parse_list(path, "ucf")
    with pytest.raises(DataError, match=r"line 801: video Vandalism041_x264 \(#800\) is abnormal by its name, but "
                                        r"split index 800"):
        with_labels(videos, 800, path)
    with pytest.raises(DataError, match=r"line 811: video Normal_Videos001_x264 \(#810\) is normal by its name"):
        with_labels(videos, 811, path)


def test_rtfm_ucf_test_list(reference_dir: Path) -> None:
    path = reference_dir / "RTFM" / "list" / "ucf-i3d-test.list"
    videos = with_labels(parse_list(path, "ucf"), 140, path)
    assert len(videos) == 290 and sum(v.label for v in videos) == 140
    assert videos[140].id.startswith("Normal_Videos_")
    assert Counter(v.anomaly_class for v in videos) == UCF_TEST_CLASSES
    assert [v.id for v in videos] == _csv_ids(reference_dir / "S3R" / "data" / "ucf-crime" / "ucf-crime.testing.csv")


def test_urdmu_ucf_lists_group_ten_crop_lines_in_rtfm_order(reference_dir: Path) -> None:
    lists = reference_dir / "UR-DMU" / "list"
    pairs = (("UCF_Train.list", "ucf-i3d.list", 1610), ("UCF_Test.list", "ucf-i3d-test.list", 290))
    for name, rtfm_name, count in pairs:
        videos = parse_list(lists / name, "xd", n_crops=10)
        rtfm = parse_list(reference_dir / "RTFM" / "list" / rtfm_name, "ucf")
        assert len(videos) == count
        assert [v.id for v in videos] == [v.id for v in rtfm]
        assert [v.label for v in videos] == [v.label for v in rtfm]
        assert videos[0].file_names == tuple(f"{videos[0].id}__{k}.npy" for k in range(10))
        assert videos[0].entries[0].startswith("dataset/")
    train = parse_list(lists / "UCF_Train.list", "xd")  # crop count inferred from the first video
    assert sum(v.label for v in train) == 810 and train[810].line == 8101


def test_xd_lists(reference_dir: Path) -> None:
    lists = reference_dir / "UR-DMU" / "list"
    train = with_labels(parse_list(lists / "XD_Train.list", "xd", n_crops=5), 1905, lists / "XD_Train.list")
    assert len(train) == 3954 and sum(v.label for v in train) == 1905
    assert train[0].id == "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0"
    assert train[1905].line == 9526
    assert Counter(v.anomaly_class for v in train) == XD_TRAIN_CLASSES
    test = with_labels(parse_list(lists / "XD_Test.list", "xd", n_crops=5), 500, lists / "XD_Test.list")
    assert len(test) == 800 and sum(v.label for v in test) == 500
    assert Counter(v.anomaly_class for v in test) == XD_TEST_CLASSES
    assert not {v.id for v in train} & {v.id for v in test}
    with pytest.raises(DataError, match=r"XD_Train.list: line 1: video Bad.Boys.1995.* has 5 crop file line\(s\) "
                                        r"\(__0 to __4\); expected 10"):
        parse_list(lists / "XD_Train.list", "xd", n_crops=10)


def test_shanghaitech_lists_take_labels_from_the_split_index(reference_dir: Path) -> None:
    lists = reference_dir / "RTFM" / "list"
    train = parse_list(lists / "shanghai-i3d-train-10crop.list", "ucf")
    assert len(train) == 238 and all(v.label is None for v in train)
    with pytest.raises(DataError, match="the name of video 01_0014 carries no label"):
        with_labels(train, None, lists / "shanghai-i3d-train-10crop.list")
    train = with_labels(train, 63, lists / "shanghai-i3d-train-10crop.list")
    assert sum(v.label for v in train) == 63 and train[63].label == 0
    test = with_labels(parse_list(lists / "shanghai-i3d-test-10crop.list", "ucf"), 44, lists)
    assert len(test) == 199 and sum(v.label for v in test) == 44
    s3r = reference_dir / "S3R" / "data" / "shanghaitech"
    assert [v.id for v in train] == _csv_ids(s3r / "shanghaitech.training.csv")
    assert [v.id for v in test] == _csv_ids(s3r / "shanghaitech.testing.csv")
    assert sorted(v.id for v in test) == sorted((lists / "SH_Test.txt").read_text().split())
