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
