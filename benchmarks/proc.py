"""Processes as Linux reports them in ``/proc``: memory (peak and current resident sets of this process, the
proportional set size (PSS) of another one, which splits each shared page between the processes mapping it, and
the pages mapping one file) and the CPU time of a whole process tree.

``tracemalloc`` sees only Python allocations and misses memory-mapped files and torch buffers, hence ``/proc``.
Elsewhere the memory readings fall back to ``resource.getrusage`` (peak only) or are absent.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from pathlib import Path

KIB = 1024


def _kib_fields(path: Path, names: tuple[str, ...]) -> dict[str, int]:
    """``{name: bytes}`` of the ``Name:  123 kB`` lines of a ``/proc`` file (missing names left out)."""
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in names and value.strip().endswith("kB"):
            out[name] = int(value.split()[0]) * KIB
    return out


def own_memory() -> dict[str, int]:
    """This process, in bytes: ``peak_rss`` (VmHWM: the high-water mark of the resident set, file pages of
    memory-maps included), ``rss`` now, and now split into ``rss_anon`` (private heap) and ``rss_file`` (mapped
    files: shared with every process mapping them)."""
    fields = _kib_fields(Path("/proc/self/status"), ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"))
    if "VmHWM" in fields:
        return {"peak_rss": fields["VmHWM"], "rss": fields.get("VmRSS", 0), "rss_anon": fields.get("RssAnon", 0),
                "rss_file": fields.get("RssFile", 0)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {"peak_rss": peak if sys.platform == "darwin" else peak * KIB}


def shared_memory(pid: int) -> dict[str, int]:
    """Process ``pid`` now, in bytes, from ``/proc/<pid>/smaps_rollup``: ``rss``, ``pss`` (each shared page divided
    by the number of processes mapping it), ``shared`` (clean + dirty pages also mapped elsewhere), ``private``
    and ``anonymous``. Empty where the kernel has no ``smaps_rollup``."""
    fields = _kib_fields(Path(f"/proc/{pid}/smaps_rollup"),
                         ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Anonymous"))
    if "Pss" not in fields:
        return {}
    return {"rss": fields["Rss"], "pss": fields["Pss"],
            "shared": fields.get("Shared_Clean", 0) + fields.get("Shared_Dirty", 0),
            "private": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
            "anonymous": fields.get("Anonymous", 0)}


def total_ram() -> int | None:
    """The machine's RAM in bytes (``MemTotal``), None where unknown."""
    fields = _kib_fields(Path("/proc/meminfo"), ("MemTotal",))
    if "MemTotal" in fields:
        return fields["MemTotal"]
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n_bytes: float | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 2**30:.2f}"


def mib(n_bytes: float | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 2**20:.0f}"


def mapping_memory(pid: int, path: str | Path) -> dict[str, int]:
    """The pages of process ``pid`` that map the file ``path``, in bytes, summed over its mappings in
    ``/proc/<pid>/smaps``: ``rss``, ``pss``, ``shared``, ``private``. Empty where unreadable."""
    target = str(Path(path).resolve())
    totals = {"rss": 0, "pss": 0, "shared": 0, "private": 0}
    keys = {"Rss": "rss", "Pss": "pss", "Shared_Clean": "shared", "Shared_Dirty": "shared",
            "Private_Clean": "private", "Private_Dirty": "private"}
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return {}
    inside = False
    for line in lines:
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and ":" in head[3]:  # a mapping's header line
            inside = len(head) == 6 and head[5].strip() == target
            continue
        name, _, value = line.partition(":")
        if inside and name in keys and value.strip().endswith("kB"):
            totals[keys[name]] += int(value.split()[0]) * KIB
    return totals


def _stat_fields(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # the fields after "pid (comm) "


class TreeCpu:
    """CPU seconds (user + system) used by this process and every descendant while the block runs, sampled from
    ``/proc/<pid>/stat`` every ``interval`` seconds (a process that exits between samples loses at most its last
    interval). Ray's daemons and workers descend
    from the driver that started them, so a sweep's whole cost is counted, whatever else the machine runs.

    ``with TreeCpu() as cpu: ...; cpu.seconds``. Where ``/proc`` is missing, ``seconds`` is None. ``timeline``:
    ``(time.time(), CPU seconds so far)`` at every sample (:meth:`seconds_until` reads it).
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.seconds: float | None = None
        self.timeline: list[tuple[float, float]] = []
        self._start: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _sample(self) -> dict[str, float]:
        """``{pid: cpu seconds so far}`` of this process's tree."""
        parents: dict[str, str] = {}
        times: dict[str, float] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                fields = _stat_fields(entry.name)
                if fields:
                    parents[entry.name] = fields[1]
                    times[entry.name] = sum(int(v) for v in fields[11:13]) / self._tick
        root = str(os.getpid())
        tree, frontier = {root}, [root]
        children: dict[str, list[str]] = {}
        for pid, parent in parents.items():
            children.setdefault(parent, []).append(pid)
        while frontier:
            for child in children.get(frontier.pop(), []):
                if child not in tree:
                    tree.add(child)
                    frontier.append(child)
        return {pid: times[pid] for pid in tree if pid in times}

    def _record(self) -> None:
        for pid, seconds in self._sample().items():
            self._start.setdefault(pid, seconds if pid == str(os.getpid()) else 0.0)
            self._last[pid] = max(self._last.get(pid, 0.0), seconds)
        self.timeline.append((time.time(), sum(self._last[pid] - self._start.get(pid, 0.0) for pid in self._last)))

    def seconds_until(self, moment: float) -> float | None:
        """CPU seconds used from the block's start to ``moment`` (a ``time.time()``), interpolated between samples;
        None without samples around it."""
        before = [(t, cpu) for t, cpu in self.timeline if t <= moment]
        after = [(t, cpu) for t, cpu in self.timeline if t > moment]
        if not before or not after:
            return None
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 + (c1 - c0) * (moment - t0) / (t1 - t0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._record()

    def __enter__(self) -> TreeCpu:
        if Path("/proc/self/stat").is_file():
            self._start[str(os.getpid())] = sum(int(v) for v in _stat_fields("self")[11:13]) / self._tick
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join()
        self._record()
        self.seconds = sum(self._last[pid] - self._start.get(pid, 0.0) for pid in self._last)
