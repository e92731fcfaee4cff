"""The `sde` command as an operator uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer.main

from sde.cli.main import app
from tests.support.cli import run_sde


def all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd: click.Command, prefix: list[str]) -> None:
        paths.append(prefix)
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p) or "sde")
def test_cli_every_command_has_help(capsys, path):
    result = run_sde(capsys, *path, "--help")
    assert result.code == 0, result.err
    assert "Usage" in result.out
    command = typer.main.get_command(app)
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help or command.short_help, f"`sde {' '.join(path)}` has no help text"


def seed(capsys) -> None:
    for args in (
        [
            "people",
            "add",
            "alice",
            "--name",
            "Alice",
            "--email",
            "alice@example.org",
            "--accreditation-expiry",
            "2099-01-01",
            "--training-expiry",
            "2099-01-01",
        ],
        [
            "projects",
            "create",
            "p1",
            "--title",
            "One",
            "--start",
            "2020-01-01",
            "--end",
            "2099-01-01",
        ],
        [
            "projects",
            "approve",
            "p1",
            "--approval-ref",
            "REC-1",
            "--signed-off-by",
            "DC",
            "--signed-off-on",
            "2020-01-01",
        ],
        ["projects", "activate", "p1"],
        ["projects", "add-member", "p1", "alice"],
    ):
        result = run_sde(capsys, *args)
        assert result.code == 0, (args, result.err)


def test_cli_access_check_allowed_then_denied_after_suspension(sde_home, capsys):
    seed(capsys)
    result = run_sde(capsys, "access", "check", "alice", "p1")
    assert result.code == 0 and "allowed" in result.out
    assert run_sde(capsys, "people", "suspend", "alice", "--reason", "left team").code == 0
    result = run_sde(capsys, "access", "check", "alice", "p1", "--json")
    assert result.code == 1
    assert '"allowed": false' in result.out and "user is suspended" in result.out


def audit_lines(capsys) -> int:
    return len(run_sde(capsys, "audit", "log", "--json").out.splitlines())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "people",
                "add",
                "bob",
                "--name",
                "B",
                "--email",
                "b@example.org",
                "--accreditation-expiry",
                "2001-01-01",
            ],
            "accreditation expired on 2001-01-01",
        ),
        (
            ["people", "add", "alice", "--name", "A", "--email", "x@example.org"],
            "user 'alice' already exists",
        ),
        (
            [
                "projects",
                "create",
                "p2",
                "--title",
                "T",
                "--start",
                "2030-01-01",
                "--end",
                "2029-01-01",
            ],
            "end date 2029-01-01 is before start date 2030-01-01",
        ),
        (
            [
                "projects",
                "create",
                "p1",
                "--title",
                "T",
                "--start",
                "2030-01-01",
                "--end",
                "2031-01-01",
            ],
            "project 'p1' already exists",
        ),
        (["projects", "add-member", "p1", "nobody"], "unknown user 'nobody'"),
        (["projects", "add-member", "nope", "alice"], "unknown project 'nope'"),
        (
            [
                "projects",
                "create",
                "p3",
                "--title",
                "T",
                "--start",
                "31/01/2030",
                "--end",
                "2031-01-01",
            ],
            "invalid start date '31/01/2030'",
        ),
        (["access", "check", "alice", "p1", "--at", "yesterday"], "invalid --at"),
    ],
)
def test_cli_bad_input_one_line_error_exit_2_nothing_written(sde_home, capsys, args, message):
    seed(capsys)
    before = audit_lines(capsys)
    result = run_sde(capsys, *args)
    assert result.code == 2
    assert result.err.strip() == f"error: {message}" or (
        result.err.startswith("error: ") and message in result.err
    )
    assert len(result.err.strip().splitlines()) == 1
    assert audit_lines(capsys) == before


def test_cli_malformed_config_exit_2(tmp_path, monkeypatch, capsys):
    from sde.cli import context

    (tmp_path / "sde.toml").write_text("[database\nurl = 1\n")
    monkeypatch.setenv("SDE_HOME", str(tmp_path))
    context.reset()
    result = run_sde(capsys, "people", "list")
    context.reset()
    assert result.code == 2
    assert result.err.startswith(f"error: {tmp_path / 'sde.toml'}: not valid TOML")
    assert not (tmp_path / "sde.db").exists()


def test_cli_config_show_hides_the_database_password(tmp_path, monkeypatch, capsys):
    from sde.cli import context

    monkeypatch.setenv("SDE_HOME", str(tmp_path))
    monkeypatch.setenv("SDE_DATABASE_URL", "postgresql+psycopg://sde:s3cr%40t@db.example/sde")
    context.reset()
    result = run_sde(capsys, "config", "show")
    context.reset()
    assert result.code == 0
    shown = json.loads(result.out)["database"]["url"]
    assert shown == "postgresql+psycopg://sde:***@db.example/sde"
    assert "s3cr" not in result.out


def test_cli_audit_verify_exit_code_names_first_bad_seq(sde_home, capsys, db_url):
    seed(capsys)
    result = run_sde(capsys, "audit", "verify")
    assert result.code == 0 and "intact" in result.out
    from sqlalchemy import text

    from sde.audit.schema import drop_append_only_ddl
    from sde.core.db import make_engine

    eng = make_engine(db_url)
    with eng.begin() as conn:
        for stmt in drop_append_only_ddl(eng.dialect.name):
            conn.exec_driver_sql(stmt)
        conn.execute(
            text(
                "UPDATE audit_events SET body = replace(body, 'person:alice', 'person:mallory') "
                "WHERE seq = 1"
            )
        )
    eng.dispose()
    result = run_sde(capsys, "audit", "verify")
    assert result.code == 1
    assert "first bad seq 1" in result.out


def test_cli_audit_log_filters(sde_home, capsys):
    seed(capsys)
    out = run_sde(capsys, "audit", "log", "--project", "p1", "--json").out.splitlines()
    assert len(out) == 4 and all('"project": "p1"' in line for line in out)
    out = run_sde(capsys, "audit", "log", "--actor", "nobody", "--json").out
    assert out == ""
    out = run_sde(capsys, "audit", "log", "--since", "2000-01-01", "--json").out.splitlines()
    assert len(out) == 5
    assert run_sde(capsys, "audit", "log", "--since", "2999-01-01", "--json").out == ""


def test_cli_console_script_runs_from_repo_root(sde_home):
    """The installed `sde` works from the repo root, where a `platform/` folder exists."""
    exe = Path(sys.executable).with_name("sde")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [str(exe), "people", "list", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
