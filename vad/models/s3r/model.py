"""S3R (Wu et al., ECCV 2022) as coded by the authors (louisYen/S3R, ``anomaly/models/detectors/detector.py``)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from vad.coerce import POSITIVE_INT, PROBABILITY, Limit
from vad.models.components.layout_dropout import dropout_channels_first_order
from vad.models.output import ModelOutput
from vad.models.s3r.embedding import Aggregate
from vad.models.s3r.normality import DeNormal, EnNormal, time_mean

PROJECTION_KEYS = ("video_projection.", "macro_projection.")
"""Key prefixes of the two projections the authors build (and save) but never call in ``forward``."""


def classifier_mlp(feature_dim: int, dropout: float) -> nn.Sequential:
    """``Linear(C -> C/4) -> ReLU -> Dropout -> Linear(C/4 -> C/16) -> ReLU -> Dropout -> Linear(C/16 -> 1)``."""
    return nn.Sequential(
        nn.Linear(feature_dim, feature_dim // 4),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(feature_dim // 4, feature_dim // 16),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(feature_dim // 16, 1),
    )


class MacroClassifier(nn.Module):
    """Video-level score of the reconstructed-normal embedding: ``sigmoid(mlp(mean_T x))``; ``(b, T, C) -> (b,)``."""

    def __init__(self, feature_dim: int, dropout: float) -> None:
        super().__init__()
        self.mlp = classifier_mlp(feature_dim, dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x (b, T, C)`` -> ``(b,)`` scores in [0, 1]."""
        return torch.sigmoid(self.mlp(time_mean(x.transpose(1, 2)).flatten(1))).squeeze(-1)


def _projection(feature_dim: int) -> nn.Sequential:
    """The authors' unused ``Conv1d(C -> C, k3, pad 1) -> GroupNorm(8, C) -> ReLU``."""
    return nn.Sequential(nn.Conv1d(feature_dim, feature_dim, 3, padding=1), nn.GroupNorm(8, feature_dim), nn.ReLU())


