"""Configuration: defaults, file, environment, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sde.core.config import SECTIONS, load_settings, settings_reference
from sde.core.errors import ConfigError


def test_config_defaults_put_state_under_home(tmp_path):
    s = load_settings({"SDE_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'sde.db'}"
    assert s.checkpoint_key_path == tmp_path / "keys" / "audit-checkpoint.key"
    assert s.config_file is None


def test_config_file_then_environment_take_precedence(tmp_path):
    (tmp_path / "sde.toml").write_text(
        '[database]\nurl = "postgresql+psycopg://a@b/c"\n[data]\nk_anonymity_target = 7\n'
    )
    s = load_settings({"SDE_HOME": str(tmp_path)})
    assert s.database.url == "postgresql+psycopg://a@b/c"
    assert s.data.k_anonymity_target == 7
    s = load_settings(
        {
            "SDE_HOME": str(tmp_path),
            "SDE_DATA_K_ANONYMITY_TARGET": "11",
            "SDE_DATA_QUASI_IDENTIFIERS": "sex, age_band",
        }
    )
    assert s.data.k_anonymity_target == 11
    assert s.data.quasi_identifiers == ["sex", "age_band"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[database\n", "not valid TOML"),
        ("[databse]\nurl='x'\n", "unknown section(s): databse"),
        ("[database]\nulr='x'\n", "unknown setting(s) in [database]: ulr"),
        ("[data]\nk_anonymity_target='five'\n", "data.k_anonymity_target: expected int"),
        ("[database]\necho=1\n", "database.echo: expected bool"),
    ],
)
def test_config_malformed_file_names_the_problem(tmp_path, content, message):
    (tmp_path / "sde.toml").write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings({"SDE_HOME": str(tmp_path)})
    assert str(info.value).startswith(str(tmp_path / "sde.toml"))
    assert message in str(info.value)


def test_config_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="SDE_DATA_K_ANONYMITY_TARGET: expected an integer"):
        load_settings({"SDE_HOME": str(tmp_path), "SDE_DATA_K_ANONYMITY_TARGET": "lots"})


def test_config_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not a file"):
        load_settings({"SDE_CONFIG": str(tmp_path / "nope.toml")})


def test_config_reference_documents_every_setting():
    ref = settings_reference()
    from dataclasses import fields

    for section, cls in SECTIONS.items():
        for f in fields(cls):
            assert f"`SDE_{section}_{f.name}`".upper() in ref
            assert f.metadata.get("help"), f"{section}.{f.name} has no help text"


def test_config_docs_file_is_current():
    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == settings_reference() + "\n", (
        "regenerate with: sde config docs > docs/configuration.md"
    )


# A value each declared check refuses (one per checked setting: a new check needs one here).
REFUSED = {
    "data.small_count_threshold": "0",
    "hub.public_url": "http://127.0.0.1:8000",
    "hub.api_ip": "0.0.0.0",
    "hub.cpu_limit": "lots",
    "hub.activity_seconds": "3600",
    "hub.session_hours": "0",
    "hub.authenticator": "ldap",
    "workspaces.bridge": "a-very-long-bridge-name",
    "workspaces.subnet": "10.213.0.0/31",
    "workspaces.warm_pool": "-1",
    "workspaces.access_check_seconds": "0",
    "workspaces.pool_dir": "run/sde",
    "workspaces.work_quota": "8M",
    "keycloak.url": "ldap://auth.example.org",
    "keycloak.realm": "",
    "keycloak.hub_client_id": "",
    "keycloak.airlock_client_id": "",
    "airlock.reviews_required": "1",
    "airlock.ingress_reviews_required": "0",
    "airlock.max_file_size": "lots",
    "airlock.max_files": "0",
    "airlock.max_csv_rows": "0",
    "airlock.file_types": "csv,.zip",
    "airlock.ingress_file_types": "py,.R",
}


def _env(tmp_path: Path, dotted: str) -> dict[str, str]:
    return {"SDE_HOME": str(tmp_path), f"SDE_{dotted.replace('.', '_')}".upper(): REFUSED[dotted]}


def test_config_every_check_has_a_refused_value():
    from dataclasses import fields

    checked = {
        f"{section}.{f.name}"
        for section, cls in SECTIONS.items()
        for f in fields(cls)
        if f.metadata["check"] is not None
    }
    assert checked == set(REFUSED)


@pytest.mark.parametrize("dotted", sorted(REFUSED))
def test_config_check_message_names_its_setting(tmp_path, dotted):
    assert load_settings({"SDE_HOME": str(tmp_path)})  # the defaults pass every check
    with pytest.raises(ConfigError) as info:
        load_settings(_env(tmp_path, dotted))
    message = str(info.value)
    assert message.startswith(f"{dotted}: ") and "\n" not in message


@pytest.mark.parametrize("dotted", ["hub.session_hours", "hub.activity_seconds", "hub.api_ip"])
def test_config_show_refuses_what_the_hub_refuses(tmp_path, monkeypatch, capsys, dotted):
    from traitlets.config import Config

    from sde.cli import context
    from sde.hub.config import configure
    from tests.support.cli import run_sde

    for name, value in _env(tmp_path, dotted).items():
        monkeypatch.setenv(name, value)
    context.reset()
    try:
        result = run_sde(capsys, "config", "show")
    finally:
        context.reset()
    with pytest.raises(ConfigError) as hub:
        configure(Config())
    assert str(hub.value).startswith(f"{dotted}: ")
    assert (result.code, result.err) == (2, f"error: {hub.value}\n")
    assert not (tmp_path / "hub").exists()  # refused before the hub wrote anything
