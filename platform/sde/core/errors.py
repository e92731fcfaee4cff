"""User-facing errors.

Anything a person can get wrong (unknown user, bad date, malformed config)
raises an `SdeError`; other exceptions are bugs and keep their traceback.
Each class carries what every front end needs to answer it, so one handler per
front end maps them all: the CLI prints the message on one line and exits with
`exit_code`; the hub and HTTP APIs answer with `http_status` and the message
(`sde.hub.errors.HubError`). Raise the most specific class; a new class
states both codes.
"""


class SdeError(Exception):
    """A problem with the input or state that the user can fix."""

    exit_code = 2
    http_status = 400


class InvalidInput(SdeError):
    """A value is malformed or out of range (a bad username, date, choice or column)."""

    http_status = 400


class NotFound(SdeError):
    """A named person, project, dataset or version does not exist."""

    http_status = 404


class Conflict(SdeError):
    """The request clashes with existing state (duplicate id, wrong lifecycle state)."""

    http_status = 409


class ConfigError(SdeError):
    """The configuration file or an SDE_* variable is malformed.

    To a web client this is the server's fault, not the request's: 500.
    """

    http_status = 500


class AccessDenied(SdeError):
    """The registry refuses the person the action; the message carries the reasons."""

    http_status = 403
