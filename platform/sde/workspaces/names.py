"""Names on the Docker engine and in the hub for one person x project workspace.

Joining a username and a project slug with a separator is not injective when
either may contain it: person `alice-diabetes` in project `outcomes` and person
`alice` in project `diabetes-outcomes` both gave `sde-work-alice-diabetes-outcomes`,
i.e. one work volume (and one OAuth client) for two people. And a container name
that carries user and project is answered by Docker's embedded DNS (names and
reverse lookups) to every workspace on the network, telling each one who works
on which project.

So every name derived from (person, project) carries one keyed id instead: an
HMAC-SHA256, under a key of the installation (`[workspaces] names_key`), of an
unambiguous encoding of the pair (JSON of the two strings), 128 bits in hex.
Distinct pairs give distinct ids unless HMAC-SHA256 collides; without the key
nobody can compute the id of a guessed pair, so a name seen in DNS says nothing
about whose it is. Who and what stay readable for the hub and operators as
labels (`labels`): on cold containers and on work volumes; a claimed warm-pool
container was created before anyone claimed it (Docker labels are fixed at
creation), so its slot records the owner instead (sde.workspaces.pool).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

from sde.core.config import Settings

USER_LABEL = "org.sde.user"
PROJECT_LABEL = "org.sde.project"
WORK_LABEL = "org.sde.work"  # the keyed id, on containers and their work volume
ID_HEX = 32


def names_key(settings: Settings) -> bytes:
    """The installation's naming key, created on first use (0600, beside the other keys)."""
    from sde.core.files import secret_file

    return secret_file(settings.names_key_path, secrets.token_hex(32).encode())


def workspace_id(settings: Settings, username: str, project: str) -> str:
    """The keyed id of (person, project); the JSON list keeps the pair unambiguous."""
    message = json.dumps([username, project]).encode()
    return hmac.new(names_key(settings), message, hashlib.sha256).hexdigest()[:ID_HEX]


def container_name(settings: Settings, username: str, project: str) -> str:
    return f"{settings.hub.name}-ws-{workspace_id(settings, username, project)}"


def work_volume(settings: Settings, username: str, project: str) -> str:
    return f"{settings.hub.name}-work-{workspace_id(settings, username, project)}"


def oauth_client_id(settings: Settings, username: str, project: str) -> str:
    """Instead of JupyterHub's `jupyterhub-user-{user}-{server}`, which collides likewise."""
    return f"jupyterhub-ws-{workspace_id(settings, username, project)}"


def labels(settings: Settings, username: str, project: str) -> dict[str, str]:
    """Who and what, for the hub and operators (`docker ps --filter label=org.sde.user=...`)."""
    from sde.workspaces.pool import INSTALLATION_LABEL

    return {
        INSTALLATION_LABEL: settings.hub.name,
        USER_LABEL: username,
        PROJECT_LABEL: project,
        WORK_LABEL: workspace_id(settings, username, project),
    }


def legacy_work_volume(settings: Settings, username: str, project: str) -> str:
    """The work volume's name before the keyed ids: ambiguous, kept only to carry it over."""
    return f"{settings.hub.name}-work-{username}-{project}"
