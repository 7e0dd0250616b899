"""The versioned model store: what is on disk, what is loaded, and swapping without a gap.

Layout (as TensorFlow Serving's): ``<root>/<name>/<integer version>/model.keras``. The newest
available version serves by default; older ones stay loaded per the version policy so pinned
requests and canaries keep working. A new version is loaded, checked and warmed beside the
serving one and only then published, in one reference swap; a version that fails is recorded
with its error and never replaces anything. Removed versions are unloaded, except the last
available one of a model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from services.common.errors import NotFound, Unavailable
from services.common.naturals import parse as parse_version
from services.protocol.facts import AVAILABLE, END, LOADING, MODEL_NAME

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"


class Loadable(Protocol):
    def signature_matches(self, other: Loadable) -> bool: ...


S = TypeVar("S", bound=Loadable)


@dataclass
class VersionStatus:
    version: int
    state: str
    error: str = ""
    fingerprint: tuple[int, int] | None = None


@dataclass
class Model(Generic[S]):
    """One model name: its loaded versions (replaced wholesale, never mutated) and statuses."""

    name: str
    served: dict[int, S] = field(default_factory=dict)
    statuses: dict[int, VersionStatus] = field(default_factory=dict)
    error: str = ""

    @property
    def default_version(self) -> int | None:
        return max(self.served) if self.served else None


class ModelStore(Generic[S]):
    def __init__(
        self,
        root: Path,
        load: Callable[[str, int, Path], S],
        *,
        kept_versions: int | None = 2,
        allow_signature_change: bool = False,
        on_change: Callable[[Model[S]], None] | None = None,
    ) -> None:
        self.root = root
        self._load = load
        self._kept = kept_versions
        self._allow_signature_change = allow_signature_change
        self._on_change = on_change
        self._models: dict[str, Model[S]] = {}
        self._scan_lock = threading.Lock()
        self._seen: dict[tuple[str, int], tuple[int, int]] = {}
        self.root_error = ""
        self._unreadable: set[str] = set()

    # -- lookups (request path: no locks, no filesystem) -------------------------------------

    def names(self) -> list[str]:
        return sorted(self._models)

    def model(self, name: str) -> Model[S]:
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"model '{name}' not found")
        return model

    def get(self, name: str, version: int | None = None) -> tuple[int, S]:
        """The servable for ``name`` at ``version`` (default: newest available)."""
        model = self.model(name)
        served = model.served
        if version is None:
            if not served:
                raise Unavailable(f"model '{name}' has no available version", retry_after=5)
            version = max(served)
        servable = served.get(version)
        if servable is None:
            status = model.statuses.get(version)
            if status is not None and status.state == LOADING:
                raise Unavailable(f"model '{name}' version {version} is loading", retry_after=5)
            raise NotFound(f"model '{name}' version {version} not found")
        return version, servable

    def errors(self) -> dict[str, str]:
        """What keeps the store from seeing the disk: per model, and "" for the model root."""
        found = {name: model.error for name, model in sorted(self._models.items()) if model.error}
        if self.root_error:
            found[""] = self.root_error
        return found

    def ready(self) -> bool:
        """Every model on disk has a version to serve (and there is at least one model)."""
        return bool(self._models) and all(m.served for m in self._models.values())

    # -- scanning ----------------------------------------------------------------------------

    def scan(self, *, initial: bool = False) -> None:
        """Bring the loaded set in line with the disk. ``initial``: load without waiting for
        files to settle (at start nothing is being copied in by us)."""
        with self._scan_lock:
            try:
                on_disk = self._discover()
                self.root_error = ""
            except OSError as error:
                self.root_error = f"cannot read model root {self.root}: {error.strerror or error}"
                log.error("model scan failed", extra={"fields": {"error": self.root_error}})
                return
            for name, versions in on_disk.items():
                self._sync_model(name, versions, initial=initial)
            # An unreadable model directory keeps its own error (not "gone") and its versions.
            for name in set(self._models) - set(on_disk) - self._unreadable:
                model = self._models[name]
                if model.served:
                    model.error = "model directory is gone; still serving what is loaded"

    def _discover(self) -> dict[str, dict[int, Path]]:
        found: dict[str, dict[int, Path]] = {}
        self._unreadable = set()
        for model_dir in sorted(self.root.iterdir()):
            if not model_dir.is_dir() or not MODEL_NAME.fullmatch(model_dir.name):
                continue
            versions: dict[int, Path] = {}
            try:
                for version_dir in model_dir.iterdir():
                    number = parse_version(version_dir.name)
                    if number is not None and version_dir.is_dir():
                        versions[number] = version_dir
            except OSError as error:
                model = self._models.setdefault(model_dir.name, Model(model_dir.name))
                model.error = f"cannot read {model_dir}: {error.strerror or error}"
                self._unreadable.add(model_dir.name)
                log.error("model scan failed", extra={"fields": {"error": model.error}})
                continue
            found[model_dir.name] = versions
        return found

    def _sync_model(self, name: str, versions: dict[int, Path], *, initial: bool) -> None:
        model = self._models.setdefault(name, Model(name))
        model.error = ""
        for version, path in sorted(versions.items(), reverse=True):
            if self._kept is not None and len(model.served) >= self._kept and version < min(
                model.served
            ):
                break  # older than everything we keep: do not load it
            if version in model.served:
                continue
            fingerprint = _fingerprint(path / MODEL_FILE)
            if fingerprint is None:
                continue  # no model file (yet)
            status = model.statuses.get(version)
            if status is not None and status.state == END and status.fingerprint == fingerprint:
                continue  # failed before and unchanged since: do not retry
            if not initial and self._seen.get((name, version)) != fingerprint:
                # Seen for the first time or still changing: let the copy finish first.
                self._seen[(name, version)] = fingerprint
                continue
            self._load_version(model, version, path, fingerprint)
        self._retire(model, versions)

    def _load_version(
        self, model: Model[S], version: int, path: Path, fingerprint: tuple[int, int]
    ) -> None:
        name = model.name
        model.statuses[version] = VersionStatus(version, LOADING, fingerprint=fingerprint)
        started = time.perf_counter()
        try:
            servable = self._load(name, version, path)
            current = model.default_version
            if (
                current is not None
                and not self._allow_signature_change
                and not servable.signature_matches(model.served[current])
            ):
                raise ValueError(
                    f"signature differs from version {current} (inputs/outputs must keep their "
                    "names, dtypes and shapes; set INFERENCE_ALLOW_SIGNATURE_CHANGE to allow)"
                )
        except Exception as error:  # noqa: BLE001  (any failure: record, keep serving the old one)
            message = str(error) or type(error).__name__
            model.statuses[version] = VersionStatus(version, END, message, fingerprint)
            log.error(
                "model version failed to load",
                extra={"fields": {"model": name, "version": version, "error": message}},
            )
            return
        served = dict(model.served)
        served[version] = servable
        model.served = served  # the swap: requests see the old dict or the new one, never half
        model.statuses[version] = VersionStatus(version, AVAILABLE, fingerprint=fingerprint)
        log.info(
            "model version available",
            extra={
                "fields": {
                    "model": name,
                    "version": version,
                    "seconds": round(time.perf_counter() - started, 3),
                }
            },
        )
        if self._on_change:
            self._on_change(model)

    def _retire(self, model: Model[S], on_disk: dict[int, Path]) -> None:
        keep = sorted(v for v in model.served if v in on_disk)
        if self._kept is not None:
            keep = keep[-self._kept :]
        if not keep and model.served:
            keep = [max(model.served)]  # never unload the last version a model has
        retired = set(model.served) - set(keep)
        if not retired:
            return
        model.served = {v: s for v, s in model.served.items() if v in keep}
        for version in retired:
            model.statuses[version] = VersionStatus(version, END)
            log.info("model version unloaded", extra={"fields": {"model": model.name, "version": version}})
        if self._on_change:
            self._on_change(model)

    # -- polling -----------------------------------------------------------------------------

    def start_polling(self, interval: float) -> threading.Thread:
        def loop() -> None:
            while True:
                time.sleep(interval)
                try:
                    self.scan()
                except Exception:  # noqa: BLE001  (the poller must outlive any one bad scan)
                    log.exception("model scan crashed")

        thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        thread.start()
        return thread


def _fingerprint(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns)
