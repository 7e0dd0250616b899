"""The versioned model store: what is on disk, what is loaded, and swapping without a gap.

Layout (as TensorFlow Serving's): ``<root>/<name>/<integer version>/`` holding ``model.keras`` or a
SavedModel (:mod:`services.inference.formats`). The newest
available version serves by default; older ones stay loaded per the version policy so pinned
requests and canaries keep working. A new version is loaded, checked and warmed beside the
serving one and only then published, in one reference swap; a version that fails is recorded
with its error and never replaces anything. Removed versions are unloaded, except the last
available one of a model. A model ``unloaded`` names (Triton's repository control, see
:mod:`services.inference.repository`) has every version unloaded and counts as absent.

With TF Serving's model config file (:mod:`services.inference.model_config_file`) the models
are those it lists instead, each from its own base path, with its own version policy and its
version labels. A label only ever names a version this worker serves: one that names another
keeps its previous version (or stays unassigned) and is reported, and is looked at again after
every scan, so it moves once that version is loaded -- in each worker when it gets there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from services.common.errors import NotFound, Unavailable
from services.common.naturals import parse as parse_version
from services.inference import formats
from services.protocol.facts import AVAILABLE, END, LOADING, MODEL_NAME

log = logging.getLogger(__name__)


class Loadable(Protocol):
    def signature_matches(self, other: Loadable) -> bool: ...


S = TypeVar("S", bound=Loadable)


@dataclass
class VersionStatus:
    version: int
    state: str
    error: str = ""
    fingerprint: tuple[int, int] | None = None


@dataclass(frozen=True)
class ModelSource:
    """Where one model's versions are and which of them to serve (a model config file entry)."""

    name: str
    base_path: Path
    kept: int | None  # the newest N versions; None: every version (or exactly ``specific``)
    specific: frozenset[int] | None = None  # serve exactly these versions
    labels: Mapping[str, int] = field(default_factory=dict)  # version label -> version


