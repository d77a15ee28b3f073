"""Models and losses behind one API.

>>> model = create_model("rtfm", feature_dim=2048, n_crops=10)
>>> out = model(x)                      # x: (B, N, T, C) -> ModelOutput with .scores / .magnitudes (B, T)
>>> loss, terms = create_loss("rtfm")(out, labels)
"""

from vad.models import mgfn, rtfm, s3r  # noqa: F401  (each registers itself)
from vad.models.output import ModelOutput
from vad.models.registry import (
    LoadReport,
    create_loss,
    create_model,
    list_models,
    load_original_weights,
    loss_arguments,
    model_arguments,
    read_checkpoint,
)

__all__ = [
    "LoadReport",
    "ModelOutput",
    "create_loss",
    "create_model",
    "list_models",
    "load_original_weights",
    "loss_arguments",
    "model_arguments",
    "read_checkpoint",
]
