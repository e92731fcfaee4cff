"""The airlock's pages: Jinja2 templates with autoescape on, and what each page shows.

All user text (context, controls, comments, justifications, file contents) is
rendered escaped by Jinja2's autoescape; no template marks anything `safe`.
File views: CSV and TSV as a table with the cells a check flagged highlighted
(from the findings' locations, "row R col C" or "row R"), text and Markdown as
escaped preformatted text, images inline from the `raw` route (served with a
sandboxing CSP, so an SVG's script never runs).
"""

from __future__ import annotations

import csv
import io
import mimetypes
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from sde.airlock import service
from sde.airlock.app.auth import SESSION_COOKIE
from sde.airlock.app.views import age, request_view, summary, visible_requests
from sde.airlock.enums import RequestStatus
from sde.airlock.models import Review
from sde.airlock.permissions import role_of
from sde.core.config import Settings

TEMPLATES = Path(__file__).with_name("templates")
STATIC = TEMPLATES
MAX_ROWS_SHOWN = 2000
MAX_TEXT_SHOWN = 1_000_000
IMAGES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def media_type_of(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in IMAGES:
        return IMAGES[suffix]
    if suffix in (".csv", ".tsv", ".txt", ".log", ".md", ".json"):
        return "text/plain; charset=utf-8"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def render(template: str, app: Any, request: Any, **context: Any) -> str:
    sid = request.cookies.get(SESSION_COOKIE) if request is not None else None
    return env.get_template(template).render(
        prefix=app.prefix, csrf=app.sessions.csrf(sid) if sid else "", **context
    )


def home_context(session: Session, settings: Settings, user: str) -> dict[str, Any]:
    """The checker's queue and the researcher's own requests, comments and releases."""
    queue: dict[str, list[dict[str, Any]]] = {"awaiting": [], "consolidation": [], "returned": []}
    mine, comments, released = [], [], []
    for r in visible_requests(session, settings, user):
        role, _ = role_of(session, settings, user, r)
        row = summary(r)
        if role == "checker":
            reviewed = user in session.scalars(
                select(Review.checker).where(Review.request_id == r.id, Review.turn == r.turn)
            )
            if r.status in (RequestStatus.SUBMITTED, RequestStatus.PARTIALLY_REVIEWED):
                if not reviewed:
                    queue["awaiting"].append(row)
            elif r.status == RequestStatus.REVIEWED:
                queue["consolidation"].append(row)
            elif r.status == RequestStatus.RETURNED:
                queue["returned"].append(row)
        elif role in ("author", "principal_investigator", "project_member"):
            mine.append(row)
            view = request_view(session, settings, user, r)
            for g in view["groups"]:
                comments += [
                    {"request": r.id, "group": g["name"], **c}
                    for c in g["comments"]
                    if c["author"] != user
                ]
            if "download" in view["may"] and not view.get("revoked"):
                released += [{"request": r.id, "name": n} for n in view["released_files"]]
    return {"user": user, "queue": queue, "mine": mine, "comments": comments, "released": released}


_CELL = re.compile(r"(?:row|line) (\d+)(?: col (\d+))?")


def flagged_cells(checks: dict[str, Any]) -> tuple[set[tuple[int, int]], set[int]]:
    """(row, col) cells and whole rows the findings point at; rows and columns count from 1."""
    cells, rows = set(), set()
    for finding in checks.get("findings", []):
        if finding.get("status") == "pass":
            continue
        for where in finding.get("locations", []):
            m = _CELL.fullmatch(str(where).strip())
            if m and m.group(2):
                cells.add((int(m.group(1)), int(m.group(2))))
            elif m:
                rows.add(int(m.group(1)))
    return cells, rows


def file_context(view: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    info: dict[str, Any] = next(
        (f for g in view["groups"] for f in g["files"] if f["name"] == name),
        {"name": name, "checks": {}, "exceptions": {}},
    )
    suffix = Path(name).suffix.lower()
    shown: dict[str, Any] = {"file": info, "kind": "text"}
    if suffix in IMAGES:
        shown["kind"] = "image"
        return shown
    text = path.read_bytes()[:MAX_TEXT_SHOWN].decode("utf-8", "replace")
    if suffix in (".csv", ".tsv"):
        cells, rows = flagged_cells(info.get("checks", {}))
        table = list(csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ","))
        shown.update(
            kind="table",
            rows=[
                [(value, (i + 1, j + 1) in cells or (i + 1) in rows) for j, value in enumerate(row)]
                for i, row in enumerate(table[:MAX_ROWS_SHOWN])
            ],
        )
        return shown
    shown["text"] = text
    return shown


__all__ = ["age", "file_context", "home_context", "render", "service"]
