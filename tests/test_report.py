"""``search.report`` against hand-made MLflow runs with known metrics (no Ray, no training): the selection
protocols, mean +- std over seeds, the optimism gap, Markdown/LaTeX output, the Optuna study rebuilt from the
runs, the figures, and the report logged back onto the sweep's parent run."""

import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from search.naming import run_name
from search.report import main
from search.report_data import ReportError, load_sweep
from search.report_study import build_study, searched_params
from search.report_tables import (
    cell,
    gap_latex,
    gap_markdown,
    latex_table,
    markdown_table,
    optimism_gap,
    protocol_labels,
    seed_picks,
    seed_row,
    single_row,
    sweep_picks,
)
from search.space import Param
from search.tracking import as_text
from vad import evaluation
from vad.data import load_dataset, load_test_features
from vad.plots import plot_learning_curves, plot_roc_pr
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


def tiny_scores(seed: int) -> evaluation.TestScores:
    """Random per-video scores on the synthetic:tiny test list (what a trial's scores.npz holds)."""
    test = load_test_features(load_dataset(resolve_dataset("synthetic:tiny")))
    rng = np.random.default_rng(seed)
    return evaluation.TestScores(list(test.video_ids), np.asarray(test.labels), list(test.classes),
                      [rng.random(int(n)).astype(np.float32) for n in test.lengths])


def log_run(client: MlflowClient, experiment_id: str, parent_id: str | None, spec: dict, tags: dict,
            name: str, folder: Path) -> str:
    params = {"data.dataset": "synthetic:tiny", "model.name": "rtfm", "train.threshold": 0.5,
              "train.seed": spec.get("seed", 0), **spec.get("values", {})}
    run = client.create_run(experiment_id, run_name=name, tags={
        **({"mlflow.parentRunId": parent_id} if parent_id else {}), "run_type": "trial", "model": "rtfm",
        "dataset": "tiny", **{k: as_text(v) for k, v in tags.items()}})
    run_id = run.info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, as_text(value))
    for epoch in range(1, len(spec["val_loss"]) + 1):
        values = {"val_loss": spec["val_loss"][epoch - 1], "train_loss": 2.0 - 0.1 * epoch,
                  "val_video_auc": spec["val_video_auc"][epoch - 1], "is_best": spec["is_best"][epoch - 1],
                  **epoch_tests(spec["test_auc"][epoch - 1])}
        selected = [e for e in spec["evals"] if e <= epoch]
        if selected:
            values.update(spec["evals"][max(selected)])
        for key, value in values.items():
            client.log_metric(run_id, key, float(value), step=epoch)
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
    assert "| AUC (%) | 74.0 | 80.0 | +6.0 |" in text and "t002 epoch 2" in text and "t002 epoch 3" in text
    latex = gap_latex(list(lines.values()), picks["val"], picks["test"], labels, "Gap of S_1", "tab:gap")
    assert r"AUC (\%) & 74.0 & 80.0 & +6.0 \\" in latex and r"Gap of S\_1" in latex

    rows = [single_row("RTFM", labels[name], pick) for name, pick in picks.items()]
    markdown = markdown_table(rows).splitlines()
    assert markdown[0].startswith("| Model | Selection | Checkpoint | AP (%) | AUC (%) | F1 (%) | F1-macro (%) |")
    assert markdown[0].endswith("| Precision (%) | Test loss | Train loss |")
    assert markdown[2] == ("| RTFM | val (val_loss) | t002 epoch 2 | 73.0 | 74.0 | 72.0 | 71.0 | 70.0 | 69.0 | "
                           "68.0 | 67.0 | 1.200 | 1.100 |")
    assert markdown[4].startswith("| RTFM | test (cheat: best test AUC) | t002 epoch 3 | 79.0 | 80.0 |")
    assert markdown[4].endswith("| - | - |")
    latex = latex_table(rows, "Results on tiny_set", "tab:tiny")
    assert latex.count(r"\begin{tabular}") == latex.count(r"\end{tabular}") == 1
    assert r"val (val\_loss) & t002 epoch 2 & 73.0 & 74.0" in latex and r"Results on tiny\_set" in latex


def test_the_optuna_study_is_rebuilt_from_the_runs(sweep):
    assert searched_params(sweep) == SPACE
    study = build_study(sweep)
    assert study.direction.name == "MINIMIZE" and len(study.trials) == 3
    first, second, failed = study.trials
    assert first.params == {"optim.lr": 1.0e-3, "model.dilations": "[1, 2, 4]", "model.dropout": 0.7}
    assert first.value == 0.8 and first.intermediate_values == {1: 1.0, 2: 0.8, 3: 0.9}
    assert second.value == 0.7 and second.params["model.dilations"] == "[1, 2]"
    assert failed.state.name == "FAIL" and failed.value is None
    assert study.best_trial.user_attrs["trial"] == "t002"


def test_report_command_writes_tables_figures_and_logs_them(store, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["--sweep", "S", "--out", str(out), "--tracking-uri", store]) == 0
    printed = capsys.readouterr().out
    assert "| RTFM | val (val_loss) | t002 epoch 2 | 73.0 | 74.0 |" in printed and "Optimism gap" in printed
    markdown = (out / "report.md").read_text()
    assert "## Results on tiny" in markdown and "| RTFM | val (val_loss), 3 seeds | 3 seeds (0,1,2) | " in markdown
    assert "| RTFM | test (cheat: best test AUC) | t003 epoch 1 | 98.0 | 99.0 |" in markdown
    assert "### Optimism gap" in markdown
    latex = (out / "report.tex").read_text()
    assert latex.startswith(r"\documentclass") and latex.rstrip().endswith(r"\end{document}")
    assert r"82.0 $\pm$ 2.0" in latex
    figures = {"learning_curves.png", "learning_curves_R1.png", "scores_val.png", "roc_pr.png",
               "optuna_param_importances.png", "optuna_parallel_coordinate.png", "optuna_optimization_history.png"}
    for name in figures:
        assert (out / "S" / name).read_bytes()[:8] == PNG, name
        assert f"](S/{name})" in markdown
    for name in ("param_importances", "parallel_coordinate"):
        assert "plotly" in (out / "S" / f"optuna_{name}.html").read_text()
    client = MlflowClient(tracking_uri=store)
    parent = load_sweep(client, "S").parent
    logged = {a.path for a in client.list_artifacts(parent.run_id, "report")}
    assert {"report/report.md", "report/report.tex", "report/roc_pr.png", "report/scores_val.png"} <= logged


def test_an_experiment_without_a_parent_run_and_errors(store, tmp_path, capsys):
    client = MlflowClient(tracking_uri=store)
    flat = load_sweep(client, client.get_experiment_by_name("flat").experiment_id, by_id=True)
    assert flat.parent is None and len(flat.trials) == 2 and build_study(flat) is None
    out = tmp_path / "flat"
    assert main(["--experiment", "flat", "--out", str(out), "--tracking-uri", store, "--no-plots"]) == 0
    assert "| RTFM | val (val_loss) | run2 epoch 2 | 73.0 | 74.0 |" in (out / "report.md").read_text()
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
    panels = {f"t{i:03d}": {"train_loss": ([1, 2, 3], [1.0, 0.8, 0.7]), "val_loss": ([1, 2, 3], [1.1, 0.9, 1.0])}
              for i in range(1, 6)}
    assert plot_learning_curves(tmp_path / "curves.png", panels).read_bytes()[:8] == PNG
    assert not math.isnan(float(scores.mean()))
