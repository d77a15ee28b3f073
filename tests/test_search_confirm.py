"""The seed confirmation after a sweep (``search.sweep.confirm``): which configurations and seeds it retrains, the
winner rule, the interval against the paper default, its files; and one real demo sweep with its confirmation (slow)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from sweep_helpers import REPO, base_config, sweep_runs, write_space

from search.sweep.confirm import (
    PLAN_FILE,
    Candidate,
    Confirmed,
    ConfirmPlan,
    choose_candidates,
    choose_seeds,
    confirm_space,
    gather,
    pick_winner,
    recorded_settings,
    report,
    settings,
    t_interval,
    verdict,
)
from search.sweep.outcome import TrialOutcome
from search.sweep.record import SweepRecord, SweepStateError
from search.sweep.space import SpaceError, load_space
from search.sweep.summary import TrialRow
from search.sweep.tracking import SweepFacts, point_key

SPACE = {
    "search": {"sampler": "tpe", "num_samples": 6, "epochs": 3, "metric": "val_loss"},
    "scheduler": {"name": "fifo"},
    "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}, "model.dropout": {"uniform": [0.3, 0.8]}},
}


@pytest.fixture
def space(tmp_path):
    return load_space(write_space(tmp_path, SPACE, base_config(seed=4)))


def row(number: int, objective: float | None, lr: float, dropout: float = 0.5, status: str = "completed",
        **extra) -> TrialRow:
    return TrialRow(f"id{number}", number, {"optim.lr": lr, "model.dropout": dropout, **extra},
                    TrialOutcome(status, 3, 2), objective, {})


def default_row(objective: float | None) -> TrialRow:
    return row(1, objective, 1.0e-3, 0.7)


# ------------------------------------------------------------------------------------------- choices

def test_top_k_by_ranking_value_then_the_paper_default(space):
    rows = [default_row(0.9), row(2, 0.5, 2e-3), row(3, None, 3e-3, status="failed"), row(4, 0.4, 4e-3),
            row(5, 0.8, 5e-3)]
    chosen = choose_candidates(rows, space, top=2)
    assert [(c.trial_id, c.rank, c.default) for c in chosen] == [("id4", 1, False), ("id2", 2, False),
                                                                 ("id1", 4, True)]
    assert chosen[0].params == {"optim.lr": 4e-3, "model.dropout": 0.5}
    assert chosen[2].label == "t001 (paper default)"


def test_the_paper_default_in_the_top_k_is_not_repeated(space):
    rows = [default_row(0.3), row(2, 0.5, 2e-3), row(3, 0.4, 3e-3)]
    chosen = choose_candidates(rows, space, top=2)
    assert [(c.trial_id, c.default) for c in chosen] == [("id1", True), ("id3", False)]


def test_a_repeated_configuration_counts_once(space):
    rows = [default_row(0.9), row(2, 0.5, 2e-3), row(3, 0.45, 2e-3), row(4, 0.6, 4e-3)]
    chosen = choose_candidates(rows, space, top=2)
    assert [c.trial_id for c in chosen] == ["id3", "id4", "id1"]


def test_a_default_that_never_ran_is_confirmed_all_the_same(space):
    chosen = choose_candidates([row(2, 0.5, 2e-3)], space, top=3)
    assert [(c.trial_id, c.rank, c.default, c.label) for c in chosen] == [
        ("id2", 1, False, "t002"), (None, None, True, "paper default")]
    assert chosen[1].params == {"optim.lr": 1.0e-3, "model.dropout": 0.7}


def test_seeds_are_fresh(space):
    assert space.base.train.seed == 4
    assert choose_seeds(space, [default_row(0.5)], 3) == [5, 6, 7]
    searched = [row(2, 0.5, 2e-3, **{"train.seed": 5}), row(3, 0.5, 2e-3, **{"train.seed": 7})]
    assert choose_seeds(space, searched, 3) == [6, 8, 9]


def test_confirm_space_runs_every_point_through_the_trainable_config(space):
    plan = ConfirmPlan(tuple(choose_candidates([default_row(0.9), row(2, 0.5, 2e-3)], space, 1)), (5, 6))
    cspace = confirm_space(space, plan)
    points = plan.points(cspace)
    assert len(points) == 4 and cspace.search.num_samples == 4 and cspace.scheduler.name == "fifo"
    assert [p["train.seed"] for p in points] == [5, 5, 6, 6]
    config = cspace.trial_config(points[1]).flat()
    assert (config["train.seed"], config["optim.lr"], config["model.dropout"]) == (5, 1.0e-3, 0.7)
    assert space.params.keys() <= cspace.params.keys()


def test_point_tags_name_rank_and_source(space):
    plan = ConfirmPlan(tuple(choose_candidates([default_row(0.9), row(2, 0.5, 2e-3)], space, 1)), (5,))
    facts = SweepFacts("S", "/x", "rtfm", "tiny", space.base, space,
                       point_tags={point_key(c.params): c.tags() for c in plan.candidates})
    tags = facts.tags_of({"optim.lr": 2e-3, "model.dropout": 0.5, "train.seed": 5})
    assert tags == {"confirm_rank": "1", "confirm_of": "id2", "confirm_of_trial": "t002", "baseline": "false"}
    assert facts.tags_of({"optim.lr": 1.0e-3, "model.dropout": 0.7, "train.seed": 5})["baseline"] == "true"
    assert facts.tags_of({"optim.lr": 9e-3, "model.dropout": 0.7}) == {}


def test_settings_flags_space_and_resume(space, tmp_path):
    assert (space.confirm.top, space.confirm.seeds) == (3, 3)
    assert settings(space, 2, None) == type(space.confirm)(2, 3)
    with pytest.raises(SpaceError, match="--confirm-seeds"):
        settings(space, None, -1)
    record = SweepRecord("S", "s.yaml", "d", "uri", "now")
    new = recorded_settings(record, space, 0, None, resume=False)
    assert (new.confirm_top, new.confirm_seeds) == (0, 3)
    assert recorded_settings(new, space, None, None, resume=True) == new
    with pytest.raises(SweepStateError, match="--confirm-top cannot change on --resume"):
        recorded_settings(new, space, 2, None, resume=True)
    smoke = recorded_settings(record, space.for_smoke_test(), 2, 2, resume=False)
    assert (smoke.confirm_top, smoke.confirm_seeds) == (0, 0)


def test_space_file_confirm_section_is_validated(tmp_path):
    path = write_space(tmp_path, {**SPACE, "confirm": {"top": 1, "seeds": 4}}, base_config())
    assert (load_space(path).confirm.top, load_space(path).confirm.seeds) == (1, 4)
    path = write_space(tmp_path, {**SPACE, "confirm": {"top": -1}}, base_config())
    with pytest.raises(SpaceError, match=r"confirm\.top: expected an integer >= 0"):
        load_space(path)
    path = write_space(tmp_path, {**SPACE, "confirm": {"tops": 1}}, base_config())
    with pytest.raises(SpaceError, match="confirm: unknown key"):
        load_space(path)


# ------------------------------------------------------------------------------------------- numbers

def test_t_interval_matches_the_textbook():
    mean, std, low, high = t_interval([1.0, 2.0, 3.0])
    assert (mean, std) == (2.0, 1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 df)
    assert low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    assert math.isnan(t_interval([1.0])[2]) and t_interval([1.0])[0] == 1.0
    assert all(math.isnan(v) for v in t_interval([]))


def candidate(number: int, default: bool = False) -> Candidate:
    return Candidate({"optim.lr": number * 1e-3}, number, f"id{number}", number, default)


def test_winner_is_the_best_mean_and_prefers_complete_configurations():
    default = Confirmed(candidate(1, True), {5: 0.9, 6: 0.8})
    good = Confirmed(candidate(2), {5: 0.5, 6: 0.7})
    broken = Confirmed(candidate(3), {5: 0.1, 6: None})
    assert pick_winner([default, good, broken], "min") is good
    assert pick_winner([default, good, broken], "max") is default
    assert pick_winner([Confirmed(candidate(3), {5: None})], "min") is None
    tie = Confirmed(candidate(4), {5: 0.7, 6: 0.5})
    assert pick_winner([tie, good], "min") is good  # equal means: the better search rank


def test_verdict_beats_only_beyond_seed_noise():
    default = Confirmed(candidate(1, True), {5: 0.90, 6: 0.80, 7: 0.85})
    clear = Confirmed(candidate(2), {5: 0.60, 6: 0.52, 7: 0.55})  # differences -0.30, -0.28, -0.30
    found = verdict(clear, default, "val_loss", "min")
    assert found.beats is True and found.seeds == 3 and found.high < 0
    assert found.difference == pytest.approx(-0.88 / 3)
    assert "beats the paper default beyond seed noise" in found.text and "[" in found.text
    noisy = Confirmed(candidate(3), {5: 0.50, 6: 1.00, 7: 0.80})  # differences -0.40, +0.20, -0.05
    found = verdict(noisy, default, "val_loss", "min")
    assert found.beats is False and found.low < 0 < found.high and "does not beat" in found.text
    assert verdict(clear, default, "val_video_auc", "max").beats is False  # lower AUC is worse
    one = verdict(Confirmed(candidate(2), {5: 0.5}), Confirmed(candidate(1, True), {5: 0.9}), "val_loss", "min")
    assert one.beats is None and "unknown" in one.text
    assert verdict(default, default, "val_loss", "min").beats is None


def test_gather_reads_each_seed_and_drops_unfinished(space):
    plan = ConfirmPlan((candidate(1, True), candidate(2)), (5, 6))
    rows = [TrialRow("a", 1, {"optim.lr": 1e-3, "train.seed": 5}, TrialOutcome("completed", 3, 2), 0.9, {}),
            TrialRow("b", 2, {"optim.lr": 2e-3, "train.seed": 5}, TrialOutcome("early_stopped", 2, 1), 0.5, {}),
            TrialRow("c", 3, {"optim.lr": 1e-3, "train.seed": 6}, TrialOutcome("diverged", 1, None), None, {}),
            TrialRow("d", 4, {"optim.lr": 2e-3, "train.seed": 6}, TrialOutcome("completed", 3, 3), 0.6, {})]
    results = gather(plan, rows)
    assert [r.values for r in results] == [{5: 0.9, 6: None}, {5: 0.5, 6: 0.6}]


def test_report_names_the_winner_in_best_config_and_summary(space, tmp_path):
    (tmp_path / "summary.md").write_text("# Sweep S\n")
    (tmp_path / "summary.json").write_text(json.dumps({"sweep": "S"}))
    rows = [default_row(0.9), row(2, 0.5, 2e-3)]
    plan = ConfirmPlan(tuple(choose_candidates(rows, space, 1)), (5, 6, 7))
    results = [Confirmed(plan.candidates[0], {5: 0.5, 6: 0.55, 7: 0.52}),
               Confirmed(plan.candidates[1], {5: 0.9, 6: 0.8, 7: 0.85})]
    outcome = report(tmp_path, space, "S", plan, results, rows)
    config = yaml.safe_load((tmp_path / "best_config.yaml").read_text())
    assert config["optim"]["lr"] == 2e-3 and config["model"]["dropout"] == 0.5 and config["train"]["seed"] == 4
    assert "Confirmed winner of sweep S: t002" in (tmp_path / "best_config.yaml").read_text()
    summary = (tmp_path / "summary.md").read_text()
    assert "## Confirmation with seeds 5, 6, 7" in summary and "beats the paper default beyond seed noise" in summary
    assert "| 1 | t002 |" in summary and "0.5233 ± 0.0252" in summary
    data = json.loads((tmp_path / "summary.json").read_text())["confirmation"]
    assert data["winner"] == "t002" and data["verdict"]["beats"] is True
    assert outcome.tags["confirmed_trial_id"] == "id2" and outcome.tags["confirm_beats_default"] == "true"
    assert outcome.metrics["confirmed_mean_val_loss"] == pytest.approx(0.52333, abs=1e-4)


def test_the_saved_plan_survives_the_report(space, tmp_path):
    rows = [default_row(0.9), row(2, 0.5, 2e-3)]
    plan = ConfirmPlan(tuple(choose_candidates(rows, space, 1)), (5, 6))
    plan.save(tmp_path)
    report(tmp_path, space, "S", plan, [Confirmed(c, {5: 0.5, 6: 0.6}) for c in plan.candidates], rows)
    assert ConfirmPlan.load(tmp_path) == plan  # what --resume reads after a finished confirmation


# ------------------------------------------------------------------------------------------- a real sweep

@pytest.mark.slow
def test_demo_sweep_with_its_confirmation(tmp_path, tmp_path_factory):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    env = {**os.environ, "VAD_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "vad-cache")}
    # the README's main command (the demo space's own confirmation: its best configuration and the paper default,
    # two fresh seeds each), into a temporary store
    command = [sys.executable, "-m", "search.run", "--space", "spaces/demo.yaml", "--name", "demo-confirm",
               "--storage", str(tmp_path / "store"), "--tracking-uri", uri]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=900)
    output = (done.stdout + done.stderr).decode()  # bytes: text mode would turn tqdm's \r redraws into lines
    assert done.returncode == 0, output[-4000:]
    assert output.count("\n") < 40, output  # the whole console output, as a terminal shows it
    assert "Confirmed winner:" in output and "workflowType=machine_learning" in output
    client = MlflowClient(tracking_uri=uri)
    runs, parents, _ = sweep_runs(client, "demo-confirm")
    confirm = [r for r in runs if r.data.tags.get("group") == "confirm"]
    plan = json.loads((tmp_path / "store" / "demo-confirm" / "search" / PLAN_FILE).read_text())
    assert len(plan["seeds"]) == 2 and 1 <= len(plan["candidates"]) <= 2
    assert len(confirm) == 2 * len(plan["candidates"])
    assert all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
               for r in confirm)
    assert {int(r.data.tags["seed"]) for r in confirm} == set(plan["seeds"]) and 0 not in plan["seeds"]
    assert any(r.data.tags["baseline"] == "true" for r in confirm)
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["confirmed_trial"]
    artifacts = Path(parent.info.artifact_uri.removeprefix("file://"))
    best = (artifacts / "best_config.yaml").read_text()
    assert best.startswith(f"# Confirmed winner of sweep demo-confirm: {parent.data.tags['confirmed_trial']}")
    summary = json.loads((artifacts / "summary.json").read_text())["confirmation"]
    winner = next(c for c in summary["configurations"] if c["trial_id"] == parent.data.tags["confirmed_trial_id"])
    sign = 1 if summary["mode"] == "min" else -1
    assert all(sign * winner["mean"] <= sign * c["mean"] for c in summary["configurations"])
    assert yaml.safe_load(best)["optim"]["lr"] == winner["params"]["optim.lr"]
    record = json.loads((tmp_path / "store" / "demo-confirm" / "search" / "sweep.json").read_text())
    assert record["stage"] == "done"
