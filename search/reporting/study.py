"""The sweep's Optuna study rebuilt from MLflow, and Optuna's plots of it (PNG with matplotlib, interactive HTML
with plotly).

Each trial run becomes a trial of a new in-memory study (``optuna.create_study`` + ``add_trial``): its searched
values (the run's params, read with the distributions the parent run logged as ``space.<key>``), the best value
of the sweep metric over its epochs as the objective (what the sweep's own study was told: Tune's ``OptunaSearch``
reports ASHA-stopped trials as complete with their last running best), the per-epoch values as intermediate
values; errored runs (FAILED) are failed trials, interrupted ones (KILLED, RUNNING) are left out. Trial numbers
match the sweep's ``tNNN`` (the gaps are filled with failed placeholder trials, user attr ``placeholder``, which
no plot draws).

The HTML plots work offline: they load ``plotly.min.js`` written once beside them (never a CDN). The importances
of a sweep where few trials ran the full budget (most stopped by ASHA) carry a caveat in their title.
"""

from __future__ import annotations

import ast
import math
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from search.reporting.data import TrackedSweep
from search.sweep.searcher import distribution
from search.sweep.space import KINDS, Param
from search.sweep.tracking import as_text
from vad.plots import save_figure

SPACE_PREFIX = "space."
FEW_FULL = 10
"""Fewer trials than this ran the full epoch budget: the parameter importances carry a caveat."""


class StudyError(ValueError):
    """The parent run's description of a searched key cannot be read back."""


def searched_params(sweep: TrackedSweep) -> dict[str, Param]:
    """The space's searched keys, from the parent run's ``space.<key>`` params (``loguniform [lo, hi]``, ...)."""
    if sweep.parent is None:
        return {}
    params = {}
    for key, text in sweep.parent.params.items():
        if not key.startswith(SPACE_PREFIX):
            continue
        name = key[len(SPACE_PREFIX):]
        kind, _, values = text.partition(" ")
        try:
            parsed = ast.literal_eval(values)
        except (ValueError, SyntaxError):
            parsed = None
        if kind not in KINDS or not isinstance(parsed, list):
            raise StudyError(f"sweep {sweep.name!r}: parent param {key} = {text!r}: expected '<kind> [values]' "
                             f"with kind in {', '.join(KINDS)}")
        params[name] = Param(name, kind, tuple(parsed))
    return params


def trial_value(param: Param, text: str) -> Any:
    """A run's param text as the study's value of ``param`` (candidates of choice/grid matched by their text)."""
    if param.kind in ("choice", "grid"):
        for value in param.values:
            if as_text(value) == text:
                return param.encode(value)
        raise StudyError(f"param {param.name} = {text!r} is none of the candidates {list(param.values)}")
    return int(text) if param.kind == "int" else float(text)


def build_study(sweep: TrackedSweep) -> optuna.Study | None:
    """The sweep as an in-memory Optuna study (``None`` without a parent run describing the searched keys)."""
    params = searched_params(sweep)
    if not params:
        return None
    distributions = {name: distribution(param) for name, param in params.items()}
    direction = "minimize" if sweep.mode == "min" else "maximize"
    study = optuna.create_study(study_name=sweep.name, direction=direction)
    runs = [run for run in sweep.trials
            if run.status not in ("RUNNING", "KILLED") and all(name in run.params for name in params)]
    numbered = sorted((run for run in runs if run.number), key=lambda run: run.number)
    if len({run.number for run in numbered}) < len(numbered):
        numbered = []  # repeated numbers: no alignment possible, the runs are added in their order
    for run in numbered + [run for run in runs if run not in numbered]:
        while run in numbered and len(study.trials) < run.number:  # trial k of the study is the sweep's t<k>
            study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                                      user_attrs={"placeholder": True}))
        values = {name: trial_value(param, run.params[name]) for name, param in params.items()}
        objective = run.best(sweep.metric, sweep.mode) if run.status != "FAILED" else None
        state = optuna.trial.TrialState.COMPLETE if objective is not None else optuna.trial.TrialState.FAIL
        intermediate = {step: value for step, value in run.history(sweep.metric).items() if math.isfinite(value)}
        study.add_trial(optuna.trial.create_trial(
            params=values, distributions=distributions, value=objective, state=state,
            intermediate_values=intermediate, user_attrs={"run": run.name, "trial": run.label}))
    return study


