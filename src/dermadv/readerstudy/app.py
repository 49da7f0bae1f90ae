"""The reader-study web app (FastAPI): blinded readers one image at a time; coordinator pages.

Reader URLs carry the reader's unguessable token (``/r/<token>/...``); images are served by their
opaque key only after checking that the key is in that reader's set, and the file is looked up in
the manifest, never built from the URL. Pages carry no ground truth, attack or confidence: an item
page for a melanoma and one for a naevus differ only in the image key and position.

Coordinator pages (``/coordinator``) need the coordinator token, given as a login form (cookie,
SameSite=Strict) or as ``Authorization: Bearer <token>`` for scripts.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from dermadv.readerstudy import coordinator_routes, reader_routes
from dermadv.readerstudy.coordinator_routes import ReaderIn
from dermadv.readerstudy.reader_routes import AnswerIn
from dermadv.readerstudy.store import AnswerStore, StudyRequestError
from dermadv.readerstudy.study import Study
from dermadv.readerstudy.web import COOKIE, WebContext

__all__ = ["COOKIE", "SECURITY_HEADERS", "AnswerIn", "ReaderIn", "create_app"]

HERE = Path(__file__).resolve().parent

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",  # reader tokens are in URLs: never send them to anyone
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def create_app(
    study: Study,
    db_url: str | None = None,
    coordinator_token: str | None = None,
    public_url: str | None = None,
) -> FastAPI:
    """Build the app for ``study``; ``coordinator_token`` defaults to a fresh random one (app.state).

    ``public_url`` is the address readers use (e.g. behind an HTTPS reverse proxy), for invite links.
    Routes live in ``reader_routes`` and ``coordinator_routes``; they share ``app.state.ctx``
    (a :class:`~dermadv.readerstudy.web.WebContext`).
    """
    store = AnswerStore(study, db_url)
    coord_token = coordinator_token or secrets.token_urlsafe(18)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    ctx = WebContext(study, store, coord_token, templates, public_url)
    app = FastAPI(title="dermadv reader study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.study, app.state.coordinator_token = store, study, coord_token
    app.state.ctx = ctx
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _add_headers_and_errors(app, ctx)

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
        if request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        return ctx.templates.TemplateResponse(
            request,
            "message.html",
            {"title": "Not available", "message": str(exc), "study": ctx.study},
            status_code=exc.status,
        )
