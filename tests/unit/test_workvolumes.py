"""Work volume quota settings and the keyed names of (person, project)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sde.core.config import load_settings
from sde.core.errors import ConfigError
from sde.workspaces import names, workvolumes

PAIR = [("alice", "diabetes-outcomes"), ("alice-diabetes", "outcomes")]


def _settings(home: Path, **env: str):
    return load_settings(env={"SDE_HOME": str(home), **env})


@pytest.mark.parametrize(("raw", "size"), [("10G", 10 * 2**30), ("64M", 64 * 2**20), ("1t", 2**40)])
def test_work_quota_sizes_with_units(tmp_path, raw, size):
    assert workvolumes.quota_bytes(_settings(tmp_path, SDE_WORKSPACES_WORK_QUOTA=raw)) == size


@pytest.mark.parametrize("raw", ["ten", "10X", "-5G", "", "8M"])
def test_work_quota_bad_value_is_a_config_error_naming_the_setting(tmp_path, raw):
    with pytest.raises(ConfigError, match=r"^workspaces\.work_quota: "):
        workvolumes.quota_bytes(_settings(tmp_path, SDE_WORKSPACES_WORK_QUOTA=raw))


def test_workspace_names_of_the_colliding_pair_differ_and_say_nothing(tmp_path):
    s = _settings(tmp_path)
    for make in (names.container_name, names.work_volume, names.oauth_client_id):
        made = [make(s, u, p) for u, p in PAIR]
        assert made[0] != made[1]
        for name in made:
            assert not [w for w in ("alice", "diabetes", "outcomes") if w in name], name
    # The old names were one and the same.
    assert len({names.legacy_work_volume(s, u, p) for u, p in PAIR}) == 1


def test_workspace_names_are_keyed_by_the_installation(tmp_path):
    one, other = _settings(tmp_path / "one"), _settings(tmp_path / "other")
    assert names.container_name(one, *PAIR[0]) == names.container_name(one, *PAIR[0])
    assert names.container_name(one, *PAIR[0]) != names.container_name(other, *PAIR[0])
    assert one.names_key_path.stat().st_mode & 0o077 == 0
