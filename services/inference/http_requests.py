"""Reading a Flask request for a view: its body, its JSON, its time budget, the version it names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import g, request

from services.common import deadline, jsoncodec
from services.common.errors import ClientError, PayloadTooLarge, UnsupportedMediaType
from services.inference import calls
from services.inference.config import InferenceSettings
from services.inference.model_store import ModelStore
from services.inference.repository import Repository
from services.inference.serving import ServedVersion

# Bodies that TF Serving's own examples send: curl -d (form-urlencoded) and requests without a
# content type. Anything else that is not JSON is a client mistake.
_JSON_TYPES = {"", "application/json", "application/x-www-form-urlencoded", "text/json"}


@dataclass(frozen=True)
class Views:
    """What every HTTP view of the service reads: the store, the settings, the repository."""

    store: ModelStore[ServedVersion]
    settings: InferenceSettings
    repo: Repository

    def lookup(self, name: str, version: str | None, label: str | None = None) -> tuple[int, ServedVersion]:
        """The version the request names, remembered for its metrics and log line."""
        resolved, served = calls.lookup(self.store, name, version, label)
        g.version = resolved
        return resolved, served

    def body(self, binary_ok: bool = False) -> bytes:
        mimetype = request.mimetype
        if not (
            mimetype in _JSON_TYPES
            or mimetype.endswith("+json")
            or (binary_ok and mimetype == "application/octet-stream")
        ):
            raise UnsupportedMediaType(
                f"expected Content-Type application/json{' or application/octet-stream' if binary_ok else ''}, "
                f"got {mimetype[:80]}"
            )
        encoding = request.headers.get("Content-Encoding", "identity").lower()
        if encoding != "identity":
            raise UnsupportedMediaType(f"Content-Encoding {encoding[:40]} is not supported; send identity")
        limit = self.settings.max_body_bytes
        if request.content_length is None and request.environ.get("wsgi.input_terminated"):
            # Chunked: Werkzeug's stream silently stops at the limit (a 10 MiB body was parsed
            # as its first 8 MiB), so read one byte past it and refuse.
            data = request.environ["wsgi.input"].read(limit + 1)
            if len(data) > limit:
                raise PayloadTooLarge("request body too large")
            return data
        return request.get_data(cache=False)

    def parse(self, raw: bytes) -> Any:
        try:
            return jsoncodec.loads(raw, allow_nonfinite=self.settings.allow_nonfinite)
        except jsoncodec.JSONDecodeError as error:
            raise ClientError(str(error)[:300]) from None

    def optional_object(self) -> dict[str, Any]:
        """A body that may be empty, else a JSON object (Triton's repository calls)."""
        raw = self.body()
        if not raw.strip():
            return {}
        payload = self.parse(raw)
        if not isinstance(payload, dict):
            raise ClientError("request body must be a JSON object")
        return payload

    def timeout(self) -> float:
        timeout = self.settings.request_timeout
        return deadline.timeout_from(request.headers.get(deadline.HEADER), timeout, timeout)
