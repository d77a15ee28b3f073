"""Models and losses behind one API.

>>> model = create_model("rtfm", feature_dim=2048, n_crops=10)
>>> out = model(x)                      # x: (B, N, T, C) -> ModelOutput with .scores / .magnitudes (B, T)
>>> loss, terms = create_loss("rtfm")(out, labels)
"""

import importlib
import pkgutil

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

# Every sub-package except the shared components is a model that registers itself on import: a new model is a
# new folder, nothing to edit here.
for _module in pkgutil.iter_modules(__path__):
    if _module.ispkg and _module.name != "components":
        importlib.import_module(f"{__name__}.{_module.name}")

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
