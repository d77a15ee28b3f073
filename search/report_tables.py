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

At an epoch picked from the per-epoch history, the test and train losses are known only when that epoch's model
was the run's selected checkpoint at that time (``is_best``: it then had the full evaluation); otherwise ``-``.
Retrained seeds (``search.retrain``) give the same protocols per seed, as mean +- sample standard deviation.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from search.report_data import TrackedRun
from vad.evaluate import HEADERS, PERCENT_COLUMNS
from vad.evaluation import TABLE_COLUMNS
from vad.train import TEST_METRICS

LOSS_COLUMNS = ("test_loss", "train_loss")
GAP_COLUMNS = tuple(c for c in TABLE_COLUMNS if c in TEST_METRICS)
"""Columns of the optimism gap: the test metrics known at every epoch."""


@dataclass(frozen=True)
class Pick:
    """One checkpoint chosen by a protocol: the run, the epoch (``None``: unknown), its test metrics (the study's
    columns that are known) and the value it was chosen by."""

    run: TrackedRun
    epoch: int | None
    metrics: dict[str, float]
    score: float

    @property
    def where(self) -> str:
        """``t006 epoch 8``."""
        return f"{self.run.label} epoch {self.epoch}" if self.epoch is not None else self.run.label


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


def pick_val(runs: Sequence[TrackedRun], metric: str, mode: str) -> Pick | None:
    """The run with the best ``metric`` over its epochs (ties: the lower trial number) that has a selected
    checkpoint, with that checkpoint's test metrics."""
    scored = []
    for run in runs:
        value = run.best(metric, mode)
        if value is not None and selected_metrics(run):
            scored.append((_signed(value, mode), run.number, value, run))
    if not scored:
        return None
    _, _, value, run = min(scored, key=lambda item: item[:2])
    epoch = run.tags.get("selected_epoch", "")
    return Pick(run, int(epoch) if epoch.isdigit() else None, selected_metrics(run), value)


def has_epoch_tests(run: TrackedRun) -> bool:
    """Whether the run logged its test metrics every epoch (``train.test_every_epoch``)."""
    return bool(run.history("test_auc"))


def pick_epoch(runs: Sequence[TrackedRun], key: str, mode: str) -> Pick | None:
    """The (run, epoch) with the best per-epoch ``key`` among runs that logged test metrics every epoch (ties: the
    lower trial number, then the earlier epoch), with the test metrics of the model at that epoch."""
    best = None
    for run in runs:
        if not has_epoch_tests(run):
            continue
        for epoch, value in run.history(key).items():
            if math.isfinite(value):
                candidate = (_signed(value, mode), run.number, epoch)
                if best is None or candidate < best[0]:
                    best = (candidate, run, epoch, value)
    if best is None:
        return None
    _, run, epoch, value = best
    return Pick(run, epoch, epoch_metrics(run, epoch), value)


# ----------------------------------------------------------------------------------------------------- rows

@dataclass(frozen=True)
class Row:
    """One table row: ``values`` maps a column to ``(mean, std)`` (``std`` is ``None`` for a single checkpoint)."""

    model: str
    selection: str
    source: str
    values: dict[str, tuple[float, float | None]]
    picks: tuple[Pick, ...]


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
    return {"val": f"val ({metric})", "val_video_auc": "val_video_auc",
            "test": f"test (cheat: best test {cheat.upper()})"}


def sweep_picks(trials: Sequence[TrackedRun], metric: str, mode: str, cheat: str) -> dict[str, Pick]:
    """The checkpoint each protocol picks among a sweep's trials (protocols without data left out; the
    ``val_video_auc`` protocol only when the sweep did not select on it already)."""
    picks = {"val": pick_val(trials, metric, mode)}
    if metric != "val_video_auc":
        picks["val_video_auc"] = pick_epoch(trials, "val_video_auc", "max")
    picks["test"] = pick_epoch(trials, f"test_{cheat}", "max")
    return {name: pick for name, pick in picks.items() if pick is not None}


