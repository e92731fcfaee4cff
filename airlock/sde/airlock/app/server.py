"""The airlock's ASGI app and its process: the hub-managed service `airlock`.

`make_app` builds the FastAPI app (the JSON API under `PREFIX/api/`, the pages
under `PREFIX/`); `main` runs it with uvicorn in this process on the workspace
bridge address (loopback without Docker) at `workspaces.airlock_port`, and
stops when the hub that started it goes (its parent changes), as the API gate
does. Errors are mapped in one place (`sde_error`): each `SdeError` class's
`http_status` and its one-line message, as `{"error": message}` for the API
and as a page for browsers. Every response carries the security headers of
`SECURITY_HEADERS` (no inline script or style anywhere, so the CSP needs no
`unsafe-inline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy.orm import Session

from sde.airlock import ingress, service
from sde.airlock.app import actions, pages
from sde.airlock.app.auth import (
    SESSION_COOKIE,
    STATE_COOKIE,
    Caller,
    HubIdentity,
    NotSignedIn,
    Sessions,
    token_from_header,
)
from sde.airlock.app.views import request_view, summary, visible_requests
from sde.audit import audited_transaction
from sde.core.config import Settings
from sde.core.db import get_engine, transaction
from sde.core.errors import InvalidInput, SdeError

log = logging.getLogger("sde.airlock.app")

SERVICE = "airlock"
MAX_BODY = 256 * 1024  # JSON and forms carry names and text, never file bytes
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Stored bytes shown or downloaded: nothing in them may run, even opened directly.
FILE_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def prefix_of(env: dict[str, str] | None = None) -> str:
    """The service's URL prefix as the hub gives it (JUPYTERHUB_SERVICE_PREFIX), no end slash."""
    env = dict(os.environ) if env is None else env
    return "/" + env.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE}/").strip("/")


class App:
    """What every route needs: settings, the engine, identities and sessions."""

    def __init__(self, settings: Settings, identity: HubIdentity, prefix: str) -> None:
        self.settings = settings
        self.engine = get_engine(settings)
        self.identity = identity
        self.sessions = Sessions()
        self.prefix = prefix
        self._oauth: Any = None

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        with audited_transaction(self.engine, self.settings) as s:
            yield s

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with transaction(self.engine) as s:
            yield s

    @property
    def oauth(self) -> Any:
        """The hub's OAuth client settings (client id, callback, authorize URL) from its env."""
        if self._oauth is None:
            from jupyterhub.services.auth import HubOAuth

            self._oauth = HubOAuth(api_url=self.identity.api_url, api_token=self.identity.api_token)
        return self._oauth

    def api_caller(self, request: Request) -> Caller:
        """API calls: the hub token of the Authorization header, never the page cookie."""
        return self.identity.resolve(token_from_header(request.headers.get("authorization")))

    def page_caller(self, request: Request) -> Caller | None:
        token = self.sessions.token(request.cookies.get(SESSION_COOKIE))
        if not token:
            return None
        try:
            caller = self.identity.resolve(token)
        except NotSignedIn:
            return None
        return caller if not caller.from_workspace else None

    @property
    def secure(self) -> bool:
        return self.settings.hub.public_url.startswith("https:")


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidInput(f"request body larger than {MAX_BODY} bytes")
    return body


async def json_body(request: Request) -> dict[str, Any]:
    import json

    raw = await _body(request)
    if not raw.strip():
        return {}
    try:
        found = json.loads(raw)
    except ValueError:
        raise InvalidInput("the body is not JSON") from None
    if not isinstance(found, dict):
        raise InvalidInput("the body must be a JSON object")
    return found


