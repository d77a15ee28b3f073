"""Model selection and early stopping on scripted metric sequences."""

import math

import pytest

from vad.selection import Selector


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
