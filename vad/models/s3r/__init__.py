"""S3R: self-supervised sparse representation (Wu et al., ECCV 2022), registered as ``"s3r"``.

The default model keeps the authors' two never-called projections, so their checkpoints load with every key used
(``keep_unused_projections=False`` drops them; see :class:`S3R`). The dictionary is a buffer of ours, never in the
authors' checkpoints: pass it to ``load_original_weights(model, state_dict, dictionary=D)``. The entry declares
S3R's linear resampling, its ``data.dictionary_ratio`` option and the hooks that learn and attach the dictionary.
"""

from vad.models.registry import ModelEntry, register_model
from vad.models.s3r.dictionary import learn_dictionary, normal_video_vectors
from vad.models.s3r.hooks import DATA_OPTIONS, attach_dictionary, dictionary_arguments, prepare_dictionary
from vad.models.s3r.loss import S3RLoss
from vad.models.s3r.model import PROJECTION_KEYS, S3R

register_model(ModelEntry(name="s3r", model_cls=S3R, loss_cls=S3RLoss, own_only_keys=("dictionary",),
                          known_unused_keys=PROJECTION_KEYS, resample="linear", data_options=DATA_OPTIONS,
                          prepare=prepare_dictionary, attach=attach_dictionary,
                          state_arguments=dictionary_arguments))

__all__ = ["S3R", "S3RLoss", "learn_dictionary", "normal_video_vectors"]
