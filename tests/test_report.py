"""``search.report`` against hand-made MLflow runs with known metrics (no Ray, no training): the selection
protocols, mean +- std over seeds, the optimism gap, Markdown/LaTeX output, the Optuna study rebuilt from the
runs, the figures, and the report logged back onto the sweep's parent run."""

import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.entities import Param as Param_
from PIL import Image

from search.report import main
from search.reporting.build import sweep_report
from search.reporting.data import ReportError, TrackedRun, load_sweep
from search.reporting.figures import frame_scores, load_truth
from search.reporting.intervals import Bootstrap, null_gap, percentile_interval, seed_mean_interval
from search.reporting.study import build_study, real_trials, searched_params
from search.reporting.tables import (
    cell,
    gap_latex,
    gap_markdown,
    latex_table,
    markdown_table,
    optimism_gap,
    pick_epoch,
    pick_val,
    protocol_labels,
    row_label,
    seed_picks,
    seed_row,
    single_row,
    sweep_picks,
)
from search.sweep.naming import run_name
from search.sweep.space import Param
from search.sweep.tracking import as_text
from vad import scoring
from vad.data import load_dataset, load_test_features
from vad.metrics.frame import frame_metrics
from vad.metrics.intervals import paired_bootstrap_difference
from vad.plots import Curves, plot_learning_curves, plot_roc_pr
from vad.prepare import resolve_dataset

PNG = b"\x89PNG\r\n\x1a\n"
SPACE = {
    "optim.lr": Param("optim.lr", "loguniform", (1.0e-4, 1.0e-2)),
    "model.dilations": Param("model.dilations", "choice", ([1, 2, 4], [1, 2])),
    "model.dropout": Param("model.dropout", "uniform", (0.3, 0.8)),
}
COLUMNS = ("ap", "auc", "f1", "f1_macro", "pr_auc", "accuracy", "recall", "precision")
"""The test metrics of the study's table, in its column order."""


def shifted(auc: float) -> dict[str, float]:
    """Test metrics that all follow the AUC (``auc``, ``ap`` = auc - 0.01, ``f1`` = auc - 0.02, ...), so a pick
    is recognisable in every column."""
    order = ("auc", "ap", "f1", "f1_macro", "pr_auc", "accuracy", "recall", "precision")
    return {c: auc - 0.01 * i for i, c in enumerate(order)}


def epoch_tests(auc: float) -> dict[str, float]:
    """The per-epoch ``test_*`` metrics."""
    return {f"test_{c}": v for c, v in shifted(auc).items()}


def full_eval(auc: float, test_loss: float, train_loss: float) -> dict[str, float]:
    """The ``selected_*`` numbers of a full evaluation."""
    return {**{f"selected_{c}": v for c, v in shifted(auc).items()},
            "selected_test_loss": test_loss, "selected_train_loss": train_loss}


# Trial t002 has the best val_loss (0.7 at epoch 2: its selected checkpoint), t002 epoch 1 the best validation
# video AUC, t002 epoch 3 the best test AUC (0.80; not a selected checkpoint, so its losses are unknown); t003
# failed; t001 is the baseline.
TRIALS = [
    {"number": 1, "values": {"optim.lr": 1.0e-3, "model.dilations": [1, 2, 4], "model.dropout": 0.7},
     "baseline": True, "val_loss": [1.0, 0.8, 0.9], "val_video_auc": [0.6, 0.7, 0.65],
     "test_auc": [0.70, 0.75, 0.78], "is_best": [1, 1, 0],
     "evals": {1: full_eval(0.70, 2.0, 1.9), 2: full_eval(0.75, 1.5, 1.4)}},
    {"number": 2, "values": {"optim.lr": 3.0e-3, "model.dilations": [1, 2], "model.dropout": 0.5},
     "val_loss": [0.95, 0.7, 0.75], "val_video_auc": [0.9, 0.5, 0.6], "test_auc": [0.72, 0.74, 0.80],
     "is_best": [1, 1, 0], "evals": {1: full_eval(0.72, 1.8, 1.7), 2: full_eval(0.74, 1.2, 1.1)}},
    {"number": 3, "values": {"optim.lr": 2.0e-4, "model.dilations": [1, 2], "model.dropout": 0.4},
     "val_loss": [0.5], "val_video_auc": [0.95], "test_auc": [0.99], "is_best": [0], "evals": {},
     "status": "FAILED"},
]
# Retrained seeds: the val protocol picks each seed's selected checkpoint (auc 0.80 / 0.82 / 0.84); a failed seed
# is left out.
SEEDS = [
    {"seed": 0, "val_loss": [0.9, 0.6], "val_video_auc": [0.7, 0.8], "test_auc": [0.78, 0.80], "is_best": [1, 1],
     "evals": {1: full_eval(0.78, 1.1, 1.0), 2: full_eval(0.80, 1.0, 0.9)}},
    {"seed": 1, "val_loss": [0.5, 0.7], "val_video_auc": [0.9, 0.8], "test_auc": [0.82, 0.85], "is_best": [1, 0],
     "evals": {1: full_eval(0.82, 1.2, 1.1)}},
    {"seed": 2, "val_loss": [0.8, 0.4], "val_video_auc": [0.6, 0.9], "test_auc": [0.70, 0.84], "is_best": [1, 1],
     "evals": {1: full_eval(0.70, 1.6, 1.5), 2: full_eval(0.84, 1.4, 1.3)}},
    {"seed": 3, "val_loss": [0.1], "val_video_auc": [0.99], "test_auc": [0.99], "is_best": [1],
     "evals": {1: full_eval(0.99, 0.1, 0.1)}, "status": "FAILED"},
]


