"""Feature datasets in the authors' layouts: lists, validated features, resampling, caches, ground truth, the
validation split and balanced batches.

```python
ds = load_dataset("dataset.yaml")
cache = build_train_cache(ds, n_segments=32, method="mean")   # (V, N, 32, C) memmap
split = make_split(ds)                                        # seeded, stratified, written once
test = load_test_features(ds)                                 # (sum T, N, C) memmap + offsets
gt = load_ground_truth(ds, test.lengths)                      # (16 * sum T,) frame labels
sampler = BalancedBatchSampler(cache.labels[split.train_index(cache)], batch_per_class=32)
```
"""

from vad.data.annotations import read_ucf_mat, read_ucf_txt, read_xd_txt
from vad.data.config import DatasetConfig, DatasetConfigError
from vad.data.dataset import FeatureDataset, Video, load_dataset
from vad.data.errors import DataError
from vad.data.eval_features import TestFeatures, load_test_features
from vad.data.ground_truth import (
    GroundTruth,
    json_ground_truth,
    load_ground_truth,
    npy_ground_truth,
    ucf_mat_ground_truth,
    ucf_txt_ground_truth,
    xd_txt_ground_truth,
)
from vad.data.lists import ListedVideo, parse_list, with_labels
from vad.data.resample import resample_segments
from vad.data.sampler import BalancedBatchSampler
from vad.data.split import Split, make_split
from vad.data.train_cache import TrainCache, build_train_cache

__all__ = [
    "BalancedBatchSampler",
    "DataError",
    "DatasetConfig",
    "DatasetConfigError",
    "FeatureDataset",
    "GroundTruth",
    "ListedVideo",
    "Split",
    "TestFeatures",
    "TrainCache",
    "Video",
    "build_train_cache",
    "json_ground_truth",
    "load_dataset",
    "load_ground_truth",
    "load_test_features",
    "make_split",
    "npy_ground_truth",
    "parse_list",
    "read_ucf_mat",
    "read_ucf_txt",
    "read_xd_txt",
    "resample_segments",
    "ucf_mat_ground_truth",
    "ucf_txt_ground_truth",
    "with_labels",
    "xd_txt_ground_truth",
]
