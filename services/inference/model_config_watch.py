"""The model config file in force: read at start, re-read when its content changes.

A bad edit (unparsable, an unknown platform, a file that went unreadable) is logged, shown in
``/readyz`` errors and ``modelserver_model_config_rejected``, and changes nothing: the store goes
on serving the last good config. A good one is handed to the store, which loads what is new
beside what serves and only then retires what the file no longer lists.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from services.common.watched_file import WatchedFile
from services.inference.metrics import InferenceMetrics
from services.inference.model_config_file import ModelConfigFileError, parse
from services.inference.model_store import ModelStore

log = logging.getLogger(__name__)


class ModelConfigWatch:
    def __init__(self, path: str | Path, store: ModelStore[Any], m: InferenceMetrics, *, default_kept: int | None):
        self.file = WatchedFile(path)
        self._store = store
        self._m = m
        self._default_kept = default_kept

    def load(self) -> None:
        """The config at start; raises ModelConfigFileError (nothing to fall back on yet)."""
        try:
            data = self.file.read()
        except OSError as error:
            raise ModelConfigFileError(
                f"cannot read model config file {self.file.path}: {error.strerror or error}"
            ) from None
        self._store.configure(self._parse(data))
        self._accepted()

    def reload_if_changed(self) -> None:
        try:
            data = self.file.changed()
        except OSError as error:
            self._rejected(f"cannot read model config file {self.file.path}: {error.strerror or error}")
            return
        if data is None:
            return
        try:
            sources = self._parse(data)
        except ModelConfigFileError as error:
            self._rejected(str(error))
            return
        changed = self._store.configure(sources)
        self._accepted()
        log.info("model config file applied", extra={"fields": {"models": sorted(sources), "changed": sorted(changed)}})
        self._store.scan(now=changed)

    def _parse(self, data: bytes) -> dict[str, Any]:
        try:
            text = data.decode()
        except UnicodeDecodeError as error:
            raise ModelConfigFileError(f"{self.file.path}: not UTF-8 text (byte {error.start})") from None
        return parse(text, str(self.file.path), default_kept=self._default_kept)

    def _accepted(self) -> None:
        self._store.root_error = ""
        self._m.config_rejected.set(0)

    def _rejected(self, message: str) -> None:
        log.error("model config file rejected, keeping the config in force", extra={"fields": {"error": message}})
        self._store.root_error = f"model config file rejected, the last good one stays in force: {message}"
        self._m.config_rejected.set(1)
