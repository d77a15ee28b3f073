"""RTFM: robust temporal feature magnitude learning (Tian et al., ICCV 2021), registered as ``"rtfm"``."""

from vad.models.registry import ModelEntry, register_model
from vad.models.rtfm.loss import RTFMLoss, Selection
from vad.models.rtfm.model import RTFM

register_model(ModelEntry(name="rtfm", model_cls=RTFM, loss_cls=RTFMLoss))

__all__ = ["RTFM", "RTFMLoss", "Selection"]
