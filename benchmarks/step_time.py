"""Benchmark 1 of issue #6, ``step_time``: the time of one training step per model, ours against the authors' way.

    python benchmarks/step_time.py [--quick] [--device cpu|cuda|all] [--models rtfm,mgfn,s3r]
        [--sizes ucf,xd,demo,reference] [--rounds R] [--batch B | --paper-batch] [--threads N]
        [--no-baseline] [--authors-repo MODEL=PATH ...] [--json PATH] [--profile [--profile-rows K]]

For each model and size it times a full training step (forward, loss, backward, optimizer step) of our
implementation and, side by side in the same run (interleaved rounds, best of ``--rounds``), of a baseline that
executes the same model the authors' way (:mod:`benchmarks.authors_pattern`; with ``--authors-repo`` also the
authors' own classes from a checkout, :mod:`benchmarks.authors_repo`). It prints seconds per step and per video,
videos/s, the achieved FLOP/s of forward+backward against the device's float32 matmul peak measured in the same
run, and the speed-up of ours over each baseline.

Sizes (shapes and optimizer from ``configs/``): ``ucf`` = ``configs/<model>_ucf.yaml`` (2048-d, 10 crops, T = 32,
the paper's batch: 32+32 videos, MGFN 16+16); ``xd`` = ``configs/<model>_xd.yaml`` (1024-d, 5 crops);
``demo`` = ``configs/demo.yaml``'s model on the ``synthetic:demo`` shapes (128-d, 3 crops, 8+8 videos);
``reference`` = the issue's reference input (RTFM, 10 crops x 2048, 4+4 videos). On CPU the paper-size rows run
``--batch`` (default 4) videos per class to keep the run to minutes; per-video figures barely depend on it
(``--paper-batch`` runs the paper's). FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one
forward+backward of our implementation (matrix products and convolutions; the baselines do the same arithmetic).
``--quick`` is a seconds-long smoke run on tiny shapes (for CI): its numbers mean nothing. S3R gets a synthetic
dictionary shaped like its OMP codes (:func:`sparse_dictionary`); ``--s3r-dictionary-scale 2`` makes enNormal's
softmax peaked enough to produce subnormal weights, which slow the authors' execution on x86 CPUs.

``--profile`` times nothing: it runs ``torch.profiler`` over ``--rounds`` steps of ours and of the authors' way
(ours only with ``--no-baseline``), each after a warm-up step, and prints both top-op tables and a side-by-side
table of self seconds and calls per step, per op and per GEMM/convolution input shape (:func:`compare_profiles`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `vad` and `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks.authors_pattern import FORWARDS, LOSSES, baseline_input  # noqa: E402
from benchmarks.authors_repo import AuthorsRepoError, load_authors_model, parse_authors_repos  # noqa: E402
from benchmarks.machine import describe_machine, matmul_peak, synchronize  # noqa: E402
from vad.builders import build_optimizer  # noqa: E402
from vad.config import TrainConfig  # noqa: E402
from vad.data.synthetic import PRESETS  # noqa: E402
from vad.models import create_loss, create_model  # noqa: E402

MODELS = ("rtfm", "mgfn", "s3r")
SIZES = ("ucf", "xd", "demo", "reference")
CPU_BATCH = 4
REFERENCE_BATCH = 4
QUICK_OVERRIDES = {
    "rtfm": {"model.feature_dim": 64, "model.n_crops": 2, "model.hidden_dim": 32, "model.head_dims": [16, 8]},
    "mgfn": {"model.feature_dim": 64, "model.n_crops": 2, "model.dims": [16, 32], "model.depths": [1, 1],
             "model.block_types": ["glance", "focus"], "model.dim_head": 8},
    "s3r": {"model.feature_dim": 64, "model.n_crops": 2, "model.n_atoms": 8},
}
IMPL_OURS, IMPL_PATTERN, IMPL_AUTHORS = "ours", "authors' way", "authors' code"


@dataclass
class Case:
    """One row group: a model configuration, its batch and shapes."""

    label: str
    config: TrainConfig
    batch_per_class: int
    n_segments: int
    paper_batch: int

    @property
    def model_name(self) -> str:
        return self.config.model_name


@dataclass
class Timing:
    """Best-of-rounds figures of one implementation on one case (seconds)."""

    impl: str
    fwd_bwd: float
    optimizer: float
    step: float
    cpu: float
    """Process CPU seconds of the step (all threads): less sensitive than wall time to other load on the machine."""
    all_steps: list[float] = field(default_factory=list)


@dataclass
class Row:
    """A printed row: a case, an implementation, and what follows from its timing."""

    device: str
    case: str
    model: str
    impl: str
    videos_per_step: int
    paper_videos_per_step: int
    fwd_bwd_s: float
    optimizer_s: float
    step_s: float
    cpu_s: float
    median_step_s: float
    s_per_video: float
    videos_per_s: float
    gflop_per_video: float
    tflops: float
    peak_fraction: float
    speedup_step: float | None = None
    speedup_fwd_bwd: float | None = None
    note: str = ""


# ----------------------------------------------------------------------------------------------- cases


def load_config(path: Path, overrides: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_yaml(path, overrides=overrides or None)


def build_cases(models: list[str], sizes: list[str], device: torch.device, args: argparse.Namespace) -> list[Case]:
    """The (model, size) cases of this run; the reference row is dropped where a ucf row already is it."""
    configs = REPO_ROOT / "configs"
    cases: list[Case] = []
    if args.quick:
        for name in models:
            config = load_config(configs / f"{name}_ucf.yaml", QUICK_OVERRIDES[name])
            cases.append(Case(f"{name} tiny", config, 2, 8, 2))
        return cases

    def batch_for(paper: int) -> int:
        if args.batch:
            return args.batch
        return paper if (device.type == "cuda" or args.paper_batch) else min(paper, CPU_BATCH)

    for size in sizes:
        if size in ("ucf", "xd"):
            for name in models:
                config = load_config(configs / f"{name}_{size}.yaml", {})
                paper = config.train.batch_per_class
                cases.append(Case(f"{name} {size}", config, batch_for(paper), config.data.n_segments, paper))
        elif size == "demo":
            preset = PRESETS["demo"]
            overrides = {"model.feature_dim": preset["feature_dim"], "model.n_crops": preset["n_crops"]}
            config = load_config(configs / "demo.yaml", overrides)
            paper = config.train.batch_per_class
            cases.append(Case(f"{config.model_name} demo", config, paper, config.data.n_segments, paper))
        elif size == "reference" and "rtfm" in models:
            config = load_config(configs / "rtfm_ucf.yaml", {})
            duplicate = any(c.label == "rtfm ucf" and c.batch_per_class == REFERENCE_BATCH for c in cases)
            if duplicate:
                continue
            cases.append(Case("rtfm reference", config, REFERENCE_BATCH, config.data.n_segments, REFERENCE_BATCH))
    return cases


# ----------------------------------------------------------------------------------------------- one case


def synthetic_batch(case: Case, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (2b, N, T, C)`` non-negative I3D-like features (about half zeros) and labels, normal videos first."""
    generator = torch.Generator().manual_seed(seed)
    model = case.config.model
    shape = (2 * case.batch_per_class, model.get("n_crops", 10), case.n_segments, model.get("feature_dim", 2048))
    x = torch.relu(torch.randn(shape, generator=generator)).to(device)
    labels = torch.tensor([0] * case.batch_per_class + [1] * case.batch_per_class)
    return x, labels


