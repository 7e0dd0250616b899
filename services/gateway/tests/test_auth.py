"""API keys: the two headers, env and file sources, reloads, and an empty set that admits nobody."""

from __future__ import annotations

import pytest

from services.common.errors import Unauthorized
from services.gateway.auth import ANONYMOUS, Authenticator, KeyFileError, KeyRing, presented_key


@pytest.mark.parametrize(
    "authorization, api_key, expected",
    [
        ("Bearer abc", None, "abc"),
        ("bearer   abc  ", None, "abc"),
        (None, "xyz", "xyz"),
        ("Bearer abc", "xyz", "xyz"),
        ("Basic abc", None, None),
        ("Bearer ", None, None),
        (None, None, None),
    ],
)
def test_where_a_key_is_read_from(authorization, api_key, expected):
    assert presented_key(authorization, api_key) == expected


def test_a_key_ring_names_keys_without_revealing_them():
    ring = KeyRing(["secret-one", "secret-two"])
    first = ring.identify("secret-one")
    assert first and first.startswith("key-") and "secret" not in first
    assert ring.identify("secret-two") not in (None, first)
    assert ring.identify("secret-on") is None
    assert ring.identify("") is None


def test_auth_off_admits_everyone_as_anonymous():
    assert Authenticator([], "").check(None, None) == ANONYMOUS


def test_env_and_file_keys_combine_and_the_file_reloads(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# rotated monthly\nfile-key-1\n\n  file-key-2  \n")
    auth = Authenticator(["env-key"], str(keys))
    for key in ("env-key", "file-key-1", "file-key-2"):
        assert auth.check(f"Bearer {key}", None).startswith("key-")
    with pytest.raises(Unauthorized, match="an API key is required"):
        auth.check(None, None)
    with pytest.raises(Unauthorized, match="invalid API key"):
        auth.check(None, "nope")
    assert auth.reload_if_changed() is None

    keys.write_text("file-key-3\n")
    assert auth.reload_if_changed() is True
    assert auth.check(None, "file-key-3") and auth.check(None, "env-key")
    with pytest.raises(Unauthorized):
        auth.check(None, "file-key-1")

    keys.write_text("two words\n")  # rejected: the keys in force stay
    assert auth.reload_if_changed() is False
    assert auth.check(None, "file-key-3")
    assert auth.reload_if_changed() is None  # reported once

    keys.unlink()
    assert auth.reload_if_changed() is False
    assert auth.reload_if_changed() is None
    assert auth.check(None, "file-key-3")


def test_an_empty_keys_file_admits_nobody(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# nothing yet\n")
    auth = Authenticator([], str(keys))
    assert auth.enabled
    with pytest.raises(Unauthorized):
        auth.check(None, "anything")


def test_a_missing_or_bad_keys_file_stops_the_start_without_showing_keys(tmp_path):
    with pytest.raises(KeyFileError, match="cannot read"):
        Authenticator([], str(tmp_path / "absent"))
    bad = tmp_path / "bad"
    bad.write_text("good-key\nsecret with space\n")
    with pytest.raises(KeyFileError) as error:
        Authenticator([], str(bad))
    assert "key 2" in str(error.value) and "secret" not in str(error.value)
