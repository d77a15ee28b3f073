"""The GPU part of issue #6, ``gpu_packing``: trials packed on one GPU, data residency, bf16 against fp32.

    python benchmarks/gpu_packing.py [--quick] [--packs 1,2,4,8] [--steps 50] [--seeds 0,1,2] [--no-sweep]
        [--allow-cpu] [--json PATH] [--results [PATH]]

One prepared run for a CUDA machine (a few minutes on an H100/H200); without CUDA it says so and exits 0
(``--allow-cpu`` runs the same code on the CPU at tiny sizes, to test it). Four measurements:

1. **Packing**: 1, 2, 4, 8 trial processes on the one GPU at once, each training RTFM at UCF-Crime's size
   (10 x 2048, the paper's 32+32 videos a step) with its own UCF-sized training array (1,610 videos, 4.2 GB)
   resident on the device, through the engine's ``train_one_epoch`` (what ``vad.train`` runs), all starting
   together after a warm-up: step time per trial, total videos/s, and the total over one trial's.
2. **Residency**: ``torch.profiler`` over training steps with the array on the device (``train.data_on_device``,
   the default) and on the host: host-to-device copies per step (expected: none with the array resident).
3. **bf16 against fp32**: the demo config (``synthetic:demo``) trained with ``train.precision`` fp32 and bf16
   for each ``--seeds`` seed; test AUC/AP of the selected checkpoint and the best validation loss, mean and
   spread over seeds; bf16 is "within noise" when its mean AUC is within two standard deviations (over seeds)
   of fp32's, and the step time of both at the UCF size.
4. **A packed sweep** (unless ``--no-sweep``): ``search.run`` on ``spaces/demo.yaml`` with ``--gpus-per-trial
   0.25``: four trials at once on the GPU; checks every trial trained on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `vad`, `search` and `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.tables import format_table, markdown_table  # noqa: E402

RESULT_PREFIX = "RESULT "
UCF_CONFIG = REPO_ROOT / "configs" / "rtfm_ucf.yaml"
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
COMMAND = "python benchmarks/gpu_packing.py --json gpu_packing.json --results"


@dataclass(frozen=True)
class Sizes:
    videos: int
    """Videos of each trial's resident training array."""
    feature_dim: int
    n_crops: int
    batch: int
    model: dict[str, Any]
    warmup: int
    epochs: int
    """Epochs of the bf16/fp32 demo runs."""


PAPER = Sizes(videos=1610, feature_dim=2048, n_crops=10, batch=32, model={}, warmup=5, epochs=10)
TINY = Sizes(videos=16, feature_dim=32, n_crops=2, batch=2, warmup=1, epochs=1,
             model={"hidden_dim": 16, "head_dims": [16, 8]})


def _device(spec: dict[str, Any]) -> Any:
    import torch

    return torch.device(spec["device"])


