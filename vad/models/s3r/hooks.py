"""S3R's registry hooks: the dictionary is learned once per dataset from the training split's normal videos
(:func:`prepare_dictionary`), its row count fixes ``n_atoms`` (:func:`dictionary_arguments`) and every model built
for that data gets it as its buffer (:func:`attach_dictionary`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from vad.coerce import POSITIVE
from vad.models.registry import DataOption, ModelState, PrepareContext
from vad.models.s3r.dictionary import learn_dictionary, normal_video_vectors

DATA_OPTIONS = {
    "dictionary_ratio": DataOption(float, 0.5, "dictionary atoms as a share of the normal training videos",
                                   limit=POSITIVE),
}
STATE_KEY = "dictionary"


def prepare_dictionary(context: PrepareContext) -> ModelState:
    """``{"dictionary": (n_atoms, C) float32}`` learned from the normal videos of ``context``'s training split,
    cached on disk under a key of the training cache, the split and the ratio (a hit reads no feature)."""
    rows = context.normal_rows
    atoms = learn_dictionary(lambda: normal_video_vectors(context.features[row] for row in rows),
                             ratio=float(context.options["dictionary_ratio"]), inputs_key=context.inputs_key)
    return {STATE_KEY: atoms}


def dictionary_arguments(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``n_atoms``: the rows of the prepared dictionary."""
    return {"n_atoms": int(state[STATE_KEY].shape[0])}


def attach_dictionary(model: nn.Module, state: Mapping[str, np.ndarray]) -> None:
    """Copy the prepared dictionary into ``model``'s buffer."""
    model.set_dictionary(torch.from_numpy(np.asarray(state[STATE_KEY], dtype=np.float32)))
