"""Selection protocols and the reference study's tables (rows = model x selection protocol; columns AP, AUC, F1,
F1-macro, PR-AUC, accuracy, recall, precision in %, test loss, train loss), in Markdown and LaTeX.

Protocols, over the runs of one sweep:

- ``val``: the trial with the best value of the sweep's validation metric over its epochs, and the test metrics of
  *its selected checkpoint* (the honest protocol; ``selected_<metric>`` of the run, a full evaluation that
  includes the test and train losses).
- ``val_video_auc``: the (trial, epoch) with the highest validation video AUC, and the test metrics of the model
  at that epoch (``test_<metric>``, logged every epoch with ``train.test_every_epoch``).
- ``test``: the papers' protocol, a diagnostic "cheat": the (trial, epoch) with the best *test* AUC (AP on
  XD-Violence), i.e. model selection on the test set.

Whatever the protocol's name, a pick whose trial or checkpoint was chosen with test data (:func:`test_reasons`)
is labelled ``test-selected`` (:func:`row_label`): a ``val`` row never shows a test-selected pick.

At an epoch picked from the per-epoch history, the test and train losses are known only when that epoch's model
was the run's selected checkpoint at that time (``is_best``: it then had the full evaluation); otherwise ``-``.
Retrained seeds (``search.retrain``, the confirmation) give the same protocols per seed, as mean +- sample
standard deviation. A frame metric's cell reads ``value [low, high]`` (its 95% bootstrap interval over test videos,
:mod:`search.reporting.intervals`; ``[n/a]`` when the checkpoint's per-video scores were not saved).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from search.reporting.data import TEST_SELECTED, TrackedRun, uses_test_data
from search.reporting.intervals import Interval, NullGap
from vad.metrics.catalogue import frame_metric_names, get_metric, table_columns

TABLE_COLUMNS = table_columns()
FRAME_METRICS = frame_metric_names()
LOSS_COLUMNS = ("test_loss", "train_loss")
GAP_COLUMNS = tuple(c for c in TABLE_COLUMNS if c in FRAME_METRICS)
"""Columns of the optimism gap: the test metrics known at every epoch."""


@dataclass(frozen=True)
class Pick:
    """One checkpoint chosen by a protocol: the run, the epoch (``None``: unknown), its test metrics (the study's
    columns that are known), the value it was chosen by, whether it is the run's selected checkpoint (whose
    per-video scores the run saved) and why test data chose it (empty: validation data only)."""

    run: TrackedRun
    epoch: int | None
    metrics: dict[str, float]
    score: float
    saved_scores: bool = False
    reasons: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """``t006 epoch 8``."""
        return f"{self.run.label} epoch {self.epoch}" if self.epoch is not None else self.run.label

    @property
    def test_selected(self) -> bool:
        return bool(self.reasons)


def checkpoint_reason(run: TrackedRun) -> str | None:
    """Why the run's own selected checkpoint was chosen with test data: its ``checkpoint_chosen_by=test`` tag or,
    for runs logged before that tag, a ``train.selection`` the catalogue says is computed on the test set."""
    tag = run.tags.get("checkpoint_chosen_by")
    if tag == "test":
        return f"{run.label}'s checkpoint was chosen on test data (checkpoint_chosen_by=test)"
    selection = run.params.get("train.selection")
    if tag is None and uses_test_data(selection):
        return f"{run.label}'s checkpoint was chosen by train.selection={selection}"
    return None


def test_reasons(run: TrackedRun, chosen_by: str, *, own_checkpoint: bool, steered: str | None = None
                 ) -> tuple[str, ...]:
    """Why a pick of ``run`` used test data: ``steered`` (the sweep's search did), the metric it was chosen by
    (``chosen_by``), the run's ``trial_chosen_by=test`` tag, and with ``own_checkpoint`` the run's checkpoint
    selection (:func:`checkpoint_reason`)."""
    reasons = [steered] if steered else []
    if uses_test_data(chosen_by):
        reasons.append(f"chosen by {chosen_by}")
    if run.tags.get("trial_chosen_by") == "test":
        reasons.append(f"{run.label} was chosen on test data (trial_chosen_by=test)")
    if own_checkpoint:
        reasons.append(checkpoint_reason(run) or "")
    return tuple(dict.fromkeys(reason for reason in reasons if reason))


def selected_metrics(run: TrackedRun) -> dict[str, float]:
    """The study's columns for the run's selected checkpoint (its final ``selected_<column>`` values)."""
    return {c: run.metrics[f"selected_{c}"] for c in TABLE_COLUMNS if f"selected_{c}" in run.metrics}


def epoch_metrics(run: TrackedRun, epoch: int) -> dict[str, float]:
    """The study's columns for the model at the end of ``epoch`` (``test_<metric>``, ``test_loss`` and
    ``train_eval_loss`` of that step); for runs logged before the per-epoch losses existed, the losses when that
    model was the selected checkpoint then (``is_best``: ``selected_*`` of that step are its own)."""
    out = {name: run.history(f"test_{name}")[epoch] for name in GAP_COLUMNS if epoch in run.history(f"test_{name}")}
    for column, key in (("test_loss", "test_loss"), ("train_loss", "train_eval_loss")):
        if epoch in run.history(key):
            out[column] = run.history(key)[epoch]
    if run.history("is_best").get(epoch) == 1.0:
        for column in LOSS_COLUMNS:
            value = run.history(f"selected_{column}").get(epoch)
            if value is not None and column not in out:
                out[column] = value
    return out


def _signed(value: float, mode: str) -> float:
    return value if mode == "min" else -value


def _selected_epoch(run: TrackedRun) -> int | None:
    epoch = run.tags.get("selected_epoch", "")
    return int(epoch) if epoch.isdigit() else None


def pick_val(runs: Sequence[TrackedRun], metric: str, mode: str, steered: str | None = None) -> Pick | None:
    """The run the sweep ranks best (ties: the lower trial number) among those with a selected checkpoint, with
    that checkpoint's test metrics. A run's value is what the sweep ranked it by, ``best_<metric>``: the selection
    rule's value at its selected checkpoint (for runs logged without it, the best of its per-epoch ``metric``)."""
    scored = []
    for run in runs:
        value = ranked_value(run, metric, mode)
        if value is not None and selected_metrics(run):
            scored.append((_signed(value, mode), run.number, value, run))
    if not scored:
        return None
    _, _, value, run = min(scored, key=lambda item: item[:2])
    return Pick(run, _selected_epoch(run), selected_metrics(run), value, saved_scores=True,
                reasons=test_reasons(run, metric, own_checkpoint=True, steered=steered))