@dataclass
class Model(Generic[S]):
    """One model name: its loaded versions and labels (each replaced wholesale, never mutated)
    and statuses."""

    name: str
    served: dict[int, S] = field(default_factory=dict)
    statuses: dict[int, VersionStatus] = field(default_factory=dict)
    error: str = ""
    labels: dict[str, int] = field(default_factory=dict)
    label_error: str = ""  # labels that could not be put where the config file says

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
        unloaded: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self.root = root
        self._load = load
        self._kept = kept_versions
        self._allow_signature_change = allow_signature_change
        self._on_change = on_change
        self._unloaded = unloaded
        self._models: dict[str, Model[S]] = {}
        self._scan_lock = threading.Lock()
        self._seen: dict[tuple[str, int], tuple[int, int]] = {}
        self.root_error = ""
        self._unreadable: set[str] = set()
        self._sources: Mapping[str, ModelSource] | None = None  # None: scan the model root
        self._added_later: set[str] = set()  # models a config edit added (see ready())

    def configure(self, sources: Mapping[str, ModelSource]) -> set[str]:
        """Serve the models ``sources`` lists (from the next scan on); returns the names that
        are new or changed, for a scan to load at once (their files are in place already)."""
        with self._scan_lock:
            before = self._sources or {}
            changed = {name for name, source in sources.items() if before.get(name) != source}
            if self._sources is not None:
                self._added_later |= set(sources) - set(before)
            self._sources = dict(sources)
        return changed

    def source(self, name: str) -> ModelSource | None:
        """What the model config file says of ``name`` (None: no file, or not in it)."""
        return (self._sources or {}).get(name)

    def has_source(self, name: str) -> bool:
        """Whether ``name`` is a model the store would find on its next scan."""
        sources = self._sources
        return name in sources if sources is not None else (self.root / name).is_dir()

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

    def labelled(self, name: str, label: str) -> int:
        """The version ``label`` names for model ``name`` (404 when it names none)."""
        model = self.model(name)
        version = model.labels.get(label)
        if version is None:
            raise NotFound(f"model '{name}' has no version label '{label[:64]}'")
        return version

    def get_labelled(self, name: str, label: str) -> tuple[int, S]:
        """The servable ``label`` names. A scan swaps the labels before it retires what they
        named, so a version gone from ``served`` means the labels moved: read them again."""
        for _ in range(2):
            version = self.labelled(name, label)
            servable = self.model(name).served.get(version)
            if servable is not None:
                return version, servable
        return self.get(name, version)  # 404/503 as for any version that does not serve

    def errors(self) -> dict[str, str]:
        """What keeps the store from seeing the disk: per model, and "" for the model root."""
        found = {}
        for name, model in sorted(self._models.items()):
            message = "; ".join(e for e in (model.error, model.label_error) if e)
            if message:
                found[name] = message
        if self.root_error:
            found[""] = self.root_error
        return found

    def ready(self) -> bool:
        """Every model on disk that is not unloaded on purpose has a version to serve (and
        there is at least one model). A model a config edit added is not waited for: a typo in
        its base path must not take every other model out of rotation (its error says why)."""
        unloaded = self._unloaded()
        return bool(self._models) and all(
            m.served for n, m in self._models.items() if n not in unloaded and n not in self._added_later
        )

    def unloaded(self) -> Collection[str]:
        return self._unloaded()

    # -- scanning ----------------------------------------------------------------------------

    def scan(self, *, initial: bool = False, now: Collection[str] = ()) -> None:
        """Bring the loaded set in line with the disk. ``initial``: load without waiting for
        files to settle (at start nothing is being copied in by us); ``now``: the same for
        these models only (a load asked for by name)."""
        with self._scan_lock:
            unloaded = self._unloaded()
            sources = self._sources
            if sources is None:
                try:
                    on_disk = self._discover()
                    self.root_error = ""
                except OSError as error:
                    self.root_error = f"cannot read model root {self.root}: {error.strerror or error}"
                    log.error("model scan failed", extra={"fields": {"error": self.root_error}})
                    return
            else:
                on_disk = self._discover_sources(sources)
                for name in set(self._models) - set(sources):  # taken out of the config file
                    self._unload(self._models[name])
                    del self._models[name]
            for name, versions in on_disk.items():
                model = self._models.setdefault(name, Model(name))
                if name in unloaded:
                    self._unload(model)
                    continue
                source = sources.get(name) if sources is not None else None
                kept = self._kept if source is None else source.kept
                if source is not None and source.specific is not None:
                    versions = {v: p for v, p in versions.items() if v in source.specific}
                labels = source.labels if source is not None else None
                self._sync_model(name, versions, initial=initial or name in now, kept=kept, labels=labels)
            # An unreadable model directory keeps its own error (not "gone") and its versions.
            for name in set(self._models) - set(on_disk) - self._unreadable:
                model = self._models[name]
                if model.served:
                    model.error = "model directory is gone; still serving what is loaded"

    def _discover(self) -> dict[str, dict[int, Path]]:
        self._unreadable = set()
        directories = {
            d.name: d for d in sorted(self.root.iterdir()) if d.is_dir() and MODEL_NAME.fullmatch(d.name)
        }
        return self._list_versions(directories)

    def _discover_sources(self, sources: Mapping[str, ModelSource]) -> dict[str, dict[int, Path]]:
        self._unreadable = set()
        return self._list_versions({name: source.base_path for name, source in sources.items()})

    def _list_versions(self, directories: Mapping[str, Path]) -> dict[str, dict[int, Path]]:
        found: dict[str, dict[int, Path]] = {}
        for name, model_dir in directories.items():
            versions: dict[int, Path] = {}
            try:
                for version_dir in model_dir.iterdir():
                    number = parse_version(version_dir.name)
                    if number is not None and version_dir.is_dir():
                        versions[number] = version_dir
            except OSError as error:
                model = self._models.setdefault(name, Model(name))
                model.error = f"cannot read {model_dir}: {error.strerror or error}"
                self._unreadable.add(name)
                log.error("model scan failed", extra={"fields": {"error": model.error}})
                continue
            found[name] = versions
        return found

    def _assign_labels(self, model: Model[S], wanted: Mapping[str, int]) -> None:
        """Put each label on its version if that version serves; else keep where it was."""
        labels: dict[str, int] = {}
        problems = []
        for label, version in sorted(wanted.items()):
            previous = model.labels.get(label)
            if version in model.served:
                labels[label] = version
                continue
            if previous is not None and previous in model.served:
                labels[label] = previous
                problems.append(f"label '{label}': version {version} is not available; still version {previous}")
            else:
                problems.append(f"label '{label}': version {version} is not available; not assigned")
        if labels != model.labels:
            log.info("version labels", extra={"fields": {"model": model.name, "labels": labels}})
            model.labels = labels  # one swap: a request sees the old labels or the new ones
        if problems and "; ".join(problems) != model.label_error:
            log.error("version labels refused", extra={"fields": {"model": model.name, "errors": problems}})
        model.label_error = "; ".join(problems)

    def _sync_model(
        self, name: str, versions: dict[int, Path], *, initial: bool, kept: int | None,
        labels: Mapping[str, int] | None = None,
    ) -> None:
        model = self._models.setdefault(name, Model(name))
        model.error = ""
        for version, path in sorted(versions.items(), reverse=True):
            if kept is not None and len(model.served) >= kept and version < sorted(model.served)[-kept]:
                break  # older than the newest `kept` we serve: do not load it
            if version in model.served:
                continue
            fingerprint = formats.fingerprint(path)
            if fingerprint is None:
                continue  # gone since the listing
            status = model.statuses.get(version)
            if status is not None and status.state == END and status.fingerprint == fingerprint:
                continue  # failed before and unchanged since: do not retry
            if not initial and self._seen.get((name, version)) != fingerprint:
                # Seen for the first time or still changing: let the copy finish first.
                self._seen[(name, version)] = fingerprint
                continue
            self._load_version(model, version, path, fingerprint)
        # Labels move onto what just loaded before anything retires, and a version a label
        # still names is not retired: a label never points at a version that cannot answer.
        if labels is not None or model.labels:
            self._assign_labels(model, labels or {})
        self._retire(model, versions, kept)

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
            if self._on_change:
                self._on_change(model)
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

    def _unload(self, model: Model[S]) -> None:
        model.error = ""
        if not model.served:
            return
        retired, model.served = model.served, {}
        for version in retired:
            model.statuses[version] = VersionStatus(version, END)
        log.info("model unloaded", extra={"fields": {"model": model.name, "versions": sorted(retired)}})
        if self._on_change:
            self._on_change(model)

    def _retire(self, model: Model[S], on_disk: dict[int, Path], kept: int | None) -> None:
        # A failed version whose files are gone is no longer a failure to fix (nor to alert on).
        forgotten = [v for v, status in model.statuses.items() if status.error and v not in on_disk]
        for version in forgotten:
            model.statuses[version] = VersionStatus(version, END)
        keep = sorted(v for v in model.served if v in on_disk)
        if kept is not None:
            keep = keep[-kept:]
        if not keep and model.served:
            keep = [max(model.served)]  # never unload the last version a model has
        keep += [v for v in model.labels.values() if v in model.served]  # until its label moves
        retired = set(model.served) - set(keep)
        if not retired:
            if forgotten and self._on_change:
                self._on_change(model)
            return
        model.served = {v: s for v, s in model.served.items() if v in keep}
        for version in retired:
            model.statuses[version] = VersionStatus(version, END)
            log.info("model version unloaded", extra={"fields": {"model": model.name, "version": version}})
        if self._on_change:
            self._on_change(model)

