"""The reader-study web app (FastAPI): blinded readers one image at a time; coordinator pages.

Reader URLs carry the reader's unguessable token (``/r/<token>/...``); images are served by their
opaque key only after checking that the key is in that reader's set, and the file is looked up in
the manifest, never built from the URL. Pages carry no ground truth, attack or confidence: an item
page for a melanoma and one for a naevus differ only in the image key and position.

Coordinator pages (``/coordinator``) need the coordinator token, given once in a login form (which
starts a session: cookie with a session id, SameSite=Strict, HttpOnly, Secure over HTTPS) or as
``Authorization: Bearer <token>`` for scripts. See :mod:`dermadv.readerstudy.web` for CSRF and Origin
checks.

Before any route runs, :class:`RequestGuard` refuses state-changing requests with a body over
:data:`MAX_BODY` (413), JSON that is not strict JSON (NaN, Infinity, numbers overflowing to infinity,
nesting deeper than :data:`MAX_JSON_DEPTH`: 422) and requests from a foreign ``Origin`` (403).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.datastructures import Headers
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from dermadv.readerstudy import coordinator_routes, reader_routes
from dermadv.readerstudy.coordinator_routes import ReaderIn
from dermadv.readerstudy.reader_routes import AnswerIn
from dermadv.readerstudy.store import PUBLIC_URL_KEY, AnswerStore, StudyRequestError
from dermadv.readerstudy.study import Study
from dermadv.readerstudy.web import COOKIE, SAFE_METHODS, WebContext, origin_allowed

__all__ = ["COOKIE", "SECURITY_HEADERS", "AnswerIn", "ReaderIn", "create_app", "strict_json_problem"]

HERE = Path(__file__).resolve().parent
# the ASGI types (as starlette.types spells them)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
MAX_BODY = 64 * 1024
MAX_JSON_DEPTH = 16

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    # reader tokens are in URLs: never send them to another origin. "same-origin" (not "no-referrer")
    # so that the browser sends a real Origin header with our own POSTs, which the Origin check needs
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class _NotStrictJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotStrictJSON(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStrictJSON(f"number {text[:40]} is out of range")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (iterative)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, d)
            if d <= MAX_JSON_DEPTH:
                stack.extend((v, d + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def strict_json_problem(body: bytes) -> str | None:
    """Why ``body`` is not acceptable strict JSON (NaN/Infinity, overflow, too deep, malformed), or None."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except _NotStrictJSON as exc:
        return f"request body: {exc} (only finite numbers are accepted)"
    except UnicodeDecodeError:
        return "request body is not UTF-8"
    except RecursionError:
        return f"request body: JSON nested deeper than {MAX_JSON_DEPTH} levels"
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        return f"request body is not valid JSON: {str(exc)[:120]}"
    if _depth(value) > MAX_JSON_DEPTH:
        return f"request body: JSON nested deeper than {MAX_JSON_DEPTH} levels"
    return None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class RequestGuard:
    """ASGI middleware run before routing: body size, strict JSON and Origin checks on unsafe methods."""

    def __init__(self, app: ASGIApp, ctx: WebContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            await self._refuse(scope, receive, send, 413, f"request body over {MAX_BODY} bytes")
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                await self._refuse(scope, receive, send, 413, f"request body over {MAX_BODY} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        content_type = headers.get("content-type", "")
        if body.strip() and (not content_type or _is_json(content_type)):
            problem = strict_json_problem(body)
            if problem is not None:
                await self._refuse(scope, receive, send, 422, problem)
                return
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        if not origin_allowed(headers.get("origin"), headers.get("referer"), own, self.ctx.public_url):
            await self._refuse(
                scope, receive, send, 403, "request refused: it came from a page of another site or port"
            )
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        request = Request(scope, receive)
        if scope["path"].startswith("/api/") or "application/json" in request.headers.get("accept", ""):
            response: Any = JSONResponse({"detail": detail}, status_code=status)
        else:
            response = self.ctx.page(
                request, "message.html", status_code=status, title="Not accepted", message=detail
            )
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        response.headers.setdefault("Cache-Control", "no-store")
        await response(scope, receive, send)


def create_app(
    study: Study,
    db_url: str | None = None,
    coordinator_token: str | None = None,
    public_url: str | None = None,
) -> FastAPI:
    """Build the app for ``study``.

    ``coordinator_token`` fixes the coordinator token; without it the study's own token is used (kept
    hashed in its database across restarts; made now when there is none, and then put on
    ``app.state.coordinator_token`` to be shown once, else that is None). ``public_url`` is the address
    readers use (e.g. behind an HTTPS reverse proxy): invite links are built from it, else from the one
    the last ``serve`` recorded, else ``http://127.0.0.1:8000``. Routes live in ``reader_routes`` and
    ``coordinator_routes``; they share ``app.state.ctx`` (a :class:`~dermadv.readerstudy.web.WebContext`).
    """
    store = AnswerStore(study, db_url)
    new_token = None if coordinator_token else store.ensure_coordinator_token()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    public = public_url or store.get_meta(PUBLIC_URL_KEY)
    ctx = WebContext(study, store, coordinator_token, templates, public)
    app = FastAPI(title="dermadv reader study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.study, app.state.ctx = store, study, ctx
    app.state.coordinator_token = coordinator_token or new_token
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _add_headers_and_errors(app, ctx)
    app.add_middleware(RequestGuard, ctx=ctx)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return ctx.page(
            request,
            "message.html",
            title=study.title,
            message="Please open the personal invitation link you received.",
        )

    app.include_router(reader_routes.router)
    app.include_router(coordinator_routes.router)
    app.include_router(coordinator_routes.guarded)
    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def _validation_detail(exc: RequestValidationError) -> str:
    """One line naming each refused field and why (never echoing the values sent)."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)[:500] or "invalid request"


def _add_headers_and_errors(app: FastAPI, ctx: WebContext) -> None:
    """Security and cache headers on every response; refused requests as JSON (API) or a page."""

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(StudyRequestError)
    async def _refused(request: Request, exc: StudyRequestError) -> Any:
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        return ctx.page(
            request, "message.html", status_code=exc.status, title="Not available", message=str(exc)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Any:
        detail = _validation_detail(exc)
        if _wants_json(request) or request.method not in SAFE_METHODS:
            return JSONResponse({"detail": detail}, status_code=422)
        return ctx.page(request, "message.html", status_code=422, title="Not available", message=detail)