def _synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _trial(spec: dict[str, Any]) -> tuple[Any, ...]:
    """RTFM at ``spec``'s sizes with its optimiser, a random training array of ``videos`` videos on ``device``
    (when ``resident``) and the balanced batches of ``steps`` steps."""
    import numpy as np
    import torch

    from vad.builders import build_optimizer, epoch_batches
    from vad.config import TrainConfig
    from vad.data import BalancedBatchSampler
    from vad.models import create_loss, create_model

    sizes = Sizes(**spec["sizes"])
    device = _device(spec)
    torch.manual_seed(spec.get("index", 0))
    config = TrainConfig.from_yaml(UCF_CONFIG, {"model.feature_dim": sizes.feature_dim,
                                                "model.n_crops": sizes.n_crops,
                                                **{f"model.{k}": v for k, v in sizes.model.items()}})
    model = create_model("rtfm", **config.model).to(device)
    criterion = create_loss("rtfm", **config.loss)
    optimizer = build_optimizer(model, config)
    where = device if spec.get("resident", True) else torch.device("cpu")
    features = torch.rand(sizes.videos, sizes.n_crops, 32, sizes.feature_dim, device=where)
    labels = torch.from_numpy((np.arange(sizes.videos) < sizes.videos // 2).astype(np.int64))
    sampler = BalancedBatchSampler(labels.numpy(), sizes.batch, seed=spec.get("index", 0))
    batches = epoch_batches(sampler, 1, spec["steps"] + sizes.warmup)
    return model, criterion, optimizer, features, labels, batches, device


def child_pack(spec: dict[str, Any]) -> dict[str, Any]:
    """One packed trial: warm up, say READY, wait for GO (all start together), train ``steps`` steps."""
    import torch

    from vad.engine import train_one_epoch

    if spec["device"] == "cpu":
        torch.set_num_threads(1)
    model, criterion, optimizer, features, labels, batches, device = _trial(spec)
    warmup = Sizes(**spec["sizes"]).warmup
    bf16 = spec.get("precision") == "bf16"
    train_one_epoch(model, criterion, optimizer, batches[:warmup], features, labels, device=device, bf16=bf16,
                    check_every=25)
    _synchronize(device)
    print("READY", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    train_one_epoch(model, criterion, optimizer, batches[warmup:], features, labels, device=device, bf16=bf16,
                    check_every=25)
    _synchronize(device)
    seconds = time.perf_counter() - started
    videos = sum(len(rows) for rows in batches[warmup:])
    memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"seconds": seconds, "steps": len(batches) - warmup, "videos": videos, "max_memory": memory}


def measure_pack(count: int, spec: dict[str, Any]) -> dict[str, Any]:
    """``count`` trial processes at once; the total throughput over the common window."""
    command = [sys.executable, str(Path(__file__).resolve())]
    errors = [tempfile.TemporaryFile(mode="w+") for _ in range(count)]  # a file: a chatty child never blocks
    procs = [subprocess.Popen(command + ["--child", json.dumps({"kind": "pack", **spec, "index": index})],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors[index], text=True,
                              cwd=REPO_ROOT) for index in range(count)]

    def stderr_of(index: int) -> str:
        errors[index].seek(0)
        return errors[index].read()[-4000:]

    try:
        for index, proc in enumerate(procs):
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                proc.wait(timeout=60)
                raise RuntimeError(f"packed trial failed: {line}{stderr_of(index)}")
        started = time.perf_counter()
        for proc in procs:
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        results = []
        for index, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=600)
            line = next((x for x in out.splitlines() if x.startswith(RESULT_PREFIX)), None)
            if line is None:
                raise RuntimeError(f"packed trial failed (exit {proc.returncode}):\n{stderr_of(index)}")
            results.append(json.loads(line[len(RESULT_PREFIX):]))
        wall = time.perf_counter() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for error in errors:
            error.close()
    videos = sum(r["videos"] for r in results)
    window = max(r["seconds"] for r in results)  # all started together; the slowest one's timed steps
    return {"trials": count, "wall_s": wall, "videos": videos, "videos_per_s": videos / window,
            "step_s": statistics.mean(r["seconds"] / r["steps"] for r in results),
            "max_memory": max((r["max_memory"] or 0) for r in results) or None, "per_trial": results}


def child_residency(spec: dict[str, Any]) -> dict[str, Any]:
    """Host-to-device copies per training step, array on the device vs on the host (``torch.profiler``)."""
    from torch.profiler import ProfilerActivity, profile

    from vad.engine import train_one_epoch

    out = {}
    for resident in (True, False):
        model, criterion, optimizer, features, labels, batches, device = _trial({**spec, "resident": resident})
        warmup = Sizes(**spec["sizes"]).warmup
        train_one_epoch(model, criterion, optimizer, batches[:warmup], features, labels, device=device,
                        check_every=25)
        _synchronize(device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            train_one_epoch(model, criterion, optimizer, batches[warmup:], features, labels, device=device,
                            check_every=25)
            _synchronize(device)
        steps = len(batches) - warmup
        copies = [event for event in prof.events() if "HtoD" in event.name or "Memcpy H2D" in event.name]
        runtime = [event for event in prof.events() if event.name in ("cudaMemcpyAsync", "cudaMemcpy")]
        out["device" if resident else "host"] = {
            "steps": steps, "htod_copies": len(copies), "htod_per_step": len(copies) / steps,
            "memcpy_calls_per_step": len(runtime) / steps, "profiled_cuda": device.type == "cuda",
            "copy_names": sorted({event.name for event in copies})}
    return out


def child_precision(spec: dict[str, Any]) -> dict[str, Any]:
    """The demo config trained in fp32 and bf16 for each seed, in this process."""
    from vad.config import TrainConfig
    from vad.training import train

    runs = []
    for seed in spec["seeds"]:
        for precision in ("fp32", "bf16"):
            overrides = {"train.seed": seed, "train.precision": precision, "train.device": spec["device"],
                         "train.epochs": spec["epochs"]}
            if spec.get("tiny"):
                overrides.update({"data.dataset": "synthetic:tiny", "model.hidden_dim": 16,
                                  "model.head_dims": [16, 8], "train.batch_per_class": 4})
            config = TrainConfig.from_yaml(DEMO_CONFIG, overrides)
            started = time.perf_counter()
            result = train(config, lambda metrics, folder: None,
                           out_dir=Path(spec["out"]) / f"{precision}-{seed}")
            runs.append({"seed": seed, "precision": precision, "seconds": time.perf_counter() - started,
                         "auc": result.test.get("auc"), "ap": result.test.get("ap"),
                         "best_val_loss": min(e["val_loss"] for e in result.epochs),
                         "epoch_time": statistics.mean(e["epoch_time"] for e in result.epochs)})
    return {"runs": runs}


def run_child(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                           json.dumps({"kind": kind, **spec})], capture_output=True, text=True, cwd=REPO_ROOT)
    line = next((x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise RuntimeError(f"gpu_packing child {kind} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(line[len(RESULT_PREFIX):])


def packed_sweep(work: Path, tiny: bool) -> dict[str, Any]:
    """``search.run`` on the demo space, four trials at once with a quarter GPU each (4 epochs, no early
    stopping); every trial must have trained on CUDA."""
    import yaml

    space = yaml.safe_load((REPO_ROOT / "spaces" / "demo.yaml").read_text())
    space["base"] = str(REPO_ROOT / "configs" / "demo.yaml")
    space["search"].update(num_samples=1 if tiny else 4, epochs=1 if tiny else 4)
    space["scheduler"] = {"name": "fifo"}
    space["resources"].update(gpus_per_trial=0.25, max_concurrent=4)
    (work / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    command = [sys.executable, "-m", "search.run", "--space", str(work / "space.yaml"), "--name", "gpu-packing",
               "--storage", str(work / "ray_results"), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}",
               "--confirm-top", "0"]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    seconds = time.perf_counter() - started
    devices = []
    for result in sorted((work / "ray_results" / "gpu-packing").glob("trial_*/run/result.json")):
        devices.append(json.loads(result.read_text())["config"]["train"]["device"])
    packing = [line for line in proc.stdout.splitlines() if line.startswith(("GPU packing", "No GPU", "CPU trials"))]
    return {"exit": proc.returncode, "seconds": seconds, "trial_devices": devices, "plan": packing,
            "tail": proc.stdout[-1500:] + proc.stderr[-1500:] if proc.returncode else ""}


# ============================================================================================ report

def analyse(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    packs = report["packs"]
    single = packs[0]["videos_per_s"]
    out["speedup"] = {p["trials"]: p["videos_per_s"] / single for p in packs}
    out["throughput_rises"] = all(b["videos_per_s"] > a["videos_per_s"] for a, b in zip(packs, packs[1:]))
    runs = report["precision"]["runs"]
    summary = {}
    for precision in ("fp32", "bf16"):
        chosen = [r for r in runs if r["precision"] == precision]
        aucs = [r["auc"] for r in chosen if r["auc"] is not None]
        summary[precision] = {
            "auc_mean": statistics.mean(aucs) if aucs else None,
            "auc_std": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
            "ap_mean": statistics.mean(r["ap"] for r in chosen if r["ap"] is not None) if aucs else None,
            "val_loss_mean": statistics.mean(r["best_val_loss"] for r in chosen),
            "epoch_time_mean": statistics.mean(r["epoch_time"] for r in chosen)}
    out["precision"] = summary
    fp32, bf16 = summary["fp32"], summary["bf16"]
    if fp32["auc_mean"] is not None and bf16["auc_mean"] is not None:
        noise = max(fp32["auc_std"], bf16["auc_std"], 1e-3)
        out["bf16_within_noise"] = abs(bf16["auc_mean"] - fp32["auc_mean"]) <= 2 * noise
    residency = report["residency"]
    # one copy per epoch is expected: the epoch's row indices, sent once (``train_one_epoch``)
    out["no_htod_per_step"] = (residency["device"]["htod_copies"] <= 1 if residency["device"]["profiled_cuda"]
                               else None)
    return out


def render(report: dict[str, Any], markdown: bool = False) -> str:
    table = markdown_table if markdown else format_table
    a = report["analysis"]
    packs = table(["trials on the GPU", "step s (per trial)", "videos/s (total)", "x one trial", "max GPU MiB/trial"],
                  [[p["trials"], p["step_s"], p["videos_per_s"], a["speedup"][p["trials"]],
                    None if p["max_memory"] is None else round(p["max_memory"] / 2**20)] for p in report["packs"]])
    residency = table(["training array", "steps", "H2D copies", "H2D copies/step", "cudaMemcpy calls/step",
                       "copy kinds"],
                      [[where, r["steps"], r["htod_copies"], r["htod_per_step"], r["memcpy_calls_per_step"],
                        ", ".join(r["copy_names"]) or "-"] for where, r in report["residency"].items()])
    precision = table(["precision", "test AUC mean", "AUC std (seeds)", "test AP mean", "best val_loss mean",
                       "epoch s"],
                      [[name, s["auc_mean"], s["auc_std"], s["ap_mean"], s["val_loss_mean"], s["epoch_time_mean"]]
                       for name, s in a["precision"].items()])
    bf16 = report["pack_bf16"]
    text = [f"Device: {report['device_name']}. Packing: RTFM at UCF size ({report['sizes']['n_crops']} x "
            f"{report['sizes']['feature_dim']}, {report['sizes']['batch']}+{report['sizes']['batch']} videos a "
            f"step, each trial's {report['sizes']['videos']}-video array resident), {report['steps']} timed steps:",
            packs,
            f"Total throughput rises with every trial added: {'yes' if a['throughput_rises'] else 'NO'}. One trial "
            f"in bf16: {bf16['step_s']:.4f} s a step, {bf16['videos_per_s']:.0f} videos/s "
            f"({bf16['videos_per_s'] / report['packs'][0]['videos_per_s']:.2f}x fp32).",
            "Residency (torch.profiler over the timed steps):", residency,
            f"No host-to-device copy per step with the array resident (one per epoch: its row indices): "
            f"{ {True: 'yes', False: 'NO', None: 'not measured (no CUDA)'}[a['no_htod_per_step']] }.",
            f"bf16 against fp32 (configs/demo.yaml, seeds {report['seeds']}, {report['sizes']['epochs']} epochs):",
            precision]
    if "bf16_within_noise" in a:
        text.append(f"bf16 within noise of fp32 (|mean AUC difference| <= 2 std over seeds): "
                    f"{'yes' if a['bf16_within_noise'] else 'NO'}.")
    if report.get("sweep"):
        sweep = report["sweep"]
        text.append(f"Packed sweep (spaces/demo.yaml, --gpus-per-trial 0.25): exit {sweep['exit']} in "
                    f"{sweep['seconds']:.0f} s; {' '.join(sweep['plan'])} Trials trained on: "
                    f"{', '.join(sweep['trial_devices']) or '-'}.")
    return ("\n\n" if markdown else "\n").join(text)


def pending_section() -> str:
    """RESULTS.md's ``## gpu`` text until the script has run on a GPU."""
    return (f"Pending: no GPU was available where these benchmarks were run. On a CUDA machine (H100/H200 class; "
            f"a few minutes) run\n\n    {COMMAND}\n\nwhich measures total throughput with 1, 2, 4 and 8 "
            "RTFM trials packed on one GPU (UCF size, each with its training array resident), counts host-to-device "
            "copies per training step with torch.profiler (array resident vs on the host), compares bf16 with fp32 "
            "test AUC/AP over seeds on the demo dataset, and runs a packed sweep (`--gpus-per-trial 0.25`); it "
            "then replaces this section with the figures. On the CPU, `tests/test_gpu_paths.py` checks what a "
            "GPU-less machine does with GPU settings (bf16 falls back to float32 with the same numbers, a sweep's "
            "trials ask for CUDA only when they get GPUs) and `tests/test_benchmarks_sweep.py` runs this script's "
            "code with `--allow-cpu`; with CUDA, `tests/test_gpu_paths.py` also checks that a resident array needs "
            "no host-to-device copy per step and that bf16 trains.")


def results_section(report: dict[str, Any]) -> str:
    from benchmarks.results_file import run_line

    return run_line(COMMAND) + "\n\n" + render(report, markdown=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks.results_file import add_output_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, packs 1,2, no sweep (seconds)")
    parser.add_argument("--packs", default=None, help="trials packed at once, comma-separated (default 1,2,4,8)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per packed trial (default 60)")
    parser.add_argument("--seeds", default=None, help="seeds of the bf16/fp32 comparison (default 0,1,2)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the packed search.run sweep")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no CUDA (tests)")
    add_output_arguments(parser, "gpu")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


CHILDREN = {"pack": child_pack, "residency": child_residency, "precision": child_precision}


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(RESULT_PREFIX + json.dumps(CHILDREN[spec["kind"]](spec)), flush=True)
        return None
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu_packing: CUDA is not available here; skipped (run it on a GPU machine, or --allow-cpu to test "
              "the code on the CPU).")
        report: dict[str, Any] = {"skipped": "no CUDA"}
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return report
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    tiny = args.quick or not on_gpu
    sizes = TINY if tiny else PAPER
    packs = [int(p) for p in (args.packs or ("1,2" if args.quick else "1,2,4,8")).split(",")]
    steps = args.steps or (2 if tiny else 60)
    seeds = [int(s) for s in (args.seeds or ("0" if tiny else "0,1,2")).split(",")]
    spec = {"device": device, "sizes": asdict(sizes), "steps": steps}
    work = Path(tempfile.mkdtemp(prefix="wsvad-gpu-packing-"))
    os.environ.setdefault("VAD_CACHE_DIR", str(work / "cache"))
    report = {"device": device, "device_name": torch.cuda.get_device_name() if on_gpu else "CPU (--allow-cpu)",
              "sizes": asdict(sizes), "steps": steps, "seeds": seeds, "quick": args.quick}
    print(f"== gpu_packing on {report['device_name']}", flush=True)
    try:
        report["packs"] = []
        for count in packs:
            print(f"== {count} trial(s) packed", flush=True)
            report["packs"].append(measure_pack(count, spec))
        print("== 1 trial in bf16", flush=True)
        report["pack_bf16"] = measure_pack(1, {**spec, "precision": "bf16"})
        print("== residency (torch.profiler)", flush=True)
        report["residency"] = run_child("residency", spec)
        print("== bf16 against fp32", flush=True)
        report["precision"] = run_child("precision", {"device": device, "seeds": seeds, "epochs": sizes.epochs,
                                                      "tiny": tiny, "out": str(work / "precision")})
        if not (args.no_sweep or args.quick):
            print("== a packed sweep (--gpus-per-trial 0.25)", flush=True)
            report["sweep"] = packed_sweep(work, tiny)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["analysis"] = analyse(report)
    from benchmarks.results_file import publish

    publish(report, render(report), section="gpu", results_section=results_section, json_path=args.json,
            results_path=args.results if on_gpu else None)
    return report


if __name__ == "__main__":
    main()
