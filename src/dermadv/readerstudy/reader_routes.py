"""Reader routes: consent, one item page at a time, done page, images and the reader JSON API.

Every URL carries the reader's token; images are served only when their key is in that reader's set,
and the file comes from the manifest, never from the URL.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from dermadv.readerstudy.store import InvalidAnswer
from dermadv.readerstudy.study import KEY_RE
from dermadv.readerstudy.web import WebContext, context

router = APIRouter()

#: The image is fitted to the viewer, but never enlarged more than this (the zoom buttons go further).
MAX_UPSCALE = 4


class AnswerIn(BaseModel):
    """Body of POST /api/r/{token}/answers."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=16, max_length=16)
    answer: str = Field(min_length=1, max_length=32)
    confidence: int | None = Field(default=None, strict=True)
    submission_id: str = Field(min_length=8, max_length=64)
    client_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)


# ----- reader pages -----------------------------------------------------------------------------
@router.get("/r/{token}", response_class=HTMLResponse)
def reader_home(request: Request, token: str, ctx: WebContext = Depends(context)) -> Any:
    reader = ctx.store.reader_by_token(token)
    if reader.consented_at is not None:
        return RedirectResponse(ctx.resume_url(token, reader), status_code=303)
    return ctx.page(request, "consent.html", token=token, total=len(reader.order))


@router.post("/r/{token}/consent")
def reader_consent(token: str, ctx: WebContext = Depends(context)) -> RedirectResponse:
    reader = ctx.store.consent(token)
    return RedirectResponse(ctx.resume_url(token, reader), status_code=303)


@router.get("/r/{token}/item/{number}", response_class=HTMLResponse)
def reader_item(request: Request, token: str, number: int, ctx: WebContext = Depends(context)) -> Any:
    store, study = ctx.store, ctx.study
    reader = store.reader_by_token(token)
    answered = store.answers_of(reader.id)
    current = store.next_position(reader, answered)
    pos = number - 1
    if reader.consented_at is None or not 0 <= pos < len(reader.order) or pos > current:
        return RedirectResponse(ctx.resume_url(token, reader), status_code=303)
    key = reader.order[pos]
    if key in answered and not study.allow_change:
        return RedirectResponse(ctx.resume_url(token, reader), status_code=303)
    store.mark_shown(reader, key)
    prev = answered.get(key, {})
    return ctx.page(
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
        max_upscale=MAX_UPSCALE,
    )


@router.get("/r/{token}/done", response_class=HTMLResponse)
def reader_done(request: Request, token: str, ctx: WebContext = Depends(context)) -> Any:
    reader = ctx.store.reader_by_token(token)
    pos = ctx.store.next_position(reader)
    if pos < len(reader.order):
        return RedirectResponse(ctx.resume_url(token, reader), status_code=303)
    return ctx.page(
        request,
        "done.html",
        token=token,
        total=len(reader.order),
        review_url=f"/r/{token}/item/1" if ctx.study.allow_change else "",
    )


@router.get("/r/{token}/image/{key}")
def reader_image(token: str, key: str, ctx: WebContext = Depends(context)) -> FileResponse:
    reader = ctx.store.reader_by_token(token)
    if not KEY_RE.match(key) or key not in reader.order:
        raise HTTPException(404, "image not in this reader's set")
    return FileResponse(
        ctx.study.image_path(key), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )


# ----- reader API -------------------------------------------------------------------------------
@router.get("/api/r/{token}/state")
def api_state(token: str, ctx: WebContext = Depends(context)) -> dict[str, Any]:
    store, study = ctx.store, ctx.study
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
        "choices": [c["value"] for c in study.choices],
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


@router.get("/api/r/{token}/next")
def api_next(token: str, ctx: WebContext = Depends(context)) -> dict[str, Any]:
    """The next unanswered image (recorded as shown now), or done."""
    reader = ctx.store.reader_by_token(token)
    pos = ctx.store.next_position(reader)
    if pos >= len(reader.order):
        return {"done": True, "total": len(reader.order)}
    key = reader.order[pos]
    ctx.store.mark_shown(reader, key)
    return {
        "done": False,
        "position": pos + 1,
        "total": len(reader.order),
        "image": key,
        "image_url": f"/r/{token}/image/{key}",
    }


@router.post("/api/r/{token}/answers")
def api_answer(token: str, body: AnswerIn, ctx: WebContext = Depends(context)) -> dict[str, Any]:
    if not KEY_RE.match(body.image):
        raise InvalidAnswer("image must be a 16-hex-digit image key")
    result = ctx.store.submit(
        token, body.image, body.answer, body.confidence, body.submission_id, body.client_ms
    )
    number = result.position + 2  # the item page redirects to the resume point when needed
    nxt = f"/r/{token}/item/{number}" if number <= len(ctx.study.images) else f"/r/{token}/done"
    return {
        "status": result.status,
        "position": result.position + 1,
        "answer": result.answer,
        "confidence": result.confidence,
        "next": nxt,
    }
