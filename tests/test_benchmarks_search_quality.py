"""benchmarks/search_quality.py on a fake recorded grid (4 points, 3 seeds, written here: no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import search_quality as sq

GRID = {"optim.weight_decay": [5.0e-3, 5.0e-2], "model.dropout": [0.3, 0.7]}
EPOCHS = 6


def fake_grid(root: Path) -> Path:
    """Point (5e-3, 0.3) learns fastest and is best on the test set; the others differ by a known margin."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "grid.json").write_text(json.dumps({"config": str(sq.DEFAULT_CONFIG), "epochs": EPOCHS, "grid": GRID,
                                                "seeds": [0, 1, 2], "settings": {}}))
    for index, point in enumerate(sq.grid_points(GRID)):
        for seed in (0, 1, 2):
            history, test = [], {}
            for epoch in range(1, EPOCHS + 1):
                # a U-shaped validation curve whose minimum gets lower for better points (epoch 4)
                val = 1.0 + 0.1 * index + 0.05 * (epoch - 4) ** 2 + 0.01 * seed
                history.append({"epoch": float(epoch), "train_loss": 2.0 - 0.1 * epoch, "val_loss": val,
                                "val_ref_loss": val, "val_video_auc": 0.6, "val_video_ap": 0.5})
                test[epoch] = {"test_auc": 0.8 - 0.05 * index - 0.01 * abs(epoch - 4) + 0.002 * seed,
                               "test_ap": 0.3 - 0.02 * index}
            record = {"status": "completed", "seconds": 6.0, "cpu_seconds": 3.0, "history": history, "test": test}
            (root / f"{sq.point_key(point)}__seed{seed}.json").write_text(json.dumps(record))
    return root


def test_selected_values_follow_the_rule() -> None:
    history = [{"val_ref_loss": v} for v in (2.0, 1.0, 1.5, 0.9, 3.0)]
    assert sq.selected_values(history, "min") == [2.0, 1.0, 1.0, 0.9, 0.9]
    averaged = sq.selected_values(history, "moving_average:3")
    assert averaged[:2] == [2.0, 1.5] and math.isclose(averaged[-1], min(averaged))


@pytest.mark.slow
def test_quick_run_on_a_fake_grid(tmp_path: Path) -> None:
    grid_dir = fake_grid(tmp_path / "grid")
    figure = tmp_path / "figure.png"
    results = tmp_path / "RESULTS.md"
    report = sq.main(["--grid-dir", str(grid_dir), "--quick", "--json", str(tmp_path / "out.json"),
                      "--figure", str(figure), "--results", str(results)])
    a = report["analysis"]
    assert a["best_point"] == sq.point_key(sq.grid_points(GRID)[0])
    # picked epoch 4 on seeds 1 and 2: 0.8 + 0.002 * seed
    assert a["best_auc"] == pytest.approx(0.803)
    assert a["grid_epochs"] == 4 * EPOCHS
    rows = {r["strategy"]: r for r in a["rows"]}
    grid = rows["grid + FIFO (the study)"]
    assert grid["share"][0] == pytest.approx(1.0)  # every point, every epoch
    assert grid["regret_auc"][0] == pytest.approx(0.0)  # the grid finds the best point (the curves agree)
    assert grid["found"] == [a["best_point"]] * 2
    assert not grid["met_all_seeds"]  # 100% of the grid's epochs is over the 25% target
    asha = next(r for name, r in rows.items() if name.startswith("TPE + ASHA"))
    assert asha["share"][0] < 1.0  # ASHA stopped trials early
    assert asha["points"] == 4  # distinct points: the searcher never repeats one
    assert figure.is_file() and figure.stat().st_size > 0
    text = results.read_text()
    assert "## search_quality" in text and "regret AUC" in text and "TPE + median stopping" in text
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["search_seeds"] == [0, 1]


def test_missing_runs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid_dir = fake_grid(tmp_path / "grid")
    next(grid_dir.glob("*__seed2.json")).unlink()
    assert sq.main(["--grid-dir", str(grid_dir), "--quick"]) is None
    assert "error:" in capsys.readouterr().err