def sparse_dictionary(n_atoms: int, width: int, seed: int = 1) -> torch.Tensor:
    """An S3R-like dictionary ``(n_atoms, C)`` for :func:`synthetic_batch` features.

    Like the OMP codes S3R uses (``vad.models.s3r.dictionary``): two non-zero atoms per channel, of the size of the
    codes fitted on such features, about half the norm of a channel over the ``2 * n_atoms`` normal videos
    (``0.5 * 0.4 * sqrt(2 * n_atoms)``, 0.4 the features' mean; measured on fits of relu(N(0, 1)) features).
    The scale matters: it sets how peaked enNormal's unscaled softmax is.
    """
    generator = torch.Generator().manual_seed(seed)
    scale = 0.5 * 0.4 * math.sqrt(2 * n_atoms)
    dictionary = torch.zeros(n_atoms, width)
    for _ in range(2):
        rows = torch.randint(0, n_atoms, (width,), generator=generator)
        dictionary[rows, torch.arange(width)] = scale * (0.2 + 1.4 * torch.rand(width, generator=generator))
    return dictionary


def build_ours(case: Case, device: torch.device,
               dictionary_scale: float = 1.0) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
    model = create_model(case.model_name, **case.config.model)
    if hasattr(model, "set_dictionary"):
        model.set_dictionary(dictionary_scale * sparse_dictionary(model.n_atoms, model.feature_dim))
    model = model.to(device).train()
    return model, create_loss(case.model_name, **case.config.loss), build_optimizer(model, case.config)


