"""Benchmark ``test_pass`` (issue #14): seconds per full test pass on a UCF-Crime-sized test set, per model.

    python benchmarks/test_pass.py [--models rtfm,mgfn,s3r,mil] [--feature-dim 2048] [--crops 10]
        [--videos 290] [--repeats 3] [--n-boot 1000] [--no-single] [--threads N] [--json PATH] [--results PATH]

The input: the 290 test videos of UCF-Crime with their real lengths (``../shared/reference``: test-list order,
``T_i = ceil(frames / 16)``, 69,634 snippets, and their frame ground truth by RTFM's rule); without the reference
files a seeded log-normal draw rescaled to the same total. Features are seeded Gaussian ``(sum T, N, C)`` float32
in memory (the cache layout). ``--videos K`` keeps K videos spread evenly over the list (a smaller run with the same
length mix); ``--feature-dim``/``--crops`` shrink the width so the run fits a small CPU.

Per model (default sizes, the given width and crops), interleaved in each of ``--repeats`` rounds (median reported):

- ``ours``: :func:`vad.scoring.score_test` (equal-length videos batched, copied into one reused input buffer,
  ``torch.inference_mode``) and
  :func:`vad.scoring.frame_level_metrics` (AUC, AP, false alarms, per-class AUC);
- ``authors' loop``: the authors' evaluation loop written from ``/work/shared/models.md``: one video at a time under
  ``torch.no_grad`` (input ``(1, T, N, C)`` permuted to ``(1, N, T, C)`` as their loaders give it), the logits
  concatenated with ``torch.cat`` per video, then ``np.repeat(..., 16)`` and scikit-learn ``roc_curve`` / ``auc``,
  ``precision_recall_curve`` / ``auc(recall, precision)``. It runs *our* model's forward, so the ratio measures the
  evaluation loop (batching, inference mode, per-video Python work), not the model execution (``step_time``);

plus, once, the cost of ``--n-boot`` bootstrap resamples of every frame metric (:func:`frame_level_intervals`).
The scores of both loops are compared (max abs difference, printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from sklearn.metrics import auc, precision_recall_curve, roc_curve

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `vad` and `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.results_file import machine_summary, publish, stamp  # noqa: E402
from vad.data.eval_features import TestFeatures  # noqa: E402
from vad.data.ground_truth import GroundTruth  # noqa: E402
from vad.models import create_model  # noqa: E402
from vad.scoring import TestScores, frame_level_intervals, frame_level_metrics, score_test  # noqa: E402

MODELS = ("rtfm", "mgfn", "s3r", "mil")
KEYS = ("authors' forward", "authors' metrics", "ours forward", "ours metrics",
        "ours forward, one video per pass")
UCF_TEST_VIDEOS, UCF_TEST_SNIPPETS, FRAMES = 290, 69_634, 16


def ucf_test_plan(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, list[str], list[np.ndarray], str]:
    """``(ids, lengths, labels, classes, frame_labels, source)`` of UCF-Crime's test list (reference files) or of a
    seeded stand-in with the same count and total."""
    try:
        from vad.data.synthetic import reference_test_videos

        videos = reference_test_videos("ucf")
        return ([v.name for v in videos], np.array([v.n_snippets for v in videos]),
                np.array([int(v.abnormal) for v in videos]), [v.anomaly_class for v in videos],
                [v.frame_labels("ucf") for v in videos], "reference UCF test list")
    except Exception:  # noqa: BLE001 - reference files absent: a seeded draw
        rng = np.random.default_rng(seed)
        raw = rng.lognormal(np.log(112), 1.0, UCF_TEST_VIDEOS)
        lengths = np.maximum(10, np.round(raw * UCF_TEST_SNIPPETS / raw.sum())).astype(np.int64)
        labels = (np.arange(UCF_TEST_VIDEOS) < 140).astype(np.int64)
        frame_labels = []
        for length, label in zip(lengths, labels):
            frames = np.zeros(FRAMES * length, np.uint8)
            if label:
                start = rng.integers(0, len(frames) // 2)
                frames[start:start + len(frames) // 4] = 1
            frame_labels.append(frames)
        ids = [f"video{i:03d}" for i in range(UCF_TEST_VIDEOS)]
        return ids, lengths, labels, ["Abnormal" if x else "Normal" for x in labels], frame_labels, "seeded draw"


def build_input(args: argparse.Namespace) -> tuple[SimpleNamespace, str]:
    """A ``PreparedData``-shaped namespace (``test``, ``ground_truth``, ``dataset.config``) for the scoring code."""
    ids, lengths, labels, classes, frame_labels, source = ucf_test_plan(args.seed)
    keep = np.unique(np.linspace(0, len(ids) - 1, min(args.videos, len(ids))).round().astype(int))
    ids, lengths, labels = [ids[i] for i in keep], lengths[keep], labels[keep]
    classes, frame_labels = [classes[i] for i in keep], [frame_labels[i] for i in keep]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    generator = torch.Generator().manual_seed(args.seed)
    features = torch.randn(int(offsets[-1]), args.crops, args.feature_dim, generator=generator).numpy()
    test = TestFeatures(features, offsets, ids, labels, classes, Path("memory"), "benchmark")
    frame_offsets = np.concatenate([[0], np.cumsum([len(f) for f in frame_labels])]).astype(np.int64)
    gt = GroundTruth(np.concatenate(frame_labels), frame_offsets, ids)
    config = SimpleNamespace(frames_per_snippet=FRAMES)
    return SimpleNamespace(test=test, ground_truth=gt, dataset=SimpleNamespace(config=config)), source


def build_model(name: str, args: argparse.Namespace) -> torch.nn.Module:
    """The model at its default size, at the input's width and crop count; S3R with a seeded dictionary."""
    torch.manual_seed(args.seed)
    model = create_model(name, feature_dim=args.feature_dim, n_crops=args.crops)
    if hasattr(model, "set_dictionary"):
        model.set_dictionary(torch.randn(model.n_atoms, args.feature_dim) * 0.05)
    return model.eval()


