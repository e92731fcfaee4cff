"""The managed service `keycloak-sync`: the hub keeps Keycloak in step while it runs.

When `keycloak.url` is set the hub starts this service with its other managed
services (sde.hub.config), so a sync runs at hub start and then every
`workspaces.access_check_seconds`, the cycle on which the hub already asks the
registry whether each session and workspace may go on. A Keycloak that is down
or refuses a change is logged and tried again on the next cycle (the hub's own
access checks keep holding meanwhile); a setting the operator must fix stops
the service with one error line, as the other managed services do.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from sde.core.config import Settings
from sde.core.services import run_service
from sde.keycloak.errors import KeycloakError

log = logging.getLogger("sde.keycloak.service")

NAME = "keycloak-sync"
ACTOR = "sde:keycloak-sync"


def service(settings: Settings, environment: dict[str, str]) -> dict[str, Any]:
    """The JupyterHub managed-service entry for this loop."""
    return {
        "name": NAME,
        "command": [sys.executable, "-m", "sde.keycloak.service"],
        "environment": environment,
    }


def run_once(settings: Settings) -> None:
    from sde.audit import audited_transaction
    from sde.core.db import get_engine, transaction
    from sde.core.schema import ensure_schema
    from sde.keycloak.sync import sync

    engine = get_engine(settings)
    ensure_schema(engine)
    report = sync(
        settings,
        read=lambda: transaction(engine),
        write=lambda: audited_transaction(engine, settings),
        actor=ACTOR,
    )
    for line in report.lines() if report.changes else report.lines()[-1:]:
        log.info("%s", line)


def serve(settings: Settings, stop: threading.Event | None = None) -> None:
    """Sync now, then every access check, until `stop` is set (or SIGTERM)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        try:
            run_once(settings)
        except KeycloakError as exc:
            log.warning(
                "keycloak sync: %s (next try in %s s)",
                exc,
                settings.workspaces.access_check_seconds,
            )
        stop.wait(settings.workspaces.access_check_seconds)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_service(serve)


if __name__ == "__main__":
    main()
