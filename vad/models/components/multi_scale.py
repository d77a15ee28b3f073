"""The multi-scale temporal network ("Aggregate") of RTFM and S3R: dilated convs beside a non-local branch.

The two models build it alike and differ only inside the blocks (norm type, norm/ReLU order, the non-local
block's names and width), which each passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from vad.models.components.time_major import TimeMajorBlock, concat_channels, sequential_time_major

BlockFactory = Callable[[nn.Conv1d, int], nn.Sequential]
"""``(conv, out_width) -> Sequential(conv, ...)``: a conv with the model's norm and ReLU after it."""


class MultiScaleAggregate(nn.Module):
    """``(b, T, C) -> (b, T, C)``: dilated-conv pyramid + (1x1 conv -> non-local) branch, fused, plus residual.

    With ``L = len(dilations)`` and ``H = hidden_dim``, registered in this order (the authors'):

    - ``conv_1`` .. ``conv_L``: ``block(Conv1d(C -> H, k3, dilation d, padding d, bias), H)``, one per dilation;
    - ``conv_{L+1}``: ``Conv1d(C -> H, k1, no bias)`` -> ReLU, then ``non_local = non_local(H)``;
    - ``conv_{L+2}``: ``block(Conv1d((L+1)*H -> C, k3, padding 1, no bias), C)``, plus the input (residual).

    Computed time-major (each conv one matrix product, no transposes; a contiguous ``(b, T, C)`` output).
    """

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int,
        dilations: Sequence[int],
        block: BlockFactory,
        non_local: Callable[[int], TimeMajorBlock],
    ) -> None:
        super().__init__()
        self.branch_names = [f"conv_{i}" for i in range(1, len(dilations) + 1)]
        for name, dilation in zip(self.branch_names, dilations):
            conv = nn.Conv1d(feature_dim, hidden_dim, kernel_size=3, dilation=int(dilation), padding=int(dilation))
            self.add_module(name, block(conv, hidden_dim))
        self.local_name = f"conv_{len(dilations) + 1}"
        self.fuse_name = f"conv_{len(dilations) + 2}"
        self.add_module(
            self.local_name, nn.Sequential(nn.Conv1d(feature_dim, hidden_dim, kernel_size=1, bias=False), nn.ReLU())
        )
        fuse = nn.Conv1d((len(dilations) + 1) * hidden_dim, feature_dim, kernel_size=3, padding=1, bias=False)
        self.add_module(self.fuse_name, block(fuse, feature_dim))
        self.non_local = non_local(hidden_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x (b, T, C)`` -> ``(b, T, C)``."""
        branches = [sequential_time_major(getattr(self, name), x) for name in self.branch_names]
        local = sequential_time_major(getattr(self, self.local_name), x)
        branches.append(self.non_local.forward_time_major(local))
        return sequential_time_major(getattr(self, self.fuse_name), concat_channels(branches)) + x
