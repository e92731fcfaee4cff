"""The write actions of the API and the page forms: one table, each entry one service call.

The API (`POST /api/requests/ID/ACTION`, a JSON body) and the pages (`POST
/requests/ID/ACTION`, a form) both dispatch here, so a form can do nothing the
API cannot and both refuse alike. Each entry names the fields it takes; the
service checks who, which state and the values. `WORKSPACE_ACTIONS` are the
author's steps a workspace's token may take (on its own project's requests);
the checkers' steps need a person's own session or token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from sde.airlock import service
from sde.airlock.app.auth import Caller
from sde.airlock.app.workfolders import work_folder
from sde.airlock.enums import CommentVisibility, FileKind, RequestStatus
from sde.core.config import Settings
from sde.core.errors import AccessDenied, InvalidInput, NotFound

Fields = Mapping[str, Any]
Action = Callable[[Session, Caller, Settings, str, Fields], object]


def field(body: Fields, name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if value is None:
        raise InvalidInput(f"field {name!r} is required")
    if not isinstance(value, str):
        raise InvalidInput(f"field {name!r} must be a string")
    return value


def _add_file(s: Session, who: Caller, st: Settings, rid: str, body: Fields) -> object:
    request = service.get_request(s, rid)
    root = work_folder(st, who.user, request.project)
    return service.add_file(
        s,
        who.user,
        st,
        rid,
        root=root,
        relpath=field(body, "path"),
        group=field(body, "group"),
        kind=field(body, "kind", FileKind.OUTPUT),
    )


def _submit(s: Session, who: Caller, st: Settings, rid: str, body: Fields) -> object:
    if service.get_request(s, rid).status == RequestStatus.RETURNED:
        return service.resubmit(s, who.user, st, rid)
    return service.submit(s, who.user, st, rid)


ACTIONS: dict[str, Action] = {
    "add_file": _add_file,
    "set_group_text": lambda s, who, st, rid, b: service.set_group_text(
        s,
        who.user,
        st,
        rid,
        field(b, "group"),
        context=b.get("context"),
        controls=b.get("controls"),
    ),
    "withdraw_file": lambda s, who, st, rid, b: service.withdraw_file(
        s, who.user, st, rid, field(b, "name")
    ),
    "ask_exception": lambda s, who, st, rid, b: service.ask_exception(
        s, who.user, st, rid, field(b, "name"), field(b, "check"), field(b, "justification")
    ),
    "submit": _submit,
    "withdraw": lambda s, who, st, rid, b: service.withdraw_request(s, who.user, st, rid),
    "vote": lambda s, who, st, rid, b: service.vote(
        s, who.user, st, rid, field(b, "name"), field(b, "vote")
    ),
    "comment": lambda s, who, st, rid, b: service.comment(
        s,
        who.user,
        st,
        rid,
        field(b, "group"),
        field(b, "text"),
        field(b, "visibility", CommentVisibility.PUBLIC),
    ),
    "review": lambda s, who, st, rid, b: service.submit_review(s, who.user, st, rid),
    "return": lambda s, who, st, rid, b: service.return_request(s, who.user, st, rid),
    "approve": lambda s, who, st, rid, b: service.approve(s, who.user, st, rid),
    "reject": lambda s, who, st, rid, b: service.reject(s, who.user, st, rid, field(b, "reason")),
    "release": lambda s, who, st, rid, b: service.release(s, who.user, st, rid),
    "revoke": lambda s, who, st, rid, b: service.revoke_release(
        s, who.user, st, rid, field(b, "reason")
    ),
}

WORKSPACE_ACTIONS = frozenset(
    {"add_file", "set_group_text", "withdraw_file", "ask_exception", "submit", "withdraw"}
    | {"comment"}
)


def check_workspace_scope(session: Session, who: Caller, request_id: str) -> None:
    """A workspace acts only on requests of its own project."""
    if who.project is None:
        return
    request = service.get_request(session, request_id)
    if request.project != who.project:
        raise AccessDenied(
            f"a workspace of project {who.project} may not act on airlock request "
            f"{request_id} of project {request.project}"
        )


def run(
    session: Session, who: Caller, settings: Settings, request_id: str, name: str, body: Fields
) -> object:
    """Take the action `name` on the request for `who` (the caller commits)."""
    action = ACTIONS.get(name)
    if action is None:
        raise NotFound(f"unknown airlock action {name!r}")
    if who.from_workspace and name not in WORKSPACE_ACTIONS:
        raise AccessDenied(f"a workspace may not {name.replace('_', ' ')} a request")
    check_workspace_scope(session, who, request_id)
    return action(session, who, settings, request_id, body)
