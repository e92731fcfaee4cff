"""Sign-in at a real JupyterHub: password + TOTP, enrolment, lockout, operator reset.

One hub process serves the module; each test uses its own registry people.
No Docker needed: the hub runs with hub.docker=false (sign-in only).

Sources: a client connects to the proxy from a loopback address of its own
(127.0.0.2, ...), which the proxy appends to X-Forwarded-For, as it does for any
client. The module's workspace subnet is 127.0.0.8/29, so that a client
connecting from 127.0.0.10 comes, as far as the hub can tell, from a workspace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from sde.audit import list_events
from sde.core.db import transaction
from sde.hub.client import HubClient
from sde.hub.credentials import credential_of
from sde.registry import service
from tests.support.cli import run_sde
from tests.support.hub import PASSWORD, HubSite, make_site, running
from tests.support.registry import ACTOR, make_person

PEOPLE = (
    "enid",
    "walt",
    "lock",
    "rosa",
    "ada",
    "nemo",
    "ivy",
    "opal",
    "sam",
    "dora",
    "otto",
    "gina",
    "kim",
    "wes",
)
WORKSPACE_SUBNET = "127.0.0.8/29"
WORKSPACE_ADDRESS = "127.0.0.10"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    # The account is asked again every second (default: workspaces.access_check_seconds).
    s = make_site(
        tmp_path_factory.mktemp("hub-auth") / "home",
        SDE_WORKSPACES_ACCESS_CHECK_SECONDS="1",
        SDE_WORKSPACES_SUBNET=WORKSPACE_SUBNET,
    )
    for name in PEOPLE:
        make_person(s.engine, name)
    with transaction(s.engine) as ses:
        service.grant_role(ses, ACTOR, "opal", "operator")
    with running(s):
        yield s


@pytest.fixture
def client(site: HubSite) -> Iterator[HubClient]:
    with HubClient(site.url) as c:
        yield c


def events(site: HubSite, action: str, target: str) -> list[dict]:
    return [e for e in list_events(site.engine, action=action) if e["target"] == target]


def test_hub_login_first_sign_in_enrols_totp_then_code_is_required(site, client):
    site.set_password("enid")
    first = client.login("enid", PASSWORD)
    assert not first.ok and first.ticket and first.enrolment_secret
    secret = first.enrolment_secret

    wrong = client.confirm_enrolment("enid", first.ticket, "000000")
    assert not wrong.ok
    assert "did not match" in wrong.error
    enrolment_code = pyotp.TOTP(secret).now()
    ok = client.confirm_enrolment("enid", wrong.ticket or "", enrolment_code)
    assert ok.ok, ok

    with HubClient(site.url) as again:
        assert not again.login("enid", PASSWORD).ok, "a code is required once enrolled"
        replay = again.login("enid", PASSWORD, enrolment_code)
        assert not replay.ok, "a code is accepted once"
        # The next step's code is within the accepted drift.
        assert again.login("enid", PASSWORD, pyotp.TOTP(secret).at(time.time() + 30)).ok
        assert again.api("GET", "/user").json()["name"] == "enid"

    assert events(site, "hub.totp.enrol", "person:enid")
    methods = [e["details"]["method"] for e in events(site, "hub.login.success", "person:enid")]
    assert methods == ["password+totp-enrolment", "password+totp"]
    reasons = [e["details"]["reason"] for e in events(site, "hub.login.failure", "person:enid")]
    assert reasons == [
        "wrong code at enrolment",
        "no authenticator code",
        "wrong authenticator code",
    ]
    with transaction(site.engine) as s:
        cred = credential_of(s, "enid")
        assert cred is not None and cred.totp_secret
        assert secret not in cred.totp_secret, "TOTP secret must be encrypted at rest"
        assert cred.password_hash.startswith("$argon2id$")


def test_hub_login_wrong_totp_code_is_refused(site, client):
    site.enrol("walt")
    good = pyotp.TOTP(site.secrets["walt"]).now()
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    result = client.login("walt", PASSWORD, wrong)
    assert not result.ok and result.status == 403
    assert result.error == "Invalid username or password"
    reasons = [e["details"]["reason"] for e in events(site, "hub.login.failure", "person:walt")]
    assert reasons == ["wrong authenticator code"]
    assert client.login("walt", PASSWORD, site.code("walt")).ok


def test_hub_login_wrong_password_is_refused_and_audited(site, client):
    site.enrol("ada")
    result = client.login("ada", "not the password", "123456")
    assert not result.ok and result.status == 403
    assert [e["details"]["reason"] for e in events(site, "hub.login.failure", "person:ada")] == [
        "wrong password"
    ]


def test_hub_login_unknown_user_is_refused_and_audited(site, client):
    result = client.login("nobody-here", PASSWORD, "123456")
    assert not result.ok and result.error == "Invalid username or password"
    assert events(site, "hub.login.failure", "person:nobody-here")


def test_hub_login_locks_after_repeated_failures_from_one_source_only(site):
    site.enrol("lock")
    with HubClient(site.url, source="127.0.0.2") as stranger:
        for _ in range(2):
            r = stranger.login("lock", "bad password!", "123456")
            assert r.error == "Invalid username or password"
        third = stranger.login("lock", "bad password!", "123456")
        assert third.status == 403 and "locked" in third.error
        # While locked, even the right password and code are refused from there.
        right = stranger.login("lock", PASSWORD, pyotp.TOTP(site.secrets["lock"]).now())
        assert not right.ok and "locked" in right.error
    # The owner, from another source, is slowed (the account has failures) but not
    # locked out.
    with HubClient(site.url, source="127.0.0.1") as owner:
        began = time.monotonic()
        assert owner.login("lock", PASSWORD, site.code("lock")).ok
        assert time.monotonic() - began >= 1
    lockouts = events(site, "hub.login.lockout", "person:lock")
    assert len(lockouts) == 1 and lockouts[0]["details"]["failed_attempts"] == 3
    assert lockouts[0]["details"]["source"] == "127.0.0.2"
    failures = events(site, "hub.login.failure", "person:lock")
    assert [e["details"]["reason"] for e in failures][-1] == "account locked"
    assert {e["details"]["source"] for e in failures} == {"127.0.0.2"}
    assert events(site, "hub.login.success", "person:lock")[-1]["details"]["source"] == "127.0.0.1"


def test_hub_login_source_is_the_address_the_proxy_saw_not_a_header(site):
    # Headers a client sets itself (tornado's remote_ip would believe X-Real-Ip) do
    # not make it another source: it stays locked, and its failures stay its own.
    site.enrol("kim")
    with HubClient(site.url, source="127.0.0.3") as stranger:
        for i in range(4):
            stranger.http.headers["X-Forwarded-For"] = f"127.0.1.{i}"
            stranger.http.headers["X-Real-Ip"] = f"127.0.2.{i}"
            last = stranger.login("kim", "bad password!", "123456")
        assert last.status == 403 and "locked" in last.error
    with HubClient(site.url, source="127.0.0.4") as owner:
        assert owner.login("kim", PASSWORD, site.code("kim")).ok
    failures = events(site, "hub.login.failure", "person:kim")
    assert len(failures) == 4 and {e["details"]["source"] for e in failures} == {"127.0.0.3"}


def test_hub_login_from_a_workspace_address_is_refused_and_never_counted(site):
    site.enrol("wes")
    code = pyotp.TOTP(site.secrets["wes"]).now()
    with HubClient(site.url, source=WORKSPACE_ADDRESS) as inside:
        right = inside.login("wes", PASSWORD, code)
        assert not right.ok and right.status == 403
        assert "not possible from inside a workspace" in right.error
        for _ in range(4):
            wrong = inside.login("wes", "bad password!", "123456")
            assert wrong.status == 403 and "locked" not in wrong.error
    # Straight to the hub's own port, as a workspace reaches the hub API, with the
    # proxy's header forged: the hub's peer is the workspace, whatever the header says.
    direct = f"http://127.0.0.1:{site.settings.hub.api_port}"
    with HubClient(direct, source=WORKSPACE_ADDRESS) as inside:
        inside.http.headers["X-Forwarded-For"] = "127.0.0.2"
        assert not inside.login("wes", PASSWORD, code).ok
    # Nothing was counted: the owner signs in at once, neither locked nor slowed.
    with HubClient(site.url, source="127.0.0.2") as owner:
        began = time.monotonic()
        assert owner.login("wes", PASSWORD, site.code("wes")).ok
        assert time.monotonic() - began < 1
    assert not events(site, "hub.login.failure", "person:wes")
    refused = events(site, "hub.login.refused", "person:wes")
    assert len(refused) >= 5 and {e["details"]["source"] for e in refused} == {WORKSPACE_ADDRESS}


def test_hub_credentials_reset_by_operator_is_audited_and_needs_re_enrolment(
    site, client, capsys, monkeypatch
):
    from sde.cli import context

    site.enrol("rosa")
    for _ in range(3):
        client.login("rosa", "bad password!", "000000")
    assert "locked" in client.login("rosa", PASSWORD, site.code("rosa")).error

    for key, value in site.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SDE_ACTOR", "cli:oscar")
    context.reset()
    refused = run_sde(capsys, "hub", "credentials", "reset", "rosa", "--reason", "")
    assert refused.code == 2 and refused.err.startswith("error: a reset needs a reason")
    out = run_sde(capsys, "hub", "credentials", "reset", "rosa", "--reason", "lost phone")
    context.reset()
    assert out.code == 0, out.err
    new_password = out.out.split("new password for rosa:")[1].split()[0]

    reset = events(site, "hub.credentials.reset", "person:rosa")
    assert len(reset) == 1
    assert reset[0]["actor"] == "cli:oscar"
    assert reset[0]["details"]["reason"] == "lost phone"

    assert not client.login("rosa", PASSWORD, site.code("rosa")).ok, "old password is gone"
    again = client.login("rosa", new_password)
    assert again.enrolment_secret and again.enrolment_secret != site.secrets["rosa"]
    assert client.confirm_enrolment(
        "rosa", again.ticket or "", pyotp.TOTP(again.enrolment_secret).now()
    ).ok


def test_hub_credentials_short_password_is_refused_and_nothing_written(site, capsys, monkeypatch):
    import io

    from sde.cli import context

    for key, value in site.env.items():
        monkeypatch.setenv(key, value)
    context.reset()
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    out = run_sde(capsys, "hub", "credentials", "set-password", "nemo", "--password-stdin")
    context.reset()
    assert out.code == 2 and "at least 12 characters" in out.err
    with transaction(site.engine) as s:
        assert credential_of(s, "nemo") is None
    assert not events(site, "hub.password.set", "person:nemo")


def test_hub_signed_in_user_has_no_admin_rights(site, client):
    site.enrol("ivy")
    assert client.login("ivy", PASSWORD, site.code("ivy")).ok
    assert client.api("GET", "/users").status_code == 403
    assert client.api("POST", "/users/opal/servers/x").status_code in (403, 404)
    me = client.api("GET", "/user").json()
    assert me["admin"] is False and me["roles"] == ["user"]


def test_hub_state_files_are_private(site):
    hub_dir = Path(site.settings.home) / "hub"
    for name in ("jupyterhub_cookie_secret", "proxy-token"):
        assert (hub_dir / name).stat().st_mode & 0o077 == 0, name
    key = site.settings.totp_key_path
    assert key.stat().st_mode & 0o077 == 0


def test_hub_operator_role_can_list_and_stop_but_not_enter_workspaces(site, client):
    site.enrol("opal")
    assert client.login("opal", PASSWORD, site.code("opal")).ok
    me = client.api("GET", "/user").json()
    assert me["admin"] is False
    assert "sde-operator" in me["roles"]
    assert not [s for s in me["scopes"] if s.startswith("admin")]
    assert client.api("GET", "/users").status_code == 200
    # Operators may list and stop workspaces but hold no access to enter them.
    assert "delete:servers" in me["scopes"]
    assert not [s for s in me["scopes"] if s.startswith("access:servers") and "!" not in s]


def test_hub_start_command_serves_the_login_page(tmp_path):
    import os
    import subprocess
    import sys

    import httpx

    from sde.hub import localhost

    own = make_site(tmp_path / "home")
    own.engine.dispose()
    env = {**os.environ, **own.env}
    sde = str(Path(sys.executable).with_name("sde"))
    proc = subprocess.Popen(
        [sde, "hub", "start"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        first = proc.stdout.readline().decode() if proc.stdout else ""
        url = f"http://sde.localhost:{env['SDE_HUB_PORT']}/"
        assert first.strip() == f"sde hub: {url}"
        deadline = time.monotonic() + 60
        page = ""
        while time.monotonic() < deadline and not page:
            try:
                r = localhost.request("GET", url + "hub/login", timeout=2)
                page = r.text if r.status_code == 200 else ""
            except httpx.HTTPError:
                time.sleep(0.2)
        assert 'name="otp"' in page and 'name="password"' in page
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _home(c: HubClient) -> str:
    """Where /hub/home sends this browser: "home" while signed in, else the login page."""
    r = c.http.get("/hub/home")
    if r.status_code == 200:
        return "home"
    assert r.status_code == 302, r.status_code
    return "login" if "/hub/login" in r.headers["location"] else r.headers["location"]


@pytest.mark.parametrize("change", ["reset", "suspended"])
def test_hub_sessions_end_when_the_account_changes(site, change):
    name = {"reset": "sam", "suspended": "dora"}[change]
    site.enrol(name)
    with HubClient(site.url) as c, HubClient(site.url) as other:
        assert c.login(name, PASSWORD, site.code(name)).ok
        assert other.login(name, PASSWORD, site.code(name)).ok  # a second browser
        token = c.api_token()
        assert _home(c) == _home(other) == "home"
        with transaction(site.engine) as ses:
            if change == "reset":
                from sde.hub.credentials import reset_credentials

                reset_credentials(ses, ACTOR, name, "an0ther long passw0rd", "lost phone")
            else:
                service.set_person_status(ses, ACTOR, name, "suspended", "left the team")
        time.sleep(1.2)
        assert _home(c) == "login"
        api = c.http.get("/hub/api/user", headers={"Authorization": f"token {token}"})
        assert api.status_code == 403
        if change == "suspended":
            # Back again: the old sessions stay ended; a new sign-in is needed.
            with transaction(site.engine) as ses:
                service.set_person_status(ses, ACTOR, name, "active", "back")
        assert _home(other) == "login"
    ended = events(site, "hub.session.ended", f"person:{name}")
    reason = {"reset": "reset by an operator", "suspended": "not active"}[change]
    assert ended and reason in ended[0]["details"]["reason"]


def test_hub_operator_role_follows_the_registry_while_the_hub_runs(site):
    site.enrol("otto")
    with HubClient(site.url) as c:
        assert c.login("otto", PASSWORD, site.code("otto")).ok
        c.api_token()
        assert c.api("GET", "/users").status_code == 403
        with transaction(site.engine) as ses:
            service.grant_role(ses, ACTOR, "otto", "operator")
        time.sleep(1.2)
        assert c.api("GET", "/users").status_code == 200
        with transaction(site.engine) as ses:
            service.revoke_role(ses, ACTOR, "otto", "operator")
        time.sleep(1.2)
        assert c.api("GET", "/users").status_code == 403


def test_hub_dormant_session_ends_when_the_person_re_enrols_after_a_reset(site):
    # A session nobody uses between the reset and the new sign-in (a stolen cookie,
    # say) must not come back to life with the new credentials.
    from sde.hub.credentials import reset_credentials

    site.enrol("gina")
    with HubClient(site.url) as dormant, HubClient(site.url) as fresh:
        assert dormant.login("gina", PASSWORD, site.code("gina")).ok
        assert _home(dormant) == "home"
        with transaction(site.engine) as ses:
            reset_credentials(ses, ACTOR, "gina", "an0ther long passw0rd", "stolen laptop")
        again = fresh.login("gina", "an0ther long passw0rd")
        assert again.enrolment_secret
        code = pyotp.TOTP(again.enrolment_secret).now()
        assert fresh.confirm_enrolment("gina", again.ticket or "", code).ok
        assert _home(fresh) == "home"
        assert _home(dormant) == "login"
        assert _home(fresh) == "home", "the new session goes on"
