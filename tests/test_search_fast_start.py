"""The fast start of a local Ray for a sweep (issue 14): Tune's trial actors without a runtime environment of their
own (so they land on the workers the raylet prestarts), those workers preloading torch and the training code, actors
reused across trials, and no autoscaler or log monitor (``ray.shutdown`` waited a second for the former)."""

import sys
import time
from pathlib import Path

import pytest
from ray.tune.execution.class_cache import _ActorClassCache

from search.adapters.tune import TUNE_ACTOR_ENV, plain_trial_actors
from search.sweep.session import WORKER_PRELOAD, connect, shutdown

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `benchmarks` is a folder of scripts, not an installed package
    sys.path.insert(0, str(REPO_ROOT))


class _Trainable:
    pass


@pytest.fixture
def restore_tune():
    yield
    plain_trial_actors(None)


def _runtime_env(remote) -> dict:
    return remote._default_options.get("runtime_env") or {}


def test_trial_actors_lose_their_runtime_env_only_where_the_workers_inherit_it(restore_tune):
    assert _runtime_env(_ActorClassCache().get(_Trainable)) == {"env_vars": TUNE_ACTOR_ENV}
    plain_trial_actors({**TUNE_ACTOR_ENV, "OTHER": "x"})
    assert _runtime_env(_ActorClassCache().get(_Trainable)) == {}
    plain_trial_actors({})  # PL_DISABLE_FORK not in the raylet's environment: Tune's own runtime env stays
    assert _runtime_env(_ActorClassCache().get(_Trainable)) == {"env_vars": TUNE_ACTOR_ENV}
    plain_trial_actors(TUNE_ACTOR_ENV)
    plain_trial_actors(None)  # a joined cluster, or after the shutdown: Tune's behaviour again
    assert _runtime_env(_ActorClassCache().get(_Trainable)) == {"env_vars": TUNE_ACTOR_ENV}


def _worker_pids(raylet_pid: int) -> set[int]:
    import psutil

    """The raylet's idle Python workers (their title ``ray::IDLE``, or their command line before they set it)."""
    return {child.pid for child in psutil.Process(raylet_pid).children()
            if any("ray::IDLE" in part or "default_worker.py" in part for part in child.cmdline())}


@pytest.mark.slow
def test_a_local_sweeps_trials_run_on_the_prestarted_preloaded_workers_and_reuse_them(tmp_path, restore_tune):
    import ray
    from ray import tune

    if ray.is_initialized():
        pytest.skip("a Ray instance of another test is connected")

    def probe(params: dict, setup: dict) -> None:  # nested: pickled by value, the workers cannot import tests/
        import os
        import sys

        from ray import tune

        preloaded = [name for name in setup["modules"] if name in sys.modules]
        tune.report({"pid": os.getpid(), "preloaded": len(preloaded)})

    assert connect(None, log_to_driver=False, quiet=True)
    try:
        node = ray._private.worker._global_node
        raylet = node.all_processes["raylet"][0].process.pid
        deadline, prestarted = time.monotonic() + 30, set()
        while time.monotonic() < deadline and len(prestarted) < 2:
            prestarted = _worker_pids(raylet)
            time.sleep(0.2)
        assert len(prestarted) >= 2, "the raylet prestarted no workers"
        trainable = tune.with_resources(tune.with_parameters(probe, setup={"modules": list(WORKER_PRELOAD)}),
                                        {"cpu": 1, "gpu": 0})
        results = tune.Tuner(
            trainable, param_space={"x": tune.grid_search(list(range(4)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="probe", verbose=0)).fit()
        pids = {result.metrics["pid"] for result in results}
        assert all(result.metrics["preloaded"] == len(WORKER_PRELOAD) for result in results)
        assert len(pids) <= 2, f"4 trials on {len(pids)} workers: actors were not reused"
        assert pids <= prestarted, f"trial actors on new workers {pids - prestarted}, not the prestarted {prestarted}"
        assert not {"monitor", "log_monitor"} & set(node.all_processes), "the local Ray started its monitors"
    finally:
        shutdown()
    assert not ray.is_initialized()
    assert _runtime_env(_ActorClassCache().get(_Trainable)) == {"env_vars": TUNE_ACTOR_ENV}


def test_the_benchmarks_before_after_table_gives_each_variants_mean_and_half_range():
    import re

    from benchmarks.sweep_overhead import PARTS, render_compare

    def run(variant: str, fixed: float) -> dict:
        return {"variant": variant, **{key: 1.0 for key, _ in PARTS}, "fixed_s": fixed, "per_trial_s": None}

    text = render_compare([run("previous", 15.0), run("after", 9.0), run("after", 11.0), run("previous", 12.0)])
    before = next(line for line in text.splitlines() if line.startswith("previous (mean"))
    after = next(line for line in text.splitlines() if line.startswith("after (mean"))
    assert re.search(r"\b13\.50 \+- 1\.50\b", before) and re.search(r"\b10\.00 \+- 1\.00\b", after)
    assert after.rstrip().endswith("-")  # no steady-state trial in any run: no figure, not a zero
