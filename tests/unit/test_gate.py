"""The API gate's allow-list and where the hub API may listen (sde.workspaces.gate)."""

from __future__ import annotations

import pytest

from sde.core.config import load_settings
from sde.core.errors import ConfigError
from sde.workspaces import gate


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/hub/api"),
        ("GET", "/hub/api/"),
        ("GET", "/hub/api/user"),
        ("POST", "/hub/api/oauth2/token"),
    ],
)
def test_gate_allows_what_singleuser_calls(method: str, path: str) -> None:
    assert gate.allowed(method, path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/hub/login"),
        ("POST", "/hub/login"),
        ("GET", "/hub/api/oauth2/authorize"),
        ("POST", "/hub/api/user"),
        ("GET", "/hub/api/users"),
        ("POST", "/hub/api/users/alice/activity"),
        ("POST", "/hub/api/users/alice/tokens"),
        ("GET", "/hub/api/user/../users"),
        ("GET", "/hub/api/%75ser"),
        ("GET", "/hub/api//user"),
        ("GET", "/services/api-gate/hub/api/user"),
        ("GET", "/hub/home"),
    ],
)
def test_gate_refuses_everything_else(method: str, path: str) -> None:
    assert not gate.allowed(method, path)


@pytest.mark.parametrize("ip", ["10.213.0.1", "0.0.0.0"])
def test_gate_hub_api_on_the_bridge_address_is_a_config_error(tmp_path, ip: str) -> None:
    with pytest.raises(ConfigError, match=r"hub\.api_ip"):
        gate.hub_url(load_settings(env={"SDE_HOME": str(tmp_path), "SDE_HUB_API_IP": ip}))


def test_gate_hub_api_defaults_to_loopback_and_workspaces_get_the_gate(tmp_path) -> None:
    settings = load_settings(env={"SDE_HOME": str(tmp_path), "SDE_HUB_API_PORT": "8181"})
    assert gate.hub_url(settings) == "http://127.0.0.1:8181"
    assert gate.gate_url(settings) == "http://10.213.0.1:8181"
