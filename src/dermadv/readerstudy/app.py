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

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from dermadv.readerstudy.store import (
    AnswerStore,
    InvalidAnswer,
    Reader,
    StudyRequestError,
    export_csv_text,
    original_csv_text,
)
from dermadv.readerstudy.study import KEY_RE, Study

HERE = Path(__file__).resolve().parent
COOKIE = "dermadv_coordinator"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",  # reader tokens are in URLs: never send them to anyone
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class AnswerIn(BaseModel):
    """Body of POST /api/r/{token}/answers."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=16, max_length=16)
    answer: str = Field(min_length=1, max_length=32)
    confidence: int | None = Field(default=None, strict=True)
    submission_id: str = Field(min_length=8, max_length=64)
    client_ms: float | None = Field(default=None, ge=0)


class ReaderIn(BaseModel):
    """Body of POST /api/coordinator/readers."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: str = Field(default="", max_length=200)
    years_experience: float | None = Field(default=None, ge=0, le=80)


def create_app(
    study: Study,
    db_url: str | None = None,
    coordinator_token: str | None = None,
    public_url: str | None = None,
) -> FastAPI:
    """Build the app for ``study``; ``coordinator_token`` defaults to a fresh random one (app.state).

    ``public_url`` is the address readers use (e.g. behind an HTTPS reverse proxy), for invite links.
    """
    store = AnswerStore(study, db_url)
    coord_token = coordinator_token or secrets.token_urlsafe(18)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app = FastAPI(title="dermadv reader study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.study, app.state.coordinator_token = store, study, coord_token
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    choices = study.choices

    def public_base(request: Request) -> str:
        return (public_url or str(request.base_url)).rstrip("/")

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
        return templates.TemplateResponse(
            request,
            "message.html",
            {"title": "Not available", "message": str(exc), "study": study},
            status_code=exc.status,
        )

    def page(request: Request, name: str, **ctx: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"study": study, "choices": choices, **ctx})

    # ----- health -------------------------------------------------------------------------------
    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return page(
            request,
            "message.html",
            title=study.title,
            message="Please open the personal invitation link you received.",
        )

    # ----- reader pages -------------------------------------------------------------------------
    def resume_url(token: str, reader: Reader) -> str:
        if reader.consented_at is None:
            return f"/r/{token}"
        pos = store.next_position(reader)
        return f"/r/{token}/done" if pos >= len(reader.order) else f"/r/{token}/item/{pos + 1}"

    @app.get("/r/{token}", response_class=HTMLResponse)
    def reader_home(request: Request, token: str) -> Any:
        reader = store.reader_by_token(token)
        if reader.consented_at is not None:
            return RedirectResponse(resume_url(token, reader), status_code=303)
        return page(request, "consent.html", token=token, total=len(reader.order))

    @app.post("/r/{token}/consent")
    def reader_consent(token: str) -> RedirectResponse:
        reader = store.consent(token)
        return RedirectResponse(resume_url(token, reader), status_code=303)

    @app.get("/r/{token}/item/{number}", response_class=HTMLResponse)
    def reader_item(request: Request, token: str, number: int) -> Any:
        reader = store.reader_by_token(token)
        answered = store.answers_of(reader.id)
        current = store.next_position(reader, answered)
        pos = number - 1
        if reader.consented_at is None or not 0 <= pos < len(reader.order) or pos > current:
            return RedirectResponse(resume_url(token, reader), status_code=303)
        key = reader.order[pos]
        if key in answered and not study.allow_change:
            return RedirectResponse(resume_url(token, reader), status_code=303)
        store.mark_shown(reader, key)
        prev = answered.get(key, {})
        return page(
            request,
            "item.html",
            token=token,
            key=key,
            number=number,
            total=len(reader.order),
            answered=len(answered),
            existing_answer=prev.get("answer") or "",
            existing_confidence=prev.get("confidence") or "",
            prev_url=f"/r/{token}/item/{number - 1}" if study.allow_change and number > 1 else "",
        )

    @app.get("/r/{token}/done", response_class=HTMLResponse)
    def reader_done(request: Request, token: str) -> Any:
        reader = store.reader_by_token(token)
        pos = store.next_position(reader)
        if pos < len(reader.order):
            return RedirectResponse(resume_url(token, reader), status_code=303)
        return page(
            request,
            "done.html",
            token=token,
            total=len(reader.order),
            review_url=f"/r/{token}/item/1" if study.allow_change else "",
        )

    @app.get("/r/{token}/image/{key}")
    def reader_image(token: str, key: str) -> FileResponse:
        reader = store.reader_by_token(token)
        if not KEY_RE.match(key) or key not in reader.order:
            raise HTTPException(404, "image not in this reader's set")
        return FileResponse(
            study.image_path(key), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    # ----- reader API ---------------------------------------------------------------------------
    @app.get("/api/r/{token}/state")
    def api_state(token: str) -> dict[str, Any]:
        reader = store.reader_by_token(token)
        answered = store.answers_of(reader.id)
        pos = store.next_position(reader, answered)
        return {
            "total": len(reader.order),
            "answered": len(answered),
            "next_position": pos + 1,
            "done": pos >= len(reader.order),
            "allow_change": study.allow_change,
            "confidence": study.confidence,
            "choices": [c["value"] for c in choices],
            "answers": [
                {
                    "position": i + 1,
                    "image": k,
                    "answer": answered[k]["answer"],
                    "confidence": answered[k]["confidence"],
                }
                for i, k in enumerate(reader.order)
                if k in answered
            ],
        }

    @app.get("/api/r/{token}/next")
    def api_next(token: str) -> dict[str, Any]:
        """The next unanswered image (recorded as shown now), or done."""
        reader = store.reader_by_token(token)
        pos = store.next_position(reader)
        if pos >= len(reader.order):
            return {"done": True, "total": len(reader.order)}
        key = reader.order[pos]
        store.mark_shown(reader, key)
        return {
            "done": False,
            "position": pos + 1,
            "total": len(reader.order),
            "image": key,
            "image_url": f"/r/{token}/image/{key}",
        }

    @app.post("/api/r/{token}/answers")
    def api_answer(token: str, body: AnswerIn) -> dict[str, Any]:
        if not KEY_RE.match(body.image):
            raise InvalidAnswer("image must be a 16-hex-digit image key")
        result = store.submit(
            token, body.image, body.answer, body.confidence, body.submission_id, body.client_ms
        )
        number = result.position + 2  # the item page redirects to the resume point when needed
        nxt = f"/r/{token}/item/{number}" if number <= len(study.images) else f"/r/{token}/done"
        return {
            "status": result.status,
            "position": result.position + 1,
            "answer": result.answer,
            "confidence": result.confidence,
            "next": nxt,
        }

    # ----- coordinator --------------------------------------------------------------------------
    def coordinator(request: Request) -> None:
        given = request.cookies.get(COOKIE, "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given or not secrets.compare_digest(given.encode(), coord_token.encode()):
            raise HTTPException(401, "coordinator token required")

    def is_coordinator(request: Request) -> bool:
        try:
            coordinator(request)
        except HTTPException:
            return False
        return True

    @app.get("/coordinator", response_class=HTMLResponse)
    def coord_home(request: Request, new: int | None = None) -> Any:
        if not is_coordinator(request):
            return page(request, "login.html")
        return page(
            request,
            "coordinator.html",
            progress=store.progress(),
            base=public_base(request),
            n_images=len(study.images),
        )

    @app.post("/coordinator/login")
    def coord_login(token: str = Form(...)) -> Any:
        if not secrets.compare_digest(token.encode(), coord_token.encode()):
            raise HTTPException(401, "wrong coordinator token")
        resp = RedirectResponse("/coordinator", status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return resp

    @app.post("/coordinator/readers", response_class=HTMLResponse, dependencies=[Depends(coordinator)])
    def coord_add_reader(
        request: Request, name: str = Form(...), role: str = Form(""), years_experience: str = Form("")
    ) -> Any:
        try:
            years = float(years_experience) if years_experience.strip() else None
        except ValueError as exc:
            raise InvalidAnswer(f"years of experience must be a number, got {years_experience!r}") from exc
        reader, token = store.add_reader(name, role, years)
        link = f"{public_base(request)}/r/{token}"
        return page(
            request,
            "coordinator.html",
            progress=store.progress(),
            new_reader=reader,
            new_link=link,
            base=public_base(request),
            n_images=len(study.images),
        )

    @app.post("/coordinator/readers/{reader_id}/revoke", dependencies=[Depends(coordinator)])
    def coord_revoke(reader_id: int) -> RedirectResponse:
        store.revoke(reader_id)
        return RedirectResponse("/coordinator", status_code=303)

    @app.get("/coordinator/export.csv", dependencies=[Depends(coordinator)])
    def coord_export() -> PlainTextResponse:
        return PlainTextResponse(
            export_csv_text(store.export_rows()),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="answers.csv"'},
        )

    @app.get("/coordinator/readers/{reader_id}/original.csv", dependencies=[Depends(coordinator)])
    def coord_original(reader_id: int) -> PlainTextResponse:
        store.get_reader(reader_id)
        return PlainTextResponse(
            original_csv_text(store.export_rows(), reader_id),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="reader{reader_id}.csv"'},
        )

    @app.get("/api/coordinator/progress", dependencies=[Depends(coordinator)])
    def api_progress() -> list[dict[str, Any]]:
        return store.progress()

    @app.post("/api/coordinator/readers", dependencies=[Depends(coordinator)])
    def api_add_reader(request: Request, body: ReaderIn) -> dict[str, Any]:
        reader, token = store.add_reader(body.name, body.role, body.years_experience)
        return {
            "id": reader.id,
            "name": reader.name,
            "token": token,
            "invite_url": f"{public_base(request)}/r/{token}",
            "seed": reader.seed,
        }

    @app.post("/api/coordinator/readers/{reader_id}/revoke", dependencies=[Depends(coordinator)])
    def api_revoke(reader_id: int) -> dict[str, Any]:
        reader = store.revoke(reader_id)
        return {"id": reader.id, "revoked": reader.revoked_at is not None}

    return app
