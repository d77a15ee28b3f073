"""vad: weakly-supervised video anomaly detection on pre-extracted I3D features.

Sub-packages: ``vad.data`` (real on-disk layouts, caches, splits, synthetic data), ``vad.models`` (RTFM, MGFN,
S3R behind a registry), ``vad.metrics`` (functions and the metric catalogue). Library modules: ``vad.builders``
(device, model, optimizer, resolved config), ``vad.scoring`` (validation, test scoring, full evaluation),
``vad.outputs`` and ``vad.plots`` (tables, files, figures), ``vad.atomic`` (atomic writes), ``vad.yaml_file`` (the
YAML loader). Command lines: ``python -m vad.train`` (``vad.train.train`` is also the library's training call) and
``python -m vad.evaluate``; no library module imports them. Nothing here imports Ray or MLflow.
"""

__version__ = "0.1.0"
