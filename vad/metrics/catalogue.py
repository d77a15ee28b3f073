"""The metric catalogue: every metric the toolkit reports, once, with its direction, scale, header and source.

Selection rules, the config's allowed ``train.selection`` values, search-space validation, summaries, tables and
figures all derive from :data:`CATALOGUE`. Adding a metric is one :class:`Metric` entry here plus the function
that computes it.

Names are the keys the training loop reports. Frame-level test metrics (``auc``, ``ap``, ...) are reported per
epoch as ``test_<name>`` (with ``train.test_every_epoch``) and for the selected checkpoint as ``selected_<name>``;
:func:`get_metric` resolves those prefixed keys to the entry of ``<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["val", "test", "train"]
"""Which data produces the metric: the validation split carved out of the training videos, the test set, or the
training split."""


@dataclass(frozen=True)
class Metric:
    """One metric: ``name`` (the reported key), ``mode`` (``max``: higher is better), ``percent`` (printed x100),
    ``header`` (table column), ``source`` (which data produces it), ``selectable`` (may choose a checkpoint or
    rank trials), ``table`` (a column of the reference study's Tables I and II, in catalogue order)."""

    name: str
    mode: Literal["min", "max"]
    percent: bool
    header: str
    source: Source
    description: str
    selectable: bool = False
    table: bool = False

    @property
    def uses_test_data(self) -> bool:
        """True when the test set produces this metric (choosing with it is the papers' test-selected protocol)."""
        return self.source == "test"

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a < b if self.mode == "min" else a > b

    def format(self, value: float | None, *, digits: int | None = None) -> str:
        """``value`` as a table prints it: percent metrics x100 with 1 decimal, others with 3 significant decimals."""
        if value is None or value != value:
            return "-"
        if self.percent:
            return f"{100 * value:.{1 if digits is None else digits}f}"
        return f"{value:.{3 if digits is None else digits}f}"

    def column(self, *, latex: bool = False) -> str:
        """The table header, with ``(%)`` for percent metrics."""
        if not self.percent:
            return self.header
        return self.header + (r" (\%)" if latex else " (%)")


_ENTRIES = (
    # frame-level test metrics: the reference study's columns, in its order (Tables I and II)
    Metric("ap", "max", True, "AP", "test", "average precision over test frames (scikit-learn's)", table=True),
    Metric("auc", "max", True, "AUC", "test", "ROC AUC over test frames", table=True),
    Metric("f1", "max", True, "F1", "test", "F1 of the abnormal class at train.threshold", table=True),
    Metric("f1_macro", "max", True, "F1-macro", "test", "mean F1 of both classes at train.threshold", table=True),
    Metric("pr_auc", "max", True, "PR-AUC", "test", "trapezoidal area under the precision-recall curve "
           "(what the original repositories call AP)", table=True),
    Metric("accuracy", "max", True, "Accuracy", "test", "frame accuracy at train.threshold", table=True),
    Metric("recall", "max", True, "Recall", "test", "recall of abnormal frames at train.threshold", table=True),
    Metric("precision", "max", True, "Precision", "test", "precision of abnormal frames at train.threshold",
           table=True),
    Metric("test_loss", "min", False, "Test loss", "test", "the training objective on the resampled test videos "
           "(video labels only), eval mode", table=True),
    Metric("train_loss", "min", False, "Train loss", "train", "the training objective on the training split, "
           "eval mode (reported per epoch as train_eval_loss)", table=True),
    # per-epoch signals on the validation split (what honest selection may use)
    Metric("val_loss", "min", False, "Val loss", "val", "the trained objective (this trial's loss settings) on "
           "the validation videos", selectable=True),
    Metric("val_ref_loss", "min", False, "Val ref. loss", "val", "the validation objective with the base "
           "config's loss settings: one function for every trial of a sweep", selectable=True),
    Metric("val_video_auc", "max", True, "Val video AUC", "val", "video-level ROC AUC of the top-k mean score on "
           "the validation videos", selectable=True),
    Metric("val_video_ap", "max", True, "Val video AP", "val", "video-level average precision of the top-k mean "
           "score on the validation videos", selectable=True),
    # test-set selection signals: the original papers' protocol, a labelled diagnostic only
    Metric("test_auc", "max", True, "Test AUC", "test", "frame ROC AUC on the test set, every epoch "
           "(selecting with it is the papers' test-selected protocol)", selectable=True),
    Metric("test_ap", "max", True, "Test AP", "test", "frame average precision on the test set, every epoch "
           "(selecting with it is the papers' test-selected protocol)", selectable=True),
    # extra test diagnostics
    Metric("false_alarm_rate", "min", True, "FAR", "test", "share of normal test videos' frames above "
           "train.threshold"),
    Metric("video_auc", "max", True, "Video AUC", "test", "video-level ROC AUC on the test set"),
)

CATALOGUE: dict[str, Metric] = {m.name: m for m in _ENTRIES}
"""Every metric by name."""

PREFIXES = ("selected_", "test_", "val_", "train_")


def get_metric(name: str) -> Metric:
    """The entry of ``name``; ``test_<m>`` and ``selected_<m>`` of a frame metric ``m`` resolve to ``m``'s entry
    (with its own name kept); an unknown name raises ``KeyError`` listing the known ones."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    for prefix in ("selected_", "test_"):
        base = name[len(prefix):] if name.startswith(prefix) else None
        if base in CATALOGUE and CATALOGUE[base].source == "test":
            entry = CATALOGUE[base]
            return Metric(name, entry.mode, entry.percent, entry.header, "test", entry.description)
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(CATALOGUE)}")


def table_columns() -> tuple[str, ...]:
    """The reference study's columns, in its order."""
    return tuple(m.name for m in _ENTRIES if m.table)


def frame_metric_names() -> tuple[str, ...]:
    """The frame-level test metrics :func:`vad.metrics.frame.frame_metrics` computes (reported as ``test_<name>``
    per epoch and ``selected_<name>`` for the selected checkpoint)."""
    return tuple(m.name for m in _ENTRIES if m.table and m.source == "test" and not m.name.endswith("_loss"))


def selectable_metrics(*, allow_test: bool = True) -> dict[str, str]:
    """``{name: mode}`` of the metrics that may select a checkpoint or rank trials; ``allow_test=False`` leaves
    out the test-set ones."""
    return {m.name: m.mode for m in _ENTRIES if m.selectable and (allow_test or not m.uses_test_data)}


def mode_of(name: str) -> str:
    """``min`` or ``max`` for any catalogued (or prefixed) name."""
    return get_metric(name).mode