def ranked_value(run: TrackedRun, metric: str, mode: str) -> float | None:
    """The value the sweep ranked ``run`` by: its logged ``best_<metric>`` when finite, else the best per-epoch
    ``metric`` (older runs, or runs of an experiment without a sweep)."""
    value = run.metrics.get(f"best_{metric}")
    if value is not None and math.isfinite(value):
        return float(value)
    return run.best(metric, mode)


def has_epoch_tests(run: TrackedRun) -> bool:
    """Whether the run logged its test metrics every epoch (``train.test_every_epoch``)."""
    return bool(run.history("test_auc"))


def epoch_candidates(runs: Sequence[TrackedRun], key: str) -> list[tuple[TrackedRun, int, float]]:
    """Every (run, epoch, value) with a finite per-epoch ``key`` among runs that logged test metrics every epoch:
    what :func:`pick_epoch` chooses among."""
    return [(run, epoch, value) for run in runs if has_epoch_tests(run)
            for epoch, value in run.history(key).items() if math.isfinite(value)]


def pick_epoch(runs: Sequence[TrackedRun], key: str, mode: str, steered: str | None = None) -> Pick | None:
    """The (run, epoch) with the best per-epoch ``key`` among runs that logged test metrics every epoch (ties: the
    lower trial number, then the earlier epoch), with the test metrics of the model at that epoch."""
    candidates = epoch_candidates(runs, key)
    if not candidates:
        return None
    run, epoch, value = min(candidates, key=lambda c: (_signed(c[2], mode), c[0].number, c[1]))
    saved = epoch == _selected_epoch(run)  # the run's selected checkpoint: its scores.npz is this model's
    return Pick(run, epoch, epoch_metrics(run, epoch), value, saved_scores=saved,
                reasons=test_reasons(run, key, own_checkpoint=False, steered=steered))


# ----------------------------------------------------------------------------------------------------- rows

@dataclass(frozen=True)
class Row:
    """One table row: ``values`` maps a column to ``(mean, std)`` (``std`` is ``None`` for a single checkpoint),
    ``intervals`` a frame metric to its 95% bootstrap interval (of the mean, for seeds)."""

    model: str
    selection: str
    source: str
    values: dict[str, tuple[float, float | None]]
    picks: tuple[Pick, ...]
    intervals: dict[str, Interval] = field(default_factory=dict)

    @property
    def test_selected(self) -> bool:
        return any(pick.test_selected for pick in self.picks)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(reason for pick in self.picks for reason in pick.reasons))


def single_row(model: str, selection: str, pick: Pick) -> Row:
    return Row(model, selection, pick.where, {c: (v, None) for c, v in pick.metrics.items()}, (pick,))


def seed_row(model: str, selection: str, picks: Sequence[Pick]) -> Row:
    """Mean +- sample standard deviation over seeds, for the columns every pick has (no std for one seed)."""
    columns = [c for c in TABLE_COLUMNS if all(c in pick.metrics for pick in picks)]
    values = {}
    for column in columns:
        numbers = [pick.metrics[column] for pick in picks]
        values[column] = (statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None)
    seeds = ",".join(pick.run.tags.get("seed", "?") for pick in picks)
    return Row(model, selection, f"{len(picks)} seeds ({seeds})", values, tuple(picks))


