"""The sweep-performance benchmarks (``data_path``, ``sweep_overhead``, ``early_stopping``, ``gpu_packing``): each
``--quick`` mode end to end (the structure of what they report, never their timings), and their measuring parts
on known inputs: the authors'-style loader reads the same batches as the cache, ``/proc`` readings see a mapped
file and a child's CPU time, epochs-to-reach counting, slot assignment, and the RESULTS.md section writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.data_path import AuthorsLoader, authors_resample  # noqa: E402
from benchmarks.early_stopping import analyse as analyse_grid  # noqa: E402
from benchmarks.early_stopping import epochs_to_reach  # noqa: E402
from benchmarks.proc import TreeCpu, mapping_memory, own_memory, shared_memory  # noqa: E402
from benchmarks.results_file import update_section  # noqa: E402
from benchmarks.sweep_overhead import analyse as analyse_overhead  # noqa: E402
from benchmarks.sweep_overhead import slots  # noqa: E402
from vad.data.resample import resample_segments  # noqa: E402

linux_proc = pytest.mark.skipif(not Path("/proc/self/smaps_rollup").is_file(), reason="needs Linux /proc")


def run_quick(script: str, tmp_path: Path, *args: str, timeout: int = 600) -> tuple[str, dict]:
    out = tmp_path / f"{script}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / f"{script}.py"), "--quick",
                           "--json", str(out), *args], capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


# ------------------------------------------------------------------------------------------------ data_path

def test_authors_loader_makes_the_cache_rows(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for index, length in enumerate((5, 32, 77)):  # shorter than, equal to and longer than 32 segments
        features = rng.random((length, 3, 8), dtype=np.float32)  # (T, N, C) as the ucf layout stores it
        files.append(tmp_path / f"v{index}.npy")
        np.save(files[-1], features)
    loader = AuthorsLoader(files, n_segments=32)
    batch = loader.batch(np.array([2, 0, 1]))
    for position, row in enumerate((2, 0, 1)):
        expected = resample_segments(np.load(files[row]), 32, "mean").transpose(1, 0, 2)
        assert np.array_equal(batch[position].numpy(), expected)
    crop = rng.random((50, 4), dtype=np.float32)
    assert np.array_equal(authors_resample(crop, 32), resample_segments(crop, 32, "mean"))


@pytest.mark.slow
def test_data_path_quick(tmp_path):
    stdout, report = run_quick("data_path", tmp_path)
    assert {"prepare", "start", "epoch", "sharing", "tables"} <= set(report)
    assert set(report["prepare"]) == {"demo", "ucf", "xd", "ucf-wide"}
    assert {"ucf/manifest", "ucf/prepare", "ucf/authors", "xd/manifest", "demo/manifest"} <= set(report["start"])
    assert set(report["start"]["ucf/manifest"]["phases"]) == {"manifest"}  # the trial opened the manifest
    assert "dataset" in report["start"]["ucf/prepare"]["phases"]  # ... and this one re-read the dataset
    for key in ("ucf/cache", "ucf/authors", "ucf-wide/cache", "ucf-wide/authors"):
        assert report["epoch"][key]["max_abs_diff_vs_cache"] == 0.0  # the same batches both ways
    assert [entry["mode"] for entry in report["sharing"]] == ["mapped", "mapped", "private", "private"]
    if Path("/proc/self/smaps_rollup").is_file():
        assert 0.8 < report["tables"]["copies_of_array"]["mapped"] < 1.3  # one copy between two trials
    for title in ("One-off preparation", "Trial start", "One epoch", "Two trials at once", "Targets:"):
        assert title in stdout


# ------------------------------------------------------------------------------------------------ /proc

@linux_proc
def test_proc_readings_see_a_mapped_file_and_a_childs_cpu(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.ones((256, 1024), dtype=np.float32))  # 1 MiB
    mapped = np.load(path, mmap_mode="r")
    assert float(mapped.sum()) == 256 * 1024
    pages = mapping_memory(os.getpid(), path)
    assert pages["rss"] >= 1 << 20 and pages["pss"] >= 1 << 20  # mapped by this process alone
    assert {"rss", "pss", "shared", "private", "anonymous"} <= set(shared_memory(os.getpid()))
    assert own_memory()["peak_rss"] >= own_memory()["rss"] > 0
    with TreeCpu(interval=0.05) as cpu:
        subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\n"
                        "while time.process_time() - t < 0.6: pass"], check=True)
    assert cpu.seconds >= 0.4


def test_results_section_replaces_only_its_own(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## step_time\n\nfast\n\n## data_path\n\nold\n\n## gpu\n\npending\n")
    update_section("data_path", "new figures\n\n| a |\n|---|\n| 1 |", results)
    update_section("early_stopping", "epochs", results)
    text = results.read_text()
    assert "old" not in text and "new figures" in text and "fast" in text and "pending" in text
    assert text.index("## step_time") < text.index("## data_path") < text.index("## gpu") < text.index(
        "## early_stopping")
    assert text.count("## data_path") == 1


# ------------------------------------------------------------------------------------------------ early stopping

def test_epochs_are_counted_until_the_best_so_far_reaches_the_grids():
    def event(time, trial, value, lr):
        return {"time": time, "trial": trial, "epoch": 1, "value": value, "params": {"optim.lr": lr}}

    grid = [event(1, 1, 0.7, 1e-3), event(2, 1, 0.9, 1e-3), event(3, 2, 0.5, 1e-2), event(4, 2, 0.6, 1e-2),
            event(5, 3, 0.4, 1e-1), event(6, 3, 0.45, 1e-1)]
    tpe = [event(1, 1, 0.5, 1e-2), event(2, 2, 0.7, 1e-3), event(3, 2, 0.895, 1e-3), event(4, 3, 0.9, 1e-3)]
    assert epochs_to_reach(tpe, 0.9) == 4 and epochs_to_reach(tpe, 0.89) == 3 and epochs_to_reach(tpe, 0.95) is None
    report = analyse_grid(grid, {0: tpe}, tolerance=0.0, tolerances=(0.0, 0.01))
    assert report["grid_best"] == 0.9 and report["grid_best_cell"] == {"optim.lr": 1e-3}
    assert report["grid_epochs"] == 6 and report["seeds"][0]["epochs_to_reach"] == 4
    assert report["seeds"][0]["fractions"] == {0.0: pytest.approx(4 / 6), 0.01: pytest.approx(3 / 6)}
    assert report["seeds"][0]["distinct_cells"] == 2 and not report["met_target_all_seeds"]


@pytest.mark.slow
def test_early_stopping_quick(tmp_path):
    stdout, report = run_quick("early_stopping", tmp_path)
    analysis = report["analysis"]
    assert analysis["grid_epochs"] == 4 * 2  # a 2 x 2 grid, every cell its 2 epochs
    assert len(analysis["cells"]) == 4 and list(analysis["seeds"]) == ["0"]
    assert analysis["seeds"]["0"]["total_epochs"] <= 4 * 2
    assert "TPE + ASHA" in stdout and "fraction" in stdout


# ------------------------------------------------------------------------------------------------ sweep overhead

def test_trials_are_assigned_to_the_slots_they_ran_in():
    trials = [{"started": 0, "completed": 10}, {"started": 1, "completed": 9}, {"started": 9.5, "completed": 20},
              {"started": 10.2, "completed": 19}]
    assert slots(trials) == [[0, 3], [1, 2]]
    for trial, first in zip(trials, (1.0, 2.0, 10.0, 10.5)):
        trial.update(first_result=first, first_iteration_s=0.5)
    sweep = {"wall_s": 25.0, "cpu_s": 40.0, "phases": {"tuner.fit": 21.0}, "trials": trials,
             "moments": {"tuner.fit began": -1.0, "tuner.fit ended": 20.0}}
    analysis = analyse_overhead(sweep, [8.0, 8.0, 9.0, 8.0], None, concurrency=2, baseline_cpu_s=33.0)
    assert analysis["baseline_s"] == pytest.approx(16.5) and analysis["overhead_fraction"] == pytest.approx(8.5 / 25)
    assert analysis["first_trial_extra_s"] == [2.0, 0.0]
    assert analysis["steady_trial_extra_s"] == [pytest.approx(0.8 + 0.2), pytest.approx(1.5 + 0.5)]
    assert analysis["fit_to_first_trial_s"] == 1.0 and analysis["last_trial_to_fit_end_s"] == 0.0


@pytest.mark.slow
def test_sweep_overhead_quick(tmp_path):
    stdout, report = run_quick("sweep_overhead", tmp_path)
    analysis, sweep = report["analysis"], report["sweep"]
    assert len(sweep["trials"]) == 2 and len(report["sequential_s"]) == 2
    assert all(trial["epochs"] == 2 for trial in sweep["trials"])  # fixed epochs, no early stopping
    assert {"ray start", "tuner.fit", "mlflow (driver)"} <= set(sweep["phases"])
    assert len(report["concurrent"]["lanes"]) == 2
    assert {"overhead_fraction", "baseline_s", "sweep_wall_s", "first_trial_extra_s"} <= set(analysis)
    assert "Overhead:" in stdout and "Where the sweep's time went" in stdout


# ------------------------------------------------------------------------------------------------ gpu

@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip without CUDA")
def test_gpu_packing_skips_cleanly_without_cuda(tmp_path):
    stdout, report = run_quick("gpu_packing", tmp_path)
    assert report == {"skipped": "no CUDA"} and "skipped" in stdout


@pytest.mark.slow
def test_gpu_packing_code_runs_on_the_cpu(tmp_path):
    stdout, report = run_quick("gpu_packing", tmp_path, "--allow-cpu")
    assert [pack["trials"] for pack in report["packs"]] == [1, 2]
    assert all(pack["videos"] > 0 for pack in report["packs"])
    assert set(report["residency"]) == {"device", "host"}
    assert [run["precision"] for run in report["precision"]["runs"]] == ["fp32", "bf16"]
    assert set(report["analysis"]["precision"]) == {"fp32", "bf16"}
    assert "Residency" in stdout and "bf16 against fp32" in stdout
