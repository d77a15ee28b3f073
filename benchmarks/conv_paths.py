"""Benchmark ``conv_paths`` (issue #14): each temporal convolution of the shipped configs, run both ways that
``vad.models.components.time_major.conv1d_time_major`` can (``unfold_input`` and ``sum_output_taps``), side by side.

Usage: ``python benchmarks/conv_paths.py [--models rtfm,mgfn,s3r] [--sizes ucf,xd] [--batch B] [--rounds R]
[--json F] [--results [RESULTS.md]]``

Every ``nn.Conv1d`` with a kernel wider than 1 in the models built from ``configs/<model>_<size>.yaml`` is timed
once per distinct shape on relu(N(0, 1)) input of ``(2 * batch_per_class * n_crops, n_segments, C_in)`` (the
paper's batch unless ``--batch``): forward and backward (weight, bias and input gradients), best of ``--rounds``
interleaved rounds, alternating which path runs first. "% peak" = the convolution's FLOPs / time / the float32
matmul peak measured in the same run. The rule :func:`conv_path` applies is printed next to the measured winner,
so a machine where the rule is wrong shows it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.machine import describe_machine, matmul_peak  # noqa: E402
from benchmarks.results_file import add_output_arguments, publish, run_line  # noqa: E402
from vad.config import TrainConfig  # noqa: E402
from vad.models import create_model  # noqa: E402
from vad.models.components.time_major import CONV_PATHS, conv1d_time_major, conv_path  # noqa: E402

SECTION = "conv_paths"
MODELS = ("rtfm", "mgfn", "s3r")
SIZES = ("ucf", "xd")
Shape = tuple[int, int, int, int, int]
"""``(rows, C_in, C_out, kernel, dilation)``: ``rows`` sequences of the config's ``n_segments`` steps."""


def config_shapes(model_name: str, size: str, batch: int | None) -> tuple[list[Shape], int]:
    """The distinct temporal-conv shapes of one shipped config, and its ``n_segments``."""
    config = TrainConfig.from_yaml(REPO_ROOT / "configs" / f"{model_name}_{size}.yaml")
    model = create_model(model_name, **config.model)
    rows = 2 * (batch or config.train.batch_per_class) * config.model.get("n_crops", 1)
    shapes = []
    for module in model.modules():
        if isinstance(module, nn.Conv1d) and module.kernel_size[0] > 1 and module.groups == 1:
            shape = (rows, module.in_channels, module.out_channels, module.kernel_size[0], module.dilation[0])
            if shape not in shapes:
                shapes.append(shape)
    return shapes, config.data.n_segments


def time_paths(shape: Shape, steps: int, rounds: int) -> dict[str, float]:
    """Best forward+backward seconds of each path on ``shape``."""
    rows, c_in, c_out, kernel, dilation = shape
    conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
    x = torch.relu(torch.randn(rows, steps, c_in)).requires_grad_()
    grad = torch.randn(rows, steps + 2 * conv.padding[0] - dilation * (kernel - 1), c_out)

    def step(path: str) -> float:
        start = time.perf_counter()
        conv1d_time_major(x, conv, path).backward(grad)
        seconds = time.perf_counter() - start
        x.grad, conv.weight.grad, conv.bias.grad = None, None, None
        return seconds

    best = {path: float("inf") for path in CONV_PATHS}
    for path in CONV_PATHS:  # warm-up
        step(path)
    for index in range(rounds):
        for path in CONV_PATHS if index % 2 == 0 else tuple(reversed(CONV_PATHS)):
            best[path] = min(best[path], step(path))
    return best


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    peak = matmul_peak(device)
    rows = []
    seen: set[tuple[Shape, int]] = set()
    for size in args.sizes.split(","):
        for name in args.models.split(","):
            shapes, steps = config_shapes(name, size, args.batch)
            for shape in shapes:
                key = (shape, steps)
                if key in seen:
                    continue
                seen.add(key)
                times = time_paths(shape, steps, args.rounds)
                n, c_in, c_out, kernel, _ = shape
                flops = 3 * 2 * n * steps * c_in * c_out * kernel  # forward, input and weight gradients
                winner = min(times, key=times.get)
                rows.append({
                    "config": f"{name} {size}", "rows": n, "steps": steps, "c_in": c_in, "c_out": c_out,
                    "kernel": kernel, "dilation": shape[4], **{f"{p}_s": times[p] for p in CONV_PATHS},
                    **{f"{p}_peak": flops / times[p] / peak for p in CONV_PATHS},
                    "taps_over_unfold": times["sum_output_taps"] / times["unfold_input"],
                    "measured_winner": winner, "rule": conv_path(c_in, c_out),
                })
                print(f"   {name} {size}: ({n}, {steps}, {c_in}) -> {c_out}, k{kernel} d{shape[4]}: "
                      f"taps / unfold = {rows[-1]['taps_over_unfold']:.2f}", flush=True)
    return {"machine": describe_machine(device), "peak_tflops": peak / 1e12, "rounds": args.rounds, "rows": rows}


def table(report: dict) -> str:
    lines = ["| config | input (rows, T, C_in) | C_out | k, dilation | unfold_input s (% peak) | "
             "sum_output_taps s (% peak) | taps / unfold time | measured winner | rule |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(
            f"| {r['config']} | ({r['rows']}, {r['steps']}, {r['c_in']}) | {r['c_out']} | {r['kernel']}, "
            f"{r['dilation']} | {r['unfold_input_s']:.3f} ({100 * r['unfold_input_peak']:.0f}%) | "
            f"{r['sum_output_taps_s']:.3f} ({100 * r['sum_output_taps_peak']:.0f}%) | {r['taps_over_unfold']:.2f} | "
            f"{r['measured_winner']} | {r['rule']} |")
    return "\n".join(lines)


def results_section(report: dict) -> str:
    agree = sum(r["measured_winner"] == r["rule"] for r in report["rows"])
    return "\n\n".join([
        run_line(" ".join(["python benchmarks/conv_paths.py", *sys.argv[1:]])),
        f"float32 matmul peak measured in the run: {report['peak_tflops']:.3f} TFLOP/s; best of "
        f"{report['rounds']} interleaved rounds per path; forward + backward (input, weight and bias gradients).",
        table(report),
        f"The rule `conv_path` (sum the output taps unless the conv widens) picks the measured winner on {agree} of "
        f"{len(report['rows'])} shapes.",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="rtfm,mgfn,s3r", help="comma-separated subset of rtfm,mgfn,s3r")
    parser.add_argument("--sizes", default="ucf", help="comma-separated subset of ucf,xd")
    parser.add_argument("--batch", type=int, default=None, help="videos per class (default: the config's)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per path (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_output_arguments(parser, SECTION)
    args = parser.parse_args(argv)
    for option, value, known in (("--models", args.models, MODELS), ("--sizes", args.sizes, SIZES)):
        unknown = sorted(set(value.split(",")) - set(known))
        if unknown:
            parser.exit(2, f"error: {option}: unknown {', '.join(unknown)}; choose from {', '.join(known)}\n")
    report = run(args)
    publish(report, table(report), section=SECTION, results_section=results_section, json_path=args.json,
            results_path=args.results)


if __name__ == "__main__":
    main()
