"""The library of ``python -m search.report`` (:mod:`search.report`, the command line): the reference study's
comparison tables, the optimism gap and the figures of one or more sweeps, read from MLflow only.

:func:`write_report` writes ``report.md`` and ``report.tex`` and per sweep ``<out>/<sweep>/`` its figures (PNG at
300 dpi and PDF, HTML for Optuna's interactive plots), then logs them on each sweep's parent run under
``report/`` with the same layout, so that the logged ``report.md``'s links resolve in the artifact store.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from search.reporting.data import (
    TEST_SELECTED,
    TrackedRun,
    TrackedSweep,
    load_sweep,
    open_client,
    uses_test_data,
)
from search.reporting.figures import (
    CURVES_TOP,
    SCORES_ARTIFACT,
    TestTruth,
    dataset_layout,
    epoch_budget,
    learning_curves_figure,
    load_truth,
    roc_pr_figure,
    scores_figure,
)
from search.reporting.intervals import Bootstrap, null_gap
from search.reporting.study import build_study, full_budget_caveat, write_study_plots
from search.reporting.tables import (
    GAP_COLUMNS,
    GapLine,
    Pick,
    Row,
    cheat_metric,
    gap_latex,
    gap_markdown,
    latex_escape,
    latex_table,
    markdown_table,
    null_inputs,
    optimism_gap,
    protocol_labels,
    row_label,
    seed_picks,
    seed_row,
    single_row,
    sweep_picks,
    test_reasons,
)
from search.sweep.tracking import TrackingError, default_tracking_uri, log_files

REPORT_ARTIFACTS = "report"
BOOTSTRAP_CACHE = ".bootstrap-cache"
"""Folder of ``--out`` holding the bootstrap replicates of each checkpoint (a rerun into the same folder reuses
them)."""
LEGEND = """Rows are model x selection protocol; metrics are frame-level, in %, on the test set. Each frame metric
reads `value [low, high]`: the 95% percentile interval of a bootstrap over test *videos* (videos resampled with
replacement; `[n/a]` where the checkpoint's per-video scores were not saved: only a run's selected checkpoint keeps
them).
- **val (<validation metric>)**: the trial with the best value of the sweep's validation metric over its epochs,
  and the test metrics of its selected checkpoint (chosen on the validation split carved from the training videos):
  the honest protocol. Only picks chosen without test data appear under this label.
- **val_video_auc**: the trial and epoch with the highest validation video-level AUC, the test metrics of the model
  at that epoch.
- **test-selected (...)**: any row whose trial or checkpoint was chosen with test data, whatever its protocol: the
  papers' protocol (the trial and epoch with the best *test* AUC, AP on XD-Violence), a ranking metric computed on
  the test set, a checkpoint chosen on the test set (`checkpoint_chosen_by=test`), a trial chosen on it
  (`trial_chosen_by=test`), or any row of a sweep whose search was steered by test data (`protocol=test-selected`).
  A diagnostic of how optimistic that protocol is, not a result; the reasons are listed under the table.
