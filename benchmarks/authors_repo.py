"""Timing the authors' own model classes from a user's checkout: ``step_time.py --authors-repo rtfm=PATH``.

Nothing of the authors' code is in this repository: the user points at their clones of ``tianyu0207/RTFM``,
``carolchenyx/MGFN.`` or ``louisYen/S3R`` (with those repositories' own dependencies installed, e.g. ``einops``;
MGFN's ``utils/utils.py`` also imports ``visdom``). Their model class is imported from the checkout, our model's
weights are loaded into it (same state_dict keys), and its forward, which returns the top-k selection, is
wrapped to give the selection dict of :mod:`benchmarks.authors_pattern`, whose losses reproduce the authors'
``train.py`` cost (their training scripts are not imported: they parse arguments and open datasets at import).

Their code assumes CUDA (``torch.set_default_tensor_type('torch.cuda.FloatTensor')`` at import, ``.cuda()`` in
the forward) and, for RTFM and MGFN, UCF-Crime shapes (2048 channels, 10 crops hard-coded): on CPU these calls are
neutralised by :func:`cpu_shims`; shapes their code cannot run are reported as skipped.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

MODULES = {
    "rtfm": ("model", ("model",)),
    "mgfn": ("models.mgfn", ("models", "utils", "option")),
    "s3r": ("anomaly.models.detectors.detector", ("anomaly",)),
}
"""Per model: the module holding the authors' class, and the top-level names it imports from its checkout."""


class AuthorsRepoError(RuntimeError):
    """The checkout cannot be imported or cannot run this configuration (the message says why)."""


@dataclass
class AuthorsModel:
    """The authors' model with our weights; ``forward(x)`` returns the selection dict. ``x`` is what their model
    consumes (:func:`benchmarks.authors_pattern.baseline_input`: ``(2b, N, T, C)``, MGFN ``C + 1`` channels)."""

    module: nn.Module
    forward: Callable[[Tensor], dict[str, Tensor]]


def parse_authors_repos(items: list[str]) -> dict[str, Path]:
    """``["rtfm=/path/RTFM", ...]`` -> ``{"rtfm": Path}``; unknown models and missing folders are errors."""
    repos = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in MODULES:
            raise AuthorsRepoError(f"--authors-repo {item!r}: expected MODEL=PATH with MODEL in {', '.join(MODULES)}")
        folder = Path(path).expanduser().resolve()
        if not folder.is_dir():
            raise AuthorsRepoError(f"--authors-repo {item!r}: {folder} is not a folder")
        repos[name] = folder
    return repos


@contextlib.contextmanager
def cpu_shims(active: bool) -> Iterator[None]:
    """While active: ``Tensor.cuda()`` returns the tensor itself and ``torch.set_default_tensor_type`` ignores
    CUDA tensor types, so code written for a GPU runs unchanged on the CPU."""
    if not active:
        yield
        return
    original_cuda, original_default = torch.Tensor.cuda, torch.set_default_tensor_type

    def keep_on_cpu(self: Tensor, *args: object, **kwargs: object) -> Tensor:
        return self

    def default_type_without_cuda(kind: object) -> None:
        if "cuda" not in str(kind):
            original_default(kind)

    torch.Tensor.cuda = keep_on_cpu
    torch.set_default_tensor_type = default_type_without_cuda
    try:
        yield
    finally:
        torch.Tensor.cuda = original_cuda
        torch.set_default_tensor_type = original_default


def import_authors_module(name: str, repo: Path) -> object:
    """Import the authors' module for ``name`` from ``repo`` (its folder first on ``sys.path``, ``sys.argv``
    emptied for MGFN's import-time argument parsing, CUDA-only import-time calls neutralised). Modules of the
    same top-level names imported before are restored afterwards."""
    module_name, top_levels = MODULES[name]
    saved = {key: mod for key, mod in sys.modules.items() if key.split(".")[0] in top_levels}
    for key in saved:
        del sys.modules[key]
    saved_argv, saved_default_dtype = sys.argv, torch.get_default_dtype()
    sys.path.insert(0, str(repo))
    sys.argv = [str(repo / "main.py")]
    try:
        with cpu_shims(active=True):
            return importlib.import_module(module_name)
    except Exception as exc:  # their imports may fail in many ways: say which checkout and why
        raise AuthorsRepoError(f"cannot import {module_name} from {repo}: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.argv = saved_argv
        sys.path.remove(str(repo))
        torch.set_default_dtype(saved_default_dtype)
        for key in [key for key in sys.modules if key.split(".")[0] in top_levels]:
            del sys.modules[key]
        sys.modules.update(saved)


def _load_weights(theirs: nn.Module, ours: nn.Module, name: str) -> None:
    state = {k: v for k, v in ours.state_dict().items() if k != "dictionary"}
    try:
        theirs.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise AuthorsRepoError(f"the authors' {name} cannot take this configuration's weights: {exc}") from exc


def load_authors_model(
    name: str, repo: Path, ours: nn.Module, batch_size: int, n_segments: int, device: torch.device
) -> AuthorsModel:
    """The authors' ``name`` model from ``repo`` carrying ``ours``' weights, for batches of ``batch_size`` videos
    per class; raises :class:`AuthorsRepoError` when their code cannot run this configuration."""
    module = import_authors_module(name, repo)
    on_cpu = device.type != "cuda"
    if name in ("rtfm", "mgfn") and (ours.feature_dim != 2048 or ours.n_crops != 10):
        raise AuthorsRepoError(f"the authors' {name} hard-codes 2048 channels and 10 crops; this row has "
                               f"{ours.feature_dim} channels and {ours.n_crops} crops")
    if name == "rtfm":
        theirs = module.Model(ours.feature_dim, batch_size)
    elif name == "mgfn":
        module.args.batch_size = batch_size  # their constructor reads the batch size from the parsed arguments
        theirs = module.mgfn()
    else:
        theirs = module.S3R(ours.feature_dim, batch_size=batch_size, quantize_size=n_segments, dropout=ours.dropout,
                            modality="taskaware")
    _load_weights(theirs, ours, name)
    theirs = theirs.to(device)

    def forward(x: Tensor) -> dict[str, Tensor]:
        with cpu_shims(active=on_cpu), torch.device(device):
            if name == "rtfm":
                out = theirs(x)
                keys = ("score_abnormal", "score_normal", "feat_abnormal", "feat_normal")
                return {**dict(zip(keys, out[:4])), "scores": out[6]}
            if name == "mgfn":
                out = theirs(x)
                keys = ("score_abnormal", "score_normal", "feat_abnormal", "feat_normal", "scores")
                return dict(zip(keys, out))
            macro = ours.dictionary.expand(x.shape[0], *ours.dictionary.shape)
            out = theirs(x, macro)
            return {"score_abnormal": out["anomaly_score"], "score_normal": out["regular_score"],
                    "feat_abnormal": out["feature_select_anomaly"], "feat_normal": out["feature_select_regular"],
                    "scores": out["video_scores"], "macro_scores": out["macro_scores"]}

    return AuthorsModel(module=theirs, forward=forward)
