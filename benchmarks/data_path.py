"""Benchmark 2 of issue #6, ``data_path``: what a trial pays to get its training data, ours against the authors'.

    python benchmarks/data_path.py [--quick] [--threads 1] [--width 64] [--wide-videos 48] [--workdir DIR]
        [--keep] [--json PATH] [--results [PATH]]

Side by side, each measurement in a fresh Python process (so peak memory is that measurement's own):

1. **One-off preparation** (``prepare_data`` on an empty cache: lists, every feature file, the resampled training
   cache, the test cache, the ground truth), on synthetic datasets in the real layouts: ``demo`` (the README
   demo), ``ucf`` (UCF-Crime's 1,610 training and 290 test videos with the real test lengths and training lengths
   drawn from them, 10 crops, at a reduced width ``--width``), ``xd`` (XD-Violence's 3,954 + 800 videos, 5 crop
   files each, narrow) and ``ucf-wide`` (``--wide-videos`` UCF videos of real lengths at the real 10 x 2048). The
   real-width cost of the full UCF cache is extrapolated linearly in bytes from ``ucf-wide`` (and, as a check,
   from ``ucf``): generating 30 GB of features is not a benchmark of a few minutes.
2. **Trial start**: from the trial's first line (torch already imported; the import is shown apart) to the end
   of its first training step, via the real ``vad.training.train``: opening the sweep's prepared data with
   ``open_prepared`` (what a trial does: the manifest), with ``prepare_data`` (re-validating the dataset), and the
   authors' way (read the list, build the model; the first batch loads its videos' files).
3. **One epoch** (``--steps`` steps of ``--batch`` + ``--batch`` videos, RTFM scaled to the width) reading batches
   from the shared cache versus the authors' loader (every step ``np.load``s each video's feature file and
   resamples it to 32 segments crop by crop, as RTFM's ``Dataset.__getitem__``); the same batches, checked equal.
   At the real width the data part alone is timed on ``ucf-wide``.
4. **Sharing**: two trials at once, each having read the whole training array; ``/proc/<pid>/smaps`` of each:
   the pages of the memory-mapped cache file are counted once between them (PSS), while a private in-RAM copy
   per trial counts twice.

Feature files are read from the page cache (they were just generated); from a cold disk add bytes / disk speed to
the authors' per-step reads and to the one-off build. ``--quick`` runs tiny shapes in seconds (CI): its numbers
mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `vad` and `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.proc import gib, mapping_memory, own_memory, shared_memory  # noqa: E402
from benchmarks.tables import format_table, markdown_table  # noqa: E402

BASE_CONFIG = REPO_ROOT / "configs" / "rtfm_ucf.yaml"
RESULT_PREFIX = "RESULT "
UCF_TRAIN_VIDEOS = 1610
REAL_WIDTH, REAL_CROPS = 2048, 10
START_TARGET_S = 2.0


@dataclass(frozen=True)
class Settings:
    """The sizes of one run (default or ``--quick``)."""

    width: int
    crops: int
    ucf_videos: int | None
    """Training videos of the ``ucf`` dataset (None: all 1,610 of the reference list)."""
    ucf_test_videos: int | None
    xd_videos: int | None
    """0 skips the ``xd`` dataset."""
    xd_test_videos: int | None
    xd_width: int
    wide_videos: int
    wide_width: int
    wide_crops: int
    like_reference: bool
    steps: int
    batch: int
    wide_steps: int
    demo: str
    repeats: int
    """Fresh processes per trial-start variant (the median is shown)."""


DEFAULT = Settings(width=64, crops=REAL_CROPS, ucf_videos=None, ucf_test_videos=None, xd_videos=None,
                   xd_test_videos=None, xd_width=16, wide_videos=48, wide_width=REAL_WIDTH, wide_crops=REAL_CROPS,
                   like_reference=True, steps=50, batch=32, wide_steps=5, demo="synthetic:demo",
                   repeats=3)
QUICK = Settings(width=16, crops=2, ucf_videos=24, ucf_test_videos=6, xd_videos=8, xd_test_videos=4, xd_width=8,
                 wide_videos=4, wide_width=128, wide_crops=2, like_reference=False, steps=2, batch=2, wide_steps=1,
                 demo="synthetic:tiny", repeats=1)


# ============================================================================================ the children
# Each measurement runs in its own process: `data_path.py --child '<json spec>'` prints one RESULT line.

class _FirstStepDone(Exception):
    """Raised by the instrumented batch fetch at the second batch: the first training step is over."""


def _config(spec: dict[str, Any]) -> Any:
    """RTFM with the paper's optimiser and batch, scaled to the dataset's width; one epoch of ``steps``."""
    from vad.config import TrainConfig

    width, crops = spec["width"], spec["crops"]
    return TrainConfig.from_yaml(BASE_CONFIG, {
        "data.dataset": spec["dataset"], "model.feature_dim": width, "model.n_crops": crops,
        "model.hidden_dim": max(4, width // 4), "model.head_dims": [max(4, width // 4), max(2, width // 16)],
        "train.epochs": 1, "train.steps_per_epoch": spec["steps"], "train.batch_per_class": spec["batch"],
        "train.num_threads": spec["threads"], "train.device": "cpu", "train.evaluate_selected": "on_improvement",
    })


def _timed_imports() -> tuple[float, float]:
    """Seconds to import torch and the training code, and of torch's lazy set-up on the first optimizer (it
    imports ``torch._dynamo``): both paid once per process, i.e. once per Ray worker, which reuses its process
    for the next trials."""
    started = time.perf_counter()
    import torch

    import vad.training  # noqa: F401
    imported = time.perf_counter()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    return imported - started, time.perf_counter() - imported


def child_prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """``prepare_data`` on whatever the cache holds (the parent empties it for the one-off cost)."""
    from vad.prepare import prepare_data

    config = _config(spec)
    started = time.perf_counter()
    prepared = prepare_data(config)
    seconds = time.perf_counter() - started
    files = [file for video in prepared.dataset.train + prepared.dataset.test for file in video.files]
    return {"seconds": seconds, "phases": prepared.seconds, "files": len(files),
            "bytes_read": sum(os.path.getsize(file) for file in files),
            "train_bytes": sum(os.path.getsize(file) for video in prepared.dataset.train for file in video.files),
            "train_snippets": int(sum(prepared.dataset.video_length(video) for video in prepared.dataset.train)),
            "train_videos": len(prepared.dataset.train), "cache_bytes": int(prepared.train_cache.features.nbytes),
            "memory": own_memory()}


def child_start(spec: dict[str, Any]) -> dict[str, Any]:
    """A trial of ours until its first step is done: data (``manifest`` or ``prepare``), then ``vad.training.train``,
    timed at the moment it starts training (``train_one_epoch`` entered) and after its first optimizer step."""
    import_s, warmup_s = _timed_imports()
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import vad.training
    from vad.prepare import open_prepared, prepare_data

    config = _config(spec)
    marks: dict[str, float] = {}
    original = vad.training.train_one_epoch

    def entered(*args: Any, **kwargs: Any) -> Any:
        marks["training"] = time.perf_counter()
        return original(*args, **kwargs)

    def stepped(optimizer: Any, args: Any, kwargs: Any) -> None:
        marks["first_step_done"] = time.perf_counter()
        raise _FirstStepDone

    vad.training.train_one_epoch = entered
    hook = register_optimizer_step_post_hook(stepped)
    started = time.perf_counter()
    try:
        prepared = open_prepared(config) if spec["how"] == "manifest" else prepare_data(config)
        marks["data_open"] = time.perf_counter()
        vad.training.train(config, lambda metrics, folder: None, out_dir=Path(spec["out"]), prepared=prepared)
    except _FirstStepDone:
        pass
    finally:
        vad.training.train_one_epoch = original
        hook.remove()
    return {"import_s": import_s, "warmup_s": warmup_s, "data_s": marks["data_open"] - started,
            "to_training_s": marks["training"] - started,
            "to_first_step_s": marks["first_step_done"] - started,
            "first_step_s": marks["first_step_done"] - marks["training"],
            "phases": prepared.seconds, "memory": own_memory()}


def authors_resample(crop: Any, n_segments: int) -> Any:
    """One crop ``(T, C)`` -> ``(n_segments, C)``: the authors' rule, a Python loop over the segments (the mean of
    the snippets between integer ``linspace`` bounds, or the bound's snippet when the range is empty)."""
    import numpy as np

    bounds = np.linspace(0, len(crop), n_segments + 1).astype(np.int64)
    out = np.zeros((n_segments, crop.shape[1]), dtype=np.float32)
    for i in range(n_segments):
        out[i] = crop[bounds[i]:bounds[i + 1]].mean(0) if bounds[i] != bounds[i + 1] else crop[bounds[i]]
    return out


