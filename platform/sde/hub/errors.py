"""User errors as the hub answers them: one mapping from `SdeError` to tornado's HTTPError.

JupyterHub turns an `HTTPError` raised by a handler or a spawner into its error
page or JSON answer with that status, and shows `jupyterhub_message` as the
text the person reads. Raising `HubError(error)` gives every `SdeError` its
class's `http_status` and its own one-line message there, as the CLI gives it
its exit code and `error:` line.
"""

from __future__ import annotations

from tornado import web

from sde.core.errors import SdeError


class HubError(web.HTTPError):
    """An `SdeError` on its way out of the hub, with the status of its class."""

    def __init__(self, error: SdeError) -> None:
        self.error = error
        message = str(error)
        # tornado formats log_message with %; the person's text is kept as is.
        super().__init__(error.http_status, message.replace("%", "%%"))
        self.jupyterhub_message = message
