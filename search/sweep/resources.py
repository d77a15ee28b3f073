"""Trial resources against what the Ray cluster has: GPU detection, packing, and no request that pends forever.

Ray leaves a trial that asks for a GPU pending without an error on a cluster without one; a trial asking more than
any single node has pends the same way. :func:`plan_resources` turns such requests into a CPU run (with a message)
or an error before any trial starts, and describes the packing (``gpus_per_trial: 0.25`` = four trials per GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from search.sweep.space import Resources


class ResourceError(ValueError):
    """A per-trial request that no node of the cluster can ever satisfy."""


@dataclass(frozen=True)
class NodeResources:
    cpus: float
    gpus: float


@dataclass(frozen=True)
class ResourcePlan:
    resources: Resources
    """What trials request (GPUs set to 0 when the cluster has none)."""
    concurrent: int
    """How many trials the cluster runs at once (resources and ``max_concurrent`` together)."""
    messages: tuple[str, ...]

    @property
    def on_gpu(self) -> bool:
        return self.resources.gpus_per_trial > 0


def cluster_nodes() -> list[NodeResources]:
    """The alive nodes of the connected Ray cluster."""
    import ray

    return [NodeResources(float(node["Resources"].get("CPU", 0)), float(node["Resources"].get("GPU", 0)))
            for node in ray.nodes() if node.get("Alive")]


def plan_resources(requested: Resources, nodes: list[NodeResources]) -> ResourcePlan:
    """Check ``requested`` against ``nodes``; fall back to the CPU when no node has a GPU."""
    messages = []
    resources = requested
    if not nodes:
        raise ResourceError("the Ray cluster has no alive node")
    if requested.gpus_per_trial > 0 and not any(node.gpus > 0 for node in nodes):
        messages.append(f"No GPU in the Ray cluster: trials run on the CPU (asked for {requested.gpus_per_trial:g} "
                        f"GPU per trial; requesting 0 GPUs instead of waiting forever).")
        resources = replace(requested, gpus_per_trial=0.0)
    if resources.gpus_per_trial > max(node.gpus for node in nodes):
        raise ResourceError(f"--gpus-per-trial {resources.gpus_per_trial:g}: no node has that many GPUs "
                            f"(largest: {max(node.gpus for node in nodes):g}); the trials would pend forever")
    if resources.cpus_per_trial > max(node.cpus for node in nodes):
        raise ResourceError(f"--cpus-per-trial {resources.cpus_per_trial:g}: no node has that many CPUs "
                            f"(largest: {max(node.cpus for node in nodes):g}); the trials would pend forever")
    per_node = [_fits(node, resources) for node in nodes]
    concurrent = sum(per_node)
    if resources.max_concurrent is not None:
        concurrent = min(concurrent, resources.max_concurrent)
    if resources.gpus_per_trial > 0:
        per_gpu = math.floor(1 / resources.gpus_per_trial + 1e-9) if resources.gpus_per_trial < 1 else 1
        messages.append(f"GPU packing: {resources.gpus_per_trial:g} GPU and {resources.cpus_per_trial:g} CPU per "
                        f"trial ({per_gpu} per GPU); {concurrent} trials at once on "
                        f"{sum(node.gpus for node in nodes):g} GPU(s).")
    else:
        messages.append(f"CPU trials: {resources.cpus_per_trial:g} CPU ({resources.threads} torch thread(s)) per "
                        f"trial; {concurrent} trial(s) at once on {sum(node.cpus for node in nodes):g} CPU(s).")
    return ResourcePlan(resources, max(concurrent, 1), tuple(messages))


def _fits(node: NodeResources, resources: Resources) -> int:
    """How many trials of ``resources`` one node holds at once."""
    by_cpu = math.floor(node.cpus / resources.cpus_per_trial + 1e-9)
    if resources.gpus_per_trial <= 0:
        return by_cpu
    return min(by_cpu, math.floor(node.gpus / resources.gpus_per_trial + 1e-9))