class AuthorsLoader:
    """Batches the way the authors' ``Dataset.__getitem__`` makes them: each step ``np.load``s every video's whole
    ``(T, N, C)`` feature file, converts it to float32, and resamples each crop to ``n_segments``."""

    def __init__(self, files: list[Path], n_segments: int) -> None:
        self.files, self.n_segments = files, n_segments

    @classmethod
    def from_list(cls, list_file: Path, feature_root: Path, n_segments: int) -> AuthorsLoader:
        """Read the train list as the authors do (one path per line); their files live in ``feature_root``."""
        lines = [line.strip() for line in open(list_file) if line.strip()]
        return cls([feature_root / line.replace("\\", "/").rsplit("/", 1)[-1] for line in lines], n_segments)

    def video(self, row: int) -> Any:
        import numpy as np

        features = np.array(np.load(self.files[row], allow_pickle=True), dtype=np.float32)  # (T, N, C)
        features = features.transpose(1, 0, 2)  # (N, T, C)
        return np.array([authors_resample(crop, self.n_segments) for crop in features])

    def batch(self, rows: Any) -> Any:
        import numpy as np
        import torch

        return torch.from_numpy(np.stack([self.video(int(row)) for row in rows]))


def child_start_authors(spec: dict[str, Any]) -> dict[str, Any]:
    """The authors' trial until its first step is done: read the list, build model/loss/optimiser, load and
    resample the first batch's files, one step (the same batch rows as ours)."""
    import_s, warmup_s = _timed_imports()
    import torch

    from vad.builders import build_optimizer
    from vad.data import DatasetConfig
    from vad.models import create_loss, create_model
    from vad.prepare import open_prepared, resolve_dataset

    config = _config(spec)
    torch.set_num_threads(spec["threads"])
    prepared = open_prepared(config)  # only to train on the batch ours trains on first (not timed)
    rows = _epoch_batches(config, prepared)[0]
    labels = torch.from_numpy(prepared.train_cache.labels[rows])
    started = time.perf_counter()
    dataset = DatasetConfig.from_yaml(resolve_dataset(config.data.dataset, config.source))
    loader = AuthorsLoader.from_list(dataset.train_list, dataset.feature_root, config.data.n_segments)
    data_open = time.perf_counter()
    torch.manual_seed(0)
    model = create_model("rtfm", **config.model)
    criterion = create_loss("rtfm", **config.loss)
    optimizer = build_optimizer(model, config)
    training = time.perf_counter()
    _step(model, criterion, optimizer, loader.batch(rows), labels)
    done = time.perf_counter()
    return {"import_s": import_s, "warmup_s": warmup_s, "data_s": data_open - started,
            "to_training_s": training - started, "to_first_step_s": done - started,
            "first_step_s": done - training, "memory": own_memory()}


