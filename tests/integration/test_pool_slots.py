"""Warm-pool slots on the host: real mounts, made and undone (root needed; CI runs as root).

What matters most: a slot's data mount is read-only from its first moment,
and releasing a slot never deletes anything of the data or a work volume, even
when an unmount fails.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sde.core.config import Settings, load_settings
from sde.core.errors import ConfigError, SdeError
from sde.workspaces import pool
from sde.workspaces.engine import docker_client
from sde.workspaces.pool import filler, mounts
from tests.conftest import require_service

sys_warmstart = pytest.importorskip("sde.warmstart")


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    require_service("root (mounts)", os.geteuid() == 0, "slot mounts need root")
    home = tmp_path / "home"
    home.mkdir()
    s = load_settings(env=_env(home, tmp_path / "run"))
    pool.prepare_host(s)
    yield s
    for slot in pool.slots_root(s).iterdir():
        pool.release(s, slot.name)
    assert pool.teardown_host(s)


def _env(home: Path, pool_dir: Path) -> dict[str, str]:
    # Slots of this test's own: never those of an installation running on this machine.
    return {
        "SDE_HOME": str(home),
        "SDE_WORKSPACES_POOL_DIR": str(pool_dir),
        "SDE_HUB_NAME": f"sdetest{uuid.uuid4().hex[:8]}",
    }


def test_pool_prepare_host_without_root_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    s = load_settings(env=_env(tmp_path, tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"warm_pool.*root"):
        pool.prepare_host(s)


def test_pool_prepare_host_is_idempotent_and_shares_slots(settings):
    pool.prepare_host(settings)
    found = mounts.mount_points()
    assert "shared:" in found[str(pool.slots_root(settings))]
    assert "shared:" not in found[str(pool.staging_root(settings))]
    assert list(found).count(str(pool.slots_root(settings))) == 1


def test_pool_slot_data_is_read_only_and_release_keeps_sources(settings, tmp_path):
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    work.mkdir()
    (data / "person.parquet").write_text("rows")
    slot = pool.new_slot(settings)
    pool.attach(settings, slot, data, slot.data, read_only=True)
    pool.attach(settings, slot, work, slot.work, read_only=False)
    assert pool.is_mount(slot.data) and pool.is_mount(slot.work)
    with pytest.raises(OSError) as refused:
        (slot.data / "x").write_text("no")
    assert refused.value.errno == errno.EROFS
    (slot.work / "notes.txt").write_text("kept")
    pool.write_claim(slot, {"env": {}, "argv": ["jupyterhub-singleuser"]}, 1000, 1000)

    pool.release(settings, slot.name)

    assert not slot.path.exists()
    assert (work / "notes.txt").read_text() == "kept"
    assert (data / "person.parquet").read_text() == "rows"
    assert not any(
        p.startswith(str(pool.slots_root(settings)) + "/") for p in mounts.mount_points()
    )


def test_pool_release_stops_when_unmount_fails_and_deletes_nothing(settings, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    slot = pool.new_slot(settings)
    pool.attach(settings, slot, work, slot.work, read_only=False)
    busy = open(slot.work / "open.txt", "w")  # noqa: SIM115 (held open: the unmount fails)
    try:
        with pytest.raises(SdeError, match="umount"):
            pool.release(settings, slot.name)
        assert pool.is_mount(slot.work)
        assert (work / "open.txt").exists()
    finally:
        busy.close()
    pool.release(settings, slot.name)
    assert (work / "open.txt").exists() and not slot.path.exists()


def test_pool_claim_file_is_readable_by_workspace_user_only(settings):
    slot = pool.new_slot(settings)
    pool.write_claim(slot, {"env": {"A": "1"}, "argv": ["jupyterhub-singleuser"]}, 1000, 1000)
    st = slot.claim_file.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o400, 1000, 1000)
    assert json.loads(slot.claim_file.read_text())["env"] == {"A": "1"}
    assert not list(slot.ctl.glob(".*"))


def test_pool_slot_names_cannot_leave_the_slots_directory(settings):
    with pytest.raises(SdeError, match="not a slot name"):
        pool.slot_of(settings, "../hub")


@pytest.mark.parametrize(
    ("claim", "problem"),
    [
        ({"env": {"A": 1}, "argv": ["jupyterhub-singleuser"]}, "'env' must map names to strings"),
        ({"env": {}, "argv": ["sh", "-c", "id"]}, "'argv' must start with jupyterhub-singleuser"),
        ({"env": {}}, "'argv' must start with"),
    ],
)
def test_warmstart_claim_with_bad_content_is_refused(tmp_path, claim, problem):
    path = tmp_path / "claim.json"
    path.write_text(json.dumps(claim))
    with pytest.raises(SystemExit, match=problem):
        sys_warmstart.read_claim(path)


def test_pool_slots_under_a_directory_with_a_space_are_recognised(tmp_path):
    require_service("root (mounts)", os.geteuid() == 0, "slot mounts need root")
    s = load_settings(env=_env(tmp_path, tmp_path / "run dir"))
    pool.prepare_host(s)
    pool.prepare_host(s)
    try:
        assert pool.is_mount(pool.slots_root(s))
        assert list(mounts.mount_points()).count(str(pool.slots_root(s))) == 1
    finally:
        assert pool.teardown_host(s)
    assert not pool.is_mount(pool.slots_root(s))


def test_pool_slot_is_taken_by_exactly_one_of_many_concurrent_claims(settings):
    import concurrent.futures

    slot = pool.new_slot(settings)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda _: pool.take(slot), range(32)))
    assert results.count(True) == 1
    pool.release(settings, slot.name)
    assert not slot.path.exists()
    assert pool.take(slot) is False  # a released slot cannot be taken


def _installation_containers(settings: Settings) -> list[Any]:
    import docker

    labelled = {"label": f"{pool.INSTALLATION_LABEL}={settings.hub.name}"}
    return docker.from_env().containers.list(all=True, filters=labelled)


def test_pool_propagation_check_passes_on_the_prepared_host(settings, workspace_image):
    client = docker_client()
    assert pool.check_propagation(client, settings, workspace_image) is None
    assert list(pool.slots_root(settings).iterdir()) == []
    assert _installation_containers(settings) == []


@pytest.mark.parametrize("when", ["before-start", "after-start"])
def test_pool_propagation_check_reports_mounts_that_do_not_reach_containers(
    settings, workspace_image, monkeypatch, when
):
    # As if the engine ran in another mount namespace: nothing propagates to it.
    # Before the start Docker itself refuses the rslave bind; after it, the probe
    # mount is made but never arrives.
    root = pool.slots_root(settings)
    attach = pool.attach

    def private(*args: Any, **kwargs: Any) -> None:
        mounts.run("mount", "--make-private", str(root))
        attach(*args, **kwargs)

    if when == "before-start":
        mounts.run("mount", "--make-private", str(root))
    else:
        monkeypatch.setattr(mounts, "attach", private)
    try:
        problem = pool.check_propagation(docker_client(), settings, workspace_image)
    finally:
        mounts.run("mount", "--make-rshared", str(root))
    assert problem is not None and str(root) in problem
    # What the filler records on finding it, and `sde workspaces pool status` shows.
    filler._write_state(settings, {"mounts_reach_containers": False, "problem": problem})
    assert pool.status(settings)["filler"] == f"off, workspaces start cold: {problem}"
    if when == "after-start":
        assert "do not reach" in problem and "mount-unseen" in problem
    assert list(root.iterdir()) == []
    assert _installation_containers(settings) == []
