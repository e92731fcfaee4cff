"""Workspace container options and network settings, without a Docker engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sde.core.config import Settings, load_settings
from sde.core.errors import ConfigError
from sde.workspaces import firewall, hardening, network, seccomp


def settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(env={"SDE_HOME": str(tmp_path), **env})


def test_workspace_options_harden_and_mount_data_read_only(tmp_path: Path) -> None:
    s = settings(tmp_path, SDE_WORKSPACES_SUBNET="10.213.5.0/24", SDE_HUB_CPU_LIMIT="2")
    options = hardening.workspace_options("/srv/p/data", "sde-work-ada-p1", s)
    host = options["extra_host_config"]
    assert host["cap_drop"] == ["ALL"]
    assert host["security_opt"] == ["no-new-privileges:true", seccomp.security_opt()]
    assert host["read_only"] is True and host["privileged"] is False
    assert host["dns"] == ["10.213.5.1"]
    assert set(host["tmpfs"]) == {"/tmp", "/home/researcher"}
    assert options["extra_create_kwargs"]["user"] == "1000:1000"
    assert options["read_only_volumes"] == {"/srv/p/data": "/data"}
    assert options["volumes"] == {"sde-work-ada-p1": "/home/researcher/work"}
    assert options["cpu_limit"] == 2.0
    run = hardening.run_kwargs(options)
    assert run["volumes"]["/srv/p/data"] == {"bind": "/data", "mode": "ro"}
    assert run["volumes"]["sde-work-ada-p1"]["mode"] == "rw"
    assert run["nano_cpus"] == 2_000_000_000


def test_seccomp_profile_allows_none_of_the_removed_syscalls() -> None:
    profile = seccomp.profile()
    removed = {
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "personality",
        "userfaultfd",
    }
    assert set(seccomp.REMOVED) == removed
    # An allowlist: whatever no rule names is refused with EPERM.
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == 1
    rules = profile["syscalls"]
    allowed = [r for r in rules if r["action"] == "SCMP_ACT_ALLOW"]
    assert allowed and all(not removed & set(r["names"]) for r in allowed)
    named = {n for r in rules for n in r["names"]}
    assert not removed & named
    # Docker's default otherwise: the everyday calls, and clone only without the
    # namespace flags while clone3 says ENOSYS, so that glibc falls back to clone.
    assert {"read", "openat", "mmap", "futex", "epoll_wait", "socket", "clone"} <= named
    clone3 = [r for r in rules if r["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    (clone,) = [r for r in rules if r["names"] == ["clone"] and "includes" not in r]
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]
    # No grant depends on a capability: adding one never widens the syscall set.
    assert all("caps" not in r.get("includes", {}) for r in rules)
    # Docker wants the profile inline, not a path.
    option = seccomp.security_opt()
    assert option.startswith("seccomp=") and json.loads(option.removeprefix("seccomp=")) == profile


def test_workspace_options_swap_limit_equals_memory_limit(tmp_path: Path) -> None:
    s = settings(tmp_path, SDE_HUB_MEM_LIMIT="3g")
    options = hardening.workspace_options("/d", "v", s)
    assert options["extra_host_config"]["memswap_limit"] == "3g" == options["mem_limit"]
    run = hardening.run_kwargs(options)
    assert run["memswap_limit"] == run["mem_limit"] == "3g"


def test_workspace_options_bad_cpu_limit_is_a_clear_error(tmp_path: Path) -> None:
    # Refused by load_settings, before any workspace's options are made.
    with pytest.raises(ConfigError, match=r"hub\.cpu_limit"):
        hardening.workspace_options("/d", "v", settings(tmp_path, SDE_HUB_CPU_LIMIT="lots"))


def test_workspace_network_bad_subnet_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workspaces\.subnet"):
        network.gateway_of(settings(tmp_path, SDE_WORKSPACES_SUBNET="10.213.0.300/24").workspaces)


def test_workspace_firewall_rules_allow_only_listed_ports_on_the_gateway() -> None:
    rules = firewall.Rules("sde-ws0", "10.213.0.1", (8081, 8082))
    body = rules.input_rules()
    accepted = [r for r in body if r[-1] == "ACCEPT" and "--dport" in r]
    assert [(r[r.index("-d") + 1], r[r.index("--dport") + 1]) for r in accepted] == [
        ("10.213.0.1", "8081"),
        ("10.213.0.1", "8082"),
    ]
    assert body[-1] == ["-j", "DROP"]
    assert firewall.input_chain("sde-ws0") == "SDE-WS-sde-ws0"


def test_workspace_firewall_refuses_a_long_bridge_name() -> None:
    with pytest.raises(firewall.FirewallError, match="longer than 15"):
        firewall.apply(firewall.Rules("a-very-long-bridge-name", "10.213.0.1", (8081,)))


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SDE_WORKSPACES_WARM_POOL": "-1"}, r"workspaces\.warm_pool: must be 0 or more"),
        ({"SDE_WORKSPACES_POOL_DIR": "run/sde"}, r"workspaces\.pool_dir: must be an absolute"),
    ],
)
def test_warm_pool_service_bad_setting_is_a_clear_error(
    tmp_path: Path, env: dict[str, str], problem: str
) -> None:
    from sde.hub.config import warm_pool_service

    with pytest.raises(ConfigError, match=problem):
        warm_pool_service(settings(tmp_path, **env))


def test_jupyter_config_dir_is_a_readable_copy_under_sde_home(tmp_path: Path) -> None:
    s = settings(tmp_path)
    old = os.umask(0o077)
    try:
        published = hardening.publish_jupyter_config(s)
    finally:
        os.umask(old)
    assert published == hardening.jupyter_config_dir(s) and published.is_relative_to(s.home)
    sources = sorted(
        p.relative_to(hardening.JUPYTER_CONFIG) for p in _files(hardening.JUPYTER_CONFIG)
    )
    assert sources and sorted(p.relative_to(published) for p in _files(published)) == sources
    for rel in sources:
        copy = published / rel
        assert copy.read_bytes() == (hardening.JUPYTER_CONFIG / rel).read_bytes()
        assert copy.stat().st_mode & 0o777 == 0o644
        assert copy.parent.stat().st_mode & 0o777 == 0o755
    # A changed copy is put back; an unchanged one is left alone.
    tampered = published / sources[0]
    tampered.write_text("c.ServerApp.allow_root = True\n")
    untouched = published / sources[-1]
    before = untouched.stat().st_mtime_ns
    hardening.publish_jupyter_config(s)
    assert tampered.read_bytes() == (hardening.JUPYTER_CONFIG / sources[0]).read_bytes()
    assert untouched.stat().st_mtime_ns == before


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