- **N seeds**: a configuration retrained with N seeds (`python -m search.retrain`, or the sweep's confirmation), the
  same protocol applied to each seed, mean ± sample standard deviation over seeds; its interval is that of the mean
  under a bootstrap that resamples the test videos and the seeds together.
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
    bootstrap: Bootstrap | None = None
    """The sweep's test set and its per-run scores and bootstrap replicates (``None``: ground truth unreadable)."""


def write_report(args: argparse.Namespace) -> int:
    tracking_uri = args.tracking_uri or default_tracking_uri(Path.cwd())
    client = open_client(tracking_uri)
    sweeps = [load_sweep(client, name, metric=args.metric) for name in args.sweep]
    sweeps += [load_sweep(client, name, by_id=True, metric=args.metric) for name in args.experiment]
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    labels = model_labels(sweeps)
    reports = []
    truths: dict[str, TestTruth | str] = {}
    with tempfile.TemporaryDirectory(prefix="wsvad-report-") as scratch:
        for sweep in sweeps:
            notes: list[str] = []
            truth = _truth(sweep, truths, notes)
            bootstrap = None if truth is None else Bootstrap(truth, Path(scratch) / sweep.name, args.n_boot,
                                                             args.bootstrap_seed, cache_dir=out / BOOTSTRAP_CACHE)
            report = sweep_report(sweep, labels[sweep.name], args.cheat_metric, bootstrap, notes)
            if not args.no_plots:
                add_figures(report, out / sweep.name, args.videos, getattr(args, "curves_top", CURVES_TOP))
            reports.append(report)
    markdown = render_markdown(reports, tracking_uri, out)
    (out / "report.md").write_text(markdown)
    (out / "report.tex").write_text(render_latex(reports, out))
    print(terminal_text(reports))
    print(f"\nWrote {out / 'report.md'}, {out / 'report.tex'}"
          + (f" and {sum(len(r.figures) for r in reports)} figure(s) in {out}" if not args.no_plots else ""))
    if not args.no_log:
        for report in reports:
            try:
                log_report(report, out, reports)
            except (TrackingError, OSError) as exc:  # e.g. a read-only tracking server: the files are written
                print(f"warning: could not log the report on sweep {report.sweep.name}'s parent run: {exc}",
                      file=sys.stderr)
    return 0


def model_labels(sweeps: Sequence[TrackedSweep]) -> dict[str, str]:
    """``RTFM``, or ``RTFM (<sweep>)`` when several sweeps of one model and dataset are compared."""
    seen: dict[tuple[str, str], int] = {}
    for sweep in sweeps:
        seen[(sweep.model, sweep.dataset)] = seen.get((sweep.model, sweep.dataset), 0) + 1
    return {s.name: s.model.upper() + (f" ({s.name})" if seen[(s.model, s.dataset)] > 1 else "") for s in sweeps}


def sweep_report(sweep: TrackedSweep, model_label: str, cheat_override: str | None,
                 bootstrap: Bootstrap | None = None, notes: list[str] | None = None) -> SweepReport:
    """The rows (every protocol on the sweep's trials, then on each retrained seed group), their bootstrap
    intervals (``bootstrap``: the sweep's test set; ``None`` or ``n_boot=0``: none) and the gap."""
    layout, notes = None, list(notes or [])
    if cheat_override is None:
        layout = _layout(sweep, notes)
    cheat = cheat_override or cheat_metric(layout, sweep.dataset)
    labels = protocol_labels(sweep.metric, cheat)
    steered = sweep.test_steered
    picks = sweep_picks(sweep.trials, sweep.metric, sweep.mode, cheat, steered)
    rows = [single_row(model_label, row_label(name, [pick], labels), pick) for name, pick in picks.items()]
    for group, runs in sweep.groups.items():
        suffix = f" [{group}]" if len(sweep.groups) > 1 else ""
        for name, group_picks in seed_picks(runs, sweep.metric, sweep.mode, cheat, steered).items():
            label = f"{row_label(name, group_picks, labels)}, {len(group_picks)} seeds{suffix}"
            rows.append(seed_row(model_label, label, group_picks))
    if "val" not in picks:
        notes.append(f"No trial has a finite {sweep.metric} and a selected checkpoint: no val row.")
    if "test" not in picks:
        notes.append("No per-epoch test metrics were logged, so the test-selected (cheat) and val_video_auc rows and "
                     "the optimism gap are missing: set `fixed: {train.test_every_epoch: true}` in the space.")
    if bootstrap is not None and bootstrap.n_boot > 0:
        rows = [_with_intervals(row, bootstrap, notes) for row in rows]
    for row in rows:
        if row.test_selected:
            notes.append(f"Row '{row.selection}' ({row.source}) is test-selected: {'; '.join(row.reasons)}.")
    gap = _gap(sweep, picks, cheat, bootstrap, notes) if "val" in picks and "test" in picks else None
    return SweepReport(sweep, model_label, cheat, labels, picks, rows, gap, notes=notes, bootstrap=bootstrap)


def _with_intervals(row: Row, bootstrap: Bootstrap, notes: list[str]) -> Row:
    """The row with the bootstrap intervals of its frame metrics (unchanged when a pick has no saved scores)."""
    if not all(pick.saved_scores for pick in row.picks):
        return row
    try:
        return replace(row, intervals=bootstrap.intervals([pick.run for pick in row.picks]))
    except ValueError as exc:  # scores of other videos than the dataset's test list
        notes.append(f"Row '{row.selection}': no interval ({exc})")
        return row


def _gap(sweep: TrackedSweep, picks: dict[str, Pick], cheat: str, bootstrap: Bootstrap | None,
         notes: list[str]) -> list[GapLine]:
    """The optimism gap: the paired interval when both checkpoints' scores were saved, and per column the null gap
    over the candidates the test-selected pick chose among."""
    val, test = picks["val"], picks["test"]
    intervals: dict = {}
    if bootstrap is not None and bootstrap.n_boot > 0 and val.saved_scores and test.saved_scores:
        try:
            intervals = bootstrap.paired_difference(test.run, val.run)
        except ValueError as exc:
            notes.append(f"Optimism gap: no paired interval ({exc})")
    elif bootstrap is not None and bootstrap.n_boot > 0:
        missing = " and ".join(p.where for p in (val, test) if not p.saved_scores)
        notes.append(f"Optimism gap: no paired interval, {missing} is not a run's selected checkpoint, whose "
                     f"per-video scores are the only ones a run saves.")
    seed = bootstrap.seed if bootstrap is not None else 0
    nulls = {}
    for column in GAP_COLUMNS:
        select, values = null_inputs(sweep.trials, cheat, column)
        found = null_gap(select, values, seed=seed)
        if found is not None:
            nulls[column] = found
    return optimism_gap(val, test, intervals, nulls)


def _truth(sweep: TrackedSweep, cache: dict[str, TestTruth | str], notes: list[str]) -> TestTruth | None:
    """The test ground truth of the sweep's dataset (loaded once per dataset); ``None`` and a note when it is not
    readable here (no intervals, no score figures)."""
    spec = sweep.dataset_spec
    if spec is None:
        return None
    if spec not in cache:
        try:
            cache[spec] = load_truth(spec)
        except (ValueError, OSError) as exc:
            cache[spec] = f"the test ground truth of {spec} is not readable here ({exc})"
    found = cache[spec]
    if isinstance(found, str):
        notes.append(f"No intervals and no score figures: {found}.")
        return None
    return found


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

def pick_mark(name: str, pick: Pick) -> str:
    """How a figure names a protocol's pick: ``val pick``, or ``test-selected ...`` when test data chose it."""
    if not pick.test_selected:
        return f"{name} pick"
    return f"{TEST_SELECTED} pick" if name == "test" else f"{TEST_SELECTED} ({name}) pick"


def add_figures(report: SweepReport, folder: Path, videos: int, curves_top: int = CURVES_TOP) -> None:
    """The sweep's figures into ``folder`` (a figure that cannot be drawn becomes a note); the learning curves show
    the ``curves_top`` best trials by the sweep metric and the paper defaults."""
    sweep, picks = report.sweep, report.picks
    folder.mkdir(parents=True, exist_ok=True)
    marks: dict[str, str] = {}
    for name, pick in picks.items():
        marks[pick.run.run_id] = ", ".join(filter(None, [marks.get(pick.run.run_id), pick_mark(name, pick)]))
    for run in sweep.trials:
        if run.tags.get("baseline") == "true":
            marks[run.run_id] = ", ".join(filter(None, ["paper defaults", marks.get(run.run_id)]))
    budget = epoch_budget(sweep.trials)
    path = learning_curves_figure(folder / "learning_curves.png", sweep.trials, marks, metric=sweep.metric,
                                  mode=sweep.mode, top=curves_top)
    if path is not None:
        shown = min(curves_top, len(sweep.trials))
        report.figures.append((
            f"Learning curves of the {shown} best of {len(sweep.trials)} trials by {sweep.metric} and the paper "
            f"defaults, over the full budget{f' of {budget} epochs' if budget else ''} (lines that end early were "
            f"stopped, a cross: by ASHA); a star marks each trial's selected epoch; test-selected picks are "
            f"labelled so in the legend", path))
    for group, runs in sweep.groups.items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in group)
        path = learning_curves_figure(folder / f"learning_curves_{safe}.png", runs, {}, metric=sweep.metric,
                                      mode=sweep.mode, top=curves_top)
        if path is not None:
            report.figures.append((f"Learning curves of the retrained seeds ({group}); a star marks each seed's "
                                   f"selected epoch", path))

    if report.bootstrap is not None:
        _score_figures(report, folder, report.bootstrap, videos)

    try:
        study = build_study(sweep)
    except ValueError as exc:
        report.notes.append(f"Optuna plots: {exc}")
        study = None
    if study is not None:
        steered = sweep.test_steered or (f"ranked on {sweep.metric}" if uses_test_data(sweep.metric) else None)
        tail = f"; {TEST_SELECTED}: {steered}" if steered else ""
        caveat = full_budget_caveat(sweep, budget)
        files, notes = write_study_plots(study, folder, f"best {sweep.metric}", caveat)
        report.notes += [f"Optuna {note}" for note in notes]
        if caveat and any(f.stem == "optuna_param_importances" for f in files):
            report.notes.append(f"Parameter importances: caveat, {caveat}.")
        for png in [f for f in files if f.suffix == ".png"]:
            title = png.stem.removeprefix("optuna_").replace("_", " ")
            warn = f"; caveat: {caveat}" if caveat and png.stem == "optuna_param_importances" else ""
            report.figures.append((f"Optuna: {title} (objective: best {sweep.metric} of each trial; trial numbers "
                                   f"are the sweep's tNNN{tail}{warn})", png))
            report.interactive.append((f"Optuna {title}{' (' + TEST_SELECTED + ')' if steered else ''}",
                                       png.with_suffix(".html")))


