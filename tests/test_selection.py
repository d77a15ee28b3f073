"""Model selection and early stopping on scripted metric sequences."""

import math

import numpy as np
import pytest

from vad.engine import validation_batches
from vad.selection import Selector, select_epoch


def run(selector: Selector, values: list[float]) -> tuple[list[bool], int | None]:
    flags = []
    for epoch, value in enumerate(values, start=1):
        flags.append(selector.update(epoch, {selector.metric: value}))
        if selector.should_stop:
            return flags, epoch
    return flags, None


def test_val_loss_picks_the_minimum_epoch():
    selector = Selector("val_loss")
    flags, stopped = run(selector, [1.0, 0.8, 0.9, 0.5, 0.7, 0.6])
    assert selector.best_epoch == 4 and selector.best_value == 0.5
    assert flags == [True, True, False, True, False, False]
    assert stopped is None


@pytest.mark.parametrize("metric", ["val_video_auc", "test_auc", "test_ap"])
def test_auc_like_metrics_pick_the_maximum_epoch(metric):
    selector = Selector(metric)
    run(selector, [0.6, 0.7, 0.9, 0.8, 0.85])
    assert selector.best_epoch == 3


def test_patience_stops_after_that_many_epochs_without_improvement():
    selector = Selector("val_loss", patience=2)
    _, stopped = run(selector, [1.0, 0.9, 0.95, 0.91, 0.5])
    assert stopped == 4 and selector.best_epoch == 2


def test_min_delta_requires_a_real_improvement():
    selector = Selector("val_loss", patience=2, min_delta=0.05)
    _, stopped = run(selector, [1.0, 0.97, 0.96, 0.5])
    assert selector.best_epoch == 1 and stopped == 3


def test_non_finite_metric_never_selected():
    selector = Selector("val_video_auc")
    run(selector, [math.nan, 0.6, math.inf * 0, 0.55])
    assert selector.best_epoch == 2


def test_state_round_trip_continues_identically():
    a = Selector("val_loss", patience=3)
    run(a, [1.0, 0.9, 0.95])
    b = Selector.from_state_dict(a.state_dict())
    assert run(a, [0.96, 0.97]) == run(b, [0.96, 0.97])
    assert a.best_epoch == b.best_epoch


def test_unknown_metric_is_an_error():
    with pytest.raises(ValueError, match="unknown metric"):
        Selector("val_accuracy")


# ---- selection rules


def test_moving_average_picks_the_best_window_not_the_single_lowest_point():
    values = [1.0, 0.9, 0.3, 0.95, 0.9, 0.6, 0.55, 0.5, 0.58]
    assert select_epoch(values, "val_loss", rule="min") == 3
    # trailing 3-epoch means: 1.0, .95, .733, .717, .717, .817, .683, .55, .543
    assert select_epoch(values, "val_loss", rule="moving_average", window=3) == 9


def test_moving_average_values_are_trailing_means():
    selector = Selector("val_video_auc", rule="moving_average", window=2)
    means = []
    for epoch, value in enumerate([0.5, 0.7, 0.9, 0.6], start=1):
        selector.update(epoch, {"val_video_auc": value})
        means.append(selector.selection_value)
    assert means == pytest.approx([0.5, 0.6, 0.8, 0.75])
    assert selector.best_epoch == 3 and selector.selected_value == pytest.approx(0.8)


def test_ema_follows_its_recursion():
    selector = Selector("val_loss", rule="ema", alpha=0.5)
    seen = []
    for epoch, value in enumerate([1.0, 0.0, 1.0, 1.0], start=1):
        selector.update(epoch, {"val_loss": value})
        seen.append((selector.selection_value, selector.selected_value))
    assert seen == [(1.0, 1.0), (0.5, 0.5), (0.75, 0.5), (0.875, 0.5)]
    assert selector.best_epoch == 2