def real_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials without the placeholders that align its numbers with the sweep's."""
    return [trial for trial in study.trials if not trial.user_attrs.get("placeholder")]


def full_budget_caveat(sweep: TrackedSweep, epochs: int | None) -> str | None:
    """``only 3 of 12 trials ran the full budget`` when fewer than :data:`FEW_FULL` did (not stopped by ASHA nor
    failed, and reached ``epochs`` when known or stopped early by their own patience); ``None`` otherwise."""
    finished = [run for run in sweep.trials if run.status not in ("RUNNING", "KILLED")]
    full = [run for run in finished if run.status != "FAILED" and run.tags.get("stopped_by") != "asha"
            and (epochs is None or run.tags.get("train_status") == "early_stopped"
                 or max(run.history("val_loss") or {0: 0}) >= epochs)]
    if len(full) >= FEW_FULL:
        return None
    return (f"only {len(full)} of {len(finished)} trials ran the full budget: importances computed from few, "
            f"mostly stopped trials are unreliable")


@dataclass(frozen=True)
class StudyPlot:
    name: str
    title: str
    plotly: Callable[..., Any]
    matplotlib: Callable[..., Any]


STUDY_PLOTS = (
    StudyPlot("param_importances", "Parameter importances",
              optuna.visualization.plot_param_importances, optuna.visualization.matplotlib.plot_param_importances),
    StudyPlot("parallel_coordinate", "Parallel coordinates",
              optuna.visualization.plot_parallel_coordinate,
              optuna.visualization.matplotlib.plot_parallel_coordinate),
    StudyPlot("optimization_history", "Optimization history",
              optuna.visualization.plot_optimization_history,
              optuna.visualization.matplotlib.plot_optimization_history),
)


def write_study_plots(study: optuna.Study, folder: Path, target_name: str,
                     caveat: str | None = None) -> tuple[list[Path], list[str]]:
    """Each of :data:`STUDY_PLOTS` as ``optuna_<name>.png`` (300 dpi), ``.pdf`` and ``.html`` (offline: it loads
    ``plotly.min.js`` beside it) in ``folder``, the importances titled with ``caveat`` when given; returns the PNG
    and HTML files written and a note per plot that could not be drawn (e.g. too few finished trials)."""
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    files, notes = [], []
    for plot in STUDY_PLOTS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna's "experimental" warnings of its matplotlib backend
                figure = plot.plotly(study, target_name=target_name)
                axes = plot.matplotlib(study, target_name=target_name)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            notes.append(f"{plot.title}: not drawn ({exc})")
            plt.close("all")
            continue
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        if caveat and plot.name == "param_importances":
            figure.update_layout(title=f"{plot.title} (caveat: {caveat})")
            for loc in ("left", "center", "right"):
                first.set_title("", loc=loc)  # optuna's own title, replaced
            first.set_title(f"{plot.title}\n" + textwrap.fill(f"caveat: {caveat}", 90), fontsize=9, loc="left")
        html = folder / f"optuna_{plot.name}.html"
        figure.write_html(str(html), include_plotlyjs="directory")  # plotly.min.js beside it: works offline
        canvas = first.figure
        canvas.set_size_inches(max(canvas.get_size_inches()[0], 8), max(canvas.get_size_inches()[1], 4.5))
        canvas.tight_layout()
        png = save_figure(canvas, folder / f"optuna_{plot.name}.png")
        files += [png, html]
    return files, notes
