"""Ingress uploads: files from outside every workspace into an ingress request.

A project member uploads files (the web page, or `sde airlock ingress upload` on
the host); each lands in the request's staging folder
(`<airlock store>/../incoming/<request>/<upload>/`), and `service.add_file` copies it
from there into the store exactly as it copies an egress file out of a work
folder: the same snapshot refusals, the same checks, plus the ingress-only
malware scan (`sde.airlock.checks.malware`). The staged copy is removed
whatever the outcome, so a refused upload leaves nothing behind. Once the
request is approved and released, `sde.airlock.published` puts the files into
the project's read-only /ingress folder.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from sde.airlock import service
from sde.airlock.enums import Direction, FileKind
from sde.airlock.models import AirlockFile
from sde.core.config import Settings
from sde.core.errors import InvalidInput
from sde.core.validators import parse_size

CHUNK = 1 << 20


def incoming_root(settings: Settings) -> Path:
    return settings.airlock_store_dir.parent / "incoming"


def incoming_dir(settings: Settings, request_id: str) -> Path:
    """The staging folder of one ingress request (the `root` add_file copies from)."""
    if not request_id.isalnum():
        raise InvalidInput(f"not an airlock request id: {request_id!r}")
    return incoming_root(settings) / request_id


def upload_name(name: str) -> str:
    """The uploaded file's own name: one plain file name, no folders, no dotfile.

    Browsers and shells send names of any shape; the snapshot rules (control
    characters, look-alike letters, types) apply after this in add_file.
    """
    leaf = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not leaf or leaf.startswith(".") or "\x00" in leaf:
        raise InvalidInput(f"{name!r} is not a file name an upload can have")
    return leaf


def stage(settings: Settings, request_id: str, name: str, data: BinaryIO) -> Path:
    """Write an upload into the request's staging folder whole, at most airlock.max_file_size
    bytes (a larger one is refused and nothing stays); the staged path."""
    leaf = upload_name(name)
    # A folder per upload: two uploads of one name at once never meet.
    folder = incoming_dir(settings, request_id) / secrets.token_hex(8)
    folder.mkdir(parents=True, mode=0o700)
    target = folder / leaf
    limit = parse_size(settings.airlock.max_file_size)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            size = 0
            while chunk := data.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise InvalidInput(
                        f"{target.name} is larger than airlock.max_file_size "
                        f"({settings.airlock.max_file_size})"
                    )
                out.write(chunk)
        os.rename(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        folder.rmdir()
        raise
    return target


def add_upload(
    session: Session,
    actor: str,
    settings: Settings,
    request_id: str,
    name: str,
    data: BinaryIO,
    *,
    group: str,
    kind: str = FileKind.OUTPUT,
) -> AirlockFile:
    """Stage one uploaded file and add it to the ingress request (one audited add_file)."""
    request = service.get_request(session, request_id)
    if request.direction != Direction.INGRESS:
        raise InvalidInput(f"airlock request {request_id} is not an ingress request")
    staged = stage(settings, request_id, name, data)
    try:
        return service.add_file(
            session,
            actor,
            settings,
            request_id,
            root=staged.parent,
            relpath=staged.name,
            group=group,
            kind=kind,
        )
    finally:
        staged.unlink(missing_ok=True)
        staged.parent.rmdir()


def upload_files(
    session: Session,
    actor: str,
    settings: Settings,
    project: str,
    paths: list[Path],
    *,
    group: str,
    request_id: str | None = None,
    context: str | None = None,
    controls: str | None = None,
) -> str:
    """Upload local files into a new (or the given) ingress request of `project`; its id.

    Every file is checked readable first, so a missing one changes nothing.
    """
    for path in paths:
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file")
    if request_id is None:
        made = service.create_request(
            session, actor, settings, project=project, direction=Direction.INGRESS
        )
        request_id = made.id
    elif service.get_request(session, request_id).project != project:
        raise InvalidInput(f"airlock request {request_id} is not of project {project}")
    for path in paths:
        with open(path, "rb") as fh:
            add_upload(session, actor, settings, request_id, path.name, fh, group=group)
    if context is not None or controls is not None:
        service.set_group_text(
            session, actor, settings, request_id, group, context=context, controls=controls
        )
    return request_id