def _epoch_batches(config: Any, prepared: Any) -> list[Any]:
    """The training rows of each batch of epoch 1, as ``vad.training`` draws them."""
    import numpy as np

    from vad.builders import epoch_batches
    from vad.data import BalancedBatchSampler

    sampler = BalancedBatchSampler(np.asarray(prepared.train_cache.labels)[prepared.train_rows],
                                   config.train.batch_per_class, seed=config.train.seed)
    return [prepared.train_rows[rows] for rows in epoch_batches(sampler, 1, config.train.steps_per_epoch)]


def _step(model: Any, criterion: Any, optimizer: Any, x: Any, labels: Any) -> None:
    model.train()
    loss, _ = criterion(model(x), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def child_epoch(spec: dict[str, Any]) -> dict[str, Any]:
    """One epoch of ``steps`` batches from the cache (``loader=cache``) or the authors' loader, with the model
    (``train=True``) or the data part alone; the first batch of both loaders is compared."""
    import numpy as np
    import torch

    from vad.builders import build_optimizer
    from vad.engine import rows_to_batch
    from vad.models import create_loss, create_model
    from vad.prepare import open_prepared
    from vad.scoring import as_tensor

    config = _config(spec)
    torch.set_num_threads(spec["threads"])
    prepared = open_prepared(config)
    batches = _epoch_batches(config, prepared)
    labels = torch.from_numpy(np.asarray(prepared.train_cache.labels, dtype=np.int64))
    features = as_tensor(prepared.train_cache.features)
    cpu = torch.device("cpu")
    if spec["loader"] == "cache":
        def fetch(rows: np.ndarray) -> torch.Tensor:
            return rows_to_batch(features, torch.from_numpy(rows), cpu)
    else:
        loader = AuthorsLoader([video.files[0] for video in prepared.dataset.train], config.data.n_segments)
        fetch = loader.batch
    model = criterion = optimizer = None
    if spec["train"]:
        torch.manual_seed(0)
        model = create_model("rtfm", **config.model)
        criterion = create_loss("rtfm", **config.loss)
        optimizer = build_optimizer(model, config)
    data_s = 0.0
    started = time.perf_counter()
    first = None
    for rows in batches:
        fetched = time.perf_counter()
        x = fetch(rows)
        data_s += time.perf_counter() - fetched
        if first is None:
            first = x
        if model is not None:
            _step(model, criterion, optimizer, x, labels[torch.from_numpy(rows)])
    total_s = time.perf_counter() - started
    reference = rows_to_batch(features, torch.from_numpy(batches[0]), cpu)
    return {"data_s": data_s, "total_s": total_s, "steps": len(batches),
            "videos": int(sum(len(rows) for rows in batches)),
            "max_abs_diff_vs_cache": float((first - reference).abs().max()), "memory": own_memory()}


def child_hold(spec: dict[str, Any]) -> None:
    """Read the whole training array (memory-mapped, as trials do, or copied into private RAM), say READY, and
    hold it until the parent has measured this process (a line on stdin)."""
    import numpy as np
    import torch

    from vad.prepare import open_prepared
    from vad.scoring import as_tensor

    torch.set_num_threads(1)
    prepared = open_prepared(_config(spec))
    anon_before = own_memory().get("rss_anon", 0)
    array = prepared.train_cache.features
    if spec["mode"] == "private":
        array = np.array(array)  # what loading the training set into each trial's memory would cost
    features = as_tensor(array)
    total = 0.0
    for start in range(0, features.shape[0], 64):  # every row through the engine's batch path
        total += float(features.index_select(0, torch.arange(start, min(start + 64, features.shape[0]))).sum())
    anon_added = own_memory().get("rss_anon", 0) - anon_before
    print(f"READY {prepared.train_cache.path} {features.numel() * 4} {anon_added} {total:.3g}", flush=True)
    sys.stdin.readline()


CHILDREN = {"prepare": child_prepare, "start": child_start, "start_authors": child_start_authors,
            "epoch": child_epoch}


def run_child(kind: str, spec: dict[str, Any], env: dict[str, str], in_process: bool = False) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (``in_process``: in this one, for --quick); its result."""
    if in_process:
        return json.loads(json.dumps(CHILDREN[kind](spec)))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps({"kind": kind, **spec})]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"data_path child {kind} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}"
                       f"\n{proc.stderr[-4000:]}")


def measure_sharing(spec: dict[str, Any], mode: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """Two trials holding the training array at once; the parent reads each one's ``smaps``."""
    args = [sys.executable, str(Path(__file__).resolve()), "--child",
            json.dumps({"kind": "hold", **spec, "mode": mode})]
    errors = [tempfile.TemporaryFile(mode="w+") for _ in range(2)]  # a file: a chatty child never blocks
    procs = [subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=error, text=True,
                              env=env, cwd=REPO_ROOT) for error in errors]
    try:
        ready = []
        for proc, error in zip(procs, errors):
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                proc.wait(timeout=60)
                error.seek(0)
                raise RuntimeError(f"data_path sharing child failed: {line}{error.read()[-4000:]}")
            _, path, nbytes, anon_added, _ = line.split()
            ready.append((path, int(nbytes), int(anon_added)))
        rows = []
        for proc, (path, nbytes, anon_added) in zip(procs, ready):
            rows.append({"mode": mode, "pid": proc.pid, "array_bytes": nbytes, "anon_added": anon_added,
                         "total": shared_memory(proc.pid), "array_mapping": mapping_memory(proc.pid, path)})
        return rows
    finally:
        for proc in procs:
            try:
                proc.stdin.write("\n")
                proc.stdin.close()
            except OSError:  # it died already
                pass
        for proc in procs:
            proc.wait(timeout=120)
        for error in errors:
            error.close()


