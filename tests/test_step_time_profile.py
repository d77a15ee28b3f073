"""``benchmarks/step_time.py --profile``: both implementations profiled and compared side by side, per op and per
GEMM shape (structure of the output, not timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.step_time import compare_profiles  # noqa: E402


def _rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("aten::", "total"))}


def test_compare_profiles_puts_both_sides_next_to_each_other_with_the_difference() -> None:
    result = {
        "ops": {
            "ours": {"aten::mm": (2.0, 3), "aten::copy_": (0.5, 10)},
            "authors' way": {"aten::mkldnn_convolution": (3.0, 4), "aten::copy_": (0.7, 12)},
        },
        "shapes": {
            "ours": {("aten::mm", "[[8, 4], [4, 2]]"): (2.0, 3)},
            "authors' way": {("aten::mkldnn_convolution", "[[1, 4, 8], [2, 4, 1]]"): (3.0, 4)},
        },
    }
    text = compare_profiles(result, rows=10)
    per_op, shapes = text.split("\n\n")[:2]
    lines = [line for line in per_op.splitlines() if line.startswith("aten::")]
    assert [line.split()[0] for line in lines] == ["aten::mkldnn_convolution", "aten::mm", "aten::copy_"]  # by time
    rows = _rows(per_op)
    assert rows["aten::mkldnn_convolution"][1:] == ["0.000", "0", "3.000", "4", "+3.000"]
    assert rows["aten::mm"][1:] == ["2.000", "3", "0.000", "0", "-2.000"]
    assert rows["aten::copy_"][1:] == ["0.500", "10", "0.700", "12", "+0.200"]
    assert per_op.splitlines()[-1].split()[-3:] == ["2.500", "3.700", "+1.200"]
    assert "aten::mm [[8, 4], [4, 2]]" in shapes and "+3.000" in shapes
    assert len(compare_profiles(result, rows=1).split("\n\n")[0].splitlines()) == 4  # header, rule, 1 row, total


def test_quick_profile_run_profiles_ours_and_the_authors_way(tmp_path: Path) -> None:
    out_json = tmp_path / "profile.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "step_time.py"), "--quick", "--device", "cpu", "--models",
         "mgfn", "--profile", "--profile-rows", "8", "--json", str(out_json)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "-- ours: top ops" in proc.stdout and "-- authors' way: top ops" in proc.stdout
    profile = json.loads(out_json.read_text())["profiles"]["cpu mgfn tiny"]
    assert set(profile["tables"]) == {"ours", "authors' way"}
    assert "diff s" in profile["comparison"] and "GEMM / conv op, input shapes" in profile["comparison"]
    assert "aten::mkldnn_convolution" in profile["comparison"]  # the authors' convolutions are listed by shape
