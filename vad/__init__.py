"""vad: weakly-supervised video anomaly detection on pre-extracted I3D features.

Sub-packages: ``vad.data`` (real on-disk layouts, caches, splits, synthetic data), ``vad.models`` (RTFM, MGFN,
S3R behind a registry), ``vad.metrics``, ``vad.train`` and ``vad.evaluate``. Nothing here imports Ray or MLflow.
"""

__version__ = "0.1.0"
