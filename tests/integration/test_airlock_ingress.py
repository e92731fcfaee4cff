"""Ingress: uploads scanned by a real ClamAV, reviewed, released into /ingress.

The scan runs against a private clamd (the `clamd` fixture, signatures written
by the test setup: the EICAR test string) on SQLite and PostgreSQL (`engine`);
a missing or dead clamd must fail a file, never pass it. Released files land in
the project's ingress folder; through a real hub and Docker they appear
read-only at /ingress in a running workspace, cold and warm, and files released
later appear there without a restart.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from sde.airlock import ingress, service
from sde.airlock.enums import Direction, RequestStatus, Vote
from sde.airlock.models import AirlockFile, AirlockRequest
from sde.airlock.permissions import SYSTEM_ACTOR
from sde.core.config import Settings
from sde.core.db import transaction
from sde.core.errors import InvalidInput
from sde.workspaces import hardening
from tests.support.airlock import (
    AUTHOR,
    CHECKERS,
    GROUP,
    NOTES,
    PROJECT,
    TABLE,
    airlock_settings,
    ensure_people,
    ensure_person,
    make_request_at,
)
from tests.support.clamav import EICAR, SIGNATURE
from tests.support.registry import audit_count

CODE = b"def rate(n, d):\n    return n / d\n"
CODES = b"code,description\nE11,Type 2 diabetes\n"


@pytest.fixture
def settings(tmp_path: Path, clamd: str) -> Settings:
    return airlock_settings(tmp_path / "home", clamd_socket=clamd)


def _in(engine: Engine, fn, *args, **kwargs):
    with transaction(engine) as s:
        return fn(s, *args, **kwargs)


def _upload(engine: Engine, settings: Settings, files: dict[str, bytes], rid: str | None = None):
    def go(s):
        ensure_people(s)
        if rid is None:
            made = service.create_request(
                s, AUTHOR, settings, project=PROJECT, direction=Direction.INGRESS
            )
            request_id = made.id
        else:
            request_id = rid
        for name, data in files.items():
            ingress.add_upload(s, AUTHOR, settings, request_id, name, io.BytesIO(data), group=GROUP)
        service.set_group_text(
            s, AUTHOR, settings, request_id, GROUP, context="Code lists.", controls="Public lists."
        )
        return request_id

    return _in(engine, go)


def _finding(engine: Engine, rid: str, name: str) -> dict:
    with transaction(engine) as s:
        request = service.get_request(s, rid)
        (f,) = [f for f in service.active_files(s, request) if f.name == name]
        findings = service.report_of(s, request, f)["findings"]
    (scan,) = [x for x in findings if x["name"] == "malware_scan"]
    return scan


def test_ingress_eicar_upload_blocks_the_request(engine, settings):
    rid = _upload(engine, settings, {"eicar.txt": EICAR})
    scan = _finding(engine, rid, "eicar.txt")
    assert scan["status"] == "fail" and SIGNATURE in scan["reason"], scan
    assert scan["exceptable"] is False
    before = audit_count(engine)
    with pytest.raises(InvalidInput, match="no exception can outweigh"):
        _in(engine, service.ask_exception, AUTHOR, settings, rid, "eicar.txt", "malware_scan", "x")
    with pytest.raises(InvalidInput, match="cannot be submitted"):
        _in(engine, service.submit, AUTHOR, settings, rid)
    assert audit_count(engine) == before
    with transaction(engine) as s:
        assert s.get(AirlockRequest, rid).status == RequestStatus.PENDING


def test_ingress_clean_upload_passes_the_scan_and_submits(engine, settings):
    rid = _upload(engine, settings, {"codes.csv": CODES, "notes.txt": b"E11 only.\n"})
    assert _finding(engine, rid, "codes.csv")["status"] == "pass"
    assert _finding(engine, rid, "notes.txt")["status"] == "pass"
    _in(engine, service.submit, AUTHOR, settings, rid)
    with transaction(engine) as s:
        assert s.get(AirlockRequest, rid).status == RequestStatus.SUBMITTED


def _dead_socket(tmp_path: Path) -> str:
    """A socket file nobody listens on any more (a clamd that died)."""
    path = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    return str(path)


@pytest.mark.parametrize("daemon", ["missing", "dead"])
def test_ingress_scan_without_a_working_clamd_fails_the_file(engine, tmp_path, daemon):
    where = str(tmp_path / "no-clamd.sock") if daemon == "missing" else _dead_socket(tmp_path)
    settings = airlock_settings(tmp_path / "home", clamd_socket=where)
    rid = _upload(engine, settings, {"codes.csv": CODES})
    scan = _finding(engine, rid, "codes.csv")
    assert scan["status"] == "fail" and scan["reason"].startswith("not scanned"), scan
    with pytest.raises(InvalidInput, match="cannot be submitted"):
        _in(engine, service.submit, AUTHOR, settings, rid)


def test_ingress_egress_files_are_not_scanned(engine, settings):
    rid = make_request_at(engine, settings, RequestStatus.PENDING)
    with transaction(engine) as s:
        request = service.get_request(s, rid)
        for f in service.active_files(s, request):
            names = [x["name"] for x in service.report_of(s, request, f)["findings"]]
            assert "malware_scan" not in names


def test_ingress_refused_uploads_leave_nothing_staged_or_stored(engine, tmp_path, clamd):
    settings = airlock_settings(tmp_path / "home", clamd_socket=clamd, max_file_size="40")
    rid = _upload(engine, settings, {"codes.csv": CODES})
    before = audit_count(engine)
    for name, data in (
        ("big.csv", b"x," * 100),
        ("codes.zip", b"PK\x03\x04rest"),
        (".hidden", b"x"),
    ):
        with pytest.raises(InvalidInput):
            _in(
                engine,
                ingress.add_upload,
                AUTHOR,
                settings,
                rid,
                name,
                io.BytesIO(data),
                group=GROUP,
            )
    assert audit_count(engine) == before
    incoming = ingress.incoming_dir(settings, rid)
    assert not incoming.exists() or list(incoming.rglob("*")) == []
    with transaction(engine) as s:
        n = s.scalar(
            select(func.count()).select_from(AirlockFile).where(AirlockFile.request_id == rid)
        )
    assert n == 1


def test_ingress_takes_code_files_that_egress_refuses(engine, settings, tmp_path):
    rid = _upload(engine, settings, {"rates.py": CODE, "cohort.sql": b"SELECT 1;\n"})
    assert _finding(engine, rid, "rates.py")["status"] == "pass"
    _in(engine, service.submit, AUTHOR, settings, rid)
    out = make_request_at(engine, settings, RequestStatus.PENDING)
    work = settings.home / "work" / AUTHOR
    (work / "rates.py").write_bytes(CODE)
    with pytest.raises(InvalidInput, match=r"type \.py"):
        _in(
            engine,
            service.add_file,
            AUTHOR,
            settings,
            out,
            root=work,
            relpath="rates.py",
            group=GROUP,
        )
    # Code is text, and checked as text.
    binary = _upload(engine, settings, {"bin.py": b"\x00\x01binary"})
    with transaction(engine) as s:
        request = service.get_request(s, binary)
        (f,) = service.active_files(s, request)
        findings = service.report_of(s, request, f)["findings"]
    (kind,) = [x for x in findings if x["name"] == "file_type"]
    assert kind["status"] == "fail" and "named .py but" in kind["reason"], kind


def test_ingress_upload_into_an_egress_request_is_refused(engine, settings):
    rid = make_request_at(engine, settings, RequestStatus.PENDING)
    with pytest.raises(InvalidInput, match="not an ingress request"):
        _in(
            engine,
            ingress.add_upload,
            AUTHOR,
            settings,
            rid,
            "a.csv",
            io.BytesIO(CODES),
            group=GROUP,
        )


def test_ingress_release_publishes_output_files_read_only(engine, settings):
    rid = make_request_at(engine, settings, RequestStatus.APPROVED, direction=Direction.INGRESS)
    folder = hardening.ingress_dir(settings, PROJECT)
    assert not (folder / TABLE).exists()
    _in(engine, service.release, SYSTEM_ACTOR, settings, rid)
    published = folder / TABLE
    assert published.read_bytes() == (settings.home / "work" / AUTHOR / TABLE).read_bytes()
    assert stat.S_IMODE(published.stat().st_mode) == 0o444
    assert not (folder / NOTES).exists()  # supporting files are never released
    assert [p.name for p in folder.iterdir()] == ["results"]  # no staging leftovers inside


def test_ingress_egress_release_publishes_nothing(engine, settings):
    rid = make_request_at(engine, settings, RequestStatus.APPROVED)
    _in(engine, service.release, SYSTEM_ACTOR, settings, rid)
    folder = hardening.ingress_dir(settings, PROJECT)
    assert not folder.exists() or list(folder.iterdir()) == []


def test_ingress_upload_command_creates_a_request_with_scanned_files(
    sde_home, tmp_path, clamd, monkeypatch
):
    monkeypatch.setenv("SDE_AIRLOCK_CLAMD_SOCKET", clamd)
    from sde.core.config import load_settings
    from sde.core.db import make_engine

    settings = load_settings()
    engine = make_engine(settings.database_url)
    with transaction(engine) as s:
        ensure_people(s)
    (tmp_path / "codes.csv").write_bytes(CODES)
    (tmp_path / "eicar.txt").write_bytes(EICAR)
    sde = str(Path(sys.executable).with_name("sde"))
    done = subprocess.run(
        [
            sde,
            "airlock",
            "ingress",
            "upload",
            PROJECT,
            str(tmp_path / "codes.csv"),
            str(tmp_path / "eicar.txt"),
            "--user",
            AUTHOR,
            "--group",
            "lists",
            "--context",
            "Code lists.",
            "--controls",
            "Public.",
        ],
        env=os.environ,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rid = done.stdout.split()[0]
    assert f"malware_scan: ClamAV found {SIGNATURE}" in done.stdout
    with transaction(engine) as s:
        request = service.get_request(s, rid)
        assert request.direction == Direction.INGRESS and request.author == AUTHOR
        assert sorted(f.name for f in service.active_files(s, request)) == [
            "codes.csv",
            "eicar.txt",
        ]
    engine.dispose()


# ---------------------------------------------------------------- into running workspaces

WS_PROJECT = "ingress-study"
MEMBER = "ivy"


def approved_ingress(engine: Engine, settings: Settings, files: dict[str, bytes]) -> str:
    """An ingress request of MEMBER with `files`, taken through upload, review and approval."""
    checker = CHECKERS[0]

    def go(s):
        ensure_person(s, checker, "output_checker")
        made = service.create_request(
            s, MEMBER, settings, project=WS_PROJECT, direction=Direction.INGRESS
        )
        for name, data in files.items():
            ingress.add_upload(s, MEMBER, settings, made.id, name, io.BytesIO(data), group=GROUP)
        service.set_group_text(
            s, MEMBER, settings, made.id, GROUP, context="Code.", controls="Ours."
        )
        service.submit(s, MEMBER, settings, made.id)
        return made.id

    rid = _in(engine, go)
    for name in files:
        _in(engine, service.vote, checker, settings, rid, name, Vote.APPROVE)
    _in(engine, service.submit_review, checker, settings, rid)
    _in(engine, service.approve, checker, settings, rid)
    return rid


@pytest.fixture(scope="module", params=[0, 1], ids=["cold", "warm"])
def ws_site(request, workspace_image, tmp_path_factory, clamd) -> Iterator:
    from tests.support.hub import make_site, running
    from tests.support.hub_data import provision_project
    from tests.support.registry import make_active_project, make_person

    s = make_site(
        tmp_path_factory.mktemp("ingress") / "home",
        docker=True,
        SDE_HUB_IMAGE=workspace_image,
        SDE_WORKSPACES_WARM_POOL=str(request.param),
        SDE_AIRLOCK_CLAMD_SOCKET=clamd,
    )
    make_person(s.engine, MEMBER)
    make_active_project(s.engine, WS_PROJECT, MEMBER)
    provision_project(s, WS_PROJECT)
    s.enrol(MEMBER)
    with running(s):
        yield s


@pytest.mark.docker
@pytest.mark.slow
def test_ingress_released_files_appear_read_only_in_a_running_workspace(ws_site):
    from sde.hub.client import HubClient
    from tests.support.hub import PASSWORD

    site = ws_site
    first = approved_ingress(site.engine, site.settings, {"rates.py": CODE})
    _in(site.engine, service.release, SYSTEM_ACTOR, site.settings, first)
    with HubClient(site.url) as c:
        assert c.login(MEMBER, PASSWORD, site.code(MEMBER)).ok
        c.api_token()
        server = c.start_workspace(WS_PROJECT)
        try:
            warm = bool(site.settings.workspaces.warm_pool)
            from sde.audit import list_events

            spawn = list(list_events(site.engine, action="workspace.spawn"))[-1]
            assert spawn["details"]["warm"] is warm
            out = c.execute(
                server,
                "import os, pathlib\n"
                "p = pathlib.Path('/ingress/rates.py')\n"
                "print(p.read_text() == " + repr(CODE.decode()) + ")\n"
                "try:\n"
                "    p.write_text('changed')\n"
                "    print('written')\n"
                "except OSError as e:\n"
                "    print(e.strerror)\n"
                "try:\n"
                "    pathlib.Path('/ingress/new.py').write_text('x')\n"
                "    print('created')\n"
                "except OSError as e:\n"
                "    print(e.strerror)",
            )
            assert out.splitlines() == ["True", "Read-only file system", "Read-only file system"], (
                out
            )
            # Released while the workspace runs: there at once, no restart.
            later = approved_ingress(site.engine, site.settings, {"codes.csv": CODES})
            _in(site.engine, service.release, SYSTEM_ACTOR, site.settings, later)
            out = c.execute(
                server,
                "import pathlib\nt = pathlib.Path('/ingress/codes.csv').read_text()\n"
                "print(t.splitlines()[1])",
            )
            assert out == "E11,Type 2 diabetes", out
        finally:
            c.stop_workspace(WS_PROJECT)
