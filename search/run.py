"""``python -m search.run --space spaces/demo.yaml``: a hyperparameter sweep with Ray Tune, Optuna, ASHA and MLflow.

The driver validates the space (before Ray starts), joins or starts Ray, checks the trial resources against the
cluster, prepares the data once (feature cache, split, S3R dictionary: trials only open the cached files), opens
the sweep's MLflow parent run, runs the Tuner (or restores it with ``--resume``), then prints the results table
and writes the best config and the summary.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from search.cli import TUNE_ERRORS, add_cluster_args, run_command, tune_session
from search.space import SearchSpace, load_space
from search.sweep import SweepPaths, SweepRecord, SweepStateError, new_sweep, now, resumed_sweep
from search.tracking import (
    NOTE_TAG,
    SweepExistsError,
    SweepFacts,
    TrackingTarget,
    default_tracking_uri,
    finish_parent,
    git_commit,
    log_parent,
    open_sweep,
    ui_command,
)
from search.tuner import TunerSpec, fit, make_tuner, plan_trials

REPO_ROOT = Path(__file__).resolve().parents[1]


SWEEP_ERRORS = (*TUNE_ERRORS, SweepExistsError)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m search.run", description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, help="a search-space file, e.g. spaces/demo.yaml")
    parser.add_argument("--name", help="sweep name (default: <space>-<date>-<time>); one MLflow experiment each")
    parser.add_argument("--num-samples", type=int, help="number of trials (default: the space's)")
    parser.add_argument("--storage", help="Tune storage folder, shared by all nodes of a cluster "
                                          "(default: ./ray_results)")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                        help="continue an interrupted sweep: --name's, the sweep folder PATH, or this space's latest")
    parser.add_argument("--smoke-test", action="store_true",
                        help="one trial, one epoch, a few small steps on synthetic data shaped like the dataset")
    add_cluster_args(parser, "trial")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_command(run_sweep, parse_args(argv), SWEEP_ERRORS)


def run_sweep(args: argparse.Namespace) -> int:
    """The whole sweep; returns the exit status (0 done, 1 interrupted, 2 refused)."""
    space = load_space(args.space).with_settings(num_samples=args.num_samples, cpus_per_trial=args.cpus_per_trial,
                                                 gpus_per_trial=args.gpus_per_trial)
    resume = args.resume is not None
    scratch = None
    if args.smoke_test:
        if resume:
            raise SweepStateError("--smoke-test starts a fresh one-trial sweep; it cannot --resume")
        space = space.for_smoke_test()
        if not args.storage:  # keep smoke runs out of the real storage and tracking store
            scratch = Path(tempfile.mkdtemp(prefix="wsvad-smoke-"))
    storage = Path(args.storage or scratch or Path.cwd() / "ray_results").expanduser().resolve()
    if resume and args.num_samples is not None:
        raise SweepStateError("--num-samples cannot change on --resume (the sweep keeps its number of trials)")
    if resume:
        paths, record = resumed_sweep(space, storage, args.name, args.resume or None)
        tracking_uri = args.tracking_uri or record.tracking_uri
    else:
        paths = new_sweep(space, storage, args.name)
        tracking_uri = args.tracking_uri or default_tracking_uri(scratch or Path.cwd())
        record = SweepRecord(paths.name, str(space.path), space.digest, tracking_uri, now(), space.smoke)

    with tune_session(space, args) as prepared:
        status = _run(space, paths, record, tracking_uri, resume, prepared)
    if scratch is not None and status == 0:
        shutil.rmtree(scratch, ignore_errors=True)
    elif scratch is not None:
        print(f"The smoke test's files are kept in {scratch}", file=sys.stderr)
    return status


def _run(space: SearchSpace, paths: SweepPaths, record: SweepRecord, tracking_uri: str, resume: bool,
         prepared: Any) -> int:
    from vad.train import resolve_config

    if resume and record.gpus_per_trial is not None:  # the restored trials keep the resources they had
        space = space.with_settings(cpus_per_trial=record.cpus_per_trial, gpus_per_trial=record.gpus_per_trial)
    space, plan = plan_trials(space)
    resolved = resolve_config(space.sweep_config(), prepared)

    target = open_sweep(tracking_uri, paths.name, resume=resume)
    record = replace(record, cpus_per_trial=space.resources.cpus_per_trial,
                     gpus_per_trial=space.resources.gpus_per_trial)
    record.save(paths.search_dir)
    target.save(paths.search_dir)
    if not resume:
        _log_sweep_start(space, paths, target, resolved, prepared.describe())

    facts = SweepFacts(paths.name, str(paths.experiment_dir), space.base.model_name,
                       str(prepared.describe()["dataset"]), resolved, space)
    tuner = make_tuner(TunerSpec(space, paths, facts, plan), resume=resume)
    if resume:
        print(f"Resuming sweep {paths.name} from {paths.experiment_dir}", flush=True)
    fewer = "" if space.trials_to_run == space.search.num_samples else f" (the space has {space.finite_size} points)"
    print(f"Sweep {paths.name}: {space.trials_to_run} trial(s){fewer} of {space.base.model_name} "
          f"({space.search.sampler}, {space.scheduler.name}); MLflow: {tracking_uri}", flush=True)
    try:
        trials = fit(tuner, paths, facts)
    except BaseException as exc:  # a second Ctrl-C, or an error: no summary, but no run is left RUNNING either
        try:
            finish_parent(target, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except Exception as cleanup:  # the original error matters more
            print(f"(could not close the sweep's MLflow run: {cleanup})", file=sys.stderr)
        raise
    return _finish(space, paths, target, trials)


def _log_sweep_start(space: SearchSpace, paths: SweepPaths, target: TrackingTarget, resolved: Any,
                     data: dict[str, Any]) -> None:
    """Parent run: provenance tags, the sweep settings as params, the space file and resolved base config."""
    base_file = paths.search_dir / "base_config.yaml"
    base_file.write_text(yaml.safe_dump(resolved.to_dict(), sort_keys=False))
    space_file = paths.search_dir / "space.yaml"
    space_file.write_text(space.text)
    tags = {
        "sweep": paths.name, "space_file": str(space.path), "base_config": str(space.base_path),
        "git_commit": git_commit(REPO_ROOT), "model": space.base.model_name, "dataset": data["dataset"],
        "dataset_yaml": data.get("dataset_yaml"), "split_file": data.get("split_file"),
        "split_sha256": data.get("split_sha256"), "train_cache_key": data.get("train_cache_key"),
        "experiment_dir": str(paths.experiment_dir), "smoke_test": str(space.smoke).lower(),
        "searched": ",".join(space.params),
    }
    params = {"search.sampler": space.search.sampler, "search.num_samples": space.search.num_samples,
              "search.epochs": space.search.epochs, "search.metric": space.search.metric,
              "search.mode": space.search.mode, "search.seed": space.search.seed,
              "search.checkpoint_every": space.search.checkpoint_every,
              "scheduler.name": space.scheduler.name, "scheduler.grace_period": space.scheduler.grace_period,
              "scheduler.reduction_factor": space.scheduler.reduction_factor,
              "resources.cpus_per_trial": space.resources.cpus_per_trial,
              "resources.gpus_per_trial": space.resources.gpus_per_trial,
              **{f"space.{name}": param.describe() for name, param in space.params.items()}}
    log_parent(target, tags={k: v for k, v in tags.items() if v is not None}, params=params,
               files={"space": space_file, "config": base_file})


def _finish(space: SearchSpace, paths: SweepPaths, target: TrackingTarget, trials: list) -> int:
    """Results table, summary files and the parent run's end; 1 when the sweep was interrupted."""
    from search.summary import collect_rows, ranked, results_table, write_summary

    rows = collect_rows(trials, space, paths.experiment_dir)
    interrupted = any(row.outcome.status == "interrupted" for row in rows) or len(rows) < space.trials_to_run
    print(f"\nSweep {paths.name}: top trials by best {space.search.metric} "
          f"(test metrics of each trial's selected checkpoint)\n")
    print(results_table(rows, space))
    files = write_summary(paths.search_dir, rows, space, paths.name)
    best = ranked(rows, space.search.mode)[0] if rows else None
    tags: dict[str, Any] = {"num_trials": len(rows), NOTE_TAG: files["summary.md"].read_text()}
    metrics: dict[str, float] = {}
    if best is not None and best.objective is not None:
        tags.update(best_trial_id=best.trial_id, best_trial_number=best.number)
        metrics[f"best_{space.search.metric}"] = best.objective
        metrics.update({f"best_trial.selected_{k}": v for k, v in best.selected_test.items()})
    finish_parent(target, "KILLED" if interrupted else "FINISHED", tags=tags, metrics=metrics,
                  files=list(files.values()))
    if "best_config.yaml" in files:
        print(f"\nBest config: {files['best_config.yaml']}\n  python -m vad.train --config "
              f"{files['best_config.yaml']}")
    print(f"MLflow: experiment {paths.name!r} in {target.tracking_uri}\n  {ui_command(target.tracking_uri)}")
    failed = [row for row in rows if row.outcome.status in ("failed", "diverged")]
    if space.smoke and (failed or not rows or interrupted):
        print(f"error: smoke test of {space.path} failed: "
              + ("; ".join(f"t{row.number:03d} {row.outcome.status}: {(row.outcome.error or '').strip()[-500:]}"
                           for row in failed) or "the trial did not finish"), file=sys.stderr)
        return 1
    if interrupted:
        print(f"The sweep was interrupted; continue it with: python -m search.run --space {space.path} "
              f"--name {paths.name} --storage {paths.storage} --resume")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
