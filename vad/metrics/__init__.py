"""Metrics: frame- and video-level functions (:mod:`vad.metrics.frame`) and the one catalogue of metric names
(:mod:`vad.metrics.catalogue`) that selection, configs, spaces, summaries, tables and figures read."""

from vad.metrics.catalogue import CATALOGUE, Metric, get_metric, selectable_metrics, table_columns
from vad.metrics.frame import (
    expand_to_frames,
    false_alarm_rate,
    frame_metrics,
    per_class_auc,
    video_metrics,
)

__all__ = [
    "CATALOGUE",
    "Metric",
    "expand_to_frames",
    "false_alarm_rate",
    "frame_metrics",
    "get_metric",
    "per_class_auc",
    "selectable_metrics",
    "table_columns",
    "video_metrics",
]