def tiny_scores(seed: int) -> scoring.TestScores:
    """Random per-video scores on the synthetic:tiny test list (what a trial's scores.npz holds)."""
    test = load_test_features(load_dataset(resolve_dataset("synthetic:tiny")))
    rng = np.random.default_rng(seed)
    return scoring.TestScores(list(test.video_ids), np.asarray(test.labels), list(test.classes),
                      [rng.random(int(n)).astype(np.float32) for n in test.lengths])


def log_batch(client: MlflowClient, run_id: str, params: dict, metrics: list[Metric]) -> None:
    """Params and metrics in one request each (much faster than one by one on sqlite)."""
    client.log_batch(run_id, params=[Param_(key, as_text(value)) for key, value in params.items()])
    for start in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[start:start + 900])


def log_run(client: MlflowClient, experiment_id: str, parent_id: str | None, spec: dict, tags: dict,
            name: str, folder: Path) -> str:
    params = {"data.dataset": "synthetic:tiny", "model.name": "rtfm", "train.threshold": 0.5,
              "train.seed": spec.get("seed", 0), **spec.get("values", {})}
    run = client.create_run(experiment_id, run_name=name, tags={
        **({"mlflow.parentRunId": parent_id} if parent_id else {}), "run_type": "trial", "model": "rtfm",
        "dataset": "tiny", **{k: as_text(v) for k, v in tags.items()}})
    run_id = run.info.run_id
    batch = []
    for epoch in range(1, len(spec["val_loss"]) + 1):
        values = {"val_loss": spec["val_loss"][epoch - 1], "train_loss": 2.0 - 0.1 * epoch,
                  "val_video_auc": spec["val_video_auc"][epoch - 1], "is_best": spec["is_best"][epoch - 1],
                  **epoch_tests(spec["test_auc"][epoch - 1])}
        selected = [e for e in spec["evals"] if e <= epoch]
        if selected:
            values.update(spec["evals"][max(selected)])
        batch += [Metric(key, float(value), epoch, epoch) for key, value in values.items()]
    log_batch(client, run_id, params, batch)
    if spec["evals"]:
        client.set_tag(run_id, "selected_epoch", str(max(spec["evals"])))
        path = folder / run_id / "scores.npz"
        tiny_scores(spec.get("number", 0) + 10 * spec.get("seed", 0)).save(path)
        client.log_artifact(run_id, str(path), artifact_path="scores")
    client.set_terminated(run_id, status=spec.get("status", "FINISHED"))
    return run_id


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """This module's cache folder (the synthetic dataset the scores belong to), set for its fixtures and tests."""
    return tmp_path_factory.mktemp("report-cache")


@pytest.fixture(autouse=True)
def _module_cache(cache_dir, monkeypatch) -> None:
    monkeypatch.setenv("VAD_CACHE_DIR", str(cache_dir))


