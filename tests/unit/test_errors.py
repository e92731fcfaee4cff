"""Every user error carries the exit code and HTTP status its front ends answer with."""

from __future__ import annotations

from sde.core import errors
from sde.core.errors import AccessDenied, SdeError

# class -> (CLI exit code, HTTP status)
EXPECTED = {
    "SdeError": (2, 400),
    "InvalidInput": (2, 400),
    "NotFound": (2, 404),
    "Conflict": (2, 409),
    "ConfigError": (2, 500),
    "AccessDenied": (2, 403),
    "SpawnRefused": (2, 403),
}


def _declared() -> dict[str, type[SdeError]]:
    # Importing the spawner declares SpawnRefused, the hub's member of the hierarchy.
    import sde.hub.spawner  # noqa: F401

    found: dict[str, type[SdeError]] = {}
    stack: list[type[SdeError]] = [SdeError]
    while stack:
        cls = stack.pop()
        if cls.__module__ in (errors.__name__, "sde.hub.spawner"):
            found[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    return found


def test_errors_every_class_has_its_exit_code_and_http_status():
    declared = _declared()
    assert {name: (c.exit_code, c.http_status) for name, c in declared.items()} == EXPECTED


def test_errors_spawn_refusal_reaches_the_hub_as_403_with_the_persons_message():
    from sde.hub.errors import HubError
    from sde.hub.spawner import SpawnRefused

    refused = SpawnRefused("p1", ["training expired on 2026-01-01", "quota 100%"])
    assert isinstance(refused, AccessDenied)
    error = HubError(refused)
    message = "Workspace for project p1 refused: training expired on 2026-01-01; quota 100%."
    assert error.status_code == 403
    assert error.jupyterhub_message == message  # what the person reads, unescaped
    # The hub's log line: %-escaped for tornado versions that format it without arguments.
    assert str(error).startswith("HTTP 403: Forbidden (Workspace for project p1 refused:")