def authors_forward(model: torch.nn.Module, prepared: SimpleNamespace) -> np.ndarray:
    """The authors' test loop: one video per forward under ``torch.no_grad``, the logits ``torch.cat``-ed per video."""
    test = prepared.test
    with torch.no_grad():
        model.eval()
        pred = torch.zeros(0)
        for i in range(len(test.video_ids)):
            inputs = torch.from_numpy(np.array(test.features[test.offsets[i]:test.offsets[i + 1]])).unsqueeze(0)
            inputs = inputs.permute(0, 2, 1, 3)  # (1, T, N, C) -> (1, N, T, C)
            logits = torch.squeeze(model(inputs).scores, 0)
            pred = torch.cat((pred, logits))
        return pred.cpu().detach().numpy()


def authors_metrics(snippets: np.ndarray, prepared: SimpleNamespace) -> dict[str, float]:
    """Their metrics: ``np.repeat`` to frames, scikit-learn ROC-AUC and ``auc(recall, precision)``."""
    gt = prepared.ground_truth.labels.astype(np.float64)
    frames = np.repeat(np.array(list(snippets)), FRAMES)
    fpr, tpr, _ = roc_curve(gt, frames)
    precision, recall, _ = precision_recall_curve(gt, frames)
    return {"auc": float(auc(fpr, tpr)), "pr_auc": float(auc(recall, precision))}


def ours_forward(model: torch.nn.Module, prepared: SimpleNamespace, max_snippets: int) -> TestScores:
    """Our scoring pass: :func:`score_test`."""
    return score_test(model, prepared, device=torch.device("cpu"), max_snippets=max_snippets)


