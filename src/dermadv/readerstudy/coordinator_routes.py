"""Coordinator routes (``/coordinator`` pages, ``/api/coordinator`` JSON): readers, progress, exports.

All but the home page, the login and the logout need the coordinator (:func:`require_coordinator`:
bearer token, or a session plus its CSRF token for anything that changes state); the home page shows
the login form to anyone without it. Forms follow POST-redirect-GET: reloading a page never repeats
an action (a new invitation link is shown once, on the page the POST redirects to).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from dermadv.readerstudy.store import (
    InvalidAnswer,
    changes_csv_text,
    export_csv_text,
    hash_token,
    original_csv_text,
)
from dermadv.readerstudy.web import (
    COOKIE,
    Coordinator,
    WebContext,
    client_address,
    context,
    require_coordinator,
)

router = APIRouter()
guarded = APIRouter(dependencies=[Depends(require_coordinator)])


class ReaderIn(BaseModel):
    """Body of POST /api/coordinator/readers."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: str = Field(default="", max_length=200)
    years_experience: float | None = Field(default=None, ge=0, le=80, allow_inf_nan=False)


def _login_page(request: Request, ctx: WebContext, message: str = "", status: int = 200) -> HTMLResponse:
    return ctx.page(
        request, "login.html", status_code=status, message=message, login_csrf=ctx.login_form_token()
    )


@router.get("/coordinator", response_class=HTMLResponse)
def coord_home(request: Request, ctx: WebContext = Depends(context)) -> Any:
    who = ctx.coordinator(request)
    if who is None:
        return _login_page(request, ctx)
    flash = ctx.flashes.pop(hash_token(who.session), None) if who.session else None
    return ctx.page(
        request,
        "coordinator.html",
        progress=ctx.store.progress(),
        new_reader_name=flash[0] if flash else "",
        new_link=flash[1] if flash else "",
        n_images=len(ctx.study.images),
        csrf=who.csrf or "",
    )


@router.post("/coordinator/login")
def coord_login(
    request: Request,
    token: str = Form(""),
    csrf: str = Form(""),
    ctx: WebContext = Depends(context),
) -> Any:
    client = client_address(request)
    wait = ctx.limiter.retry_after(client)
    if wait:
        return _login_page(request, ctx, f"Too many failed attempts. Try again in {wait} s.", 429)
    if not ctx.login_form_token_ok(csrf):
        return _login_page(request, ctx, "The login form had expired. Please enter the token again.", 403)
    if not ctx.check_token(token):
        ctx.limiter.failed(client)
        return _login_page(request, ctx, "Wrong coordinator token.", 401)
    sid, _ = ctx.store.create_session()
    resp = RedirectResponse("/coordinator", status_code=303)
    resp.set_cookie(
        COOKIE, sid, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    return resp


@router.post("/coordinator/logout")
async def coord_logout(request: Request, ctx: WebContext = Depends(context)) -> Any:
    who = ctx.coordinator(request)
    if who is not None and who.session is not None:
        await require_coordinator(request, ctx)  # a session's logout needs its CSRF token
        ctx.store.end_session(who.session)
        ctx.flashes.pop(hash_token(who.session), None)
    resp = _login_page(request, ctx, "Logged out.")
    resp.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return resp


@guarded.post("/coordinator/readers")
def coord_add_reader(
    name: str = Form(...),
    role: str = Form(""),
    years_experience: str = Form(""),
    ctx: WebContext = Depends(context),
    who: Coordinator = Depends(require_coordinator),
) -> RedirectResponse:
    try:
        years = float(years_experience) if years_experience.strip() else None
    except ValueError as exc:
        raise InvalidAnswer(f"years of experience must be a number, got {years_experience[:40]!r}") from exc
    reader, token = ctx.store.add_reader(name, role, years)
    if who.session is not None:  # shown once, on the page this redirects to (POST-redirect-GET)
        ctx.flashes[hash_token(who.session)] = (reader.name, f"{ctx.public_base()}/r/{token}")
    return RedirectResponse("/coordinator", status_code=303)


@guarded.get("/coordinator/readers/{reader_id}/revoke", response_class=HTMLResponse)
def coord_revoke_confirm(
    request: Request,
    reader_id: int,
    ctx: WebContext = Depends(context),
    who: Coordinator = Depends(require_coordinator),
) -> Any:
    reader = ctx.store.get_reader(reader_id)
    answered = len(ctx.store.answers_of(reader.id))
    return ctx.page(
        request, "revoke.html", reader=reader, answered=answered, total=len(reader.order), csrf=who.csrf or ""
    )


@guarded.post("/coordinator/readers/{reader_id}/revoke")
def coord_revoke(reader_id: int, ctx: WebContext = Depends(context)) -> RedirectResponse:
    ctx.store.revoke(reader_id)
    return RedirectResponse("/coordinator", status_code=303)


def _csv(text: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(
        text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@guarded.get("/coordinator/export.csv")
def coord_export(ctx: WebContext = Depends(context)) -> PlainTextResponse:
    return _csv(export_csv_text(ctx.store.export_rows()), "answers.csv")


@guarded.get("/coordinator/changes.csv")
def coord_changes(ctx: WebContext = Depends(context)) -> PlainTextResponse:
    return _csv(changes_csv_text(ctx.store.change_rows()), "answer_changes.csv")


@guarded.get("/coordinator/readers/{reader_id}/original.csv")
def coord_original(reader_id: int, ctx: WebContext = Depends(context)) -> PlainTextResponse:
    ctx.store.get_reader(reader_id)
    return _csv(original_csv_text(ctx.store.export_rows(), reader_id), f"reader{reader_id}.csv")


@guarded.get("/api/coordinator/progress")
def api_progress(ctx: WebContext = Depends(context)) -> list[dict[str, Any]]:
    return ctx.store.progress()


@guarded.post("/api/coordinator/readers")
def api_add_reader(body: ReaderIn, ctx: WebContext = Depends(context)) -> dict[str, Any]:
    reader, token = ctx.store.add_reader(body.name, body.role, body.years_experience)
    return {
        "id": reader.id,
        "name": reader.name,
        "token": token,
        "invite_url": f"{ctx.public_base()}/r/{token}",
        "seed": reader.seed,
    }


@guarded.post("/api/coordinator/readers/{reader_id}/revoke")
def api_revoke(reader_id: int, ctx: WebContext = Depends(context)) -> dict[str, Any]:
    reader = ctx.store.revoke(reader_id)
    return {"id": reader.id, "revoked": reader.revoked_at is not None}
