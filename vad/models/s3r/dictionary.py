"""S3R's task-specific dictionary, learned offline from the normal training videos and cached on disk.

As in the authors' ``data/ucf-crime/ucf_crime_dictionary_learning.py``: one vector per normal training video (its
features averaged over crops and time), ``V`` vectors of width ``C`` stacked as the columns of a ``(C, V)`` matrix
(the C channels are the *samples*, the videos the *features*), scikit-learn ``MiniBatchDictionaryLearning`` with
``n_components = round(ratio * V)`` atoms, ``batch_size=32``, ``random_state=42``, OMP transform with 2 non-zero
coefficients; the dictionary is the transposed transform of that matrix, ``(n_atoms, C)``.

"100 iterations": the authors ran scikit-learn 0.24, whose ``n_iter=100`` meant 100 mini-batches. Current
scikit-learn removed ``n_iter``; its ``max_iter`` counts whole passes over the data and adds early stopping. We
keep the authors' meaning: :func:`fit_dictionary` runs exactly ``n_iter`` mini-batch steps of the current
algorithm (``partial_fit`` on the same shuffled, cycled batches and the same random stream as ``fit``, which it
equals step for step), from the same SVD initialisation. (The per-step update itself changed in scikit-learn 1.1,
so no current version reproduces the authors' file bit for bit.)
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable
from importlib.metadata import version
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vad.data.cache_io import cache_dir, cached_array

NONZERO_COEFS = 2
"""Non-zero coefficients per channel in the OMP transform (the authors' ``transform_n_nonzero_coefs``)."""
CACHE_FOLDER = "s3r-dictionaries"
_FORMAT_VERSION = 1


def normal_video_vectors(features: np.ndarray | Iterable[np.ndarray], *, chunk: int = 64) -> np.ndarray:
    """One vector per video: ``(V, N, T, C)`` features (a memmap is fine) -> ``(V, C)`` float32 means over crops
    and time. Also takes an iterable of per-video arrays ``(..., C)``, each averaged over all but its last axis."""
    if isinstance(features, np.ndarray):
        if features.ndim != 4:
            raise ValueError(f"normal_video_vectors: expected features of shape (V, N, T, C), got {features.shape}")
        if features.shape[0] == 0:
            raise ValueError("normal_video_vectors: no videos (V = 0)")
        vectors = np.empty((features.shape[0], features.shape[3]), dtype=np.float32)
        for start in range(0, features.shape[0], chunk):  # bounded memory on a memmapped cache
            block = np.asarray(features[start : start + chunk], dtype=np.float32)
            vectors[start : start + chunk] = block.mean(axis=(1, 2))
        return _checked(vectors)
    rows = []
    for index, video in enumerate(features):
        video = np.asarray(video, dtype=np.float32)
        if video.ndim == 0 or video.shape[-1] == 0:
            raise ValueError(f"normal_video_vectors: video {index} has shape {video.shape}, expected (..., C)")
        if rows and video.shape[-1] != rows[0].shape[0]:
            raise ValueError(
                f"normal_video_vectors: video {index} has width C={video.shape[-1]}, video 0 has {rows[0].shape[0]}"
            )
        rows.append(video.mean(axis=tuple(range(video.ndim - 1))) if video.ndim > 1 else video)
    if not rows:
        raise ValueError("normal_video_vectors: no videos given")
    return _checked(np.stack(rows).astype(np.float32, copy=False))


def _checked(vectors: np.ndarray) -> np.ndarray:
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        raise ValueError(f"normal video features: video {int(np.argmin(finite))} has NaN or infinite values")
    return vectors


def _as_vectors(normal_video_features: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """``(V, C)`` float32 from ``(V, C)`` vectors, ``(V, N, T, C)`` features or an iterable of per-video arrays."""
    if isinstance(normal_video_features, np.ndarray) and normal_video_features.ndim == 2:
        if normal_video_features.shape[0] == 0:
            raise ValueError("learn_dictionary: no normal videos (V = 0)")
        return _checked(np.ascontiguousarray(normal_video_features, dtype=np.float32))
    if isinstance(normal_video_features, np.ndarray) and normal_video_features.ndim != 4:
        raise ValueError(
            "learn_dictionary: expected (V, C) video vectors or (V, N, T, C) features, got an array of shape "
            f"{normal_video_features.shape}"
        )
    return normal_video_vectors(normal_video_features)


def n_atoms_for(n_videos: int, ratio: float) -> int:
    """``round(ratio * V)`` dictionary atoms (the authors round; at least 2 for the 2-coefficient OMP)."""
    if not 0.0 < ratio:
        raise ValueError(f"learn_dictionary: ratio must be positive, got {ratio}")
    n_atoms = int(np.around(n_videos * ratio))
    if n_atoms < NONZERO_COEFS:
        raise ValueError(
            f"learn_dictionary: ratio {ratio} of {n_videos} normal videos gives {n_atoms} atoms; "
            f"S3R's OMP transform needs at least {NONZERO_COEFS}"
        )
    return n_atoms


def fit_dictionary(
    vectors: np.ndarray,
    *,
    ratio: float = 0.5,
    n_iter: int = 100,
    batch_size: int = 32,
    random_state: int = 42,
    progress: bool = True,
) -> np.ndarray:
    """Learn the dictionary from ``vectors (V, C)`` (no cache): ``(round(ratio * V), C)`` float32.

    Runs ``n_iter`` mini-batch steps of ``batch_size`` channels (see the module docstring).
    """
    from sklearn.decomposition import MiniBatchDictionaryLearning  # imported here: 1 s that trials never need
    from sklearn.utils import gen_batches
    from sklearn.utils.extmath import randomized_svd

    if n_iter < 1 or batch_size < 1:
        raise ValueError(f"learn_dictionary: n_iter and batch_size must be positive, got {n_iter}, {batch_size}")
    vectors = _as_vectors(vectors)
    n_atoms = n_atoms_for(vectors.shape[0], ratio)
    samples = np.ascontiguousarray(vectors.T, dtype=np.float64)  # (C, V): channels are the samples

    # The steps of MiniBatchDictionaryLearning.fit, one random stream for all: SVD init, shuffle, updates.
    rng = np.random.RandomState(random_state)
    _, singular_values, components = randomized_svd(samples, n_atoms, random_state=rng)
    shuffled = samples.copy()
    rng.shuffle(shuffled)
    learner = MiniBatchDictionaryLearning(
        n_components=n_atoms,
        batch_size=batch_size,
        random_state=rng,
        dict_init=singular_values[:, None] * components,
        transform_algorithm="omp",
        transform_n_nonzero_coefs=NONZERO_COEFS,
    )
    batches = itertools.cycle(gen_batches(len(shuffled), batch_size))
    steps = tqdm(range(n_iter), desc=f"S3R dictionary ({n_atoms} atoms)", unit="batch", disable=not progress)
    for _, batch in zip(steps, batches):
        learner.partial_fit(shuffled[batch])
    code = learner.transform(samples)  # (C, n_atoms)
    return np.ascontiguousarray(code.T, dtype=np.float32)


def learn_dictionary(
    normal_video_features: np.ndarray | Iterable[np.ndarray] | Callable[[], np.ndarray],
    *,
    ratio: float = 0.5,
    n_iter: int = 100,
    batch_size: int = 32,
    random_state: int = 42,
    cache: bool = True,
    inputs_key: str | None = None,
    progress: bool = True,
) -> np.ndarray:
    """S3R's ``(n_atoms, C)`` float32 dictionary for these normal training videos, from the disk cache if there.

    ``normal_video_features``: ``(V, C)`` per-video vectors, ``(V, N, T, C)`` features (means over crops and time
    are taken, see :func:`normal_video_vectors`), an iterable of per-video arrays, or a zero-argument callable
    returning one of those. The cache file lives under ``cache_root()/s3r-dictionaries/``, named by a hash of the
    video vectors and every setting (and the scikit-learn version), or by ``inputs_key`` when the caller already
    knows a key for its inputs (e.g. the training-cache key and the split): then a cache hit computes no vectors
    at all (a callable is only called on a miss). Written atomically, so parallel trials never read half a file.
    """
    settings = {"ratio": ratio, "n_iter": n_iter, "batch_size": batch_size, "random_state": random_state}
    if inputs_key is not None and cache:
        path = keyed_cache_path(inputs_key, **settings)
        if path.exists():
            return np.load(path)
    source = normal_video_features() if callable(normal_video_features) else normal_video_features
    vectors = _as_vectors(source)
    if not cache:
        return fit_dictionary(vectors, **settings, progress=progress)
    path = keyed_cache_path(inputs_key, **settings) if inputs_key else dictionary_cache_path(vectors, **settings)
    atoms = cached_array(path, lambda: fit_dictionary(vectors, **settings, progress=progress))
    expected = (n_atoms_for(vectors.shape[0], ratio), vectors.shape[1])
    if atoms.shape != expected or atoms.dtype != np.float32:
        raise ValueError(f"{path}: cached dictionary has shape {atoms.shape} {atoms.dtype}, expected {expected} "
                         "float32; delete the file to rebuild it")
    return atoms


def keyed_cache_path(inputs_key: str, *, ratio: float, n_iter: int, batch_size: int, random_state: int) -> Path:
    """The cache file for inputs named by ``inputs_key`` (instead of a hash of the vectors) and these settings."""
    description = {"format": _FORMAT_VERSION, "sklearn": version("scikit-learn"), "inputs": inputs_key,
                   "ratio": float(ratio), "n_iter": int(n_iter), "batch_size": int(batch_size),
                   "random_state": int(random_state), "transform": ["omp", NONZERO_COEFS]}
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir(CACHE_FOLDER) / f"keyed-{digest}.npy"


def dictionary_cache_path(
    vectors: np.ndarray, *, ratio: float, n_iter: int, batch_size: int, random_state: int
) -> Path:
    """Where :func:`learn_dictionary` caches the dictionary of ``vectors (V, C)`` with these settings."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    description = {
        "format": _FORMAT_VERSION,
        "sklearn": version("scikit-learn"),
        "shape": list(vectors.shape),
        "ratio": float(ratio),
        "n_iter": int(n_iter),
        "batch_size": int(batch_size),
        "random_state": int(random_state),
        "transform": ["omp", NONZERO_COEFS],
    }
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode())
    digest.update(vectors.tobytes())
    return cache_dir(CACHE_FOLDER) / f"{digest.hexdigest()[:32]}.npy"