def seed_picks(runs: Sequence[TrackedRun], metric: str, mode: str, cheat: str) -> dict[str, list[Pick]]:
    """Each protocol applied to every finished seed run on its own (protocols some seed lacks left out)."""
    finished = [run for run in runs if run.status == "FINISHED"]
    per_seed = [sweep_picks([run], metric, mode, cheat) for run in finished]
    names = [name for name in ("val", "val_video_auc", "test") if per_seed and all(name in p for p in per_seed)]
    return {name: [picks[name] for picks in per_seed] for name in names}


# ----------------------------------------------------------------------------------------------------- text

def cell(column: str, mean: float | None, std: float | None = None, *, latex: bool = False) -> str:
    """``80.3`` / ``80.3 ± 1.2`` (percent columns x100, one decimal; losses three decimals); ``-`` when
    unknown."""
    if mean is None or not math.isfinite(mean):
        return "-"
    scale, digits = (100.0, 1) if column in PERCENT_COLUMNS else (1.0, 3)
    text = f"{scale * mean:.{digits}f}"
    if std is not None and math.isfinite(std):
        text += (r" $\pm$ " if latex else " ± ") + f"{scale * std:.{digits}f}"
    return text


def header(column: str, *, latex: bool = False) -> str:
    suffix = (r" (\%)" if latex else " (%)") if column in PERCENT_COLUMNS else ""
    return HEADERS[column] + suffix


def markdown_table(rows: Sequence[Row]) -> str:
    """The study's table as Markdown: Model | Selection | Checkpoint | AP (%) | ... | Train loss."""
    head = ["Model", "Selection", "Checkpoint", *(header(c) for c in TABLE_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(TABLE_COLUMNS)]
    for row in rows:
        cells = [row.model, row.selection, row.source,
                 *(cell(c, *row.values.get(c, (None, None))) for c in TABLE_COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
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
                 *(cell(c, *row.values.get(c, (None, None)), latex=True) for c in TABLE_COLUMNS)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- the gap

@dataclass(frozen=True)
class GapLine:
    column: str
    val: float | None
    test: float | None

    @property
    def difference(self) -> float | None:
        """test-selected minus validation-selected (positive: the test-set selection looks better)."""
        if self.val is None or self.test is None:
            return None
        return self.test - self.val


def optimism_gap(val: Pick, test: Pick) -> list[GapLine]:
    """The test metrics of the validation-selected checkpoint against the test-selected one, per column."""
    return [GapLine(c, val.metrics.get(c), test.metrics.get(c)) for c in TABLE_COLUMNS
            if c in GAP_COLUMNS or (c in val.metrics and c in test.metrics)]


def _difference(line: GapLine, *, latex: bool) -> str:
    difference = line.difference
    if difference is None:
        return "-"
    text = cell(line.column, difference, latex=latex)
    if float(text) == 0:
        return text.lstrip("-")
    return text if text.startswith("-") else "+" + text


def gap_markdown(lines: Sequence[GapLine], val: Pick, test: Pick, labels: dict[str, str]) -> str:
    head = ["Metric", f"{labels['val']}: {val.where}", f"{labels['test']}: {test.where}", "gap (test - val)"]
    out = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|"]
    for line in lines:
        out.append(f"| {header(line.column)} | {cell(line.column, line.val)} | {cell(line.column, line.test)} | "
                   f"{_difference(line, latex=False)} |")
    return "\n".join(out)


def gap_latex(lines: Sequence[GapLine], val: Pick, test: Pick, labels: dict[str, str], caption: str,
              label: str) -> str:
    head = ["Metric", f"{labels['val']}: {val.where}", f"{labels['test']}: {test.where}", "gap (test - val)"]
    out = [r"\begin{table}[ht]", r"\centering", r"\small", f"\\caption{{{latex_escape(caption)}}}",
           f"\\label{{{label}}}", r"\begin{tabular}{lrrr}", r"\toprule",
           " & ".join(latex_escape(h) for h in head) + r" \\", r"\midrule"]
    for line in lines:
        out.append(f"{header(line.column, latex=True)} & {cell(line.column, line.val, latex=True)} & "
                   f"{cell(line.column, line.test, latex=True)} & {_difference(line, latex=True)} \\\\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out)