def cheat_metric(layout: str | None, dataset: str) -> str:
    """The papers' test-set selection metric: AP on XD-Violence (``xd`` layout), AUC otherwise."""
    if layout is not None:
        return "ap" if layout == "xd" else "auc"
    return "ap" if "xd" in dataset.lower() else "auc"


def protocol_labels(metric: str, cheat: str) -> dict[str, str]:
    """Each protocol's row label when no test data chose its pick (the test protocol always uses test data)."""
    return {"val": f"val ({metric})", "val_video_auc": "val_video_auc",
            "test": f"{TEST_SELECTED} (cheat: best test {cheat.upper()})"}


def row_label(name: str, picks: Sequence[Pick], labels: dict[str, str]) -> str:
    """The protocol's label, or ``test-selected (...)`` when test data chose any of ``picks``."""
    label = labels[name]
    if label.startswith(TEST_SELECTED) or not any(pick.test_selected for pick in picks):
        return label
    return f"{TEST_SELECTED} ({label})"


def sweep_picks(trials: Sequence[TrackedRun], metric: str, mode: str, cheat: str,
                steered: str | None = None) -> dict[str, Pick]:
    """The checkpoint each protocol picks among a sweep's trials (protocols without data left out; the
    ``val_video_auc`` protocol only when the sweep did not select on it already). ``steered``: why the sweep's
    search itself used test data (every pick is then test-selected)."""
    picks = {"val": pick_val(trials, metric, mode, steered)}
    if metric != "val_video_auc":
        picks["val_video_auc"] = pick_epoch(trials, "val_video_auc", "max", steered)
    picks["test"] = pick_epoch(trials, f"test_{cheat}", "max", steered)
    return {name: pick for name, pick in picks.items() if pick is not None}


def seed_picks(runs: Sequence[TrackedRun], metric: str, mode: str, cheat: str,
               steered: str | None = None) -> dict[str, list[Pick]]:
    """Each protocol applied to every finished seed run on its own (protocols some seed lacks left out)."""
    finished = [run for run in runs if run.status == "FINISHED"]
    per_seed = [sweep_picks([run], metric, mode, cheat, steered) for run in finished]
    names = [name for name in ("val", "val_video_auc", "test") if per_seed and all(name in p for p in per_seed)]
    return {name: [picks[name] for picks in per_seed] for name in names}


# ----------------------------------------------------------------------------------------------------- text

def cell(column: str, mean: float | None, std: float | None = None, interval: Interval | None = None, *,
         latex: bool = False, bracket: bool = False) -> str:
    """``80.3`` / ``80.3 ± 1.2`` / ``80.3 [76.0, 84.1]`` (the catalogue's format: percent columns x100 with one
    decimal, losses three decimals); ``-`` when unknown. ``bracket``: a frame metric without ``interval`` reads
    ``80.3 [n/a]``."""
    if mean is None or not math.isfinite(mean):
        return "-"
    metric = get_metric(column)
    text = metric.format(mean)
    if std is not None and math.isfinite(std):
        text += (r" $\pm$ " if latex else " ± ") + metric.format(std)
    if interval is not None:
        text += f" [{metric.format(interval[0])}, {metric.format(interval[1])}]"
    elif bracket:
        text += " [n/a]"
    return text


def header(column: str, *, latex: bool = False) -> str:
    return get_metric(column).column(latex=latex)


def _row_cells(row: Row, *, latex: bool) -> list[str]:
    return [cell(c, *row.values.get(c, (None, None)), row.intervals.get(c), latex=latex, bracket=c in FRAME_METRICS)
            for c in TABLE_COLUMNS]