async def upload_body(request: Request, settings: Settings) -> bytes:
    """An upload's body, refused past airlock.max_file_size (plus a form's own overhead)."""
    from sde.core.validators import parse_size

    limit = parse_size(settings.airlock.max_file_size) + 64 * 1024
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidInput(
                f"upload larger than airlock.max_file_size ({settings.airlock.max_file_size})"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """A multipart/form-data body's text fields and its one file part (name -> bytes)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    if not content_type.startswith("multipart/form-data"):
        raise InvalidInput("an upload is sent as multipart/form-data")
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename:
            files[str(filename)] = bytes(payload)
        elif name:
            fields[str(name)] = bytes(payload).decode("utf-8", "replace")
    return fields, files


async def form_body(request: Request) -> dict[str, str]:
    raw = (await _body(request)).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def make_app(
    settings: Settings, identity: HubIdentity | None = None, prefix: str | None = None
) -> FastAPI:
    state = App(settings, identity or HubIdentity(), prefix if prefix is not None else prefix_of())
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.airlock = state
    api = APIRouter(prefix=f"{state.prefix}/api")
    web = APIRouter(prefix=state.prefix)

    @app.exception_handler(SdeError)
    async def sde_error(request: Request, exc: SdeError) -> Response:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if request.url.path.startswith(f"{state.prefix}/api"):
            return JSONResponse({"error": message}, status_code=exc.http_status)
        return HTMLResponse(
            pages.render("error.html", state, None, status=exc.http_status, message=message),
            status_code=exc.http_status,
        )

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    # ------------------------------------------------------------ JSON API

    @api.get("/requests")
    def list_requests(request: Request) -> Any:
        who = state.api_caller(request)
        with state.read() as s:
            return [summary(r) for r in visible_requests(s, settings, who.user, who.project)]

    @api.post("/requests", status_code=201)
    async def create(request: Request) -> Any:
        who = state.api_caller(request)
        body = await json_body(request)
        project = who.project or actions.field(body, "project")
        if who.project is not None and body.get("project", project) != project:
            raise actions.AccessDenied(
                f"a workspace of project {who.project} may not open a request in "
                f"{body.get('project')}"
            )
        direction = actions.field(body, "direction", "egress")
        if who.from_workspace and direction != "egress":
            raise actions.AccessDenied("a workspace opens egress requests only")

        def go() -> Any:
            with state.write() as s:
                made = service.create_request(
                    s, who.user, settings, project=project, direction=direction
                )
                return request_view(s, settings, who.user, made)

        return await asyncio.to_thread(go)

    @api.get("/requests/{rid}")
    def status(rid: str, request: Request) -> Any:
        who = state.api_caller(request)
        with state.read() as s:
            actions.check_workspace_scope(s, who, rid)
            return request_view(s, settings, who.user, service.get_request(s, rid))

    @api.get("/requests/{rid}/record")
    def record(rid: str, request: Request) -> Any:
        who = state.api_caller(request)
        with state.read() as s:
            actions.check_workspace_scope(s, who, rid)
            request_view(s, settings, who.user, service.get_request(s, rid))  # may they see it
            return service.signed_record(service.get_release(s, rid))

    @api.get("/requests/{rid}/download")
    def download(rid: str, name: str, request: Request) -> Any:
        who = state.api_caller(request)
        if who.from_workspace:
            raise actions.AccessDenied("released files are downloaded from outside the workspace")
        with state.write() as s:
            path = service.record_download(s, who.user, settings, rid, name)
        return _file_response(path, name, attachment=True)

    @api.get("/requests/{rid}/view")
    def view(rid: str, name: str, request: Request) -> Any:
        who = state.api_caller(request)
        if who.from_workspace:
            raise actions.AccessDenied("checkers view files from outside the workspace")
        with state.write() as s:
            path = service.record_file_view(s, who.user, settings, rid, name)
        return _file_response(path, name, attachment=True)

    @api.post("/requests/{rid}/upload")
    async def upload(
        rid: str, name: str, group: str, request: Request, kind: str = "output"
    ) -> Any:
        """Ingress: the file's bytes as the body, from outside every workspace."""
        who = state.api_caller(request)
        if who.from_workspace:
            raise actions.AccessDenied("ingress files are uploaded from outside the workspace")
        data = await upload_body(request, settings)

        def go() -> Any:
            with state.write() as s:
                ingress.add_upload(
                    s, who.user, settings, rid, name, io.BytesIO(data), group=group, kind=kind
                )
            with state.read() as s:
                return request_view(s, settings, who.user, service.get_request(s, rid))

        return await asyncio.to_thread(go)

    @api.post("/requests/{rid}/{action}")
    async def act(rid: str, action: str, request: Request) -> Any:
        who = state.api_caller(request)
        body = await json_body(request)

        def go() -> Any:
            with state.write() as s:
                actions.run(s, who, settings, rid, action, body)
            with state.read() as s:
                return request_view(s, settings, who.user, service.get_request(s, rid))

        return await asyncio.to_thread(go)

    # ------------------------------------------------------------ sign-in

    @web.get("/oauth_callback")
    def oauth_callback(request: Request, code: str = "") -> Response:
        arg_state = request.query_params.get("state", "")
        if not code or not arg_state or request.cookies.get(STATE_COOKIE) != arg_state:
            raise NotSignedIn("sign-in state does not match: open the airlock again")
        next_url = state.sessions.take_state(arg_state)
        if next_url is None:
            raise NotSignedIn("sign-in took too long: open the airlock again")
        token = state.oauth.token_for_code(code)
        state.identity.resolve(token)  # a person's session, or refused here
        sid = state.sessions.start(token)
        response = RedirectResponse(next_url, status_code=302)
        response.delete_cookie(STATE_COOKIE, path=state.prefix + "/")
        response.set_cookie(
            SESSION_COOKIE,
            sid,
            path=state.prefix + "/",
            httponly=True,
            secure=state.secure,
            samesite="lax",
        )
        return response

    def sign_in(request: Request) -> Response:
        path = request.url.path
        if not path.startswith(state.prefix + "/"):
            path = state.prefix + "/"
        next_url = path + (f"?{request.url.query}" if request.url.query else "")
        oauth_state = state.sessions.new_state(next_url)
        url = (
            state.oauth.oauth_authorization_url
            + "?"
            + urlencode(
                {
                    "client_id": state.oauth.oauth_client_id,
                    "redirect_uri": state.oauth.oauth_redirect_uri,
                    "response_type": "code",
                    "state": oauth_state,
                }
            )
        )
        response = RedirectResponse(url, status_code=302)
        response.set_cookie(
            STATE_COOKIE,
            oauth_state,
            path=state.prefix + "/",
            httponly=True,
            secure=state.secure,
            samesite="lax",
            max_age=600,
        )
        return response

    # ------------------------------------------------------------ pages

    @web.get("/static/airlock.css")
    def css() -> Response:
        return FileResponse(pages.STATIC / "airlock.css", media_type="text/css")

    @web.get("/")
    def home(request: Request) -> Response:
        who = state.page_caller(request)
        if who is None:
            return sign_in(request)
        with state.read() as s:
            context = pages.home_context(s, settings, who.user)
        return HTMLResponse(pages.render("home.html", state, request, **context))

    @web.get("/requests/{rid}")
    def request_page(rid: str, request: Request) -> Response:
        who = state.page_caller(request)
        if who is None:
            return sign_in(request)
        with state.read() as s:
            view = request_view(s, settings, who.user, service.get_request(s, rid))
        return HTMLResponse(pages.render("request.html", state, request, r=view, user=who.user))

    @web.get("/requests/{rid}/file")
    def file_page(rid: str, name: str, request: Request) -> Response:
        who = state.page_caller(request)
        if who is None:
            return sign_in(request)
        with state.write() as s:
            view = request_view(s, settings, who.user, service.get_request(s, rid))
            path = service.record_file_view(s, who.user, settings, rid, name)
        shown = pages.file_context(view, name, path)
        return HTMLResponse(
            pages.render("file.html", state, request, r=view, user=who.user, **shown)
        )

    @web.get("/requests/{rid}/raw")
    def raw(rid: str, name: str, request: Request) -> Response:
        who = state.page_caller(request)
        if who is None:
            raise NotSignedIn("sign in to the airlock first")
        with state.write() as s:
            path = service.record_file_view(s, who.user, settings, rid, name)
        return _file_response(path, name, attachment=False)

    @web.get("/requests/{rid}/download")
    def download_page(rid: str, name: str, request: Request) -> Response:
        who = state.page_caller(request)
        if who is None:
            return sign_in(request)
        with state.write() as s:
            path = service.record_download(s, who.user, settings, rid, name)
        return _file_response(path, name, attachment=True)

    def form_caller(request: Request, body: dict[str, str]) -> Caller:
        if not state.sessions.csrf_ok(request.cookies.get(SESSION_COOKIE), body.get("_csrf")):
            raise actions.AccessDenied("the form's CSRF token is missing or wrong: reload the page")
        who = state.page_caller(request)
        if who is None:
            raise NotSignedIn("sign in to the airlock first")
        return who

    @web.post("/requests")
    async def create_form(request: Request) -> Response:
        body = await form_body(request)
        who = form_caller(request, body)

        def go() -> str:
            with state.write() as s:
                made = service.create_request(
                    s,
                    who.user,
                    settings,
                    project=actions.field(body, "project"),
                    direction=actions.field(body, "direction", "ingress"),
                )
                return made.id

        rid = await asyncio.to_thread(go)
        return RedirectResponse(f"{state.prefix}/requests/{quote(rid)}", status_code=303)

    @web.post("/requests/{rid}/upload")
    async def upload_form(rid: str, request: Request) -> Response:
        fields, files = multipart(
            request.headers.get("content-type", ""), await upload_body(request, settings)
        )
        who = form_caller(request, fields)
        if len(files) != 1:
            raise InvalidInput("choose one file to upload")
        ((name, data),) = files.items()

        def go() -> None:
            with state.write() as s:
                ingress.add_upload(
                    s,
                    who.user,
                    settings,
                    rid,
                    name,
                    io.BytesIO(data),
                    group=actions.field(fields, "group"),
                    kind=actions.field(fields, "kind", "output"),
                )

        await asyncio.to_thread(go)
        return RedirectResponse(f"{state.prefix}/requests/{quote(rid)}", status_code=303)

    @web.post("/requests/{rid}/{action}")
    async def form(rid: str, action: str, request: Request) -> Response:
        body = await form_body(request)
        who = form_caller(request, body)

        def go() -> None:
            with state.write() as s:
                actions.run(s, who, settings, rid, action, body)

        await asyncio.to_thread(go)
        return RedirectResponse(f"{state.prefix}/requests/{quote(rid)}", status_code=303)

    app.include_router(api)
    app.include_router(web)
    return app


def _file_response(path: Path, name: str, attachment: bool) -> Response:
    from sde.airlock.app.pages import media_type_of

    filename = quote(Path(name).name)
    disposition = "attachment" if attachment else "inline"
    return FileResponse(
        path,
        media_type=media_type_of(name),
        headers={
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{filename}",
            "Content-Security-Policy": FILE_CSP,
        },
    )


def listen_address(settings: Settings) -> str:
    """The workspace bridge address (loopback without Docker): the host reaches it too."""
    if not settings.hub.docker:
        return "127.0.0.1"
    from sde.workspaces import network

    return network.gateway_of(settings.workspaces)


def service_url(settings: Settings) -> str:
    return f"http://{listen_address(settings)}:{settings.workspaces.airlock_port}"


def hub_service(settings: Settings, env: dict[str, Any]) -> dict[str, Any]:
    """The managed-service entry for JupyterHub (the hub waits for its URL at start)."""
    import sys

    return {
        "name": SERVICE,
        "command": [sys.executable, "-m", "sde.airlock.app"],
        "environment": env,
        "url": service_url(settings),
        # The hub's sign-in is consent enough; no second "authorize" page.
        "oauth_no_confirm": True,
        "display": True,
    }


async def run(settings: Settings) -> None:
    import uvicorn

    config = uvicorn.Config(
        make_app(settings),
        host=listen_address(settings),
        port=settings.workspaces.airlock_port,
        log_level="info",
        proxy_headers=False,
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    parent = os.getppid()
    # A hub killed outright would leave the airlock holding its port for ever: go with it.
    while not task.done():
        if os.getppid() != parent:
            log.info("the hub is gone: stopping")
            server.should_exit = True
        await asyncio.sleep(1.0)
    await task


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO, format=f"[%(levelname)1.1s %(asctime)s {SERVICE}] %(message)s"
    )
    asyncio.run(run(settings))


def main() -> None:
    from sde.core.services import run_service

    run_service(serve)
