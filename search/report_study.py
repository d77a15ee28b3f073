"""The sweep's Optuna study rebuilt from MLflow, and Optuna's plots of it (PNG with matplotlib, interactive HTML
with plotly).

Each trial run becomes a trial of a new in-memory study (``optuna.create_study`` + ``add_trial``): its searched
values (the run's params, read with the distributions the parent run logged as ``space.<key>``), the best value
of the sweep metric over its epochs as the objective (what the sweep's own study was told: Tune's ``OptunaSearch``
reports ASHA-stopped trials as complete with their last running best), the per-epoch values as intermediate
values; errored runs (FAILED) are failed trials, interrupted ones (KILLED, RUNNING) are left out.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from search.report_data import TrackedSweep
from search.searcher import distribution
from search.space import KINDS, Param
from search.tracking import as_text

SPACE_PREFIX = "space."


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
    for run in sweep.trials:
        if run.status in ("RUNNING", "KILLED") or not all(name in run.params for name in params):
            continue
        values = {name: trial_value(param, run.params[name]) for name, param in params.items()}
        objective = run.best(sweep.metric, sweep.mode) if run.status != "FAILED" else None
        state = optuna.trial.TrialState.COMPLETE if objective is not None else optuna.trial.TrialState.FAIL
        intermediate = {step: value for step, value in run.history(sweep.metric).items() if math.isfinite(value)}
        study.add_trial(optuna.trial.create_trial(
            params=values, distributions=distributions, value=objective, state=state,
            intermediate_values=intermediate, user_attrs={"run": run.name, "trial": run.label}))
    return study


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


def write_study_plots(study: optuna.Study, folder: Path, target_name: str) -> tuple[list[Path], list[str]]:
    """Each of :data:`STUDY_PLOTS` as ``optuna_<name>.png`` and ``optuna_<name>.html`` in ``folder``; returns the
    files written and a note per plot that could not be drawn (e.g. too few finished trials)."""
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
        html = folder / f"optuna_{plot.name}.html"
        figure.write_html(str(html), include_plotlyjs="cdn")
        png = folder / f"optuna_{plot.name}.png"
        canvas = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        canvas.set_size_inches(max(canvas.get_size_inches()[0], 8), max(canvas.get_size_inches()[1], 4.5))
        canvas.tight_layout()
        canvas.savefig(png, dpi=110)
        plt.close(canvas)
        files += [png, html]
    return files, notes