def _score_figures(report: SweepReport, folder: Path, bootstrap: Bootstrap, videos: int) -> None:
    """Scores over time of the val protocol's checkpoint; ROC/PR of it, of the test pick when that is a selected
    checkpoint too, and of the paper defaults' trial. Captions and legends say ``test-selected`` for a checkpoint
    or trial test data chose."""
    sweep, picks = report.sweep, report.picks
    if "val" not in picks:
        return
    val, truth = picks["val"], bootstrap.truth
    val_scores = bootstrap.scores(val.run)
    if val_scores is None:
        report.notes.append(f"Score figures: {val.run.name} has no {SCORES_ARTIFACT} artifact")
        return
    chosen = f"the {TEST_SELECTED} checkpoint" if val.test_selected else "the validation-selected checkpoint"
    path = scores_figure(folder / "scores_val.png", val.run, val_scores, truth, videos)
    report.figures.append((f"Predicted scores over time against the ground truth (shaded): {val.where}, {chosen} "
                           f"({val.run.name})", path))
    curves = {f"{pick_mark('val', val)} {val.where}": val_scores}
    test = picks.get("test")
    if test is not None and test.saved_scores:
        scores = bootstrap.scores(test.run)  # the test pick is that run's selected checkpoint: same scores
        if scores is not None:
            curves[f"{pick_mark('test', test)} {test.where}"] = scores
    baseline = next((run for run in sweep.trials if run.tags.get("baseline") == "true"), None)
    if baseline is not None and baseline.run_id != val.run.run_id:
        scores = bootstrap.scores(baseline)
        if scores is not None:
            which = TEST_SELECTED if test_reasons(baseline, "", own_checkpoint=True, steered=sweep.test_steered) \
                else "val-selected"
            curves[f"paper defaults {baseline.label} (its {which} checkpoint)"] = scores
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
            lines += ["### Optimism gap", "", gap_text(report), "",
                      gap_markdown(report.gap, report.picks["val"], report.picks["test"], report.labels), ""]
        if report.figures:
            lines += ["### Figures", ""]
            for caption, path in report.figures:
                link = path.relative_to(out).as_posix()
                pdf = f" ([PDF]({path.with_suffix('.pdf').relative_to(out).as_posix()}))" \
                    if path.with_suffix(".pdf").is_file() else ""
                lines += [f"![{caption}]({link})", "", f"*{caption}*{pdf}", ""]
        if report.interactive:
            links = ", ".join(f"[{title}]({path.relative_to(out).as_posix()})" for title, path in report.interactive)
            lines += [f"Interactive (plotly): {links}.", ""]
        if report.notes:
            lines += ["Notes:", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(lines)


def gap_text(report: SweepReport) -> str:
    """What the optimism-gap table shows and how its null column is estimated."""
    lines = [line for line in report.gap or [] if line.null is not None]
    candidates = lines[0].null.candidates if lines and lines[0].null else 0
    return ("Test metrics of the checkpoint the val protocol picks against the one a test-set selection picks "
            "(percentage points for the % metrics). The gap's interval is a paired bootstrap over test videos (both "
            "checkpoints scored on the same resampled videos). A maximum over many candidates exceeds a single draw "
            "even when all are equally good; the null gap is that selection effect: over the "
            f"{candidates} candidates (trials x epochs) the test-selected pick chose among, it is the mean (and 95% "
            f"quantile) over 2000 replicates of the metric at the candidate with the best test {report.cheat.upper()} "
            "among N drawn with replacement, minus the metric of one more drawn candidate. Real differences between "
            "candidates widen it, so a gap within it is explained by selecting on the test set alone; a gap beyond "
            "it says the val pick is worse than a randomly drawn candidate.")


def render_latex(reports: Sequence[SweepReport], out: Path | None = None) -> str:
    """``report.tex``: a standalone document with the tables (booktabs), the optimism gaps and, given the report's
    folder ``out``, the figures (their PDFs, paths relative to ``report.tex``, in figure environments)."""
    body = []
    for dataset, group in _by_dataset(reports).items():
        caption = (f"Results on {dataset}. Rows: model x selection protocol; frame metrics read value [95% bootstrap "
                   f"interval over test videos]; test-selected rows were chosen with test data (e.g. the papers' "
                   f"protocol) and are a diagnostic only.")
        body += [latex_table([row for r in group for row in r.rows], caption, f"tab:{_label(dataset)}"), ""]
    for report in reports:
        if report.gap is not None:
            caption = (f"Optimism gap of sweep {report.sweep.name} ({report.model_label} on {report.sweep.dataset}): "
                       f"validation-selected against test-selected checkpoint.")
            body += [gap_latex(report.gap, report.picks["val"], report.picks["test"], report.labels, caption,
                               f"tab:gap-{_label(report.sweep.name)}"), ""]
    if out is not None:
        for report in reports:
            body += latex_figures(report, out)
    preamble = [r"\documentclass{article}", r"\usepackage[margin=1.5cm,landscape]{geometry}",
                r"\usepackage{booktabs}", r"\usepackage{graphicx}", r"\begin{document}",
                f"% search.report of {latex_escape(', '.join(r.sweep.name for r in reports))}", ""]
    return "\n".join(preamble + body + [r"\end{document}", ""])


def latex_figures(report: SweepReport, out: Path) -> list[str]:
    """A figure environment per figure of the sweep: its PDF (the PNG when no PDF was written), path relative to
    ``out`` (where ``report.tex`` sits), its caption escaped."""
    lines = []
    for i, (caption, png) in enumerate(report.figures):
        image = png.with_suffix(".pdf") if png.with_suffix(".pdf").is_file() else png
        lines += [r"\begin{figure}[htbp]", r"\centering",
                  rf"\includegraphics[width=\linewidth,height=0.8\textheight,keepaspectratio]"
                  rf"{{{image.relative_to(out).as_posix()}}}",
                  rf"\caption{{{latex_escape(caption)}}}",
                  rf"\label{{fig:{_label(report.sweep.name)}-{_label(png.stem)}}}", r"\end{figure}", ""]
        if i % 4 == 3:
            lines += [r"\clearpage", ""]
    return lines


def _label(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-:" else "-" for c in text)


def terminal_text(reports: Sequence[SweepReport]) -> str:
    """The tables and gaps for the terminal (Markdown)."""
    lines = []
    for dataset, group in _by_dataset(reports).items():
        lines += [f"Results on {dataset} (metrics in % [95% bootstrap interval over test videos]; test-selected "
                  f"= chosen with test data, a diagnostic only)", "",
                  markdown_table([row for r in group for row in r.rows]), ""]
    for report in reports:
        lines += [f"Sweep {report.sweep.name}: {_sweep_heading(report)}"]
        if report.gap is not None:
            lines += ["Optimism gap:", gap_markdown(report.gap, report.picks["val"], report.picks["test"],
                                                    report.labels)]
        lines += [f"note: {note}" for note in report.notes] + [""]
    return "\n".join(lines).rstrip()


def log_report(report: SweepReport, out: Path, reports: Sequence[SweepReport] = ()) -> None:
    """The report files under ``report/`` on the sweep's parent run and the figures of every sweep of the report
    (``reports``; default: this one) under ``report/<sweep>/``: the layout of ``out``, so the links of the logged
    ``report.md`` resolve in the artifact store."""
    parent: TrackedRun | None = report.sweep.parent
    if parent is None:
        return
    uri = report.sweep.tracking_uri
    log_files(uri, parent.run_id, [out / "report.md", out / "report.tex"], artifact_path=REPORT_ARTIFACTS)
    for name in dict.fromkeys(r.sweep.name for r in (reports or [report])):
        if (out / name).is_dir():
            log_files(uri, parent.run_id, [out / name], artifact_path=f"{REPORT_ARTIFACTS}/{name}")