def test_selected_value_is_nan_until_something_is_selected():
    selector = Selector("val_loss")
    assert math.isnan(selector.selected_value) and math.isnan(selector.selection_value)
    selector.update(1, {"val_loss": math.nan})
    assert math.isnan(selector.selected_value) and selector.best_epoch is None


@pytest.mark.parametrize(("rule", "best", "stop"), [("moving_average", 3, 5), ("ema", 5, 7)])
def test_min_delta_and_patience_apply_to_the_rule_value(rule, best, stop):
    values = [1.0, 0.5, 0.49, 0.48, 0.47, 0.46, 0.45]
    # moving average (window 2): 1, .75, .495, .485, .475, .465, .455; EMA (alpha .5): 1, .75, .62, .55, .51, ...
    plain = Selector("val_loss", rule=rule, window=2, alpha=0.5)
    strict = Selector("val_loss", patience=2, rule=rule, window=2, alpha=0.5, min_delta=0.1)
    run(plain, values)
    _, stopped = run(strict, values)
    assert plain.best_epoch == 7
    assert (strict.best_epoch, stopped) == (best, stop)


@pytest.mark.parametrize("rule", ["min", "moving_average", "ema"])
def test_state_round_trip_with_each_rule(rule):
    values = [0.8, 0.7, 0.9, 0.65, 0.66, 0.6, 0.7]
    a = Selector("val_ref_loss", rule=rule, window=3, alpha=0.3)
    run(a, values[:4])
    b = Selector.from_state_dict(a.state_dict())
    assert run(a, values[4:]) == run(b, values[4:])
    assert (a.best_epoch, a.selected_value, a.selection_value) == (b.best_epoch, b.selected_value, b.selection_value)


def test_directions_and_allowed_metrics_come_from_the_catalogue():
    from vad.metrics.catalogue import selectable_metrics

    for name, mode in selectable_metrics().items():
        assert Selector(name).mode == mode
    assert Selector("val_video_ap").chosen_by == "val" and Selector("test_ap").chosen_by == "test"
    with pytest.raises(ValueError, match="unknown rule"):
        Selector("val_loss", rule="median")


def test_an_old_checkpoint_state_loads_as_the_min_rule():
    old = {"metric": "val_loss", "patience": None, "min_delta": 0.0, "best_value": 0.5, "best_epoch": 2,
           "epochs_without_improvement": 1}
    selector = Selector.from_state_dict(old)
    assert selector.rule == "min" and not selector.update(4, {"val_loss": 0.6})


# ---- validation counts each video once


