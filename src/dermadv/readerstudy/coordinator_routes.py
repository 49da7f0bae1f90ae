"""Coordinator routes (``/coordinator`` pages, ``/api/coordinator`` JSON): readers, progress, exports.

All but the home page and the login form need the coordinator token (:func:`require_coordinator`);
the home page shows the login form to anyone without it.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from dermadv.readerstudy.store import InvalidAnswer, export_csv_text, original_csv_text
from dermadv.readerstudy.web import COOKIE, WebContext, context, require_coordinator

router = APIRouter()
guarded = APIRouter(dependencies=[Depends(require_coordinator)])


class ReaderIn(BaseModel):
    """Body of POST /api/coordinator/readers."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: str = Field(default="", max_length=200)
    years_experience: float | None = Field(default=None, ge=0, le=80)


@router.get("/coordinator", response_class=HTMLResponse)
def coord_home(request: Request, new: int | None = None, ctx: WebContext = Depends(context)) -> Any:
    if not ctx.is_coordinator(request):
        return ctx.page(request, "login.html")
    return ctx.page(
        request,
        "coordinator.html",
        progress=ctx.store.progress(),
        base=ctx.public_base(request),
        n_images=len(ctx.study.images),
    )


@router.post("/coordinator/login")
def coord_login(token: str = Form(...), ctx: WebContext = Depends(context)) -> Any:
    if not secrets.compare_digest(token.encode(), ctx.coordinator_token.encode()):
        raise HTTPException(401, "wrong coordinator token")
    resp = RedirectResponse("/coordinator", status_code=303)
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return resp


@guarded.post("/coordinator/readers", response_class=HTMLResponse)
def coord_add_reader(
    request: Request,
    name: str = Form(...),
    role: str = Form(""),
    years_experience: str = Form(""),
    ctx: WebContext = Depends(context),
) -> Any:
    try:
        years = float(years_experience) if years_experience.strip() else None
    except ValueError as exc:
        raise InvalidAnswer(f"years of experience must be a number, got {years_experience!r}") from exc
    reader, token = ctx.store.add_reader(name, role, years)
    link = f"{ctx.public_base(request)}/r/{token}"
    return ctx.page(
        request,
        "coordinator.html",
        progress=ctx.store.progress(),
        new_reader=reader,
        new_link=link,
        base=ctx.public_base(request),
        n_images=len(ctx.study.images),
    )


@guarded.post("/coordinator/readers/{reader_id}/revoke")
def coord_revoke(reader_id: int, ctx: WebContext = Depends(context)) -> RedirectResponse:
    ctx.store.revoke(reader_id)
    return RedirectResponse("/coordinator", status_code=303)


@guarded.get("/coordinator/export.csv")
def coord_export(ctx: WebContext = Depends(context)) -> PlainTextResponse:
    return PlainTextResponse(
        export_csv_text(ctx.store.export_rows()),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="answers.csv"'},
    )


@guarded.get("/coordinator/readers/{reader_id}/original.csv")
def coord_original(reader_id: int, ctx: WebContext = Depends(context)) -> PlainTextResponse:
    ctx.store.get_reader(reader_id)
    return PlainTextResponse(
        original_csv_text(ctx.store.export_rows(), reader_id),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="reader{reader_id}.csv"'},
    )


@guarded.get("/api/coordinator/progress")
def api_progress(ctx: WebContext = Depends(context)) -> list[dict[str, Any]]:
    return ctx.store.progress()


@guarded.post("/api/coordinator/readers")
def api_add_reader(request: Request, body: ReaderIn, ctx: WebContext = Depends(context)) -> dict[str, Any]:
    reader, token = ctx.store.add_reader(body.name, body.role, body.years_experience)
    return {
        "id": reader.id,
        "name": reader.name,
        "token": token,
        "invite_url": f"{ctx.public_base(request)}/r/{token}",
        "seed": reader.seed,
    }


@guarded.post("/api/coordinator/readers/{reader_id}/revoke")
def api_revoke(reader_id: int, ctx: WebContext = Depends(context)) -> dict[str, Any]:
    reader = ctx.store.revoke(reader_id)
    return {"id": reader.id, "revoked": reader.revoked_at is not None}
