"""``python -m search.report --sweep NAME --out DIR``: the reference study's comparison tables, the optimism gap and
the figures of one or more sweeps, read from MLflow only.

Writes ``DIR/report.md`` and ``DIR/report.tex`` (one table per dataset, rows = model x selection protocol, the
study's columns, each frame metric as ``value [low, high]``: its 95% bootstrap interval over test videos; an
optimism-gap table per sweep with the gap's paired interval and its size expected from selection alone; every row
chosen with test data labelled ``test-selected``) and per sweep ``DIR/<sweep>/``: the validation-selected
checkpoint's per-video scores against the ground truth, ROC/PR curves, learning curves, Optuna's parameter
importances, parallel coordinates and optimization history (each a 300 dpi PNG and a PDF, which report.tex
includes; HTML for the interactive ones, working offline). The figures and the report are also logged under
``report/`` on each sweep's parent run, in the same layout (``--no-log`` to skip).
"""

from __future__ import annotations

import argparse
import os

from search.cli import TRACKING_URI_HELP, make_parser, run_command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = make_parser("python -m search.report", __doc__, [
        "python -m search.report --sweep rtfm-ucf --out reports/rtfm-ucf",
        "python -m search.report --sweep rtfm-ucf --sweep mgfn-ucf --out reports/ucf --n-boot 2000",
        "python -m search.report --experiment 3 --out reports/exp3 --no-plots --no-log"])
    parser.add_argument("--sweep", action="append", default=[], metavar="NAME",
                        help="a sweep name (its MLflow experiment); repeat for several")
    parser.add_argument("--experiment", action="append", default=[], metavar="NAME_OR_ID",
                        help="an MLflow experiment by name or id (a sweep's, or any whose runs log the training "
                             "engine's metrics); repeat for several")
    parser.add_argument("--out", required=True, help="output folder (report.md, report.tex, figures)")
    parser.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    parser.add_argument("--metric", help="validation metric of the val protocol (default: the sweep's)")
    parser.add_argument("--cheat-metric", choices=("auc", "ap"),
                        help="test metric of the papers' protocol (default: AP on XD-Violence, AUC otherwise)")
    parser.add_argument("--videos", type=int, default=4, help="test videos in the scores figure (default 4)")
    parser.add_argument("--curves-top", type=int, default=6, metavar="N",
                        help="trials in the learning-curves figure: the N best by the sweep metric, plus the paper "
                             "defaults (default 6)")
    parser.add_argument("--n-boot", type=int, default=1000,
                        help="bootstrap replicates over test videos for the 95%% intervals (default 1000; 0: none)")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to the sweeps' parent runs")
    args = parser.parse_args(argv)
    if not args.sweep and not args.experiment:
        parser.error("name at least one --sweep or --experiment")
    if args.curves_top < 1:
        parser.error(f"--curves-top must be 1 or more, got {args.curves_top}")
    if args.n_boot < 0:
        parser.error(f"--n-boot must be 0 or more, got {args.n_boot}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import optuna  # the library is imported once the arguments are parsed: --help answers at once

    from search.reporting.build import write_report
    from search.reporting.data import ReportError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return run_command(write_report, args, (ReportError,))


if __name__ == "__main__":
    from vad.cli_errors import exit_now, run_main

    exit_now(run_main(main))