@pytest.mark.parametrize(("n_normal", "n_abnormal", "batch"), [(6, 6, 4), (12, 12, 4), (80, 80, 32), (7, 7, 32)])
def test_equal_classes_each_video_exactly_once(n_normal, n_abnormal, batch):
    batches = validation_batches(np.arange(n_normal), 100 + np.arange(n_abnormal), batch)
    normal = np.concatenate([n for n, _ in batches])
    abnormal = np.concatenate([a for _, a in batches])
    odd = n_normal % 2
    assert sorted(set(normal)) == list(range(n_normal)) and len(normal) == n_normal + odd
    assert sorted(set(abnormal)) == list(100 + np.arange(n_abnormal)) and len(abnormal) == n_abnormal + odd
    sizes = [len(n) for n, _ in batches]
    assert all(len(n) == len(a) for n, a in batches)
    assert max(sizes) <= batch and max(sizes) - min(sizes) <= 2 and all(s % 2 == 0 for s in sizes)
    assert len(batches) == -(-(n_normal + odd) // batch)


def test_unequal_classes_repeat_only_the_missing_places_of_the_smaller_class():
    batches = validation_batches(np.arange(20), 100 + np.arange(14), 8)
    normal = np.concatenate([n for n, _ in batches])
    abnormal = np.concatenate([a for _, a in batches])
    assert sorted(normal) == list(range(20))  # the larger class: once each
    counts = np.bincount(abnormal - 100)
    assert counts.sum() == 20 and set(counts) == {1, 2} and (counts == 2).sum() == 6


def test_val_ref_loss_is_val_loss_by_default_and_another_function_when_set(tmp_path):
    from vad.config import TrainConfig
    from vad.training import train

    base = {"data": {"dataset": "synthetic:tiny"}, "model": {"name": "rtfm", "hidden_dim": 32, "head_dims": [16, 8]},
            "train": {"epochs": 2, "batch_per_class": 4, "seed": 1}}
    plain = train(TrainConfig.from_dict(base), report=lambda m, o: None, out_dir=tmp_path / "a")
    for epoch in plain.epochs:
        assert epoch["val_ref_loss"] == epoch["val_loss"]
        assert epoch["selected_value"] == min(e["val_loss"] for e in plain.epochs[:epoch["epoch"]])
    assert plain.checkpoint_chosen_by == "val"
    other = dict(base, loss={"margin": 10.0}, train={**base["train"], "reference_loss": {},
                                                       "selection": "val_ref_loss", "selection_rule": "ema"})
    reported = []
    run_b = train(TrainConfig.from_dict(other), report=lambda m, o: reported.append(m), out_dir=tmp_path / "b")
    for epoch, seen in zip(run_b.epochs, reported):
        assert epoch["val_ref_loss"] != epoch["val_loss"]  # margin 100 (the default) vs the trained margin 10
        assert {"selection_value", "selected_value", "val_ref_loss"} <= set(seen)
    first = run_b.epochs[0]
    assert first["selection_value"] == first["val_ref_loss"] == first["selected_value"]


def test_resume_with_a_smoothing_rule_continues_exactly(tmp_path):
    from vad.config import TrainConfig
    from vad.training import train

    base = {"data": {"dataset": "synthetic:tiny"}, "model": {"name": "rtfm", "hidden_dim": 16, "head_dims": [16, 8]},
            "train": {"epochs": 4, "batch_per_class": 4, "seed": 2, "selection_rule": "moving_average",
                      "selection_window": 2}}
    whole = train(TrainConfig.from_dict(base), report=lambda m, o: None, out_dir=tmp_path / "whole")
    part = TrainConfig.from_dict(base).with_overrides({"train.epochs": 2})
    train(part, report=lambda m, o: None, out_dir=tmp_path / "part")
    resumed = train(TrainConfig.from_dict(base), report=lambda m, o: None, out_dir=tmp_path / "part",
                    resume=tmp_path / "part" / "last.pt")
    keys = ("val_loss", "selection_value", "selected_value", "is_best")
    assert [[e[k] for k in keys] for e in resumed.epochs] == [[e[k] for k in keys] for e in whole.epochs]
    assert resumed.selected_epoch == whole.selected_epoch
    means = [e["val_loss"] for e in whole.epochs]
    assert whole.epochs[-1]["selection_value"] == pytest.approx((means[-1] + means[-2]) / 2)


# ---- benchmarks/selection.py


@pytest.mark.slow
def test_selection_benchmark_quick_run_writes_its_section(tmp_path):
    import json

    from benchmarks.selection import main

    results = tmp_path / "RESULTS.md"
    main(["--quick", "--seeds", "2", "--json", str(tmp_path / "out.json"), "--results", str(results)])
    report = json.loads((tmp_path / "out.json").read_text())
    assert sorted(report["histories"]) == ["0", "1"]
    assert all(len(h) == 4 and {"val_loss", "val_ref_loss", "test_auc", "test_ap"} <= set(h[0])
               for h in report["histories"].values())
    rows = report["analysis"]["rows"]
    oracle = next(r for r in rows if r["rule"].startswith("best"))
    assert all(r["test_auc"][0] <= oracle["test_auc"][0] + 1e-12 for r in rows)  # the test-selected upper bound
    assert next(r for r in rows if r["metric"] == "last epoch")["epochs"] == {"0": 4, "1": 4}
    text = results.read_text()
    assert "## selection" in text and "Recommended default on val_loss" in text