CPU_SECONDS: list[float] = []
"""Process CPU seconds (all threads) of every :func:`timed` call, in order: less sensitive than wall time to other
load on a shared machine."""


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    """``(wall seconds, fn(*args))``; appends the call's process CPU seconds to :data:`CPU_SECONDS`."""
    cpu, start = time.process_time(), time.perf_counter()
    out = fn(*args)
    wall = time.perf_counter() - start
    CPU_SECONDS.append(time.process_time() - cpu)
    return wall, out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time every model's pass both ways, interleaved, ``args.repeats`` rounds; then the bootstrap once."""
    if args.threads:
        torch.set_num_threads(args.threads)
    prepared, source = build_input(args)
    load_before = os.getloadavg()[0]
    rows = []
    last_scores = None
    for name in args.models:
        model = build_model(name, args)
        times: dict[str, list[float]] = {key: [] for key in KEYS}
        cpu: dict[str, list[float]] = {key: [] for key in KEYS}
        ours_forward(model, prepared, args.max_snippets)  # warm-up: oneDNN primitives, allocator
        for round_ in range(args.repeats):  # the order alternates, so neither side always runs first
            for side in (("authors", "ours") if round_ % 2 == 0 else ("ours", "authors")):
                if side == "authors":
                    t, ref_scores = timed(authors_forward, model, prepared)
                    times["authors' forward"].append(t)
                    cpu["authors' forward"].append(CPU_SECONDS[-1])
                    t, ref_metrics = timed(authors_metrics, ref_scores, prepared)
                    times["authors' metrics"].append(t)
                    cpu["authors' metrics"].append(CPU_SECONDS[-1])
                    continue
                t, scores = timed(ours_forward, model, prepared, args.max_snippets)
                times["ours forward"].append(t)
                cpu["ours forward"].append(CPU_SECONDS[-1])
                t, our_metrics = timed(frame_level_metrics, scores, prepared)
                times["ours metrics"].append(t)
                cpu["ours metrics"].append(CPU_SECONDS[-1])
                if args.single:
                    t, _ = timed(ours_forward, model, prepared, 0)
                    times["ours forward, one video per pass"].append(t)
                    cpu["ours forward, one video per pass"].append(CPU_SECONDS[-1])
        times["authors' pass"] = [a + b for a, b in zip(times["authors' forward"], times["authors' metrics"])]
        times["ours pass"] = [a + b for a, b in zip(times["ours forward"], times["ours metrics"])]
        cpu["ours forward+metrics"] = [a + b for a, b in zip(cpu["ours forward"], cpu["ours metrics"])]
        cpu["authors' forward+metrics"] = [a + b for a, b in zip(cpu["authors' forward"], cpu["authors' metrics"])]
        times = {key: values for key, values in times.items() if values}  # --no-single: that column is empty
        cpu = {key: values for key, values in cpu.items() if values}
        med = {key: statistics.median(values) for key, values in times.items()}
        cpu_med = {key: statistics.median(values) for key, values in cpu.items()}
        ratios = {key: [a / b for a, b in zip(times[f"authors' {key}"], times[f"ours {key}"])]
                  for key in ("forward", "pass")}
        our_scores = np.concatenate(scores.scores)
        rows.append({
            "model": name, "seconds": med, "range": {key: (min(v), max(v)) for key, v in times.items()},
            "ratio": {key: statistics.median(v) for key, v in ratios.items()},
            "ratio_range": {key: (min(v), max(v)) for key, v in ratios.items()},
            "cpu_seconds": cpu_med, "cpu_ratio": cpu_med["authors' forward+metrics"] / cpu_med["ours forward+metrics"],
            "max_abs_score_diff": float(np.abs(ref_scores - our_scores).max()),
            "auc_ours": our_metrics.get("auc"), "auc_authors": ref_metrics["auc"],
        })
        print(f"{name}: " + ", ".join(f"{key} {value:.2f} s" for key, value in med.items())
              + f"; authors'/ours pass {rows[-1]['ratio']['pass']:.2f}x, forward {rows[-1]['ratio']['forward']:.2f}x, "
              f"CPU-time ratio {rows[-1]['cpu_ratio']:.2f}x, max |score diff| {rows[-1]['max_abs_score_diff']:.1e}",
              flush=True)
        last_scores = scores
    boot = None
    if args.n_boot and last_scores is not None:
        seconds, _ = timed(lambda: frame_level_intervals(last_scores, prepared, n_boot=args.n_boot))
        boot = {"n_boot": args.n_boot, "seconds": seconds, "per_resample": seconds / args.n_boot}
    videos, snippets = len(prepared.test.video_ids), int(prepared.test.offsets[-1])
    return {
        "date": stamp(), "machine": machine_summary(), "threads": torch.get_num_threads(), "source": source,
        "videos": videos, "snippets": snippets, "crops": args.crops, "feature_dim": args.feature_dim,
        "frames": int(len(prepared.ground_truth.labels)), "repeats": args.repeats, "max_snippets": args.max_snippets,
        "load_before": load_before, "load_after": os.getloadavg()[0], "rows": rows, "bootstrap": boot,
        "command": " ".join(sys.argv),
    }