def authors_optimizer(model: torch.nn.Module, case: Case) -> torch.optim.Optimizer:
    """The authors' optimizer: ``torch.optim.Adam(params, lr, weight_decay)`` with PyTorch's defaults."""
    optim = case.config.optim
    return torch.optim.Adam(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)


StepFn = Callable[[], tuple[float, float, float]]


def make_step(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer,
              device: torch.device) -> StepFn:
    """One training step; returns wall seconds of forward+loss+backward and of the optimizer step, and the
    process CPU seconds of the whole step."""

    def step() -> tuple[float, float, float]:
        synchronize(device)
        cpu_start = time.process_time()
        start = time.perf_counter()
        loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        synchronize(device)
        middle = time.perf_counter()
        optimizer.step()
        synchronize(device)
        return middle - start, time.perf_counter() - middle, time.process_time() - cpu_start

    return step


def count_flops(loss_fn: Callable[[], torch.Tensor], model: torch.nn.Module) -> int:
    """Matmul/conv FLOPs of one forward + backward (``FlopCounterMode``)."""
    with FlopCounterMode(display=False) as counter:
        loss = loss_fn()
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def measure_case(case: Case, device: torch.device, args: argparse.Namespace,
                 authors_repos: dict[str, Path]) -> tuple[dict[str, Timing], int, dict[str, str]]:
    """Best-of-rounds timings of every implementation on ``case``, the FLOPs of one step, and skip notes."""
    x, labels = synthetic_batch(case, device)
    model, criterion, optimizer = build_ours(case, device, args.s3r_dictionary_scale)
    b = case.batch_per_class
    steps: dict[str, StepFn] = {IMPL_OURS: make_step(model, lambda: criterion(model(x), labels)[0], optimizer, device)}
    notes: dict[str, str] = {}
    name = case.model_name
    if not args.no_baseline:
        base = copy.deepcopy(model)
        xb = baseline_input(base, x)  # outside the timed step, as the authors' loaders build it
        steps[IMPL_PATTERN] = make_step(
            base, lambda: LOSSES[name](FORWARDS[name](base, xb, b, criterion.k), criterion, b),
            authors_optimizer(base, case), device)
        if name in authors_repos:
            try:
                theirs = load_authors_model(name, authors_repos[name], model, b, case.n_segments, device)
                steps[IMPL_AUTHORS] = make_step(
                    theirs.module, lambda: LOSSES[name](theirs.forward(xb), criterion, b),
                    authors_optimizer(theirs.module, case), device)
            except AuthorsRepoError as exc:
                notes[IMPL_AUTHORS] = str(exc)
    flops = count_flops(lambda: criterion(model(x), labels)[0], model)
    for step in steps.values():  # warm-up: first-step allocations, optimizer state, lazy kernels
        step()
    samples: dict[str, list[tuple[float, float, float]]] = {impl: [] for impl in steps}
    order = list(steps)
    for round_index in range(args.rounds):
        for impl in order if round_index % 2 == 0 else reversed(order):  # alternate to spread drift evenly
            samples[impl].append(steps[impl]())
    timings = {}
    for impl, values in samples.items():
        totals = [f + o for f, o, _ in values]
        timings[impl] = Timing(impl, min(v[0] for v in values), min(v[1] for v in values), min(totals),
                               min(v[2] for v in values), totals)
    return timings, flops, notes


GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
            "aten::convolution_backward", "aten::_fused_adam_")
"""Ops that ``--profile`` also lists by input shape (matrix products, oneDNN convolutions, the fused optimizer)."""


def profile_case(case: Case, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """``--profile``: ``torch.profiler`` over ``args.rounds`` training steps of each implementation on ``case`` (ours
    and, unless ``--no-baseline``, the authors' way), each after one warm-up step, one implementation at a time.

    Returns ``{"tables": {impl: top-ops table}, "ops": {impl: {op: (self s, calls) per step}}, "shapes": {impl:
    {(op, input shapes): (self s, calls) per step}}}`` (``shapes`` only for :data:`GEMM_OPS`).
    """
    from torch.profiler import ProfilerActivity, profile

    x, labels = synthetic_batch(case, device)
    model, criterion, optimizer = build_ours(case, device, args.s3r_dictionary_scale)
    b, name = case.batch_per_class, case.model_name
    steps = {IMPL_OURS: make_step(model, lambda: criterion(model(x), labels)[0], optimizer, device)}
    if not args.no_baseline:
        base = copy.deepcopy(model)
        xb = baseline_input(base, x)
        steps[IMPL_PATTERN] = make_step(
            base, lambda: LOSSES[name](FORWARDS[name](base, xb, b, criterion.k), criterion, b),
            authors_optimizer(base, case), device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    result: dict[str, Any] = {"tables": {}, "ops": {}, "shapes": {}}
    for impl, step in steps.items():
        step()  # warm-up
        with profile(activities=activities, record_shapes=True) as prof:
            for _ in range(args.rounds):
                step()
        per_op = prof.key_averages()
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        result["tables"][impl] = per_op.table(sort_by=sort, row_limit=args.profile_rows)
        result["ops"][impl] = {e.key: (_self_seconds(e, cuda) / args.rounds, e.count / args.rounds) for e in per_op}
        result["shapes"][impl] = {
            (e.key, str([shape for shape in e.input_shapes if shape])): (_self_seconds(e, cuda) / args.rounds,
                                                                        e.count / args.rounds)
            for e in prof.key_averages(group_by_input_shape=True) if e.key in GEMM_OPS}
    return result


def _self_seconds(event: Any, cuda: bool) -> float:
    """An averaged profiler event's self time in seconds (device time on CUDA, CPU time otherwise)."""
    micros = getattr(event, "self_device_time_total", 0.0) if cuda else event.self_cpu_time_total
    return micros / 1e6


def compare_profiles(result: dict[str, Any], rows: int) -> str:
    """Side by side, per op and per GEMM shape: self seconds and calls per step of each implementation and, with
    two, the difference (the second minus ours: positive where ours spends less), sorted by the larger time."""
    impls = list(result["ops"])
    lines = []
    for title, table, width in (("op", result["ops"], 56), ("GEMM / conv op, input shapes", result["shapes"], 100)):
        keys = sorted({key for per_impl in table.values() for key in per_impl},
                      key=lambda key: -max(table[i].get(key, (0.0, 0))[0] for i in impls))[:rows]
        header = f"{title:<{width}}" + "".join(f"  {impl[:12]:>12} s  {'calls':>6}" for impl in impls)
        header += f"  {'diff s':>8}" if len(impls) == 2 else ""
        lines += [header, "-" * len(header)]
        for key in keys:
            label = key if isinstance(key, str) else f"{key[0]} {key[1]}"
            values = [table[i].get(key, (0.0, 0)) for i in impls]
            line = f"{label[:width]:<{width}}" + "".join(f"  {s:>14.3f}  {c:>6.0f}" for s, c in values)
            lines.append(line + (f"  {values[1][0] - values[0][0]:>+8.3f}" if len(impls) == 2 else ""))
        totals = [sum(v[0] for v in table[i].values()) for i in impls]
        line = f"{'total of this table':<{width}}" + "".join(f"  {t:>14.3f}  {'':>6}" for t in totals)
        lines += [line + (f"  {totals[1] - totals[0]:>+8.3f}" if len(impls) == 2 else ""), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- report


def make_rows(case: Case, device: torch.device, timings: dict[str, Timing], flops: int, peak: float,
              notes: dict[str, str]) -> list[Row]:
    videos = 2 * case.batch_per_class
    ours = timings[IMPL_OURS]
    rows = []
    for impl, timing in timings.items():
        achieved = flops / timing.fwd_bwd
        row = Row(
            device=device.type, case=case.label, model=case.model_name, impl=impl, videos_per_step=videos,
            paper_videos_per_step=2 * case.paper_batch, fwd_bwd_s=timing.fwd_bwd, optimizer_s=timing.optimizer,
            step_s=timing.step, cpu_s=timing.cpu, median_step_s=statistics.median(timing.all_steps),
            s_per_video=timing.step / videos,
            videos_per_s=videos / timing.step, gflop_per_video=flops / videos / 1e9, tflops=achieved / 1e12,
            peak_fraction=achieved / peak,
        )
        if impl != IMPL_OURS:
            row.speedup_step = timing.step / ours.step
            row.speedup_fwd_bwd = timing.fwd_bwd / ours.fwd_bwd
        rows.append(row)
    for impl, note in notes.items():
        nan = math.nan
        rows.append(Row(device.type, case.label, case.model_name, impl, videos, 2 * case.paper_batch, nan, nan, nan,
                        nan, nan, nan, nan, nan, nan, nan, note=f"skipped: {note}"))
    return rows


COLUMNS = (  # (Row attribute, title, width, format)
    ("case", "case", 15, "{:<15}"), ("impl", "implementation", 14, "{:<14}"), ("videos_per_step", "videos", 6, "{:>6}"),
    ("fwd_bwd_s", "fwd+bwd s", 9, "{:>9.3f}"), ("optimizer_s", "optim s", 7, "{:>7.3f}"),
    ("step_s", "step s", 7, "{:>7.3f}"), ("cpu_s", "CPU s", 7, "{:>7.2f}"), ("s_per_video", "s/video", 8, "{:>8.4f}"),
    ("videos_per_s", "videos/s", 8, "{:>8.1f}"), ("gflop_per_video", "GFLOP/v", 7, "{:>7.1f}"),
    ("tflops", "TFLOP/s", 7, "{:>7.3f}"), ("peak_fraction", "%peak", 5, "{:>5.0%}"),
    ("speedup_step", "x step", 6, "{:>6.2f}"), ("speedup_fwd_bwd", "x f+b", 5, "{:>5.2f}"),
)


def format_table(rows: list[Row]) -> str:
    """Fixed-width table; ``x step`` / ``x f+b`` = the baseline's time divided by ours (above 1: ours is faster)."""
    header = "  ".join(title.ljust(width) if "<" in fmt else title.rjust(width)
                       for _, title, width, fmt in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        if row.note:
            lines.append(f"{row.case:<15}  {row.impl:<14}  {row.note}")
            continue
        cells = [("-".rjust(width) if getattr(row, key) is None else fmt.format(getattr(row, key)))
                 for key, _, width, fmt in COLUMNS]
        lines.append("  ".join(cells))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run on tiny shapes (CI)")
    parser.add_argument("--device", default="all", choices=("cpu", "cuda", "all"),
                        help="all (default): the CPU, then CUDA when present")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of rtfm,mgfn,s3r")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated subset of ucf,xd,demo,reference")
    parser.add_argument("--rounds", type=int, default=None, help="timed steps per implementation (default 3; quick 1)")
    parser.add_argument("--batch", type=int, default=None, help="videos per class on every paper-size row")
    parser.add_argument("--paper-batch", action="store_true", help="the paper's batch on CPU too (slow)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-baseline", action="store_true", help="time ours only")
    parser.add_argument("--s3r-dictionary-scale", type=float, default=1.0,
                        help="multiply S3R's synthetic dictionary: 2 doubles the spread of enNormal's logits (std 20 "
                             "instead of 10 at UCF size), which leaves ~12%% of its attention weights subnormal")
    parser.add_argument("--authors-repo", action="append", default=[], metavar="MODEL=PATH",
                        help="also time the authors' own classes from a checkout, e.g. rtfm=~/src/RTFM (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the machine as JSON")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing: torch.profiler's top ops of --rounds steps of ours and of the "
                             "authors' way per case, and both side by side per op and per GEMM shape")
    parser.add_argument("--profile-rows", type=int, default=20, help="ops in each --profile table")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


def devices_for(choice: str) -> list[torch.device]:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("step_time: --device cuda asked for a GPU but torch sees none")
    if choice == "all":
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    return [torch.device(choice)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = sorted(set(models) - set(MODELS)) + sorted(set(sizes) - set(SIZES))
    if unknown:
        raise SystemExit(f"step_time: unknown model/size {', '.join(unknown)}; models {MODELS}, sizes {SIZES}")
    try:
        authors_repos = parse_authors_repos(args.authors_repo)
    except AuthorsRepoError as exc:
        raise SystemExit(f"step_time: {exc}") from None
    report: dict[str, Any] = {"devices": {}, "rows": []}
    for device in devices_for(args.device):
        machine = describe_machine(device)
        peak_size = 512 if args.quick else (8192 if device.type == "cuda" else 4096)
        peaks = [matmul_peak(device, peak_size)]
        print(f"\n== step_time on {device.type}: " + "; ".join(f"{k}: {v}" for k, v in machine.items()), flush=True)
        device_rows: list[Row] = []
        measured, failed = [], []
        if args.profile:
            profiles = report.setdefault("profiles", {})
            print(f"float32 matmul peak before the profiles: {peaks[0] / 1e12:.3f} TFLOP/s ({peak_size}^3 sgemm)")
            for case in build_cases(models, sizes, device, args):
                print(f"\n== profile of {case.label} ({2 * case.batch_per_class} videos/step, {args.rounds} step(s) "
                      f"per implementation) on {device.type}", flush=True)
                result = profile_case(case, device, args)
                for impl, table in result["tables"].items():
                    print(f"\n-- {impl}: top ops by self time over {args.rounds} step(s)\n{table}", flush=True)
                comparison = compare_profiles(result, args.profile_rows)
                print(f"\n-- per step, side by side (self seconds, calls)\n{comparison}", flush=True)
                profiles[f"{device.type} {case.label}"] = {"tables": result["tables"], "comparison": comparison}
            continue
        for case in build_cases(models, sizes, device, args):
            print(f"   measuring {case.label} ({2 * case.batch_per_class} videos/step) ...", flush=True)
            try:
                measured.append((case, *measure_case(case, device, args, authors_repos)))
            except (ValueError, RuntimeError) as exc:  # e.g. a --batch the model's loss cannot pair; keep going
                print(f"   {case.label}: not measured: {exc}", flush=True)
                failed.append(case.label)
            peaks.append(matmul_peak(device, peak_size, repeats=1))  # the best of the run is the peak
        peak = max(peaks)
        for case, timings, flops, notes in measured:
            device_rows.extend(make_rows(case, device, timings, flops, peak, notes))
        print(f"float32 matmul peak measured in this run: {peak / 1e12:.3f} TFLOP/s "
              f"({peak_size}^3 sgemm, best of {len(peaks)} measurements)")
        print(format_table(device_rows))
        print("x step / x f+b: the baseline's time divided by ours (whole step / forward+backward); "
              f"best of {args.rounds} interleaved rounds; CPU s: process CPU time of the step (all threads); "
              "FLOPs: FlopCounterMode on our forward+backward.")
        report["devices"][device.type] = {"machine": machine, "peak_flops": peak, "rounds": args.rounds,
                                          "quick": args.quick, "not_measured": failed}
        report["rows"].extend(asdict(row) for row in device_rows)
    if "cuda" not in report["devices"]:
        print("CUDA: no GPU visible to torch; GPU rows skipped.")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
