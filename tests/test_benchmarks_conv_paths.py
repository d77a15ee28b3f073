"""``benchmarks/conv_paths.py``: a small run end to end (the shapes it finds and the table's structure, not
timings)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.conv_paths import config_shapes, main  # noqa: E402


def test_config_shapes_are_the_models_temporal_convs() -> None:
    shapes, steps = config_shapes("rtfm", "xd", batch=2)
    assert steps == 32
    rows = 2 * 2 * 5  # 2 + 2 videos x 5 crops
    assert shapes == [(rows, 1024, 512, 3, 1), (rows, 1024, 512, 3, 2), (rows, 1024, 512, 3, 4),
                      (rows, 2048, 1024, 3, 1)]
    mgfn, _ = config_shapes("mgfn", "xd", batch=1)
    assert (10, 1024, 64, 3, 1) in mgfn and (10, 1, 64, 3, 1) in mgfn  # the embedding and the magnitude conv


@pytest.mark.slow
def test_conv_paths_small_run_writes_every_shape_both_ways(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "conv.json"
    main(["--models", "mgfn", "--sizes", "xd", "--batch", "1", "--rounds", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    assert len(report["rows"]) == 5  # 1024->64, 64->64, 128->128, 1024->1024, 1->64
    for row in report["rows"]:
        assert row["unfold_input_s"] > 0 and row["sum_output_taps_s"] > 0
        assert row["rule"] == ("sum_output_taps" if row["c_out"] < row["c_in"] else "unfold_input")
    assert "| mgfn xd | (10, 32, 1024) | 64 |" in capsys.readouterr().out


def test_conv_paths_refuses_unknown_models_with_one_error_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--models", "rtfn"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --models: unknown rtfn; choose from rtfm, mgfn, s3r"
