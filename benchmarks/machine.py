"""The machine a benchmark ran on, and its measured float32 matmul peak (the yardstick for "fraction of peak")."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's ``model name`` from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def describe_machine(device: torch.device) -> dict[str, str]:
    """CPU model, cores, torch version and threads, and the GPU when ``device`` is CUDA."""
    info = {
        "cpu": cpu_model(),
        "cores": f"{usable_cores()} usable of {os.cpu_count()} logical",
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (a no-op on CPU), so that wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sgemm_flops(device: torch.device, n: int) -> float:
    """FLOP/s of one ``(n, n) @ (n, n)`` float32 matmul on ``device`` (TF32 off: true float32)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        synchronize(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        seconds = time.perf_counter() - start
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    return 2.0 * n**3 / seconds


def matmul_peak(device: torch.device, n: int = 4096, repeats: int = 3) -> float:
    """The best float32 matmul FLOP/s over ``repeats`` timings (after one warm-up) of an ``n``-sized sgemm."""
    sgemm_flops(device, n)
    return max(sgemm_flops(device, n) for _ in range(repeats))