# ============================================================================================ the parent

@dataclass
class DatasetCase:
    name: str
    spec: str
    """``synthetic:<preset>`` or a dataset.yaml path."""
    width: int
    crops: int
    layout: str
    generate_s: float | None = None


def make_datasets(settings: Settings, work: Path) -> list[DatasetCase]:
    """Generate the benchmark's datasets under ``work`` (timed; the feature files stay in the page cache)."""
    from vad.data.synthetic import (
        PRESETS,
        default_reference_dir,
        ensure_synthetic,
        generate_synthetic,
        reference_test_videos,
    )

    like = None
    if settings.like_reference:
        try:
            reference_test_videos("ucf")
            reference_test_videos("xd")
            like = "reference"
        except (FileNotFoundError, OSError):
            print(f"(no reference files in {default_reference_dir()}: video lengths are drawn, not the real ones)")
    preset = settings.demo.split(":", 1)[1]
    started = time.perf_counter()
    ensure_synthetic(preset)
    cases = [DatasetCase("demo", settings.demo, PRESETS[preset]["feature_dim"], PRESETS[preset]["n_crops"], "ucf",
                         time.perf_counter() - started)]
    plans = [("ucf", "ucf", settings.ucf_videos, settings.ucf_test_videos, settings.width, settings.crops),
             ("xd", "xd", settings.xd_videos, settings.xd_test_videos, settings.xd_width, 5 if like else 2),
             ("ucf-wide", "ucf", settings.wide_videos, 2, settings.wide_width, settings.wide_crops)]
    for name, layout, videos, test_videos, width, crops in plans:
        if videos == 0:
            continue
        started = time.perf_counter()
        counts = {"videos": videos, "test_videos": test_videos}
        if like is None:  # drawn lengths need counts; the medians roughly match the real sets
            counts = {"videos": videos or (UCF_TRAIN_VIDEOS if layout == "ucf" else 3954),
                      "test_videos": test_videos or (290 if layout == "ucf" else 800),
                      "length_median": 150 if layout == "ucf" else 80}
        path = generate_synthetic(work / "datasets" / name, layout=layout, n_crops=crops, feature_dim=width,
                                  like=like, name=f"bench-{name}", **counts)
        cases.append(DatasetCase(name, str(path), width, crops, layout, time.perf_counter() - started))
        print(f"   generated {name}: {width}-d x {crops} crops in {cases[-1].generate_s:.1f}s", flush=True)
    return cases


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median ``key`` (its own numbers, so they add up), with every run's ``key`` kept."""
    ordered = sorted(runs, key=lambda run: run[key])
    return {**ordered[len(ordered) // 2], f"all_{key}": [run[key] for run in runs]}


def _spec(case: DatasetCase, settings: Settings, threads: int, work: Path, **extra: Any) -> dict[str, Any]:
    return {"dataset": case.spec, "width": case.width, "crops": case.crops, "steps": settings.steps,
            "batch": settings.batch, "threads": threads, "out": str(work / "runs" / case.name), **extra}


def run(settings: Settings, threads: int, work: Path, in_process: bool = False) -> dict[str, Any]:
    """Every measurement; ``in_process`` runs them in this interpreter (fast, but the memory figures are then
    cumulative: for --quick) except the sharing one, which needs two processes."""
    env = {**os.environ, "VAD_CACHE_DIR": str(work / "cache"), "PYTHONPATH": str(REPO_ROOT)}
    os.environ["VAD_CACHE_DIR"] = env["VAD_CACHE_DIR"]

    def measure(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        return run_child(kind, spec, env, in_process)

    for kind in ("features", "splits", "prepared", "s3r-dictionaries"):  # a reused --workdir starts cold too
        shutil.rmtree(work / "cache" / kind, ignore_errors=True)
    print("== data_path: generating the datasets", flush=True)
    cases = make_datasets(settings, work)
    report: dict[str, Any] = {"settings": asdict(settings), "threads": threads,
                              "datasets": {c.name: asdict(c) for c in cases}}

    print("== one-off preparation (empty cache)", flush=True)
    prepare = {}
    for case in cases:  # each dataset is new: its caches are built here
        prepare[case.name] = measure("prepare", _spec(case, settings, threads, work))
    report["prepare"] = prepare

    print(f"== trial start (after the one-off preparation), median of {settings.repeats}", flush=True)
    start = {}
    for case in cases:
        if case.name == "ucf-wide":
            continue
        variants = [("manifest", "start"), ("prepare", "start")] + ([("authors", "start_authors")]
                                                                   if case.layout == "ucf" else [])
        for how, kind in variants:
            runs = [measure(kind, _spec(case, settings, threads, work, how=how)) for _ in range(settings.repeats)]
            start[(case.name, how)] = _median_run(runs, "to_training_s")
    report["start"] = {f"{name}/{how}": value for (name, how), value in start.items()}

    print("== one epoch: shared cache vs the authors' per-video files", flush=True)
    epoch = {}
    ucf = next(c for c in cases if c.name == "ucf")
    wide = next(c for c in cases if c.name == "ucf-wide")
    for loader in ("cache", "authors"):
        epoch[("ucf", loader)] = measure("epoch", _spec(ucf, settings, threads, work, loader=loader, train=True))
        wide_spec = {**_spec(wide, settings, threads, work, loader=loader, train=False), "steps": settings.wide_steps}
        epoch[("ucf-wide", loader)] = measure("epoch", wide_spec)
    report["epoch"] = {f"{name}/{loader}": value for (name, loader), value in epoch.items()}

    print("== two trials holding the training array", flush=True)
    sharing = []
    for mode in ("mapped", "private"):
        sharing += measure_sharing(_spec(ucf, settings, threads, work), mode, env)
    report["sharing"] = sharing
    report["tables"] = tables(report, cases, settings)
    return report


def mib(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else round(n_bytes / 2**20, 1)


def tables(report: dict[str, Any], cases: list[DatasetCase], settings: Settings) -> dict[str, Any]:
    """The printed tables (headers + rows) and the derived figures."""
    out: dict[str, Any] = {}
    prepare, start, epoch = report["prepare"], report["start"], report["epoch"]

    rows = []
    for case in cases:
        p = prepare[case.name]
        phases = p["phases"]
        rows.append([case.name, f"{p['train_videos']}", f"{case.width}x{case.crops}", p["files"],
                     p["bytes_read"] / 2**20, phases.get("train_cache"), phases.get("test"), p["seconds"],
                     p["bytes_read"] / 2**20 / p["seconds"], mib(p["memory"]["peak_rss"])])
    out["prepare"] = (["dataset", "train videos", "width x crops", "files", "MiB read", "train cache s",
                       "test cache s", "total s", "MiB/s", "peak RSS MiB"], rows)

    # Extrapolation to UCF-Crime's 1,610 training videos at 10 x 2048 (the ucf set has their lengths).
    ucf, wide = prepare["ucf"], prepare["ucf-wide"]
    full_bytes = ucf["train_snippets"] * REAL_CROPS * REAL_WIDTH * 4
    per_byte_wide = wide["phases"]["train_cache"] / wide["train_bytes"]
    per_byte_narrow = ucf["phases"]["train_cache"] / ucf["train_bytes"]
    out["extrapolation"] = {
        "ucf_train_videos": ucf["train_videos"], "ucf_train_snippets": ucf["train_snippets"],
        "full_feature_bytes": full_bytes,
        "full_cache_bytes": ucf["train_videos"] * REAL_CROPS * 32 * REAL_WIDTH * 4,
        "train_cache_s_from_wide": full_bytes * per_byte_wide,
        "train_cache_s_from_narrow": full_bytes * per_byte_narrow,
    }

    rows = []
    for key, value in start.items():
        name, how = key.split("/")
        rows.append([name, how, value["import_s"], value["warmup_s"], value["data_s"], value["to_training_s"],
                     value["first_step_s"], value["to_first_step_s"], mib(value["memory"]["peak_rss"]),
                     mib(value["memory"].get("rss_anon")), mib(value["memory"].get("rss_file"))])
    out["start"] = (["dataset", "data via", "import s", "torch init s", "data s", "to training s", "1st step s",
                     "to 1st step done s", "peak RSS MiB", "anon MiB", "file MiB"], rows)

    rows = []
    for name in ("ucf", "ucf-wide"):
        cache, authors = epoch[f"{name}/cache"], epoch[f"{name}/authors"]
        for loader, value in (("cache", cache), ("authors", authors)):
            rows.append([name, loader, value["steps"], value["videos"], value["data_s"],
                         value["total_s"] if name == "ucf" else None, value["data_s"] / value["steps"],
                         mib(value["memory"]["peak_rss"]), mib(value["memory"].get("rss_anon")),
                         value["max_abs_diff_vs_cache"]])
        out[f"epoch_ratio_{name}"] = {"data": authors["data_s"] / cache["data_s"],
                                      "total": authors["total_s"] / cache["total_s"]}
    out["epoch"] = (["dataset", "loader", "steps", "videos", "data s", "epoch s (with model)", "data s/step",
                     "peak RSS MiB", "anon MiB", "max abs diff vs cache"], rows)
    paper_steps = DEFAULT.steps
    wide_cache, wide_authors = epoch["ucf-wide/cache"], epoch["ucf-wide/authors"]
    out["paper_epoch_data_s"] = {"cache": wide_cache["data_s"] / wide_cache["steps"] * paper_steps,
                                 "authors": wide_authors["data_s"] / wide_authors["steps"] * paper_steps}

    rows = []
    for entry in report["sharing"]:
        total, mapping = entry["total"], entry["array_mapping"]
        rows.append([entry["mode"], entry["pid"], mib(entry["array_bytes"]), mib(total.get("rss")),
                     mib(total.get("pss")), mib(entry["anon_added"]), mib(mapping.get("rss")),
                     mib(mapping.get("pss"))])
    out["sharing"] = (["array held", "pid", "array MiB", "RSS MiB", "PSS MiB", "anon added MiB",
                       "cache-file RSS MiB", "cache-file PSS MiB"], rows)
    copies = {}
    for mode in ("mapped", "private"):
        entries = [e for e in report["sharing"] if e["mode"] == mode]
        array = entries[0]["array_bytes"]
        if mode == "mapped":
            held = sum(e["array_mapping"].get("pss", 0) for e in entries)
        else:  # the private copy is anonymous memory: what reading it added to each process's
            held = sum(e["anon_added"] for e in entries)
        copies[mode] = held / array if array else None
    out["copies_of_array"] = copies

    manifest_starts = {k.split("/")[0]: v["to_training_s"] for k, v in start.items() if k.endswith("/manifest")}
    out["targets"] = {
        "start_under_2s": {name: seconds < START_TARGET_S for name, seconds in manifest_starts.items()},
        "one_copy_between_trials": copies["mapped"] is not None and copies["mapped"] < 1.5,
    }
    return out


def render(report: dict[str, Any], markdown: bool = False) -> str:
    """The tables and conclusions: fixed-width text for the terminal, or Markdown for RESULTS.md."""
    table = markdown_table if markdown else format_table
    t = report["tables"]
    ex = t["extrapolation"]
    r_ucf, r_wide = t["epoch_ratio_ucf"], t["epoch_ratio_ucf-wide"]
    copies = t["copies_of_array"]
    parts = [
        "One-off preparation (prepare_data on an empty cache; feature files in the page cache):",
        table(*t["prepare"]),
        f"Extrapolated to UCF-Crime's {ex['ucf_train_videos']} training videos ({ex['ucf_train_snippets']:,} "
        f"snippets) at {REAL_CROPS} x {REAL_WIDTH}: {gib(ex['full_feature_bytes'])} GiB of feature files -> a "
        f"{gib(ex['full_cache_bytes'])} GiB cache in about {ex['train_cache_s_from_wide']:.0f} s (linear in bytes "
        f"from ucf-wide's rate; {ex['train_cache_s_from_narrow']:.0f} s from the narrow ucf's), once per dataset.",
        "",
        "Trial start, from the trial's first line ('to training': ready to train; the first step then fetches "
        "its batch). Once per process, before, "
        "shown apart: importing torch and the training code, and torch's lazy set-up on the first optimizer "
        "(a Ray worker pays them for its first trial only):",
        table(*t["start"]),
        "",
        "One epoch, the same batches from the shared cache and from the authors' per-video files "
        "(ucf: RTFM scaled to the width, with the model; ucf-wide: 10 x 2048, data only):",
        table(*t["epoch"]),
        f"Authors' loader / cache: data {r_ucf['data']:.1f}x, whole epoch {r_ucf['total']:.1f}x (ucf); data "
        f"{r_wide['data']:.1f}x at 10 x 2048 (ucf-wide). A paper epoch (50 steps of 32+32) at 10 x 2048 spends "
        f"{t['paper_epoch_data_s']['authors']:.1f} s reading features the authors' way and "
        f"{t['paper_epoch_data_s']['cache']:.2f} s from the cache.",
        "",
        "Two trials at once, each having read the whole training array (/proc/<pid>/smaps):",
        table(*t["sharing"]),
        f"Copies of the training array held between the two trials: {copies['mapped']:.2f} memory-mapped "
        f"(the cache file's PSS summed), {copies['private']:.2f} as private copies (their anonymous memory).",
        "",
        "Targets: trial ready to train in under 2 s after the one-off preparation: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in t["targets"]["start_under_2s"].items())
        + f"; one copy of the training array per node: {'yes' if t['targets']['one_copy_between_trials'] else 'NO'}.",
    ]
    return ("\n\n" if markdown else "\n").join(part for part in parts if part or not markdown)


def results_section(report: dict[str, Any]) -> str:
    from benchmarks.results_file import machine_summary, stamp

    s = report["settings"]
    load = report["load_average"]
    header = (f"Run {stamp()} with `python benchmarks/data_path.py --results` ({report['threads']} torch thread(s) "
              f"per trial) on {machine_summary()}; load average {load[0]:.1f} before, {load[1]:.1f} after (the "
              f"machine was shared). Datasets: synthetic, real layouts; `ucf` = "
              f"{report['tables']['extrapolation']['ucf_train_videos']} training videos at {s['width']} x "
              f"{s['crops']}, `ucf-wide` = {s['wide_videos']} videos at {s['wide_width']} x {s['wide_crops']}.")
    return header + "\n\n" + render(report, markdown=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run on tiny shapes (CI)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial (a sweep's cpus_per_trial)")
    parser.add_argument("--width", type=int, default=None, help="feature width of the ucf and demo-scale sets")
    parser.add_argument("--wide-videos", type=int, default=None, help="videos of the 10 x 2048 ucf-wide set")
    parser.add_argument("--workdir", type=Path, default=None, help="where datasets and caches go (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements as JSON")
    parser.add_argument("--results", nargs="?", const=str(REPO_ROOT / "benchmarks" / "RESULTS.md"), default=None,
                        help="write the '## data_path' section of RESULTS.md (default path: benchmarks/RESULTS.md)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        if spec["kind"] == "hold":
            child_hold(spec)
            return None
        print(RESULT_PREFIX + json.dumps(CHILDREN[spec["kind"]](spec)), flush=True)
        return None
    settings = QUICK if args.quick else DEFAULT
    if args.width:
        settings = Settings(**{**asdict(settings), "width": args.width})
    if args.wide_videos:
        settings = Settings(**{**asdict(settings), "wide_videos": args.wide_videos})
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="wsvad-data-path-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    try:
        report = run(settings, args.threads, work, in_process=args.quick)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["quick"] = args.quick
    report["load_average"] = [load_before, os.getloadavg()[0]]
    from benchmarks.results_file import publish

    publish(report, render(report), section="data_path", results_section=results_section, json_path=args.json,
            results_path=args.results)
    return report


if __name__ == "__main__":
    main()
