"""Where the hub, its services and each workspace are served (sde.hub.origins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sde.core.config import load_settings
from sde.core.errors import ConfigError
from sde.hub.origins import origins_for, public_url


def settings(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    return load_settings(env={"SDE_HOME": str(tmp_path), **env})


def test_origins_default_public_url_is_a_localhost_name_on_the_hub_port(tmp_path: Path) -> None:
    assert public_url(settings(tmp_path, SDE_HUB_PORT="8123")) == "http://sde.localhost:8123"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://tre.example.org", "scheme"),
        ("https://", "no host"),
        ("https://tre.example.org/hub", "no path"),
        ("http://127.0.0.1:8000", "not an address"),
    ],
)
def test_origins_bad_public_url_is_a_clear_error(tmp_path: Path, url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"hub\.public_url: .*{problem}"):
        public_url(settings(tmp_path, SDE_HUB_PUBLIC_URL=url))


def test_origins_workspace_hosts_differ_for_pairs_whose_names_join_alike(tmp_path: Path) -> None:
    site = origins_for(settings(tmp_path, SDE_HUB_PUBLIC_URL="https://tre.example.org"))
    a = site.workspace_host("alice", "diabetes-outcomes")
    b = site.workspace_host("alice-diabetes", "outcomes")
    assert a != b
    for host in (a, b):
        label, _, domain = host.partition(".")
        assert domain == "tre.example.org"
        assert label.startswith("w-") and len(label) <= 63
        assert "alice" not in label and "outcomes" not in label
    assert site.workspace_url("alice", "diabetes-outcomes") == f"https://{a}"


def test_origins_users_stay_on_the_hub_host_and_services_get_their_own(tmp_path: Path) -> None:
    site = origins_for(settings(tmp_path))
    assert site.subdomain_hook("alice", "sde.localhost", "user") == "sde.localhost"
    service = site.subdomain_hook("airlock", "sde.localhost", "service")
    assert service == "airlock--service.sde.localhost"
