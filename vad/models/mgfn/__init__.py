"""MGFN: Magnitude-Contrastive Glance-and-Focus Network (model, loss, registry entry)."""

from vad.models.mgfn.loss import MGFNLoss
from vad.models.mgfn.model import MGFN
from vad.models.registry import ModelEntry, register_model

register_model(ModelEntry(name="mgfn", model_cls=MGFN, loss_cls=MGFNLoss))

__all__ = ["MGFN", "MGFNLoss"]
