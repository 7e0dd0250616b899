"""A small file polled for changes by content, not mtime.

Content survives what mtime does not: a Kubernetes ConfigMap or Secret update swaps a symlink
(the new file can carry an older mtime), and two quick edits can share an mtime tick.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_UNREADABLE = b"unreadable"


class WatchedFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._digest: bytes | None = None

    def read(self) -> bytes:
        """The content now, remembered as seen; raises OSError."""
        data = self.path.read_bytes()
        self._digest = hashlib.sha256(data).digest()
        return data

    def changed(self) -> bytes | None:
        """The content if it differs from what was last seen (seen from now on), else None.

        A rejected edit is therefore reported once, not at every poll; so is a file that cannot
        be read (OSError), until it can be again.
        """
        try:
            data = self.path.read_bytes()
        except OSError:
            if self._digest == _UNREADABLE:
                return None
            self._digest = _UNREADABLE
            raise
        fingerprint = hashlib.sha256(data).digest()
        if fingerprint == self._digest:
            return None
        self._digest = fingerprint
        return data
