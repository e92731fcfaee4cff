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
]
SERVER_TOKEN_SCOPES = ["access:servers!server", "users:activity!user"]
