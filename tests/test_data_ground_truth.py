"""Frame-level ground truth: the real UCF-Crime annotations (.mat and text agree, 1,114,144 frames, 84,343
anomalous), XD-Violence annotations, ShanghaiTech gt-sh.npy against its frame masks, and every length error."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from test_data_dataset import (
    UCF_EVENTS,
    UCF_TEST,
    XD_EVENTS,
    edit_config,
    expected_ground_truth,
    write_dataset,
    write_ucf_annotation,
)

from vad.data import (
    DataError,
    json_ground_truth,
    load_dataset,
    load_ground_truth,
    npy_ground_truth,
    parse_list,
    read_ucf_mat,
    read_ucf_txt,
    read_xd_txt,
    ucf_mat_ground_truth,
    ucf_txt_ground_truth,
    with_labels,
    xd_txt_ground_truth,
)

# ---------------------------------------------------------------------------------------- real reference files


@pytest.fixture
def ucf_test(reference_dir: Path) -> tuple[list[str], list[int], list[int]]:
    """Test ids and labels in ucf-i3d-test.list order, T_i = ceil(n_i / 16) from UCF_Annotation.txt frame counts."""
    path = reference_dir / "RTFM" / "list" / "ucf-i3d-test.list"
    videos = with_labels(parse_list(path, "ucf"), 140, path)
    annotations = read_ucf_txt(reference_dir / "UR-DMU" / "list" / "UCF_Annotation.txt")
    lengths = [math.ceil(annotations[v.id].n_frames / 16) for v in videos]
    return [v.id for v in videos], [v.label for v in videos], lengths


@pytest.mark.reference
def test_ucf_annotation_text(reference_dir: Path) -> None:
    annotations = read_ucf_txt(reference_dir / "UR-DMU" / "list" / "UCF_Annotation.txt")
    assert len(annotations) == 290
    assert sum(a.n_frames for a in annotations.values()) == 1_111_808
    abnormal = {video: a for video, a in annotations.items() if a.events}
    assert len(abnormal) == 140 and sum(len(a.events) == 2 for a in abnormal.values()) == 16
    assert all(a.event_class == "Normal" for video, a in annotations.items() if video not in abnormal)
    assert annotations["Arson011_x264"].events == ((150, 420), (680, 1267))
    past_end = [video for video, a in abnormal.items() if any(end >= a.n_frames for _, end in a.events)]
    assert sorted(past_end) == sorted(["Shooting015_x264", "Arson011_x264", "Assault006_x264", "Fighting003_x264",
                                       "Shooting046_x264", "Arson016_x264", "Explosion033_x264"])


@pytest.mark.reference
def test_ucf_ground_truth_from_mat_and_text_agree(reference_dir: Path, ucf_test: tuple) -> None:
    ids, labels, lengths = ucf_test
    assert 16 * sum(lengths) == 1_114_144
    from_mat = ucf_mat_ground_truth(reference_dir / "RTFM" / "list" / "Matlab_formate", ids, labels, lengths)
    from_txt = ucf_txt_ground_truth(reference_dir / "UR-DMU" / "list" / "UCF_Annotation.txt", ids, labels, lengths)
    assert len(from_mat.labels) == 1_114_144 and int(from_mat.labels.sum()) == 84_343
    np.testing.assert_array_equal(from_mat.labels, from_txt.labels)
    np.testing.assert_array_equal(from_mat.offsets, from_txt.offsets)
    assert from_mat.video_ids == ids and from_mat.frame_lengths.tolist() == [16 * t for t in lengths]
    assert all(from_mat.video(i).sum() == 0 for i in range(140, 290))
    assert all(from_mat.video(i).sum() > 0 for i in range(140))
    arson011 = from_mat.video(ids.index("Arson011_x264"))  # 1266 frames -> T = 80; [150, 420] and [680, 1267]
    assert len(arson011) == 1280 and arson011[150:421].all() and arson011[680:1268].all()
    assert arson011.sum() == 271 + 588 and not arson011[421:680].any() and not arson011[1268:].any()


@pytest.mark.reference
def test_ucf_official_annotation_format_gives_the_same_ground_truth(reference_dir: Path, ucf_test: tuple,
                                                                     tmp_path: Path) -> None:
    ids, labels, lengths = ucf_test
    annotations = read_ucf_txt(reference_dir / "UR-DMU" / "list" / "UCF_Annotation.txt")
    official = tmp_path / "Temporal_Anomaly_Annotation.txt"  # '<Video>.mp4  <Class>  s1  e1  s2  e2'
    lines = []
    for video, annotation in annotations.items():
        values = [value for event in annotation.events for value in event]
        values += [-1] * (4 - len(values))
        lines.append(f"{video}.mp4  {annotation.event_class}  " + "  ".join(map(str, values)) + "  ")
    official.write_text("\n".join(lines) + "\n")
    parsed = read_ucf_txt(official)
    assert parsed["Arson011_x264"].n_frames is None and parsed["Arson011_x264"].events == ((150, 420), (680, 1267))
    from_official = ucf_txt_ground_truth(official, ids, labels, lengths)
    from_mat = ucf_mat_ground_truth(reference_dir / "RTFM" / "list" / "Matlab_formate", ids, labels, lengths)
    np.testing.assert_array_equal(from_official.labels, from_mat.labels)


@pytest.mark.reference
def test_ucf_text_frame_counts_name_the_first_diverging_video(reference_dir: Path, ucf_test: tuple) -> None:
    ids, labels, lengths = ucf_test
    path = reference_dir / "UR-DMU" / "list" / "UCF_Annotation.txt"
    annotations = read_ucf_txt(path)
    floor = [annotations[video].n_frames // 16 for video in ids]  # UR-DMU's "drop the last frames" variant
    assert sum(floor) < sum(lengths)
    assert len(ucf_txt_ground_truth(path, ids, labels, floor).labels) == 16 * sum(floor) == 1_109_824
    off = list(lengths)
    off[5] -= 3
    off[7] += 2
    with pytest.raises(DataError, match=rf"test video {ids[5]} \(#5\) has {lengths[5] - 3} snippets .* but the "
                                        r"annotation gives \d+ frames .* first test video whose frame count diverges"):
        ucf_txt_ground_truth(path, ids, labels, off)


@pytest.mark.reference
def test_mat_files_read_all_dtypes(reference_dir: Path) -> None:
    folder = reference_dir / "RTFM" / "list" / "Matlab_formate"
    assert read_ucf_mat(folder / "Arson011_x264.mat") == ((150, 420), (680, 1267))
    assert read_ucf_mat(folder / "Normal_Videos_003_x264.mat") == ()
    counts = Counter(len(read_ucf_mat(file)) for file in folder.glob("*.mat"))
    assert counts == {0: 150, 1: 124, 2: 16}


@pytest.mark.reference
def test_xd_annotations(reference_dir: Path) -> None:
    lists = reference_dir / "UR-DMU" / "list"
    segments = read_xd_txt(lists / "XD_Annotation.txt")
    assert len(segments) == 500 and sum(len(s) for s in segments.values()) == 1238
    assert sum(end - start for s in segments.values() for start, end in s) == 538_324
    per_video = Counter(min(len(s), 8) for s in segments.values())
    assert [per_video[k] for k in range(1, 9)] == [240, 105, 59, 26, 15, 22, 18, 15]
    assert max(end for s in segments.values() for _, end in s) == 19_116
    test = with_labels(parse_list(lists / "XD_Test.list", "xd", n_crops=5), 500, lists / "XD_Test.list")
    assert set(segments) == {v.id for v in test if v.label}
    ids, labels = [v.id for v in test], [v.label for v in test]
    # long enough videos: every annotated frame is inside, end exclusive
    lengths = [math.ceil(max(e for _, e in segments[v]) / 16) + 1 if v in segments else 3 for v in ids]
    gt = xd_txt_ground_truth(lists / "XD_Annotation.txt", ids, labels, lengths)
    assert int(gt.labels.sum()) == 538_324 and len(gt.labels) == 16 * sum(lengths)
    # the official rule drops the frames past 16 * T: clipping loses exactly the frames past each video's end
    short = [max(1, length - 2) if v in segments else length for v, length in zip(ids, lengths)]
    clipped = xd_txt_ground_truth(lists / "XD_Annotation.txt", ids, labels, short)
    lost = sum(max(0, end - max(start, 16 * t)) for v, t in zip(ids, short) for start, end in segments.get(v, ()))
    assert int(clipped.labels.sum()) == 538_324 - lost and lost > 0


@pytest.mark.reference
def test_shanghaitech_gt_npy_against_frame_masks(reference_dir: Path) -> None:
    lists = reference_dir / "RTFM" / "list"
    test = with_labels(parse_list(lists / "shanghai-i3d-test-10crop.list", "ucf"), 44, lists)
    json_path = reference_dir / "S3R" / "data" / "shanghaitech" / "shanghaitech_ground_truth.testing.json"
    frames = json.loads(json_path.read_text())
    ids = [v.id for v in test]
    lengths = [frames[v]["num_frames"] // 16 for v in ids]
    gt = npy_ground_truth(lists / "gt-sh.npy", ids, lengths)
    assert len(gt.labels) == 142_912 and int(gt.labels.sum()) == 8028
    for index in range(44):  # abnormal: the mask padded to 16 * T with its last value
        mask = np.load(lists / "test_frame_mask" / f"{ids[index]}.npy")
        segment = gt.video(index)
        assert len(mask) <= len(segment)
        np.testing.assert_array_equal(segment, np.concatenate([mask, np.full(len(segment) - len(mask), mask[-1])]))
    assert not any(gt.video(index).any() for index in range(44, 199))
    np.testing.assert_array_equal(json_ground_truth(json_path, ids, lengths).labels, gt.labels)
    longer = list(lengths)
    longer[3] += 1
    with pytest.raises(DataError, match=rf"test video {ids[3]} \(#3\) has {16 * lengths[3]} frame labels but its "
                                        rf"features have {lengths[3] + 1} snippets .* first test video"):
        json_ground_truth(json_path, ids, longer)
    with pytest.raises(DataError, match=r"gt-sh.npy has 142,912 frame labels but the 199 test videos have "
                                        r"16 x 8,933 = 142,928 frames .*difference -16"):
        npy_ground_truth(lists / "gt-sh.npy", ids, longer)


# ------------------------------------------------------------------------------ load_ground_truth on fake data


@pytest.mark.parametrize(("layout", "gt"), [("ucf", "npy"), ("ucf", "ucf_txt"), ("xd", "npy"), ("xd", "xd_txt")])
def test_load_ground_truth_sources(tmp_path: Path, layout: str, gt: str) -> None:
    ds = load_dataset(write_dataset(tmp_path, layout, gt=gt))
    lengths = [ds.video_length(v) for v in ds.test]
    truth = load_ground_truth(ds, lengths)
    expected = expected_ground_truth(layout, [(v.id, t, v.label) for v, t in zip(ds.test, lengths)])
    assert truth.labels.dtype == np.uint8
    np.testing.assert_array_equal(truth.labels, expected)
    assert truth.offsets.tolist() == np.concatenate([[0], np.cumsum(16 * np.array(lengths))]).tolist()


def test_ucf_mat_folder(tmp_path: Path) -> None:
    config = write_dataset(tmp_path, "ucf", gt="none")
    mats = tmp_path / "Matlab_formate"
    mats.mkdir()
    for video, events in UCF_EVENTS.items():
        anno = np.array(events, dtype=np.uint16)
        scipy.io.savemat(mats / f"{video}.mat", {"Annotation_file": {"VideoName": f"{video}.mp4", "Anno": anno,
                                                                     "EventName": video[:5]}})
    ds = load_dataset(edit_config(config, annotations="Matlab_formate", annotation_format="ucf_mat"))
    lengths = [t for _, t, _ in UCF_TEST]
    np.testing.assert_array_equal(load_ground_truth(ds, lengths).labels, expected_ground_truth("ucf", UCF_TEST))
    (mats / "Arson011_x264.mat").unlink()
    with pytest.raises(DataError, match=r"Matlab_formate: no annotation for abnormal test video Arson011_x264 "
                                        r"\(expected Arson011_x264.mat\)"):
        load_ground_truth(ds, lengths)


def test_gt_npy_of_the_wrong_length_or_values(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, "ucf"))
    lengths = [t for _, t, _ in UCF_TEST]
    gt_path = tmp_path / "lists" / "gt.npy"
    good = np.load(gt_path)
    np.save(gt_path, good[:-16])  # a variant that lost the last snippet of a video
    with pytest.raises(DataError, match=r"gt.npy has 752 frame labels but the 4 test videos have 16 x 48 = 768 "
                                        r"frames .*difference -16.*cannot be named"):
        load_ground_truth(ds, lengths)
    bad = good.copy()
    bad[3] = 0.5
    np.save(gt_path, bad)
    with pytest.raises(DataError, match=r"gt.npy: frame 3 has label 0.5; expected 0 or 1"):
        load_ground_truth(ds, lengths)
    np.save(gt_path, good.reshape(2, -1))
    with pytest.raises(DataError, match=r"gt.npy holds an array of shape \(2, 384\)"):
        load_ground_truth(ds, lengths)
    with pytest.raises(DataError, match=r"got 3 test video lengths for 4 test videos"):
        load_ground_truth(ds, lengths[:3])


def test_npy_and_annotations_together_must_agree(tmp_path: Path) -> None:
    config = write_dataset(tmp_path, "ucf", gt="npy")
    write_ucf_annotation(tmp_path / "lists" / "UCF_Annotation.txt", UCF_TEST)
    ds = load_dataset(edit_config(config, annotations="lists/UCF_Annotation.txt", annotation_format="ucf_txt"))
    lengths = [t for _, t, _ in UCF_TEST]
    load_ground_truth(ds, lengths)  # agree
    gt = np.load(tmp_path / "lists" / "gt.npy")
    gt[16 * 12 + 50] = 1 - gt[16 * 12 + 50]  # inside the second test video
    np.save(tmp_path / "lists" / "gt.npy", gt)
    with pytest.raises(DataError, match=r"gt.npy and the annotations .* disagree, first on test video "
                                        r"Arson011_x264 \(#1\)"):
        load_ground_truth(ds, lengths)


def test_annotation_errors(tmp_path: Path) -> None:
    config = write_dataset(tmp_path, "ucf", gt="ucf_txt")
    ds = load_dataset(config)
    path = tmp_path / "lists" / "UCF_Annotation.txt"
    lengths = [t for _, t, _ in UCF_TEST]
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]))
    with pytest.raises(DataError, match=r"no annotation line for abnormal test video Abuse028_x264"):
        load_ground_truth(ds, lengths)
    path.write_text("\n".join([lines[0].replace("20 60", "-1 -1")] + lines[1:]))
    with pytest.raises(DataError, match=r"test video Abuse028_x264 is abnormal but has no annotated anomaly event"):
        load_ground_truth(ds, lengths)
    path.write_text("\n".join(lines[:2] + [lines[2].replace("-1 -1 -1 -1", "3 9 -1 -1")] + lines[3:]))
    with pytest.raises(DataError, match=r"test video Normal_Videos_003_x264 is normal .* has annotated events"):
        load_ground_truth(ds, lengths)
    path.write_text("\n".join([lines[0].replace("20 60", "60 20")] + lines[1:]))
    with pytest.raises(DataError, match=r"UCF_Annotation.txt: line 1: event \[60, 20\] is not a valid frame range"):
        load_ground_truth(ds, lengths)
    path.write_text("\n".join([lines[0].replace("20 60 -1 -1", "20 60 -1")] + lines[1:]))
    with pytest.raises(DataError, match=r"line 1: expected start/end frame pairs, got 3"):
        load_ground_truth(ds, lengths)
    path.write_text("\n".join(lines + lines[:1]))
    with pytest.raises(DataError, match=r"line 5: video Abuse028_x264 is annotated twice"):
        load_ground_truth(ds, lengths)
    path.write_text("")
    with pytest.raises(DataError, match=r"annotation file .*UCF_Annotation.txt is empty"):
        load_ground_truth(ds, lengths)


def test_event_past_the_features_means_a_mismatch(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, "xd", gt="xd_txt"))
    name = ds.test[0].id
    lengths = [5, 11]  # 80 frames; the second segment starts at frame 100 >= 80 + 16
    with pytest.raises(DataError, match=rf"test video {name} \(#0\): event \[100, 250\] starts past its 80 frames"):
        load_ground_truth(ds, lengths)
    np.testing.assert_array_equal(load_ground_truth(ds, [6, 11]).video(0), np.r_[np.ones(30), np.zeros(66)])
    assert XD_EVENTS[name][1] == (100, 250)


def test_no_ground_truth_configured(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path, "ucf", gt="none"))
    with pytest.raises(DataError, match="the dataset has neither ground_truth nor annotations"):
        load_ground_truth(ds, [t for _, t, _ in UCF_TEST])
