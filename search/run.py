"""``python -m search.run --space spaces/demo.yaml``: a hyperparameter sweep with Ray Tune, Optuna, ASHA and MLflow.

The driver validates the space (before Ray starts), joins or starts Ray, checks the trial resources against the
cluster, prepares the data once (feature cache, split, S3R dictionary: trials only open the cached files), opens
the sweep's MLflow parent run, runs the Tuner (or restores it with ``--resume``), prints the results table,
confirms the top configurations and the paper default with fresh seeds (:mod:`search.sweep.confirm`), and writes the
best config and the summary.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from search.cli import add_cluster_args, add_sweep_name, make_parser, run_command, start_ray, tune_errors

if TYPE_CHECKING:  # Ray, MLflow, Optuna and torch are imported when a sweep runs, not for --help
    from search.sweep.record import SweepPaths, SweepRecord
    from search.sweep.session import RayStart
    from search.sweep.space import SearchSpace
    from search.sweep.tracking import TrackingTarget

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    "python -m search.run --space spaces/demo.yaml",
    "python -m search.run --space spaces/rtfm_ucf.yaml --sweep rtfm-ucf --num-samples 60 --gpus-per-trial 0.25",
    "python -m search.run --space spaces/rtfm_ucf.yaml --sweep rtfm-ucf --resume",
    "python -m search.run --space spaces/demo.yaml --smoke-test",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = make_parser("python -m search.run", __doc__, EXAMPLES)
    parser.add_argument("--space", required=True, help="a search-space file, e.g. spaces/demo.yaml")
    add_sweep_name(parser, "sweep name (default: <space>-<date>-<time>); one MLflow experiment each", "--name")
    parser.add_argument("--num-samples", type=int, help="number of trials (default: the space's)")
    parser.add_argument("--storage", help="Tune storage folder, shared by all nodes of a cluster "
                                          "(default: ./ray_results)")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                        help="continue an interrupted sweep: --sweep's, the sweep folder PATH, or this space's latest")
    parser.add_argument("--smoke-test", action="store_true",
                        help="one trial, one epoch, a few small steps on synthetic data shaped like the dataset")
    parser.add_argument("--diagnostic", action="store_true",
                        help="allow a test-set ranking metric (test_auc, test_ap): the papers' test-selected "
                             "protocol, tagged protocol=test-selected in MLflow")
    parser.add_argument("--show-test", action="store_true",
                        help="add the selected checkpoints' test metrics to the results table (not used for choosing)")
    parser.add_argument("--confirm-top", type=int, metavar="K",
                        help="after the search, retrain the K best configurations and the paper default with fresh "
                             "seeds (default: the space's confirm.top, else 3; 0 skips the confirmation)")
    parser.add_argument("--confirm-seeds", type=int, metavar="N",
                        help="fresh seeds per confirmed configuration (default: the space's confirm.seeds, else 3; "
                             "0 skips the confirmation)")
    parser.add_argument("--optuna-storage", metavar="URL",
                        help="Optuna storage of the sweep's study (default: sqlite:///<sweep folder>/search/optuna.db)")
    parser.add_argument("--trust-storage", action="store_true",
                        help="--resume from a sweep folder owned by another user (Tune unpickles its state from "
                             "there: whoever can write it runs code in this driver)")
    add_cluster_args(parser, "trial")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A new sweep begins Ray now, in the background: its processes and workers start while this process imports
    # MLflow, Optuna and torch and reads the space (a resume first checks that there is something to resume, and a
    # mistyped space path is refused at once, without a Ray start to wait for before exiting).
    _sigterm_as_ctrl_c()
    ray_start = start_ray(args) if args.resume is None and Path(args.space).is_file() else None
    try:
        from search.sweep.tracking import SweepExistsError

        return run_command(lambda parsed: run_sweep(parsed, ray_start), args, (*tune_errors(), SweepExistsError))
    finally:
        if ray_start is not None:
            ray_start.close()


def run_sweep(args: argparse.Namespace, ray_start: RayStart | None = None) -> int:
    """The whole sweep; returns the exit status (0 done, 1 interrupted, 2 refused). The sweep's folders are left in
    ``args.sweep_paths`` (what :func:`search.api.run_sweep` reads its results from). ``ray_start``: Ray begun
    earlier (:func:`search.cli.start_ray`); otherwise it begins once the sweep is checked."""
    from search.cli import tune_session
    from search.sweep.record import SweepRecord, SweepStateError, new_sweep, now, resumed_sweep
    from search.sweep.space import load_space
    from search.sweep.tracking import check_tracking, default_tracking_uri

    space = load_space(args.space, diagnostic=args.diagnostic).with_settings(
        num_samples=args.num_samples, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial)
    resume = args.resume is not None
    scratch = None
    if args.smoke_test:
        if resume:
            raise SweepStateError("--smoke-test starts a fresh one-trial sweep; it cannot --resume")
        space = space.for_smoke_test()
        if not args.storage:  # keep smoke runs out of the real storage and tracking store
            scratch = Path(tempfile.mkdtemp(prefix="wsvad-smoke-"))
    storage = Path(args.storage or scratch or Path.cwd() / "ray_results").expanduser().resolve()
    if resume:  # everything a resume needs is in the sweep record; a differing option is refused
        paths, record = resumed_sweep(space, storage, args.sweep, args.resume or None,
                                      trust_storage=args.trust_storage)
        args.sweep_paths = paths
        record.conflicts({"--num-samples": args.num_samples, "--tracking-uri": args.tracking_uri,
                          "--optuna-storage": args.optuna_storage, "--diagnostic": args.diagnostic or None})
        if record.stage == "done":
            print(f"Sweep {paths.name} is finished (its summary: {paths.search_dir / 'summary.md'}); nothing to "
                  f"resume, nothing changed", flush=True)
            return 0
        tracking_uri = record.tracking_uri
        if record.num_samples is not None:
            space = space.with_settings(num_samples=record.num_samples)
        optuna_storage = record.optuna_storage
        check_tracking(tracking_uri)
    else:
        tracking_uri = args.tracking_uri or default_tracking_uri(scratch or Path.cwd())
        check_tracking(tracking_uri)  # before the sweep's folder exists: an unreachable server takes no name
        paths = new_sweep(space, storage, args.sweep)
        args.sweep_paths = paths
        optuna_storage = args.optuna_storage
        record = SweepRecord(paths.name, str(space.path), space.digest, tracking_uri, now(), space.smoke,
                             num_samples=space.search.num_samples, optuna_storage=optuna_storage,
                             diagnostic=bool(args.diagnostic))
    from search.sweep.confirm import recorded_settings

    try:
        record = recorded_settings(record, space, args.confirm_top, args.confirm_seeds, resume=resume)
        with tune_session(space, args, ray_start) as prepared:
            status = _run(space, paths, record, tracking_uri, resume, prepared, show_test=args.show_test,
                          verbose=args.verbose, optuna_storage=optuna_storage)
    except BaseException as exc:
        if not resume and not (paths.search_dir / "sweep.json").exists():
            shutil.rmtree(paths.experiment_dir, ignore_errors=True)  # nothing was recorded: the name stays free
        full = disk_full(exc)
        if full is not None:
            full = str(paths.experiment_dir) if full == "?" else full
            raise SweepStateError(f"No space left on device ({full}); the sweep stopped and is resumable: free "
                                  f"some space, then run the same command with --resume") from exc
        raise
    if scratch is not None and status == 0:
        shutil.rmtree(scratch, ignore_errors=True)
    elif scratch is not None:
        print(f"The smoke test's files are kept in {scratch}", file=sys.stderr)
    return status


def _run(space: SearchSpace, paths: SweepPaths, record: SweepRecord, tracking_uri: str, resume: bool,
         prepared: Any, *, show_test: bool = False, verbose: bool = False, optuna_storage: str | None = None) -> int:
    from search.sweep.tracking import SweepFacts, finish_parent, open_sweep
    from search.sweep.tuner import TunerSpec, fit, make_tuner, optuna_storage_url, plan_trials, reconcile
    from vad.builders import resolve_config

    if resume and record.gpus_per_trial is not None:  # the restored trials keep the resources they had
        space = space.with_settings(cpus_per_trial=record.cpus_per_trial, gpus_per_trial=record.gpus_per_trial)
    space, plan = plan_trials(space)
    resolved = resolve_config(space.sweep_config(), prepared)

    from search.sweep.record import SweepRecord, SweepStateError, clean_temporary

    _sigterm_as_ctrl_c()
    target = open_sweep(tracking_uri, paths.name, resume=resume)
    record = replace(record, cpus_per_trial=space.resources.cpus_per_trial,
                     gpus_per_trial=space.resources.gpus_per_trial)
    record.save(paths.search_dir)
    target.save(paths.search_dir)
    if not resume:
        _log_sweep_start(space, paths, target, resolved, prepared.describe())

    facts = SweepFacts(paths.name, str(paths.experiment_dir), space.base.model_name,
                       str(prepared.describe()["dataset"]), resolved, space)
    search_done = resume and record.stage != "search"  # the confirmation had begun: the search is not restored
    tuner = None if search_done else make_tuner(
        TunerSpec(space, paths, facts, plan, verbose=verbose, optuna_storage=optuna_storage), resume=resume)
    if resume:
        print(f"Resuming sweep {paths.name} from {paths.experiment_dir}", flush=True)
    fewer = "" if space.trials_to_run == space.search.num_samples else f" (the space has {space.finite_size} points)"
    print(f"Sweep {paths.name}: {space.trials_to_run} trial(s){fewer} of {space.base.model_name} "
          f"({space.search.sampler}, {space.scheduler.name}); MLflow: {tracking_uri}", flush=True)
    try:
        trials = reconcile(paths, facts) if tuner is None else fit(tuner, paths, facts)
    except BaseException as exc:  # a second Ctrl-C, or an error: no summary, but no run is left RUNNING either
        try:  # a full disk is an interruption too: the sweep resumes once space is freed
            finish_parent(target, "KILLED" if isinstance(exc, KeyboardInterrupt) or disk_full(exc) else "FAILED")
        except Exception as cleanup:  # the original error matters more
            print(f"(could not close the sweep's MLflow run: {cleanup})", file=sys.stderr)
        raise
    finally:
        clean_temporary(paths.experiment_dir)
    from search.sweep.tuner import stopped_by_full_disk

    if stopped_by_full_disk(paths, trials):  # a full disk interrupts the sweep; it does not fail its trials
        finish_parent(target, "KILLED")
        raise SweepStateError(f"No space left on device ({paths.experiment_dir}); the sweep stopped and is "
                              f"resumable: free some space, then run the same command with --resume")
    from search.sweep.confirm import ConfirmStage

    status = _finish(space, paths, target, trials, show_test=show_test,
                     stage=ConfirmStage(record, facts, plan, resume),
                     study=(optuna_storage_url(paths, optuna_storage), paths.name))
    if status == 0 and not space.smoke:
        replace(SweepRecord.load(paths.search_dir), stage="done").save(paths.search_dir)
    return status


def _sigterm_as_ctrl_c() -> None:
    """SIGTERM (what a cluster scheduler sends) is handled like Ctrl-C: Tune stops the trials and saves the
    experiment, the runs end KILLED and the sweep stays resumable."""
    import signal

    def as_ctrl_c(signum: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, as_ctrl_c)


def disk_full(exc: BaseException) -> str | None:
    """The path (or ``"?"``) when ``exc`` or an error it chains is ENOSPC ("No space left on device")."""
    import errno
    import re

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        if (isinstance(current, OSError) and current.errno == errno.ENOSPC) or any(
                marker in text for marker in ("No space left on device", "database or disk is full")):
            named = getattr(current, "filename", None) or re.search(r"No space left on device \(([^)]+)\)", text)
            return str(named if isinstance(named, str) else named.group(1) if named else "?")
        current = current.__cause__ or current.__context__
    return None


def _log_sweep_start(space: SearchSpace, paths: SweepPaths, target: TrackingTarget, resolved: Any,
                     data: dict[str, Any]) -> None:
    """Parent run: provenance tags, the sweep settings as params, the space file and resolved base config."""
    from search.sweep.tracking import describe_experiment, git_commit, log_parent

    base_file = paths.search_dir / "base_config.yaml"
    base_file.write_text(yaml.safe_dump(resolved.to_dict(), sort_keys=False))
    space_file = paths.search_dir / "space.yaml"
    space_file.write_text(space.text)
    tags = {
        "sweep": paths.name, "space_file": str(space.path), "base_config": str(space.base_path),
        "git_commit": git_commit(REPO_ROOT), "model": space.base.model_name, "dataset": data["dataset"],
        "dataset_yaml": data.get("dataset_yaml"), "split_file": data.get("split_file"),
        "split_sha256": data.get("split_sha256"), "train_list_sha256": data.get("train_list_sha256"),
        "train_cache_key": data.get("train_cache_key"),
        "experiment_dir": str(paths.experiment_dir), "smoke_test": str(space.smoke).lower(),
        "searched": ",".join(space.params), **space.protocol,
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
    files = {"space": space_file, "config": base_file}
    if data.get("split_file") and Path(str(data["split_file"])).is_file():
        files["split"] = Path(str(data["split_file"]))  # the split itself: its hash is split_sha256
    log_parent(target, tags={k: v for k, v in tags.items() if v is not None}, params=params, files=files)
    describe_experiment(target, f"Sweep {paths.name}: {space.base.model_name} on {data['dataset']}, space "
                        f"{space.path} ({', '.join(space.params)}), {space.search.sampler} sampler, "
                        f"{space.scheduler.name} scheduler, ranked by {space.search.metric} ({space.search.mode})",
                        {"model": space.base.model_name, "dataset": data["dataset"], "space_file": str(space.path),
                         "sampler": space.search.sampler, "scheduler": space.scheduler.name,
                         "metric": space.search.metric, "mode": space.search.mode})


def _finish(space: SearchSpace, paths: SweepPaths, target: TrackingTarget, trials: list, *,
            show_test: bool = False, stage: Any = None, study: tuple[str, str] | None = None) -> int:
    """Results table, the confirmation (``stage``), summary files, the parent run's end and the next steps (with
    ``study``: the Optuna ``(storage, study name)``); 1 when the sweep was interrupted."""
    from search.sweep.summary import collect_rows, ranked, results_table, table_caption, write_summary
    from search.sweep.tracking import NOTE_TAG, finish_parent

    rows = collect_rows(trials, space, paths.experiment_dir)
    interrupted = any(row.outcome.status == "interrupted" for row in rows) or len(rows) < space.trials_to_run
    print(f"Sweep {paths.name}: top trials, {table_caption(space, show_test=show_test)}")
    print(results_table(rows, space, show_test=show_test))
    files = write_summary(paths.search_dir, rows, space, paths.name, show_test=show_test)
    confirmation = None
    if stage is not None and not interrupted and rows:
        from search.sweep.confirm import confirm_stage  # stage: a search.sweep.confirm.ConfirmStage

        confirmation = confirm_stage(stage, space, paths, target, rows)
        interrupted = confirmation is not None and confirmation.interrupted
        files.update((confirmation.files or {}) if confirmation is not None else {})
    best = ranked(rows, space.search.mode)[0] if rows else None
    tags: dict[str, Any] = {"num_trials": len(rows), NOTE_TAG: files["summary.md"].read_text()}
    metrics: dict[str, float] = {}
    if best is not None and best.objective is not None:
        tags.update(best_trial_id=best.trial_id, best_trial_number=best.number)
        metrics[f"best_{space.search.metric}"] = best.objective
        metrics.update({f"best_trial.selected_{k}": v for k, v in best.selected_test.items()})
    if confirmation is not None:
        tags.update(confirmation.tags or {})
        metrics.update(confirmation.metrics or {})
    finish_parent(target, "KILLED" if interrupted else "FINISHED", tags=tags, metrics=metrics,
                  files=list(files.values()))
    print(next_steps(space, paths, target, study, files.get("best_config.yaml")))
    failed = [row for row in rows if row.outcome.status in ("failed", "diverged")]
    if space.smoke and (failed or not rows or interrupted):
        print(f"error: smoke test of {space.path} failed: "
              + ("; ".join(f"t{row.number:03d} {row.outcome.status}: {(row.outcome.error or '').strip()[-500:]}"
                           for row in failed) or "the trial did not finish"), file=sys.stderr)
        return 1
    if interrupted:
        print(f"The sweep was interrupted; continue it with: python -m search.run --space {space.path} "
              f"--sweep {paths.name} --storage {paths.storage} --resume")
        return 1
    return 0


def next_steps(space: SearchSpace, paths: SweepPaths, target: TrackingTarget, study: tuple[str, str] | None,
               best_config: Path | None = None) -> str:
    """The end of the console output: where the runs and the study are, and the commands that come next."""
    from search.sweep.tracking import default_tracking_uri, ui_command, ui_url
    from search.sweep.trainable import objective_key

    default_storage = (Path.cwd() / "ray_results").resolve()
    storage = "" if paths.storage == default_storage else f" --storage {paths.storage}"
    uri = "" if target.tracking_uri == default_tracking_uri(Path.cwd()) else f" --tracking-uri {target.tracking_uri}"
    url = ui_url(target.tracking_uri, target.experiment_id, objective_key(space.search.metric), space.search.mode)
    lines = [f"MLflow: experiment {paths.name!r} in {target.tracking_uri}",
             f"  {ui_command(target.tracking_uri)}", f"  then open {url}"]
    if study is not None:
        lines.append(f"Optuna: study {study[1]!r} in {hide_password(study[0])}")
    lines += ["Next steps:"]
    if best_config is not None:
        lines.append(f"  python -m vad.train --config {best_config}   # the best config")
    lines += [f"  python -m search.retrain --sweep {paths.name} --seeds 5{uri}{storage}",
              f"  python -m search.report --sweep {paths.name} --out reports/{paths.name}{uri}"]
    return "\n".join(lines)


def hide_password(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    import re

    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


if __name__ == "__main__":
    from vad.cli_errors import exit_now, run_main

    exit_now(run_main(main))
