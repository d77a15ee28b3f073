"""MIL ranking baseline (Sultani, Chen and Shah, CVPR 2018, the UCF-Crime paper), registered as ``"mil"``.

A 3-layer MLP scores each segment; the loss ranks the top abnormal segment above the top normal one, with
temporal smoothness and sparsity on the abnormal scores. The floor every comparison table should show. Its
entry declares nothing beyond the model and loss classes: mean resampling (the authors averaged C3D features
within each of 32 segments), no data options, no prepared state.
"""

from vad.models.mil.loss import MILRankingLoss
from vad.models.mil.model import MILScorer
from vad.models.registry import ModelEntry, register_model

register_model(ModelEntry(name="mil", model_cls=MILScorer, loss_cls=MILRankingLoss))

__all__ = ["MILRankingLoss", "MILScorer"]
