"""``python -m search.retrain --sweep SWEEP --seeds 5``: retrain a sweep's best config with several seeds.

The seeds run as Tune trials of a grid over ``train.seed`` (so they pack onto GPUs like sweep trials), with the
sweep's own trainable, resources and MLflow trial logger: each seed is a child run of the sweep's parent run,
tagged ``group=retrain``, ``retrain=<name>`` and ``seed=<seed>``. The best config and the sweep's settings are
read from the parent run's artifacts (``best_config.yaml``, ``space/space.yaml``); the retrain's own files live
in ``<storage>/<name>/`` (Tune's experiment) and ``<storage>/<name>/search/`` (its space and base config). At the
end the protocols of ``search.report`` are applied to every seed and their mean +- std printed (and logged under
``retrain/<name>/`` on the parent run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from search.cli import add_cluster_args, add_sweep_name, make_parser, run_command, tune_errors

if TYPE_CHECKING:  # MLflow, Ray and torch are imported when a retrain runs, not for --help
    from search.reporting.data import TrackedRun
    from search.sweep.record import SweepPaths
    from search.sweep.space import SearchSpace

EXAMPLES = [
    "python -m search.retrain --sweep rtfm-ucf --seeds 5",
    "python -m search.retrain --sweep rtfm-ucf --seeds 10 --first-seed 100 --gpus-per-trial 0.25",
]
SEARCH_KEYS = ("metric", "mode", "checkpoint_every")
"""Settings of the sweep's ``search`` section that a retrain keeps (the rest: a grid over the seeds)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = make_parser("python -m search.retrain", __doc__, EXAMPLES)
    add_sweep_name(parser, "the sweep's name (its MLflow experiment)", "--from", required=True)
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    parser.add_argument("--first-seed", type=int,
                        help="seeds are first, first+1, ... (default: the best config's train.seed)")
    parser.add_argument("--epochs", type=int, help="epochs per seed (default: the sweep's)")
    parser.add_argument("--name", help="name of this retrain (default: <sweep>-retrain-<date>-<time>)")
    parser.add_argument("--storage", help="Tune storage (default: the sweep's, when it is on this machine, "
                                          "else ./ray_results)")
    add_cluster_args(parser, "seed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from search.reporting.data import ReportError

    return run_command(retrain, args, (*tune_errors(), ReportError))


class SweepSource:
    """The sweep being retrained, as its MLflow parent run describes it."""

    def __init__(self, tracking_uri: str, name: str) -> None:
        from search.reporting.data import ReportError, find_experiment, find_sweep_parent, open_client

        self.tracking_uri, self.name = tracking_uri, name
        self.client = open_client(tracking_uri)
        self.experiment = find_experiment(self.client, name)
        parent = find_sweep_parent(self.client, self.experiment.experiment_id)
        if parent is None:
            raise ReportError(f"experiment {name!r} holds no sweep (no parent run with run_type=sweep)")
        self.parent = parent
        if self.parent.status == "RUNNING":
            raise ReportError(f"sweep {name!r} is still running (its parent run is RUNNING); retrain it once it "
                              f"has finished")

    def artifact_text(self, path: str) -> str:
        with tempfile.TemporaryDirectory(prefix="wsvad-retrain-") as folder:
            local = self.parent.download(path, Path(folder))
            if local is None:
                from search.reporting.data import ReportError

                raise ReportError(f"sweep {self.name!r}: its parent run has no {path} artifact (a sweep writes it "
                                  f"when it ends; was it interrupted before any trial finished?)")
            return local.read_text()

    def best_trial(self) -> TrackedRun | None:
        """The sweep trial whose configuration ``best_config.yaml`` holds: the confirmed winner's source trial
        when the sweep ran its confirmation, else the best trial."""
        from search.reporting.data import find_trial

        trial_id = self.parent.tags.get("confirmed_trial_id") or self.parent.tags.get("best_trial_id")
        return find_trial(self.client, self.experiment.experiment_id, self.parent.run_id, trial_id)

    def default_storage(self) -> Path | None:
        folder = Path(self.parent.tags.get("experiment_dir", ""))
        return folder.parent if folder.name and folder.is_dir() else None


def retrain(args: argparse.Namespace) -> int:
    from search.cli import tune_session
    from search.reporting.data import RETRAIN
    from search.sweep.record import SweepPaths, SweepStateError, check_name
    from search.sweep.tracking import GROUP, SweepFacts, TrackingTarget, default_tracking_uri
    from search.sweep.tuner import TunerSpec, plan_trials, run_group

    if args.seeds < 1:
        raise SweepStateError(f"--seeds must be at least 1, got {args.seeds}")
    tracking_uri = args.tracking_uri or default_tracking_uri(Path.cwd())
    source = SweepSource(tracking_uri, args.sweep)
    best = source.best_trial()
    name = check_name(args.name or f"{args.sweep}-retrain-{time.strftime('%Y%m%d-%H%M%S')}")
    storage = Path(args.storage).expanduser().resolve() if args.storage else (
        source.default_storage() or (Path.cwd() / "ray_results").resolve())
    paths = SweepPaths(storage, name)
    if paths.experiment_dir.exists():
        raise SweepStateError(f"{paths.experiment_dir} exists already; choose another --name")
    space = write_retrain_space(source, paths, args)
    seeds = list(space.params["train.seed"].values)
    print(f"Retraining the best config of sweep {args.sweep} (trial {best.label if best else '?'}) with seeds "
          f"{', '.join(map(str, seeds))} as {name}", flush=True)

    with tune_session(space, args) as prepared:
        space, plan = plan_trials(space)
        from vad.builders import resolve_config

        target = TrackingTarget(tracking_uri, source.experiment.experiment_id, source.parent.run_id)
        child_tags = {GROUP: RETRAIN, RETRAIN: name,
                      "baseline": best.tags.get("baseline", "false") if best else "false"}
        if best is not None:
            child_tags.update(retrain_of=best.tags.get("trial_id", ""), retrain_of_trial=best.label)
        facts = SweepFacts(args.sweep, str(paths.experiment_dir), space.base.model_name,
                           str(prepared.describe()["dataset"]), resolve_config(space.sweep_config(), prepared), space,
                           child_tags=child_tags, run_label=f"{best.label if best else 'best'}-retrain")
        trials = run_group(TunerSpec(space, paths, facts, plan, verbose=args.verbose), target, resume=False)
    return finish(source, name, paths, len(trials), len(seeds))


def write_retrain_space(source: SweepSource, paths: SweepPaths, args: argparse.Namespace) -> SearchSpace:
    """The retrain as a space file: the sweep's best config as the base (seed = the first seed), a grid over
    ``train.seed``, the sweep's metric, FIFO, the sweep's resources (or the command line's)."""
    from search.sweep.space import load_space

    best = yaml.safe_load(source.artifact_text("best_config.yaml"))
    sweep_space = yaml.safe_load(source.artifact_text("space/space.yaml")) or {}
    first = args.first_seed if args.first_seed is not None else int(best.get("train", {}).get("seed", 0) or 0)
    seeds = list(range(first, first + args.seeds))
    best.setdefault("train", {})["seed"] = first
    if args.epochs is not None:
        best["train"]["epochs"] = args.epochs
    search = {key: value for key, value in (sweep_space.get("search") or {}).items() if key in SEARCH_KEYS}
    space = {
        "base": "base_config.yaml",
        "search": {**search, "sampler": "grid"},
        "scheduler": {"name": "fifo"},
        "resources": sweep_space.get("resources") or {},
        "params": {"train.seed": {"grid": seeds}},
    }
    folder = paths.search_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base_config.yaml").write_text(
        f"# The best config of sweep {source.name}, retrained by search.retrain as {paths.name}\n"
        + yaml.safe_dump(best, sort_keys=False))
    path = folder / "space.yaml"
    path.write_text(f"# search.retrain --from {source.name}: {len(seeds)} seeds of its best config\n"
                    + yaml.safe_dump(space, sort_keys=False))
    # a sweep that ranked on test data (a --diagnostic sweep) is retrained under the same, labelled protocol
    diagnostic = parent_was_diagnostic(source, search)
    return load_space(path, diagnostic=diagnostic).with_settings(cpus_per_trial=args.cpus_per_trial,
                                                                 gpus_per_trial=args.gpus_per_trial)


