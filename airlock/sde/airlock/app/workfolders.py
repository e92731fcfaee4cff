"""Where the airlock copies a researcher's files from: their workspace's work folder on the host.

The researcher names a path; the service never takes bytes from the client. The
folder is the work volume of (person, project) as the hub mounts it while the
workspace runs (`sde.workspaces.workvolumes`: `work_root / workspace_id`), on
the cold and the warm path alike. A work volume that is not mounted means the
workspace is not running, and the add is refused rather than reading an image
nobody is using. Without Docker (`hub.docker` false: no workspaces in
containers, e.g. a development hub) there are no work volumes and the folder is
a plain directory at the same place.
"""

from __future__ import annotations

from pathlib import Path

from sde.core.config import Settings
from sde.core.errors import Conflict
from sde.workspaces import names, workvolumes


def folder_of(settings: Settings, username: str, project: str) -> Path:
    """Where the work folder of (person, project) is on the host, running or not."""
    return workvolumes.work_root(settings) / names.workspace_id(settings, username, project)


def work_folder(settings: Settings, username: str, project: str) -> Path:
    """The work folder of `username`'s workspace in `project`, which must be running now."""
    path = folder_of(settings, username, project)
    # The mount is the work volume's filesystem: there only while its workspace runs.
    mounted = settings.hub.docker and workvolumes._mount_source(path) is not None
    running = mounted if settings.hub.docker else path.is_dir()
    if not running:
        raise Conflict(
            f"the workspace of {username} in {project} is not running: start it, then add the file"
        )
    return path