def markdown_table(rows: Sequence[Row]) -> str:
    """The study's table as Markdown: Model | Selection | Checkpoint | AP (%) | ... | Train loss."""
    head = ["Model", "Selection", "Checkpoint", *(header(c) for c in TABLE_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(TABLE_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join([row.model, row.selection, row.source, *_row_cells(row, latex=False)]) + " |")
    return "\n".join(lines)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    """Plain text as LaTeX (special characters escaped)."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def latex_table(rows: Sequence[Row], caption: str, label: str) -> str:
    """The study's table as a LaTeX ``table`` (booktabs)."""
    spec = "lll" + "r" * len(TABLE_COLUMNS)
    head = ["Model", "Selection", "Checkpoint", *(header(c, latex=True) for c in TABLE_COLUMNS)]
    lines = [r"\begin{table}[ht]", r"\centering", r"\scriptsize", f"\\caption{{{latex_escape(caption)}}}",
             f"\\label{{{label}}}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(head) + r" \\",
             r"\midrule"]
    for row in rows:
        cells = [latex_escape(row.model), latex_escape(row.selection), latex_escape(row.source),
                 *_row_cells(row, latex=True)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- the gap

@dataclass(frozen=True)
class GapLine:
    """One metric of the optimism gap: both picks' values, the paired 95% interval of the difference over test
    videos (``None``: a pick's per-video scores were not saved) and the gap expected under the null."""

    column: str
    val: float | None
    test: float | None
    interval: Interval | None = None
    null: NullGap | None = None

    @property
    def difference(self) -> float | None:
        """test-selected minus validation-selected (positive: the test-set selection looks better)."""
        if self.val is None or self.test is None:
            return None
        return self.test - self.val

    @property
    def beyond_selection(self) -> bool | None:
        """Whether the gap exceeds the ``level`` quantile of the null gaps (``None``: unknown)."""
        if self.difference is None or self.null is None:
            return None
        return self.difference > self.null.upper


def optimism_gap(val: Pick, test: Pick, intervals: dict[str, Interval] | None = None,
                 nulls: dict[str, NullGap] | None = None) -> list[GapLine]:
    """The test metrics of the validation-selected checkpoint against the test-selected one, per column, with the
    paired intervals and null gaps that are known."""
    intervals, nulls = intervals or {}, nulls or {}
    return [GapLine(c, val.metrics.get(c), test.metrics.get(c), intervals.get(c), nulls.get(c))
            for c in TABLE_COLUMNS if c in GAP_COLUMNS or (c in val.metrics and c in test.metrics)]


def null_inputs(runs: Sequence[TrackedRun], cheat: str, column: str) -> tuple[list[float], list[float]]:
    """``(select, values)`` of every candidate the test-selected pick chose among (each trial x epoch with a
    per-epoch ``test_<cheat>``): its ``test_<cheat>`` and its ``test_<column>`` (``nan`` when not logged)."""
    candidates = epoch_candidates(runs, f"test_{cheat}")
    values = [run.history(f"test_{column}").get(epoch, math.nan) for run, epoch, _ in candidates]
    return [value for _, _, value in candidates], values


def _signed_text(text: str) -> str:
    if text == "-":
        return text
    if float(text) == 0:
        return text.lstrip("-")
    return text if text.startswith("-") else "+" + text


def _difference(line: GapLine, *, latex: bool) -> str:
    difference = line.difference
    if difference is None:
        return "-"
    text = _signed_text(cell(line.column, difference, latex=latex))
    if line.interval is not None:
        low, high = (_signed_text(cell(line.column, bound)) for bound in line.interval)
        text += f" [{low}, {high}]"
    elif line.column in FRAME_METRICS:
        text += " [n/a]"
    return text


def _null(line: GapLine) -> str:
    if line.null is None:
        return "-"
    expected = _signed_text(cell(line.column, line.null.expected))
    upper = _signed_text(cell(line.column, line.null.upper))
    verdict = {True: "gap beyond it", False: "within it", None: ""}[line.beyond_selection]
    return f"{expected} (95%: {upper}; {verdict})" if verdict else f"{expected} (95%: {upper})"


GAP_HEAD = ("Metric", "gap (test - val) [95% paired]", "null gap (95% quantile)")


def _gap_head(val: Pick, test: Pick, labels: dict[str, str]) -> list[str]:
    return [GAP_HEAD[0], f"{row_label('val', [val], labels)}: {val.where}",
            f"{row_label('test', [test], labels)}: {test.where}", *GAP_HEAD[1:]]


def gap_markdown(lines: Sequence[GapLine], val: Pick, test: Pick, labels: dict[str, str]) -> str:
    out = ["| " + " | ".join(_gap_head(val, test, labels)) + " |", "|---|---:|---:|---:|---:|"]
    for line in lines:
        out.append(f"| {header(line.column)} | {cell(line.column, line.val)} | {cell(line.column, line.test)} | "
                   f"{_difference(line, latex=False)} | {_null(line)} |")
    return "\n".join(out)


def gap_latex(lines: Sequence[GapLine], val: Pick, test: Pick, labels: dict[str, str], caption: str,
              label: str) -> str:
    out = [r"\begin{table}[ht]", r"\centering", r"\small", f"\\caption{{{latex_escape(caption)}}}",
           f"\\label{{{label}}}", r"\begin{tabular}{lrrrr}", r"\toprule",
           " & ".join(latex_escape(h) for h in _gap_head(val, test, labels)) + r" \\", r"\midrule"]
    for line in lines:
        out.append(f"{header(line.column, latex=True)} & {cell(line.column, line.val, latex=True)} & "
                   f"{cell(line.column, line.test, latex=True)} & {_difference(line, latex=True)} & "
                   f"{latex_escape(_null(line))} \\\\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out)
