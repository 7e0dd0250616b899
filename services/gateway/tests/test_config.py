"""Gateway settings from the environment."""

from __future__ import annotations

import pytest

from services.common.settings import SettingsError, load
from services.gateway.config import PREFIX, GatewaySettings, load_settings


def test_defaults_match_the_contract():
    s = load(GatewaySettings, PREFIX, {})
    assert (s.bind, s.keepalive, s.api_keys, s.rate_limit) == ("127.0.0.1:8000", 75, (), 0.0)
    assert not s.auth_enabled


def test_environment_values():
    s = load(GatewaySettings, PREFIX, {
        "GATEWAY_API_KEYS": "a, b,,", "GATEWAY_RATE_LIMIT": "2.5", "GATEWAY_MAX_REQUEST_TIMEOUT": "9",
    })
    assert s.api_keys == ("a", "b") and s.auth_enabled
    assert s.burst == 3.0  # one second's worth, rounded up
    assert load(GatewaySettings, PREFIX, {"GATEWAY_RATE_BURST": "7"}).burst == 7.0


def test_the_routes_file_is_required(monkeypatch):
    monkeypatch.delenv("GATEWAY_ROUTES_FILE", raising=False)
    with pytest.raises(SettingsError, match="GATEWAY_ROUTES_FILE is required"):
        load_settings()
    with pytest.raises(SettingsError, match="GATEWAY_RATE_LIMIT"):
        load(GatewaySettings, PREFIX, {"GATEWAY_RATE_LIMIT": "-1"})