@pytest.fixture(scope="module")
def store(tmp_path_factory, cache_dir) -> str:
    """A sqlite store holding sweep ``S`` (parent, three trials, a retrain group of four seeds) and a flat
    experiment ``flat`` (two runs, no parent)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAD_CACHE_DIR", str(cache_dir))
        return _fill_store(tmp_path_factory.mktemp("report-store"))


def _fill_store(folder: Path) -> str:
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("S", artifact_location=(folder / "artifacts").as_uri())
    parent = client.create_run(experiment, run_name="S", tags={"run_type": "sweep", "sweep": "S", "model": "rtfm",
                                                               "dataset": "tiny"}).info.run_id
    client.log_param(parent, "search.metric", "val_loss")
    client.log_param(parent, "search.mode", "min")
    for name, param in SPACE.items():
        client.log_param(parent, f"space.{name}", param.describe())
    for spec in TRIALS:
        tags = {"trial_number": spec["number"], "trial_id": f"id{spec['number']}",
                "baseline": str(spec.get("baseline", False)).lower()}
        log_run(client, experiment, parent, spec, tags, run_name("rtfm", "tiny", spec["number"], spec["values"]),
                folder)
    for spec in SEEDS:
        tags = {"group": "retrain", "retrain": "R1", "seed": spec["seed"], "trial_number": spec["seed"] + 1}
        log_run(client, experiment, parent, spec, tags, f"rtfm-tiny-t002-retrain seed={spec['seed']}", folder)
    client.set_terminated(parent)
    flat = client.create_experiment("flat", artifact_location=(folder / "flat").as_uri())
    for spec in TRIALS[:2]:
        log_run(client, flat, None, spec, {}, f"run{spec['number']}", folder)
    return uri


@pytest.fixture(scope="module")
def sweep(store):
    return load_sweep(MlflowClient(tracking_uri=store), "S")


def test_the_sweep_is_read_back_with_its_trials_and_seed_group(sweep):
    assert (sweep.model, sweep.dataset, sweep.metric, sweep.mode) == ("rtfm", "tiny", "val_loss", "min")
    assert [run.number for run in sweep.trials] == [1, 2, 3]
    assert list(sweep.groups) == ["R1"] and [r.tags["seed"] for r in sweep.groups["R1"]] == ["0", "1", "2", "3"]
    assert sweep.trials[1].history("val_loss") == {1: 0.95, 2: 0.7, 3: 0.75}
    assert sweep.dataset_spec == "synthetic:tiny"


def test_protocols_pick_the_checkpoints_with_their_test_metrics(sweep):
    picks = sweep_picks(sweep.trials, "val_loss", "min", "auc")
    val, video, test = picks["val"], picks["val_video_auc"], picks["test"]
    # val: the failed t003 has the lowest val_loss but no selected checkpoint; t002's selected checkpoint
    assert (val.run.number, val.epoch, val.score) == (2, 2, 0.7)
    assert val.metrics == pytest.approx({**shifted(0.74), "test_loss": 1.2, "train_loss": 1.1})
    # val_video_auc: among runs with per-epoch tests, t003 epoch 1 (0.95) is the highest; failed runs count here
    assert (video.run.number, video.epoch) == (3, 1)
    # the cheat: the best test AUC over every trial and epoch, t003's 0.99
    assert (test.run.number, test.epoch, test.metrics["auc"]) == (3, 1, 0.99)
    without_failed = sweep_picks(sweep.trials[:2], "val_loss", "min", "auc")
    test = without_failed["test"]
    assert (test.run.number, test.epoch) == (2, 3)
    assert test.metrics == pytest.approx(shifted(0.80))  # no losses
    video = without_failed["val_video_auc"]
    assert (video.run.number, video.epoch) == (2, 1)  # epoch 1 was t002's selected checkpoint: losses known
    assert video.metrics["test_loss"] == 1.8 and video.metrics["train_loss"] == 1.7
    assert "val_video_auc" not in sweep_picks(sweep.trials, "val_video_auc", "max", "auc")  # it is the val row
    assert sweep_picks(sweep.trials, "val_loss", "min", "ap")["test"].metrics["ap"] == pytest.approx(0.98)


def test_seed_rows_are_mean_and_sample_std_of_the_finished_seeds(sweep):
    picks = seed_picks(sweep.groups["R1"], "val_loss", "min", "auc")
    assert set(picks) == {"val", "val_video_auc", "test"}
    val = seed_row("RTFM", "val, 3 seeds", picks["val"])
    assert [p.run.tags["seed"] for p in val.picks] == ["0", "1", "2"]  # the failed seed 3 is left out
    assert [p.epoch for p in val.picks] == [2, 1, 2]
    mean, std = val.values["auc"]
    assert mean == pytest.approx(0.82) and std == pytest.approx(0.02)
    assert val.values["test_loss"] == pytest.approx((1.2, 0.2))
    assert val.source == "3 seeds (0,1,2)"
    test = seed_row("RTFM", "test, 3 seeds", picks["test"])
    assert test.values["auc"][0] == pytest.approx(statistics.fmean([0.80, 0.85, 0.84]))
    assert test.values["auc"][1] == pytest.approx(statistics.stdev([0.80, 0.85, 0.84]))
    assert "test_loss" not in test.values  # seed 1's best test epoch (2) was not a selected checkpoint
    assert cell("auc", *val.values["auc"]) == "82.0 ± 2.0"
    assert cell("test_loss", *val.values["test_loss"], latex=True) == r"1.200 $\pm$ 0.200"
    assert cell("auc", float("nan")) == "-" and cell("train_loss", None) == "-"


def test_optimism_gap_and_text_output(sweep):
    picks = sweep_picks(sweep.trials[:2], "val_loss", "min", "auc")
    lines = {line.column: line for line in optimism_gap(picks["val"], picks["test"])}
    assert list(lines) == list(COLUMNS)  # the test-selected epoch has no losses: no loss lines
    assert lines["auc"].val == pytest.approx(0.74) and lines["auc"].test == pytest.approx(0.80)
    assert lines["auc"].difference == pytest.approx(0.06)
    labels = protocol_labels("val_loss", "auc")
    text = gap_markdown(list(lines.values()), picks["val"], picks["test"], labels)
    # no scores were bootstrapped and no null was given: the interval is n/a, the null unknown
    assert "| AUC (%) | 74.0 | 80.0 | +6.0 [n/a] | - |" in text and "t002 epoch 2" in text and "t002 epoch 3" in text
    assert "| val (val_loss): t002 epoch 2 | test-selected (cheat: best test AUC): t002 epoch 3 |" in text
    latex = gap_latex(list(lines.values()), picks["val"], picks["test"], labels, "Gap of S_1", "tab:gap")
    assert r"AUC (\%) & 74.0 & 80.0 & +6.0 [n/a] & - \\" in latex and r"Gap of S\_1" in latex

    rows = [single_row("RTFM", labels[name], pick) for name, pick in picks.items()]
    markdown = markdown_table(rows).splitlines()
    assert markdown[0].startswith("| Model | Selection | Checkpoint | AP (%) | AUC (%) | F1 (%) | F1-macro (%) |")
    assert markdown[0].endswith("| Precision (%) | Test loss | Train loss |")
    assert markdown[2] == ("| RTFM | val (val_loss) | t002 epoch 2 | 73.0 [n/a] | 74.0 [n/a] | 72.0 [n/a] | "
                           "71.0 [n/a] | 70.0 [n/a] | 69.0 [n/a] | 68.0 [n/a] | 67.0 [n/a] | 1.200 | 1.100 |")
    assert markdown[4].startswith("| RTFM | test-selected (cheat: best test AUC) | t002 epoch 3 | 79.0 [n/a] | ")
    assert markdown[4].endswith("| - | - |")
    latex = latex_table(rows, "Results on tiny_set", "tab:tiny")
    assert latex.count(r"\begin{tabular}") == latex.count(r"\end{tabular}") == 1
    assert r"val (val\_loss) & t002 epoch 2 & 73.0 [n/a] & 74.0 [n/a]" in latex and r"Results on tiny\_set" in latex


def test_the_optuna_study_is_rebuilt_from_the_runs(sweep):
    assert searched_params(sweep) == SPACE
    study = build_study(sweep)
    assert study.direction.name == "MINIMIZE" and len(real_trials(study)) == 3
    first, second, failed = real_trials(study)
    # numbers are the sweep's tNNN (number 0 is a placeholder no plot draws)
    assert [t.number for t in (first, second, failed)] == [1, 2, 3] and study.trials[0].user_attrs["placeholder"]
    assert first.params == {"optim.lr": 1.0e-3, "model.dilations": "[1, 2, 4]", "model.dropout": 0.7}
    assert first.value == 0.8 and first.intermediate_values == {1: 1.0, 2: 0.8, 3: 0.9}
    assert second.value == 0.7 and second.params["model.dilations"] == "[1, 2]"
    assert failed.state.name == "FAIL" and failed.value is None
    assert study.best_trial.user_attrs["trial"] == "t002"


def test_report_command_writes_tables_figures_and_logs_them(store, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["--sweep", "S", "--out", str(out), "--tracking-uri", store]) == 0
    printed = capsys.readouterr().out
    assert "| RTFM | val (val_loss) | t002 epoch 2 | 73.0 [" in printed and "Optimism gap" in printed
    markdown = (out / "report.md").read_text()
    assert "## Results on tiny" in markdown and "| RTFM | val (val_loss), 3 seeds | 3 seeds (0,1,2) | " in markdown
    # t003 failed before saving scores: its test-selected epoch has no interval
    assert "| RTFM | test-selected (cheat: best test AUC) | t003 epoch 1 | 98.0 [n/a] | 99.0 [n/a] |" in markdown
    assert "### Optimism gap" in markdown
    latex = (out / "report.tex").read_text()
    assert latex.startswith(r"\documentclass") and latex.rstrip().endswith(r"\end{document}")
    assert r"82.0 $\pm$ 2.0" in latex
    figures = {"learning_curves.png", "learning_curves_R1.png", "scores_val.png", "roc_pr.png",
               "optuna_param_importances.png", "optuna_parallel_coordinate.png", "optuna_optimization_history.png"}
    assert r"\usepackage{graphicx}" in latex
    for name in figures:
        assert (out / "S" / name).read_bytes()[:8] == PNG, name
        assert (out / "S" / name).with_suffix(".pdf").read_bytes()[:5] == b"%PDF-", name
        assert f"](S/{name})" in markdown
        pdf = name.replace(".png", ".pdf")
        assert (f"\\includegraphics[width=\\linewidth,height=0.8\\textheight,keepaspectratio]{{S/{pdf}}}"
                in latex), name
    assert latex.count(r"\begin{figure}") == latex.count(r"\end{figure}") == latex.count(r"\includegraphics") >= 7
    with Image.open(out / "S" / "roc_pr.png") as image:  # print resolution
        assert round(image.info["dpi"][0]) == 300
    # the importances of 3 trials, none run to a large budget, carry the caveat in the title and the text
    assert "caveat: only" in markdown and "caveat: only" in (out / "S" / "optuna_param_importances.html").read_text()
    for name in ("param_importances", "parallel_coordinate", "optimization_history"):
        html = (out / "S" / f"optuna_{name}.html").read_text()
        assert "cdn.plot.ly" not in html and 'src="plotly.min.js"' in html  # offline: the bundle beside it
    assert (out / "S" / "plotly.min.js").stat().st_size > 1_000_000
    client = MlflowClient(tracking_uri=store)
    parent = load_sweep(client, "S").parent
    logged = {a.path for a in client.list_artifacts(parent.run_id, "report")}
    assert {"report/report.md", "report/report.tex", "report/S"} <= logged
    logged |= {a.path for a in client.list_artifacts(parent.run_id, "report/S")}
    # every link of the logged report.md resolves to a logged file, relative to where report.md sits
    folder = tmp_path / "logged"
    logged_md = Path(client.download_artifacts(parent.run_id, "report/report.md", str(folder))).read_text()
    links = re.findall(r"\]\(([^)]+)\)", logged_md)
    assert len(links) >= 2 * len(figures) and all(f"report/{link}" in logged for link in links), \
        sorted(set(links) - {path.removeprefix("report/") for path in logged})


def test_learning_curves_show_the_top_trials_and_the_paper_defaults(store, tmp_path, monkeypatch):
    import search.reporting.figures as figures

    drawn = []

    def spy(path, runs, **kwargs):
        drawn.append(([run.label for run in runs], kwargs))
        return real(path, runs, **kwargs)

    real = figures.plot_learning_curves
    monkeypatch.setattr(figures, "plot_learning_curves", spy)
    out = tmp_path / "top1"
    assert main(["--sweep", "S", "--out", str(out), "--tracking-uri", store, "--curves-top", "1", "--no-log",
                 "--n-boot", "0"]) == 0
    labels, kwargs = drawn[0]  # the sweep's figure: the best trial by val_loss (a val pick), then the paper defaults
    assert labels == ["t002 (val pick)", "t001 (paper defaults)"]
    assert kwargs["rows"] == [("train_loss", "val_loss")] and kwargs["epochs"] is None  # no train.epochs logged
    assert len(drawn[1][0]) <= 2  # the retrained seeds: at most N + 1 as well
    markdown = (out / "report.md").read_text()
    assert "Learning curves of the 1 best of 3 trials by val_loss and the paper defaults" in markdown


def test_an_experiment_without_a_parent_run_and_errors(store, tmp_path, capsys):
    client = MlflowClient(tracking_uri=store)
    flat = load_sweep(client, client.get_experiment_by_name("flat").experiment_id, by_id=True)
    assert flat.parent is None and len(flat.trials) == 2 and build_study(flat) is None
    out = tmp_path / "flat"
    assert main(["--experiment", "flat", "--out", str(out), "--tracking-uri", store, "--no-plots"]) == 0
    assert "| RTFM | val (val_loss) | run2 epoch 2 | 73.0 [" in (out / "report.md").read_text()
    assert main(["--sweep", "missing", "--out", str(out), "--tracking-uri", store]) == 2
    assert "no MLflow experiment 'missing'" in capsys.readouterr().err
    with pytest.raises(ReportError, match="no MLflow experiment"):
        load_sweep(client, "missing")


def test_run_names_with_a_label():
    values = {"optim.weight_decay": 5e-4, "model.dropout": 0.7}
    assert run_name("rtfm", "demo", 3, values) == "rtfm-demo-t003 wd=0.0005 do=0.7"
    assert run_name("rtfm", "demo", 1, {"train.seed": 2}, label="t003-retrain") == "rtfm-demo-t003-retrain seed=2"


def test_roc_pr_and_learning_curve_plots(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random(500) < 0.2).astype(int)
    scores = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1)
    path = plot_roc_pr(tmp_path / "roc.png", {"model": (scores, labels), "chance": (rng.random(500), labels)})
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="one class"):
        plot_roc_pr(tmp_path / "bad.png", {"model": (scores, np.zeros(500))})
    with pytest.raises(ValueError, match="500 scores but 3 labels"):
        plot_roc_pr(tmp_path / "bad.png", {"model": (scores, labels[:3])})
    runs = [Curves(f"t{i:03d}", {"train_loss": ([1, 2, 3], [1.0, 0.8, 0.7]), "val_loss": ([1, 2, 3], [1.1, 0.9, 1.0])},
                   selected_epoch=2, stopped=i > 2) for i in range(1, 6)]
    path = plot_learning_curves(tmp_path / "curves.png", runs, epochs=10)
    assert path.read_bytes()[:8] == PNG and path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="no series"):
        plot_learning_curves(tmp_path / "none.png", runs, rows=[])
    assert not math.isnan(float(scores.mean()))


# ------------------------------------------------------------- intervals, the gap's uncertainty, protocol labels

INTERVAL = re.compile(r"^(-?\d+\.\d+)(?: ± -?\d+\.\d+)? \[(-?\d+\.\d+), (-?\d+\.\d+)\]$")


def informative_scores(seed: int, strength: float) -> tuple[scoring.TestScores, dict[str, float]]:
    """Per-video scores on the synthetic:tiny test list that follow the video label by ``strength``, and their
    true frame metrics (what the run's ``selected_*`` are)."""
    truth = load_truth("synthetic:tiny")
    test = load_test_features(truth.dataset)
    rng = np.random.default_rng(seed)
    scores = scoring.TestScores(list(test.video_ids), np.asarray(test.labels), list(test.classes),
                                [(strength * label + (1 - strength) * rng.random(int(n))).astype(np.float32)
                                 for label, n in zip(test.labels, test.lengths)])
    metrics = frame_metrics(frame_scores(scores, truth, "test"), truth.ground_truth.labels, 0.5)
    return scores, metrics


def log_scored_run(client: MlflowClient, experiment_id: str, parent_id: str, folder: Path, name: str,
                   tags: dict, val_loss: list[float], seed: int, strength: float, params: dict | None = None) -> dict:
    """A run whose last epoch is its selected checkpoint with saved scores and consistent ``selected_*`` metrics;
    its earlier epochs have a lower per-epoch test AUC. Returns the checkpoint's true metrics."""
    scores, metrics = informative_scores(seed, strength)
    run_id = client.create_run(experiment_id, run_name=name, tags={
        "mlflow.parentRunId": parent_id, "run_type": "trial", "model": "rtfm", "dataset": "tiny",
        "selected_epoch": str(len(val_loss)), **tags}).info.run_id
    batch = []
    for epoch, loss in enumerate(val_loss, start=1):
        last = epoch == len(val_loss)
        values = {"val_loss": loss, "val_video_auc": 0.5, "is_best": float(last),
                  **{f"test_{c}": metrics[c] - (0 if last else 0.2) for c in COLUMNS}}
        if last:
            values.update({f"selected_{c}": metrics[c] for c in COLUMNS})
            values.update({"selected_test_loss": 1.0, "selected_train_loss": 0.9})
        batch += [Metric(key, float(value), epoch, epoch) for key, value in values.items()]
    log_batch(client, run_id, {"data.dataset": "synthetic:tiny", "train.threshold": 0.5, **(params or {})}, batch)
    path = folder / run_id / "scores.npz"
    scores.save(path)
    client.log_artifact(run_id, str(path), artifact_path="scores")
    client.set_terminated(run_id)
    return metrics


@pytest.fixture(scope="module")
def scored_store(tmp_path_factory, cache_dir) -> tuple[str, dict]:
    """Sweep ``I`` (honest: t001 has the best val_loss, t002 the best test AUC, both selected checkpoints with
    saved scores; a retrain group of two seeds) and sweep ``D`` (a diagnostic sweep tagged
    ``protocol=test-selected``). Returns the store and the true metrics per run name."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAD_CACHE_DIR", str(cache_dir))
        folder = tmp_path_factory.mktemp("scored-store")
        uri = f"sqlite:///{folder}/mlflow.db"
        client = MlflowClient(tracking_uri=uri)
        truths = {}
        for sweep, parent_tags, metric in (("I", {}, "val_loss"), ("D", {"protocol": "test-selected"}, "test_auc")):
            experiment = client.create_experiment(sweep, artifact_location=(folder / sweep).as_uri())
            parent = client.create_run(experiment, run_name=sweep, tags={
                "run_type": "sweep", "sweep": sweep, "model": "rtfm", "dataset": "tiny", **parent_tags}).info.run_id
            client.log_param(parent, "search.metric", metric)
            client.log_param(parent, "space.optim.lr", SPACE["optim.lr"].describe())
            for number, (losses, strength) in enumerate((([0.9, 0.5], 0.3), ([0.95, 0.8], 0.6)), start=1):
                name = f"{sweep}-t{number:03d}"
                truths[name] = log_scored_run(client, experiment, parent, folder, name,
                                              {"trial_number": str(number)}, losses, number, strength,
                                              {"optim.lr": 1.0e-3 * number})
            if sweep == "I":
                for seed, strength in ((0, 0.4), (1, 0.5)):
                    name = f"I-seed{seed}"
                    truths[name] = log_scored_run(
                        client, experiment, parent, folder, name,
                        {"group": "retrain", "retrain": "R", "seed": str(seed)}, [0.9, 0.6], 10 + seed, strength)
            client.set_terminated(parent)
        return uri, truths


def _table_row(markdown: str, selection: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 3 and cells[1] == selection:
            return cells
    raise AssertionError(f"no row {selection!r} in\n{markdown}")


def test_every_frame_metric_of_the_tables_reads_value_and_interval(scored_store, tmp_path):
    store, truths = scored_store
    out = tmp_path / "report"
    assert main(["--sweep", "I", "--out", str(out), "--tracking-uri", store, "--no-plots", "--no-log",
                 "--n-boot", "300"]) == 0
    markdown = (out / "report.md").read_text()
    for selection in ("val (val_loss)", "test-selected (cheat: best test AUC)", "val (val_loss), 2 seeds"):
        cells = _table_row(markdown, selection)
        for column, text in zip(COLUMNS, cells[3:3 + len(COLUMNS)]):
            found = INTERVAL.match(text)
            assert found, (selection, column, text)
            value, low, high = map(float, found.groups())
            assert low <= high and low - 0.05 <= value <= high + 0.05, (selection, column, text)
            if column in ("auc", "ap"):
                assert high - low > 1.0, (selection, column, text)  # 40 test videos: several points wide
    # the val row is t001's checkpoint: its printed AUC is the true one, inside its interval
    value, low, high = map(float, INTERVAL.match(_table_row(markdown, "val (val_loss)")[4]).groups())
    assert value == pytest.approx(100 * truths["I-t001"]["auc"], abs=0.05) and low <= value <= high
    assert _table_row(markdown, "val (val_loss), 2 seeds")[4].count("±") == 1  # mean ± std [interval of the mean]
    latex = (out / "report.tex").read_text()
    assert re.search(r"val \(val\\_loss\) & I-t001 epoch 2 & \d+\.\d \[\d+\.\d, \d+\.\d\] & ", latex) or \
        re.search(r"val \(val\\_loss\) & t001 epoch 2 & \d+\.\d \[\d+\.\d, \d+\.\d\] & ", latex)


def test_the_gap_gets_a_paired_interval_and_its_null_size(scored_store, tmp_path):
    store, truths = scored_store
    sweep = load_sweep(MlflowClient(tracking_uri=store), "I")
    picks = sweep_picks(sweep.trials, "val_loss", "min", "auc")
    assert picks["val"].run.name == "I-t001" and picks["test"].run.name == "I-t002"
    assert picks["val"].saved_scores and picks["test"].saved_scores
    truth = load_truth("synthetic:tiny")
    bootstrap = Bootstrap(truth, tmp_path / "scratch", n_boot=400, seed=3)
    report = sweep_report(sweep, "RTFM", None, bootstrap)
    lines = {line.column: line for line in report.gap}
    auc = lines["auc"]
    assert auc.difference == pytest.approx(truths["I-t002"]["auc"] - truths["I-t001"]["auc"])
    # the paired interval is the one vad.metrics.intervals computes from both checkpoints' frame scores
    frames = [frame_scores(bootstrap.scores(pick.run), truth, "") for pick in (picks["test"], picks["val"])]
    difference, low, high = paired_bootstrap_difference(*frames, truth.ground_truth.labels,
                                                        truth.ground_truth.offsets, metric="auc", n_boot=400, seed=3)
    assert auc.interval == pytest.approx((low, high)) and difference == pytest.approx(auc.difference, abs=1e-6)
    # null: 4 candidates (2 trials x 2 epochs): per-epoch AUCs x, x - 0.2 of both trials
    assert auc.null is not None and auc.null.candidates == 4
    values = [truths[n]["auc"] - d for n in ("I-t001", "I-t002") for d in (0.2, 0.0)]
    expected = null_gap(values, values, n_boot=2000, seed=3)
    assert auc.null == expected and 0 < auc.null.expected < max(values) - min(values)
    text = gap_markdown(report.gap, picks["val"], picks["test"], report.labels)
    row = next(line for line in text.splitlines() if line.startswith("| AUC (%)"))
    assert re.search(r"\| \+\d+\.\d \[[-+]\d+\.\d, [-+]\d+\.\d\] \| \+\d+\.\d \(95%: \+\d+\.\d; (within it|gap beyond "
                     r"it)\) \|$", row), row


def test_null_gap_on_constructed_candidates():
    # equally good candidates: no selection effect at all
    flat = null_gap([0.7] * 10, [0.7] * 10, n_boot=500)
    assert flat.expected == 0 and flat.upper == 0 and flat.candidates == 10
    # two candidates 0 and 1: the best of two draws is 1 unless both are 0 (1/4): E = 3/4 - 1/2 = 1/4
    two = null_gap([0.0, 1.0], [0.0, 1.0], n_boot=40000, seed=1)
    assert two.expected == pytest.approx(0.25, abs=0.01) and two.upper == 1.0
    # more candidates, larger effect; a loss selects its minimum; non-finite candidates are left out
    values = np.linspace(0.5, 0.9, 50)
    assert null_gap(values, values).expected > null_gap(values[::10], values[::10]).expected > 0
    assert null_gap(-values, values, mode="min").expected == pytest.approx(null_gap(values, values).expected)
    assert null_gap([0.1, math.nan], [0.2, 0.3]).candidates == 1
    assert null_gap([], []) is None
    # a reported metric that does not follow the selection metric gains less than the selection metric itself
    rng = np.random.default_rng(0)
    select, other = rng.random(200), rng.random(200)
    assert null_gap(select, other).expected < null_gap(select, select).expected


def test_seed_mean_interval_resamples_videos_and_seeds():
    rng = np.random.default_rng(0)
    one = rng.normal(0.8, 0.02, 1000)
    assert seed_mean_interval([one]) == pytest.approx(percentile_interval(one))
    assert seed_mean_interval([one, one]) == pytest.approx(percentile_interval(one))
    # no video noise, seeds at 0.7 and 0.9: the interval spans the seeds' spread
    low, high = seed_mean_interval([np.full(2000, 0.7), np.full(2000, 0.9)])
    assert (low, high) == pytest.approx((0.7, 0.9))
    # more seeds of the same spread: a narrower interval of the mean
    many = seed_mean_interval([np.full(2000, v) for v in np.linspace(0.7, 0.9, 20)])
    assert 0.7 < many[0] < 0.8 < many[1] < 0.9


def _run(tags: dict | None = None, params: dict | None = None, histories: dict | None = None,
         metrics: dict | None = None) -> TrackedRun:
    """A run held in memory (histories given, no MLflow)."""
    run = TrackedRun("r1", "t001", "FINISHED", {"trial_number": "1", "selected_epoch": "2", **(tags or {})},
                     params or {}, metrics or {"selected_auc": 0.8}, client=None)
    run._histories.update({"val_loss": {1: 1.0, 2: 0.5}, "test_auc": {1: 0.7, 2: 0.8}, **(histories or {})})
    return run


def test_a_pick_chosen_with_test_data_is_labelled_test_selected():
    labels = protocol_labels("val_loss", "auc")
    honest = pick_val([_run()], "val_loss", "min")
    assert honest.reasons == () and row_label("val", [honest], labels) == "val (val_loss)"
    for run in (_run(tags={"checkpoint_chosen_by": "test"}), _run(params={"train.selection": "test_auc"}),
                _run(tags={"trial_chosen_by": "test"})):
        pick = pick_val([run], "val_loss", "min")
        assert pick.test_selected and row_label("val", [pick], labels) == "test-selected (val (val_loss))"
    # the tag wins over the older runs' fallback: a val-chosen checkpoint of a run whose params say test_auc
    assert not pick_val([_run(tags={"checkpoint_chosen_by": "val"}, params={"train.selection": "test_auc"})],
                        "val_loss", "min").test_selected
    # ranking on a test metric, or a sweep steered by test data
    assert pick_val([_run()], "test_auc", "max").reasons == ("chosen by test_auc",)
    assert pick_val([_run()], "val_loss", "min", steered="tagged").reasons == ("tagged",)
    # the val_video_auc protocol picks its own epoch: the run's checkpoint selection does not matter there
    run = _run(tags={"checkpoint_chosen_by": "test"}, histories={"val_video_auc": {1: 0.9, 2: 0.6}})
    assert not pick_epoch([run], "val_video_auc", "max").test_selected
    assert pick_epoch([run], "test_auc", "max").test_selected
    seeds = [honest, pick_val([_run(tags={"checkpoint_chosen_by": "test"})], "val_loss", "min")]
    assert row_label("val", seeds, labels).startswith("test-selected")


def test_a_test_selected_sweep_is_labelled_in_every_table_and_figure(scored_store, store, tmp_path):
    scored, _ = scored_store
    out = tmp_path / "diagnostic"
    assert main(["--sweep", "D", "--out", str(out), "--tracking-uri", scored, "--no-log", "--n-boot", "100"]) == 0
    markdown = (out / "report.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| RTFM |")]
    assert rows and all(line.startswith("| RTFM | test-selected") for line in rows), rows
    assert "the sweep is tagged protocol=test-selected" in markdown
    assert r"RTFM & test-selected" in (out / "report.tex").read_text()
    gap_head = next(line for line in markdown.splitlines() if line.startswith("| Metric |"))
    assert "| val (" not in gap_head and gap_head.count("test-selected") == 2
    captions = [line for line in markdown.splitlines() if line.startswith("*")]
    assert any("the test-selected checkpoint" in c for c in captions)
    assert all("validation-selected" not in c for c in captions)
    assert any("Optuna" in c and "test-selected" in c for c in captions)
    # --metric test_auc on an honest sweep: its val protocol ranks on test data, never under the honest label
    out = tmp_path / "metric"
    assert main(["--sweep", "S", "--out", str(out), "--tracking-uri", store, "--no-log", "--no-plots",
                 "--metric", "test_auc", "--n-boot", "50"]) == 0
    markdown = (out / "report.md").read_text()
    assert "| RTFM | val (" not in markdown
    assert "| RTFM | test-selected (val (test_auc)) | t002 epoch 2 |" in markdown


def test_bootstrap_replicates_are_cached_per_run_on_disk(scored_store, tmp_path, monkeypatch):
    store, _ = scored_store
    run = load_sweep(MlflowClient(tracking_uri=store), "I").trials[0]
    truth = load_truth("synthetic:tiny")
    first = Bootstrap(truth, tmp_path / "a", n_boot=50, seed=1, cache_dir=tmp_path / "cache").replicates(run)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr("search.reporting.intervals.bootstrap_replicates", fail)
    again = Bootstrap(truth, tmp_path / "b", n_boot=50, seed=1, cache_dir=tmp_path / "cache").replicates(run)
    assert set(again) == set(first) and all(np.array_equal(again[k], first[k], equal_nan=True) for k in first)
    with pytest.raises(AssertionError, match="recomputed"):  # another seed is another key
        Bootstrap(truth, tmp_path / "c", n_boot=50, seed=2, cache_dir=tmp_path / "cache").replicates(run)


def test_a_run_without_val_ref_loss_is_ranked_on_its_equal_val_loss():
    # runs logged without val_ref_loss (older sweeps, plain training runs) trained with the reference loss
    plain = _run()
    assert plain.history("val_ref_loss") == {1: 1.0, 2: 0.5}
    searched = _run(metrics={"selected_auc": 0.8, "val_ref_loss": 0.7}, histories={"val_ref_loss": {1: 0.9, 2: 0.7}})
    assert searched.history("val_ref_loss") == {1: 0.9, 2: 0.7}
    assert pick_val([plain], "val_ref_loss", "min").score == 0.5


def test_the_epoch_budget_and_the_full_budget_caveat():
    from search.reporting.figures import epoch_budget
    from search.reporting.study import FEW_FULL, full_budget_caveat

    full = [_run(params={"train.epochs": "2"}) for _ in range(FEW_FULL)]
    cut = [_run(params={"train.epochs": "2"}, tags={"stopped_by": "asha"}) for _ in range(3)]
    assert epoch_budget(full + cut) == 2 and epoch_budget([_run()]) is None

    class Sweep:
        trials = full + cut

    assert full_budget_caveat(Sweep, 2) is None
    Sweep.trials = full[:2] + cut
    assert full_budget_caveat(Sweep, 2).startswith("only 2 of 5 trials ran the full budget")
    Sweep.trials = [_run(params={"train.epochs": "5"}) for _ in range(FEW_FULL)]  # 2 of 5 epochs: not full
    assert full_budget_caveat(Sweep, 5).startswith(f"only 0 of {FEW_FULL} trials")


def test_the_val_row_picks_the_trial_the_sweep_ranked_best_not_the_lowest_raw_epoch():
    # t001 has the lowest single-epoch value (a spike) but the sweep, under a smoothing rule, ranked t002 first
    spiky = _run(metrics={"selected_auc": 0.7, "best_val_loss": 0.9}, histories={"val_loss": {1: 1.0, 2: 0.2}})
    steady = TrackedRun("r2", "t002", "FINISHED", {"trial_number": "2", "selected_epoch": "2"}, {},
                        {"selected_auc": 0.8, "best_val_loss": 0.6}, client=None)
    steady._histories.update({"val_loss": {1: 0.7, 2: 0.6}})
    pick = pick_val([spiky, steady], "val_loss", "min")
    assert pick.run is steady and pick.score == 0.6
    # runs logged without best_<metric> fall back to their best per-epoch value
    assert pick_val([_run(), steady], "val_loss", "min").run.name == "t001"
