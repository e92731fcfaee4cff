"""The hub's roles and the scopes each holds: constants only, so anything may import them.

The configuration (`sde.hub.config`) loads these roles at hub start and the
authenticator (`sde.hub.authenticator`) keeps the operator role in step with the
registry; both read them here, so neither needs the other.

Nobody holds the `admin` role. Operators can list and stop servers but hold no
`access:servers`, so they cannot enter a workspace.
"""

from __future__ import annotations

OPERATOR_ROLE = "sde-operator"
OPERATOR_SCOPES = [
    "list:users",
    "read:users",
    "read:users:activity",
    "read:servers",
    "delete:servers",
    "read:metrics",
]
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
# JupyterHub's `self` less `users:activity`: nobody reports activity to the hub (kernel
# code, holding the server's token or one its person minted, could claim it for ever);
# the hub reads it from its proxy. The server token asks for `users:activity!user`
# (JupyterHub adds it), which the person's role then does not grant. Less the sharing
# scopes too: who may enter a project's workspace is the registry's to say, and a
# person sharing theirs would let someone outside the project see its data.
USER_SCOPES = [
    "read:users!user",
    "read:users:activity!user",
    "servers!user",
    "tokens!user",
    "access:servers!user",
    # The airlock: pages and a person's own API tokens, and (filtered to one server
    # below) a workspace's calls; what each may do there the registry says.
    "access:services!service=airlock",
    "custom:airlock:requests!user",
]
# The server's own token also names its server for the airlock (expanded by the hub to
# `custom:airlock:requests!server=USER/PROJECT`): the workspace acts for that project only.
SERVER_TOKEN_SCOPES = [
    "access:servers!server",
    "users:activity!user",
    "custom:airlock:requests!server",
]
CUSTOM_SCOPES = {
    "custom:airlock:requests": {
        "description": "Open, fill and submit airlock requests of the project of the workspace."
    }
}
