"""``python -m search.report --sweep NAME --out DIR``: the reference study's comparison tables, the optimism gap and
the figures of one or more sweeps, read from MLflow only.

Writes ``DIR/report.md`` and ``DIR/report.tex`` (one table per dataset, rows = model x selection protocol, the
study's columns; an optimism-gap table per sweep) and per sweep ``DIR/<sweep>/``: the validation-selected
checkpoint's per-video scores against the ground truth, ROC/PR curves, learning curves, Optuna's parameter
importances, parallel coordinates and optimization history (PNG, and HTML for the interactive ones). The figures
and the report are also logged under ``report/`` on each sweep's parent run (``--no-log`` to skip).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from search.cli import TRACKING_URI_HELP, run_command
from search.report_data import ReportError, TrackedRun, TrackedSweep, load_sweep
from search.report_figures import (
    SCORES_ARTIFACT,
    dataset_layout,
    learning_curves_figure,
    load_truth,
    roc_pr_figure,
    run_scores,
    scores_figure,
)
from search.report_study import build_study, write_study_plots
from search.report_tables import (
    GapLine,
    Pick,
    Row,
    cheat_metric,
    gap_latex,
    gap_markdown,
    latex_escape,
    latex_table,
    markdown_table,
    optimism_gap,
    protocol_labels,
    seed_picks,
    seed_row,
    single_row,
    sweep_picks,
)
from search.tracking import default_tracking_uri

REPORT_ARTIFACTS = "report"
LEGEND = """Rows are model x selection protocol; metrics are frame-level, in %, on the test set.
- **val (<validation metric>)**: the trial with the best value of the sweep's validation metric over its epochs,
  and the test metrics of its selected checkpoint (chosen on the validation split carved from the training videos):
  the honest protocol.
- **val_video_auc**: the trial and epoch with the highest validation video-level AUC, the test metrics of the model
  at that epoch.
- **test (cheat)**: the papers' protocol, the trial and epoch with the best *test* AUC (AP on XD-Violence), i.e. a
  model selected on the test set: a diagnostic of how optimistic that protocol is, not a result.
- **N seeds**: the best configuration retrained with N seeds (`python -m search.retrain`), the same protocol
  applied to each seed, mean ± sample standard deviation.
