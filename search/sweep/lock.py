"""One driver per sweep: an exclusive ``fcntl.flock`` on ``<storage>/<name>/driver.lock``.

The lock is taken before the driver writes anything of the sweep and held until the process ends; the kernel
releases it when the driver dies (even by ``kill -9``), so a stale lock file of a dead driver is simply taken over.
The file holds who took it (pid, host, start time) so that a refused second driver can say who runs the sweep.
The descriptor is not inherited by the processes the driver starts (Ray's), so they cannot keep the lock alive.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "driver.lock"


class SweepLockedError(RuntimeError):
    """Another live driver holds the sweep's lock."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a sweep's lock."""

    pid: int
    host: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"


@dataclass
class SweepLock:
    """A held lock (keep the object alive: closing its descriptor releases the lock). ``previous``: the holder
    recorded in the file when it was taken (a driver that died), if any."""

    path: Path
    fd: int
    previous: Holder | None = None

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


_HELD: dict[Path, SweepLock] = {}
"""The locks this process holds, so that they stay held for its lifetime (and a second take is a no-op)."""


def read_holder(path: Path) -> Holder | None:
    """The holder written in a lock file (``None`` when it is empty or unreadable)."""
    try:
        data = json.loads(path.read_text() or "{}")
        return Holder(int(data["pid"]), str(data["host"]), str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def acquire(folder: Path, name: str, *, wait: float = 0.0, claim: bool = True) -> SweepLock:
    """Take the lock of sweep ``name`` in ``folder`` (created if needed), retrying for ``wait`` seconds; raises
    :class:`SweepLockedError` naming the holder when another live process has it. ``claim=False`` only probes:
    the file's holder is left as it was (release the returned lock at once)."""
    path = (folder / LOCK_FILE).resolve()
    if path in _HELD:  # this process runs the sweep (a probe gets a lock that releases nothing)
        return _HELD[path] if claim else SweepLock(path, -1, read_holder(path))
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # O_CLOEXEC by default in Python: not inherited
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                holder = read_holder(path)
                who = holder.describe() if holder else "another process"
                raise SweepLockedError(f"sweep {name} is being run by {who} ({path}); wait for it to end, or stop "
                                       f"that driver first") from None
            time.sleep(0.05)
    previous = read_holder(path)
    if not claim:
        return SweepLock(path, fd, previous)
    me = Holder(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S"))
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me.__dict__) + "\n").encode(), 0)
    lock = SweepLock(path, fd, previous if previous and previous.pid != me.pid else None)
    _HELD[path] = lock
    return lock


def release(lock: SweepLock) -> None:
    """Release ``lock`` before the process ends (tests; a driver keeps it to the end)."""
    if _HELD.get(lock.path) is lock:
        del _HELD[lock.path]
    lock.release()