def _xavier_init(module: nn.Module) -> None:
    """The authors' init: Xavier-uniform on every Conv/Linear weight, zero biases (norm layers untouched)."""
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class S3R(nn.Module):
    """S3R: RTFM-style snippet scoring on features purified against a dictionary of normal "atoms".

    ``forward(x (B, N, T, C))``: all ``B*N`` crops are processed alike; enNormal rebuilds each snippet from the
    ``(n_atoms, C)`` dictionary; the video and the rebuilt features each pass an :class:`Aggregate` + Dropout;
    deNormal gates the two; ``video_classifier`` scores every snippet (averaged over crops -> ``scores (B, T)``),
    ``macro_classifier`` scores the time-averaged rebuilt features (averaged over crops ->
    ``extras["macro_scores"] (B,)``). ``magnitudes (B, T)`` are the L2 norms of the gated video embedding
    (``features (B, N, T, C)``) averaged over crops; the loss picks the top-k snippets from them.

    Dropout draws happen in the authors' order (video embedding, macro embedding, the video classifier's two, the
    macro classifier's two), so with the same seed and weights a training step equals theirs.

    The dictionary is a persistent buffer ``dictionary (n_atoms, C)``: set it with :meth:`set_dictionary` (or
    ``load_original_weights(model, sd, dictionary=D)``); it is not part of the authors' checkpoints (they load it
    from a separate ``.npy``), but it is part of ours. ``forward`` refuses to run before it is set.

    state_dict layout (the authors' at the default ``dilations``; ``A`` = ``video_embedding.0`` or
    ``macro_embedding.0``, see :mod:`vad.models.s3r.embedding` for the layout inside an Aggregate):
    ``dictionary`` (ours only); ``A.conv_{1,2,3}.{0,1}.{weight,bias}``, ``A.conv_4.0.weight``,
    ``A.conv_5.0.weight``, ``A.conv_5.1.{weight,bias}``, ``A.non_local.{value,query,key}.{weight,bias}``,
    ``A.non_local.alter.0.{weight,bias}``, ``A.non_local.alter.1.{weight,bias,running_mean,running_var,
    num_batches_tracked}``; ``en_normal.en_normal_module.{query,cache,value}_embedding.{weight,bias}``;
    ``de_normal.channel_attention.channel_gate.mlp.{1,3}.{weight,bias}``; ``video_projection.{0,1}.{weight,bias}``
    and ``macro_projection.{0,1}.{weight,bias}`` (only with ``keep_unused_projections``);
    ``video_classifier.{0,3,6}.{weight,bias}``; ``macro_classifier.mlp.{0,3,6}.{weight,bias}``.

    ``keep_unused_projections`` (default True) keeps the authors' two projections, which ``forward`` never calls,
    so their checkpoints load with every key used: 81,436,802 parameters at C = 2048 (20,369,474 at C = 1024).
    With False the model has 56,258,690 (14,071,874) parameters and the same outputs.
    """

    ARG_LIMITS: ClassVar[dict[str, Limit]] = {
        "feature_dim": Limit(16), "n_crops": POSITIVE_INT, "dropout": PROBABILITY, "n_atoms": POSITIVE_INT,
        "dilations": POSITIVE_INT, "hidden_dim": POSITIVE_INT, "attention_dim": POSITIVE_INT,
        "gate_dim": POSITIVE_INT,
    }
    """What a config may set (checked before any work, see :func:`vad.coerce.check_limits`); ``feature_dim >= 16``
    because the classifiers use C/16."""

    def __init__(
        self,
        *,
        feature_dim: int = 2048,
        n_crops: int = 10,
        dropout: float = 0.7,
        n_atoms: int = 400,
        dilations: tuple[int, ...] = (1, 2, 4),
        hidden_dim: int | None = None,
        attention_dim: int | None = None,
        gate_dim: int | None = None,
        keep_unused_projections: bool = True,
        project_atoms_once: bool = False,
    ) -> None:
        """Defaults are the authors' UCF-Crime model (400 atoms = 50% of its 800 normal training videos).

        Args:
            feature_dim: C, the feature width (2048 for UCF-Crime I3D, 1024 for XD-Violence).
            n_crops: N, crops per video (10 UCF-Crime, 5 XD-Violence).
            dropout: dropout of both embeddings and both classifiers, and the top-k magnitude mask in the loss.
            n_atoms: S, rows of the dictionary.
            dilations: one dilated-conv branch per entry in each Aggregate (the searchable "block count").
            hidden_dim: width of each Aggregate branch; ``None`` = C/4 (the authors').
            attention_dim: enNormal's query/key width; ``None`` = C/4 (the authors').
            gate_dim: deNormal's MLP width; ``None`` = C/16 (the authors').
            keep_unused_projections: hold the authors' never-called ``video_projection``/``macro_projection``.
            project_atoms_once: enNormal projects the dictionary once per batch instead of once per video (the
                authors'): fewer FLOPs, same math, other float32 rounding (see :class:`EnNormal`).
        """
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if n_crops < 1 or n_atoms < 1:
            raise ValueError(f"n_crops and n_atoms must be positive, got n_crops={n_crops}, n_atoms={n_atoms}")
        if feature_dim < 16:
            raise ValueError(f"feature_dim must be at least 16 (the classifiers use C/16), got {feature_dim}")
        self.feature_dim = feature_dim
        self.n_crops = n_crops
        self.dropout = dropout
        self.n_atoms = n_atoms
        self.keep_unused_projections = keep_unused_projections
        self.dilations = tuple(int(d) for d in dilations)
        hidden_dim = feature_dim // 4 if hidden_dim is None else hidden_dim
        attention_dim = feature_dim // 4 if attention_dim is None else attention_dim
        gate_dim = feature_dim // 16 if gate_dim is None else gate_dim

        # Registered in the authors' order: the same seed gives the same initial weights.
        self.video_embedding = nn.Sequential(Aggregate(feature_dim, hidden_dim, self.dilations), nn.Dropout(dropout))
        self.macro_embedding = nn.Sequential(Aggregate(feature_dim, hidden_dim, self.dilations), nn.Dropout(dropout))
        self.en_normal = EnNormal(feature_dim, attention_dim, project_atoms_once=project_atoms_once)
        self.de_normal = DeNormal(feature_dim, gate_dim)
        if keep_unused_projections:
            self.video_projection = _projection(feature_dim)
            self.macro_projection = _projection(feature_dim)
        self.video_classifier = nn.Sequential(*classifier_mlp(feature_dim, dropout), nn.Sigmoid())
        self.macro_classifier = MacroClassifier(feature_dim, dropout)
        self.apply(_xavier_init)

        self.register_buffer("dictionary", torch.zeros(n_atoms, feature_dim))
        self.has_dictionary = False
        self.register_load_state_dict_post_hook(_note_loaded_dictionary)

    def set_dictionary(self, dictionary: Tensor | np.ndarray) -> None:
        """Copy ``dictionary (n_atoms, C)`` into the buffer (kept on the buffer's device and dtype)."""
        atoms = torch.as_tensor(dictionary)
        expected = (self.n_atoms, self.feature_dim)
        if atoms.ndim != 2 or tuple(atoms.shape) != expected:
            raise ValueError(
                f"S3R dictionary: expected shape (n_atoms, feature_dim) = {expected}, got {tuple(atoms.shape)}"
                " (build the model with n_atoms = the dictionary's number of rows)"
            )
        if not atoms.is_floating_point():
            raise ValueError(f"S3R dictionary: expected floating-point values, got {atoms.dtype}")
        if not bool(torch.isfinite(atoms).all()):
            raise ValueError("S3R dictionary: contains NaN or infinite values")
        if not bool(atoms.any()):
            raise ValueError("S3R dictionary: all values are zero (not a learned dictionary)")
        with torch.no_grad():
            self.dictionary.copy_(atoms)  # in place: state_dict snapshots taken before stay in sync
        self.has_dictionary = True

    def _check_input(self, x: Tensor) -> tuple[int, int, int, int]:
        if x.ndim != 4:
            raise ValueError(f"S3R expects x of shape (B, N, T, C), got {x.ndim} dims {tuple(x.shape)}")
        b, n, t, c = x.shape
        if c != self.feature_dim:
            raise ValueError(f"S3R built for feature_dim={self.feature_dim} got features of width C={c}")
        if n != self.n_crops:
            raise ValueError(f"S3R built for n_crops={self.n_crops} got N={n} crops")
        if t < 1 or b < 1:
            raise ValueError(f"S3R got an empty batch: x of shape {tuple(x.shape)}")
        if not self.has_dictionary:
            raise RuntimeError(
                "S3R has no dictionary yet: call model.set_dictionary(D) with D of shape "
                f"({self.n_atoms}, {self.feature_dim}) (see vad.models.s3r.dictionary.learn_dictionary), or "
                "load_original_weights(model, state_dict, dictionary=D), or load one of our checkpoints"
            )
        return b, n, t, c

    def _embed(self, embedding: nn.Sequential, x: Tensor) -> Tensor:
        """``embedding`` = (Aggregate, Dropout) on ``x (BN, T, C)``; the mask is drawn in the authors' order."""
        aggregate, dropout = embedding
        return dropout_channels_first_order(aggregate(x), dropout.p, self.training)

    def forward(self, x: Tensor) -> ModelOutput:
        """``x (B, N, T, C)`` -> scores/magnitudes ``(B, T)``, features ``(B, N, T, C)``, macro scores ``(B,)``."""
        b, n, t, c = self._check_input(x)
        video = x.reshape(b * n, t, c)
        normal = self.en_normal(video.reshape(b, n * t, c), self.dictionary).reshape(b * n, t, c)

        video_embedding = self._embed(self.video_embedding, video)  # (BN, T, C)
        normal_embedding = self._embed(self.macro_embedding, normal)
        video_embedding, normal_embedding = self.de_normal(video_embedding, normal_embedding)

        scores = self.video_classifier(video_embedding).reshape(b, n, t).mean(dim=1)
        macro_scores = self.macro_classifier(normal_embedding).reshape(b, n).mean(dim=1)
        magnitudes = torch.linalg.vector_norm(video_embedding, dim=2).reshape(b, n, t).mean(dim=1)
        return ModelOutput(
            scores=scores,
            magnitudes=magnitudes,
            features=video_embedding.reshape(b, n, t, c),
            topk_dropout=self.dropout if self.training else 0.0,
            extras={"macro_scores": macro_scores},
        )


def _note_loaded_dictionary(module: nn.Module, incompatible_keys: object) -> None:
    """After ``load_state_dict``: the model has a dictionary iff the loaded buffer is not all zeros."""
    module.has_dictionary = bool(module.dictionary.any())