def parent_was_diagnostic(source: SweepSource, search: dict) -> bool:
    """Whether the source sweep ranked or selected with test data (its metric's catalogue source is the test set)."""
    from vad.metrics.catalogue import get_metric

    metric = search.get("metric")
    try:
        return bool(metric) and get_metric(str(metric)).uses_test_data
    except KeyError:
        return False


def finish(source: SweepSource, name: str, paths: SweepPaths, finished_trials: int, seeds: int) -> int:
    """Mean +- std of the seeds under each protocol (printed, and logged on the parent run); 1 when a seed did
    not finish."""
    from search.reporting.data import load_sweep
    from search.reporting.figures import dataset_layout
    from search.reporting.tables import cheat_metric, markdown_table, protocol_labels, seed_picks, seed_row
    from search.sweep.tracking import log_files

    sweep = load_sweep(source.client, source.name)
    runs = sweep.groups.get(name, [])
    try:
        layout = dataset_layout(sweep.dataset_spec) if sweep.dataset_spec else None
    except (ValueError, OSError):
        layout = None
    cheat = cheat_metric(layout, sweep.dataset)
    labels = protocol_labels(sweep.metric, cheat)
    rows = [seed_row(sweep.model.upper(), f"{labels[protocol]}, {len(picks)} seeds", picks)
            for protocol, picks in seed_picks(runs, sweep.metric, sweep.mode, cheat).items()]
    done = [run for run in runs if run.status == "FINISHED"]
    text = (f"Retrain {name} of sweep {source.name}: {len(done)}/{seeds} seeds finished; mean ± std over seeds "
            f"(metrics in %)\n\n" + markdown_table(rows) + "\n")
    print("\n" + text)
    summary = paths.search_dir / "summary.md"
    summary.write_text(f"# {text}")
    log_files(source.tracking_uri, source.parent.run_id,
              [summary, paths.search_dir / "space.yaml", paths.search_dir / "base_config.yaml"],
              artifact_path=f"retrain/{name}")
    print(f"MLflow: the seeds are child runs of sweep {source.name!r}'s parent run, tagged group=retrain, "
          f"retrain={name}; python -m search.report --sweep {source.name} --out <dir> reports them.")
    return 0 if len(done) == seeds and finished_trials == seeds else 1


if __name__ == "__main__":
    from vad.cli_errors import exit_now, run_main

    exit_now(run_main(main))
