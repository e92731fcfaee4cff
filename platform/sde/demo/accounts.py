"""Demo sign-in accounts: a password and an enrolled authenticator per demo person.

The demo keeps the plain passwords and TOTP secrets in
`$SDE_HOME/hub/demo-accounts.json` (0600) so that `make demo` can print them
again and `sde hub demo-code USER` can show the current code. Real accounts
never have such a file: their passwords exist only as argon2 hashes.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.orm import Session

from sde.core.config import Settings, load_settings
from sde.core.errors import NotFound
from sde.core.files import write_atomic
from sde.demo import DEMO_ACTOR
from sde.demo.registry import DEMO_PEOPLE
from sde.hub import credentials as creds


def accounts_file(settings: Settings) -> Path:
    return settings.home / "hub" / "demo-accounts.json"


def _load(path: Path) -> dict[str, dict[str, str]]:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, accounts: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, json.dumps(accounts, indent=1), mode=0o600)


def prepare_demo_accounts(
    session: Session, usernames: list[str] | None = None, settings: Settings | None = None
) -> list[tuple[str, str, str]]:
    """(username, password, totp_secret) of each demo person, creating what is missing.

    Idempotent: accounts already prepared keep their password and secret.
    """
    settings = settings or load_settings()
    names = usernames or [p[0] for p in DEMO_PEOPLE]
    path = accounts_file(settings)
    known = _load(path)
    cipher = creds.totp_cipher(settings.totp_key_path)
    out = []
    for username in names:
        entry = known.get(username)
        state = creds.login_state(session, username)
        if entry is None or not state.enrolled:
            entry = {"password": creds.generate_password(), "totp": creds.generate_totp_secret()}
            if state.has_password:
                creds.reset_credentials(
                    session, DEMO_ACTOR, username, entry["password"], "demo account re-prepared"
                )
            else:
                creds.set_password(session, DEMO_ACTOR, username, entry["password"])
            creds.enrol_totp(session, DEMO_ACTOR, username, entry["totp"], cipher)
            known[username] = entry
        out.append((username, entry["password"], entry["totp"]))
    # Written before the caller commits; a rolled-back run leaves entries that the
    # next run finds not enrolled and replaces.
    _save(path, known)
    return out


def current_code(settings: Settings, username: str) -> str:
    entry = _load(accounts_file(settings)).get(username)
    if entry is None:
        raise NotFound(f"{username!r} is not a demo account prepared by `sde demo`")
    return str(creds.totp(entry["totp"]).now())


DEMO_ROLES = {
    "alice": "researcher (principal investigator of the demo project)",
    "bob": "researcher",
    "carol": "output checker",
    "dan": "output checker",
    "erin": "auditor",
    "oscar": "operator",
}


def demo_hub(settings: Settings, start: bool = True) -> list[tuple[str, str, str]]:
    """Prepare the demo accounts, print how to sign in, then (optionally) run the hub."""
    from sde.hub.launch import exec_hub, hub_url
    from sde.hub.store import Store

    store = Store(settings)
    with store.write() as session:
        accounts = prepare_demo_accounts(session, list(DEMO_ROLES), settings)
    print(f"\nhub: {hub_url(settings)}  (sign in with username, password and code)")
    for username, password, secret in accounts:
        print(f"  {username:<6} {DEMO_ROLES[username]}")
        print(f"         password {password}  TOTP secret {secret}")
    print("  current code of a demo account: sde hub demo-code USERNAME")
    if start:
        exec_hub(settings)
    return accounts
