"""API keys: who may call, compared in constant time, held only as digests, never logged.

A key is accepted as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys come from an
environment variable and/or a file (a mounted Kubernetes Secret); the file is re-read when it
changes, so keys rotate without a restart. A configured but empty key set admits nobody: an
empty Secret must not open the door.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable

from services.common.errors import Unauthorized
from services.common.watched_file import WatchedFile

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"  # the caller's identity when auth is off


class KeyFileError(ValueError):
    """The keys file cannot be used (the message never contains a key)."""


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(key_digest: bytes) -> str:
    """A stable, non-secret name for a key: safe in logs and as a rate-limit bucket."""
    return "key-" + key_digest[:6].hex()


def presented_key(authorization: str | None, api_key: str | None) -> str | None:
    if api_key:
        return api_key.strip()
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None


def parse_keys(text: str, source: str) -> list[str]:
    """One key per line; blank lines and ``#`` comments ignored."""
    keys = [line.strip() for line in text.splitlines()]
    keys = [k for k in keys if k and not k.startswith("#")]
    for number, key in enumerate(keys, 1):
        if not key.isascii() or not key.isprintable() or " " in key:
            raise KeyFileError(f"{source}: key {number} has spaces or unprintable characters")
    return keys


class KeyRing:
    """The accepted keys, as SHA-256 digests."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple({digest(k) for k in keys})

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, key: str | None) -> str | None:
        """The key's id when it is accepted, else None.

        Every configured digest is compared, with no early exit, so the time taken says
        nothing about which key came close.
        """
        if not key:
            return None
        wanted = digest(key)
        found = False
        for candidate in self._digests:
            found |= hmac.compare_digest(candidate, wanted)
        return key_id(wanted) if found else None


class Authenticator:
    """The keys from the environment plus the keys file, reloadable."""

    def __init__(self, env_keys: Iterable[str], keys_file: str = "") -> None:
        self._env_keys = tuple(env_keys)
        self._file = WatchedFile(keys_file) if keys_file else None
        self.enabled = bool(self._env_keys or self._file)
        self.ring = KeyRing(self._env_keys)
        if self._file is not None:
            try:
                self._install(self._file.read())
            except OSError as error:
                raise KeyFileError(f"cannot read API keys file {keys_file}: {error.strerror}") from None

    def _install(self, raw: bytes) -> None:
        assert self._file is not None
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise KeyFileError(f"API keys file {self._file.path} is not UTF-8 text") from None
        self.ring = KeyRing([*self._env_keys, *parse_keys(text, f"API keys file {self._file.path}")])
        if not len(self.ring):
            log.warning("API keys are configured but there are none: every request gets 401")

    def reload_if_changed(self) -> bool | None:
        """Re-read the keys file if it changed: True applied, False rejected, None unchanged."""
        if self._file is None:
            return None
        try:
            raw = self._file.changed()
            if raw is None:
                return None
            self._install(raw)
        except OSError as error:
            log.error("API keys file unreadable, keeping the keys in force: %s", error.strerror)
            return False
        except KeyFileError as error:
            log.error("API keys file rejected, keeping the keys in force: %s", error)
            return False
        log.info("API keys reloaded", extra={"fields": {"keys": len(self.ring)}})
        return True

    def check(self, authorization: str | None, api_key: str | None) -> str:
        """The caller's identity (a key id), or :class:`Unauthorized`."""
        if not self.enabled:
            return ANONYMOUS
        key = presented_key(authorization, api_key)
        if key is None:
            raise Unauthorized(
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        found = self.ring.identify(key)
        if found is None:
            raise Unauthorized("invalid API key")
        return found
