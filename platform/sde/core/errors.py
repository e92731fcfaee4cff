"""User-facing errors.

Anything a person can get wrong (unknown user, bad date, malformed config)
raises `SdeError`; the CLI prints its message on one line and exits 2. Other
exceptions are bugs and keep their traceback.
"""


class SdeError(Exception):
    """A problem with the input or state that the user can fix."""

    exit_code = 2


class NotFound(SdeError):
    """A named person, project, dataset or version does not exist."""


class Conflict(SdeError):
    """The request clashes with existing state (duplicate id, wrong lifecycle state)."""


class ConfigError(SdeError):
    """The configuration file or an SDE_* variable is malformed."""


class AccessDenied(SdeError):
    """The registry refuses the action; the message carries the reasons."""