def table(report: dict[str, Any]) -> str:
    """Markdown: seconds per pass and per part (median, min-max) and the ratios per model."""
    lines = ["| model | ours pass s | authors' pass s | authors' / ours pass | ours forward s | ours forward, one "
             "video per pass s | authors' forward s | authors' / ours forward | ours metrics s | authors' metrics s "
             "| CPU s ours / authors' (ratio) | max abs score diff |", "|---" * 12 + "|"]

    def cell(row: dict, key: str) -> str:
        if key not in row["range"]:
            return "not run"
        low, high = row["range"][key]
        return f"{row['seconds'][key]:.2f} ({low:.2f}-{high:.2f})"

    def ratio(row: dict, key: str) -> str:
        low, high = row["ratio_range"][key]
        return f"{row['ratio'][key]:.2f}x ({low:.2f}-{high:.2f})"

    def cpu_cell(row: dict) -> str:
        c = row["cpu_seconds"]
        return f"{c['ours forward+metrics']:.2f} / {c[chr(39).join(['authors', ' forward+metrics'])]:.2f} " \
               f"({row['cpu_ratio']:.2f}x)"

    for row in report["rows"]:
        cells = [row["model"], cell(row, "ours pass"), cell(row, "authors' pass"), ratio(row, "pass"),
                 cell(row, "ours forward"), cell(row, "ours forward, one video per pass"),
                 cell(row, "authors' forward"), ratio(row, "forward"), cell(row, "ours metrics"),
                 cell(row, "authors' metrics"), cpu_cell(row), f"{row['max_abs_score_diff']:.1e}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_section(report: dict[str, Any]) -> str:
    """The ``## test_pass`` section of RESULTS.md."""
    boot = report["bootstrap"]
    boot_line = ("" if boot is None else f"\nBootstrap intervals of every frame metric ({boot['n_boot']} resamples of "
                 f"the test videos, {report['frames']:,} frames): {boot['seconds']:.1f} s "
                 f"({1000 * boot['per_resample']:.1f} ms per resample), measured once.\n")
    return (
        f"Run {report['date']}: `{report['command']}`\n\nMachine: {report['machine']}; {report['threads']} torch "
        f"threads; load average {report['load_before']:.1f} before, {report['load_after']:.1f} after (2 cores "
        f"shared with other work: figures are medians of {report['repeats']} interleaved rounds, alternating "
        f"which side runs first, min-max in brackets).\n\n"
        f"Input: {report['videos']} test videos ({report['source']}), {report['snippets']:,} snippets, "
        f"{report['crops']} crops x {report['feature_dim']} features; models at their default sizes otherwise. "
        f"Ours batches videos of equal length (at most {report['max_snippets']} snippets per pass, copied into one "
        "reused input buffer) under `torch.inference_mode`; the authors' loop runs the same model one video at a "
        "time (see the script's docstring).\n\n" + table(report) + "\n" + boot_line
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of rtfm,mgfn,s3r,mil")
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--crops", type=int, default=10)
    parser.add_argument("--videos", type=int, default=UCF_TEST_VIDEOS, help="keep this many videos, spread evenly")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-snippets", type=int, default=2048, help="snippets per batched forward pass")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples to time (0: skip)")
    parser.add_argument("--no-single", dest="single", action="store_false",
                        help="skip timing our pass at one video per pass (a shorter run of a slow model)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--results", default=None, help="RESULTS.md to update (its ## test_pass section)")
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        print(f"error: --models: unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}",
              file=sys.stderr)
        return 2
    report = run(args)
    publish(report, table(report), section="test_pass", results_section=results_section, json_path=args.json,
            results_path=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
