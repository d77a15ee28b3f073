"""Hyperparameter sweeps: Ray Tune + Optuna + ASHA over ``vad.train``, logged to MLflow (``python -m search.run``)."""