- Test loss / train loss: the training objective on the test videos and on the training split (eval mode) of the
  selected checkpoint; `-` where that checkpoint had no full evaluation (an epoch that was not the run's selected
  checkpoint at the time)."""


@dataclass
class SweepReport:
    """Everything the report says about one sweep."""

    sweep: TrackedSweep
    model_label: str
    cheat: str
    labels: dict[str, str]
    picks: dict[str, Pick]
    rows: list[Row]
    gap: list[GapLine] | None
    figures: list[tuple[str, Path]] = field(default_factory=list)
    """``(caption, PNG)``."""
    interactive: list[tuple[str, Path]] = field(default_factory=list)
    """``(title, HTML)``."""
    notes: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m search.report", description=__doc__.splitlines()[0])
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
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to the sweeps' parent runs")
    args = parser.parse_args(argv)
    if not args.sweep and not args.experiment:
        parser.error("name at least one --sweep or --experiment")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return run_command(write_report, args, (ReportError,))


def write_report(args: argparse.Namespace) -> int:
    tracking_uri = args.tracking_uri or default_tracking_uri(Path.cwd())
    client = MlflowClient(tracking_uri=tracking_uri)
    sweeps = [load_sweep(client, name, metric=args.metric) for name in args.sweep]
    sweeps += [load_sweep(client, name, by_id=True, metric=args.metric) for name in args.experiment]
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    labels = model_labels(sweeps)
    reports = []
    for sweep in sweeps:
        report = sweep_report(sweep, labels[sweep.name], args.cheat_metric)
        if not args.no_plots:
            add_figures(report, out / sweep.name, args.videos)
        reports.append(report)
    markdown = render_markdown(reports, tracking_uri, out)
    (out / "report.md").write_text(markdown)
    (out / "report.tex").write_text(render_latex(reports))
    print(terminal_text(reports))
    print(f"\nWrote {out / 'report.md'}, {out / 'report.tex'}"
          + (f" and {sum(len(r.figures) for r in reports)} figure(s) in {out}" if not args.no_plots else ""))
    if not args.no_log:
        for report in reports:
            try:
                log_report(client, report, out)
            except (MlflowException, OSError) as exc:  # e.g. a read-only tracking server: the files are written
                print(f"warning: could not log the report on sweep {report.sweep.name}'s parent run: {exc}",
                      file=sys.stderr)
    return 0


def model_labels(sweeps: Sequence[TrackedSweep]) -> dict[str, str]:
    """``RTFM``, or ``RTFM (<sweep>)`` when several sweeps of one model and dataset are compared."""
    seen: dict[tuple[str, str], int] = {}
    for sweep in sweeps:
        seen[(sweep.model, sweep.dataset)] = seen.get((sweep.model, sweep.dataset), 0) + 1
    return {s.name: s.model.upper() + (f" ({s.name})" if seen[(s.model, s.dataset)] > 1 else "") for s in sweeps}


def sweep_report(sweep: TrackedSweep, model_label: str, cheat_override: str | None) -> SweepReport:
    """The rows (every protocol on the sweep's trials, then on each retrained seed group) and the gap."""
    layout, notes = None, []
    if cheat_override is None:
        layout = _layout(sweep, notes)
    cheat = cheat_override or cheat_metric(layout, sweep.dataset)
    labels = protocol_labels(sweep.metric, cheat)
    picks = sweep_picks(sweep.trials, sweep.metric, sweep.mode, cheat)
    rows = [single_row(model_label, labels[name], pick) for name, pick in picks.items()]
    for group, runs in sweep.groups.items():
        suffix = f" [{group}]" if len(sweep.groups) > 1 else ""
        for name, group_picks in seed_picks(runs, sweep.metric, sweep.mode, cheat).items():
            rows.append(seed_row(model_label, f"{labels[name]}, {len(group_picks)} seeds{suffix}", group_picks))
    if "val" not in picks:
        notes.append(f"No trial has a finite {sweep.metric} and a selected checkpoint: no val row.")
    if "test" not in picks:
        notes.append("No per-epoch test metrics were logged, so the test-selected (cheat) and val_video_auc rows and "
                     "the optimism gap are missing: set `fixed: {train.test_every_epoch: true}` in the space.")
    gap = optimism_gap(picks["val"], picks["test"]) if "val" in picks and "test" in picks else None
    return SweepReport(sweep, model_label, cheat, labels, picks, rows, gap, notes=notes)


def _layout(sweep: TrackedSweep, notes: list[str]) -> str | None:
    """The dataset's layout (``ucf``/``xd``); ``None`` (and a note) when its ``dataset.yaml`` is unreadable here."""
    spec = sweep.dataset_spec
    if spec is None:
        return None
    try:
        return dataset_layout(spec)
    except (ValueError, OSError) as exc:
        notes.append(f"Dataset {spec} is not readable here ({exc}); the cheat metric follows the name "
                     f"{sweep.dataset!r}.")
        return None


# ----------------------------------------------------------------------------------------------------- figures

def add_figures(report: SweepReport, folder: Path, videos: int) -> None:
    """The sweep's figures into ``folder`` (a figure that cannot be drawn becomes a note)."""
    sweep, picks = report.sweep, report.picks
    folder.mkdir(parents=True, exist_ok=True)
    marks: dict[str, str] = {}
    for name, pick in picks.items():
        marks[pick.run.run_id] = ", ".join(filter(None, [marks.get(pick.run.run_id), f"{name} pick"]))
    for run in sweep.trials:
        if run.tags.get("baseline") == "true":
            marks[run.run_id] = ", ".join(filter(None, ["paper defaults", marks.get(run.run_id)]))
    path = learning_curves_figure(folder / "learning_curves.png", sweep.trials, marks)
    if path is not None:
        report.figures.append(("Learning curves: train and validation loss per epoch of every trial", path))
    for group, runs in sweep.groups.items():
        path = learning_curves_figure(folder / f"learning_curves_{group}.png", runs, {})
        if path is not None:
            report.figures.append((f"Learning curves of the retrained seeds ({group})", path))

    with tempfile.TemporaryDirectory(prefix="wsvad-report-") as scratch:
        _score_figures(report, folder, Path(scratch), videos)

    try:
        study = build_study(sweep)
    except ValueError as exc:
        report.notes.append(f"Optuna plots: {exc}")
        study = None
    if study is not None:
        files, notes = write_study_plots(study, folder, f"best {sweep.metric}")
        report.notes += [f"Optuna {note}" for note in notes]
        for png in [f for f in files if f.suffix == ".png"]:
            title = png.stem.removeprefix("optuna_").replace("_", " ")
            report.figures.append((f"Optuna: {title} (objective: best {sweep.metric} of each trial)", png))
            report.interactive.append((f"Optuna {title}", png.with_suffix(".html")))


def _score_figures(report: SweepReport, folder: Path, scratch: Path, videos: int) -> None:
    """Scores over time of the validation-selected checkpoint; ROC/PR of it, of the test pick when that is a
    selected checkpoint too, and of the paper defaults' trial."""
    sweep, picks = report.sweep, report.picks
    if "val" not in picks or sweep.dataset_spec is None:
        return
    try:
        truth = load_truth(sweep.dataset_spec)
    except (ValueError, OSError) as exc:
        report.notes.append(f"Score figures: the test ground truth of {sweep.dataset_spec} is not readable here "
                            f"({exc})")
        return
    val = picks["val"]
    val_scores = run_scores(val.run, scratch)
    if val_scores is None:
        report.notes.append(f"Score figures: {val.run.name} has no {SCORES_ARTIFACT} artifact")
        return
    path = scores_figure(folder / "scores_val.png", val.run, val_scores, truth, videos)
    report.figures.append((f"Predicted scores over time against the ground truth (shaded): {val.where}, the "
                           f"validation-selected checkpoint ({val.run.name})", path))
    curves = {f"val pick {val.where}": val_scores}
    test = picks.get("test")
    if test is not None and test.epoch is not None and test.run.tags.get("selected_epoch") == str(test.epoch):
        scores = run_scores(test.run, scratch)  # the test pick is that run's selected checkpoint: same scores
        if scores is not None:
            curves[f"test pick {test.where}"] = scores
    baseline = next((run for run in sweep.trials if run.tags.get("baseline") == "true"), None)
    if baseline is not None and baseline.run_id != val.run.run_id:
        scores = run_scores(baseline, scratch)
        if scores is not None:
            curves[f"paper defaults {baseline.label} (its val-selected checkpoint)"] = scores
    path = roc_pr_figure(folder / "roc_pr.png", curves, truth)
    report.figures.append(("Frame-level ROC and precision-recall curves of the selected checkpoints", path))


# ----------------------------------------------------------------------------------------------------- text

def _sweep_heading(report: SweepReport) -> str:
    sweep = report.sweep
    counts: dict[str, int] = {}
    for run in sweep.trials:
        status = run.tags.get("train_status", run.status.lower())
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return (f"{report.model_label} on {sweep.dataset}: {len(sweep.trials)} trials ({summary}); selection metric "
            f"{sweep.metric} ({sweep.mode}); retrained seed groups: {', '.join(sweep.groups) or 'none'}")


def _by_dataset(reports: Sequence[SweepReport]) -> dict[str, list[SweepReport]]:
    out: dict[str, list[SweepReport]] = {}
    for report in reports:
        out.setdefault(report.sweep.dataset, []).append(report)
    return out


def render_markdown(reports: Sequence[SweepReport], tracking_uri: str, out: Path) -> str:
    """``report.md``: a table per dataset, then per sweep the optimism gap, the figures and notes."""
    names = ", ".join(r.sweep.name for r in reports)
    lines = [f"# Results of {names}", "", f"MLflow: `{tracking_uri}`; generated {time.strftime('%Y-%m-%d %H:%M')}.",
             "", LEGEND, ""]
    for dataset, group in _by_dataset(reports).items():
        lines += [f"## Results on {dataset}", "", markdown_table([row for r in group for row in r.rows]), ""]
    for report in reports:
        sweep = report.sweep
        lines += [f"## Sweep {sweep.name}", "", _sweep_heading(report) + ".", ""]
        if report.gap is not None:
            lines += ["### Optimism gap", "",
                      "Test metrics of the checkpoint selected on validation against the one a test-set selection "
                      "picks (percentage points for the % metrics):", "",
                      gap_markdown(report.gap, report.picks["val"], report.picks["test"], report.labels), ""]
        if report.figures:
            lines += ["### Figures", ""]
            for caption, path in report.figures:
                lines += [f"![{caption}]({path.relative_to(out).as_posix()})", "", f"*{caption}*", ""]
        if report.interactive:
            links = ", ".join(f"[{title}]({path.relative_to(out).as_posix()})" for title, path in report.interactive)
            lines += [f"Interactive (plotly): {links}.", ""]
        if report.notes:
            lines += ["Notes:", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(lines)


def render_latex(reports: Sequence[SweepReport]) -> str:
    """``report.tex``: a standalone document with the tables (booktabs) and the optimism gaps."""
    body = []
    for dataset, group in _by_dataset(reports).items():
        caption = (f"Results on {dataset}. Rows: model x selection protocol; the test rows select on the test set "
                   f"(the papers' protocol) and are a diagnostic only.")
        body += [latex_table([row for r in group for row in r.rows], caption, f"tab:{_label(dataset)}"), ""]
    for report in reports:
        if report.gap is not None:
            caption = (f"Optimism gap of sweep {report.sweep.name} ({report.model_label} on {report.sweep.dataset}): "
                       f"validation-selected against test-selected checkpoint.")
            body += [gap_latex(report.gap, report.picks["val"], report.picks["test"], report.labels, caption,
                               f"tab:gap-{_label(report.sweep.name)}"), ""]
    preamble = [r"\documentclass{article}", r"\usepackage[margin=1.5cm,landscape]{geometry}",
                r"\usepackage{booktabs}", r"\begin{document}",
                f"% search.report of {latex_escape(', '.join(r.sweep.name for r in reports))}", ""]
    return "\n".join(preamble + body + [r"\end{document}", ""])


def _label(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-:" else "-" for c in text)


def terminal_text(reports: Sequence[SweepReport]) -> str:
    """The tables and gaps for the terminal (Markdown)."""
    lines = []
    for dataset, group in _by_dataset(reports).items():
        lines += [f"Results on {dataset} (metrics in %; test = selection on the test set, a diagnostic only)", "",
                  markdown_table([row for r in group for row in r.rows]), ""]
    for report in reports:
        lines += [f"Sweep {report.sweep.name}: {_sweep_heading(report)}"]
        if report.gap is not None:
            lines += ["Optimism gap:", gap_markdown(report.gap, report.picks["val"], report.picks["test"],
                                                    report.labels)]
        lines += [f"note: {note}" for note in report.notes] + [""]
    return "\n".join(lines).rstrip()


def log_report(client: MlflowClient, report: SweepReport, out: Path) -> None:
    """The sweep's figures and the report files under ``report/`` on its parent run."""
    parent: TrackedRun | None = report.sweep.parent
    if parent is None:
        return
    folder = out / report.sweep.name
    if folder.is_dir():
        client.log_artifacts(parent.run_id, str(folder), artifact_path=REPORT_ARTIFACTS)
    for name in ("report.md", "report.tex"):
        client.log_artifact(parent.run_id, str(out / name), artifact_path=REPORT_ARTIFACTS)


if __name__ == "__main__":
    sys.exit(main())
