"""Find feature files by name under a root folder, whatever path the list wrote for them.

The authors' lists hold absolute paths from their machines (``G:\\UCF_Train_ten_crop_i3d\\...``) or paths relative
to another folder (UR-DMU's ``dataset/<Class>/<file>``), so a file is found by its name anywhere under the
feature root. The root is walked once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vad.data.errors import DataError


class FeatureIndex:
    """All ``.npy`` files under ``root`` (recursively, following links), indexed by file name."""

    def __init__(self, root: Path, field: str = "feature_root") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{field}: feature folder {self.root} does not exist or is not a folder")
        self._by_name: dict[str, list[Path]] = {}
        for folder, _, files in os.walk(self.root, followlinks=True):
            for name in files:
                if name.endswith(".npy"):
                    self._by_name.setdefault(name, []).append(Path(folder) / name)

    def __len__(self) -> int:
        return sum(len(paths) for paths in self._by_name.values())

    def find(self, name: str, entry: str) -> Path | None:
        """The file called ``name``; among several, the one whose path ends like the list ``entry``."""
        candidates = self._by_name.get(name)
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        wanted = [part for part in re.split(r"[\\/]", entry.strip()) if part]

        def matching_tail(path: Path) -> int:
            parts = path.relative_to(self.root).parts
            count = 0
            while count < min(len(parts), len(wanted)) and parts[-1 - count] == wanted[-1 - count]:
                count += 1
            return count

        scores = sorted(((matching_tail(path), path) for path in candidates), reverse=True)
        if scores[0][0] == scores[1][0]:
            listed = ", ".join(str(path) for _, path in scores)
            raise DataError(f"{entry!r}: several files named {name} under {self.root} ({listed}); "
                            "cannot tell which one the list means")
        return scores[0][1]
