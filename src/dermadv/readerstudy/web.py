"""What the reader-study routers share: the app's context and the dependencies built on it.

``create_app`` puts one :class:`WebContext` on ``app.state.ctx``; every route gets it through the
:func:`context` dependency, so the routers in ``reader_routes`` and ``coordinator_routes`` hold no
state of their own and can be included in any app built by ``create_app``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from dermadv.readerstudy.store import AnswerStore, Reader
from dermadv.readerstudy.study import Study

COOKIE = "dermadv_coordinator"


@dataclass(frozen=True)
class WebContext:
    """The study, its answer store, the coordinator token, the templates and the public address."""

    study: Study
    store: AnswerStore
    coordinator_token: str
    templates: Jinja2Templates
    public_url: str | None = None

    def page(self, request: Request, name: str, **ctx: Any) -> HTMLResponse:
        """Render template ``name`` with the study and its answer choices."""
        return self.templates.TemplateResponse(
            request, name, {"study": self.study, "choices": self.study.choices, **ctx}
        )

    def public_base(self, request: Request) -> str:
        """The address readers use: ``public_url`` or the address this request came to."""
        return (self.public_url or str(request.base_url)).rstrip("/")

    def resume_url(self, token: str, reader: Reader) -> str:
        """Where ``reader`` goes on: consent, the first unanswered item, or done."""
        if reader.consented_at is None:
            return f"/r/{token}"
        pos = self.store.next_position(reader)
        return f"/r/{token}/done" if pos >= len(reader.order) else f"/r/{token}/item/{pos + 1}"

    def is_coordinator(self, request: Request) -> bool:
        """Whether the request carries the coordinator token (cookie or ``Authorization: Bearer``)."""
        given = request.cookies.get(COOKIE, "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return bool(given) and secrets.compare_digest(given.encode(), self.coordinator_token.encode())


def context(request: Request) -> WebContext:
    """Dependency: the :class:`WebContext` of the app serving ``request``."""
    ctx: WebContext = request.app.state.ctx
    return ctx


def require_coordinator(request: Request, ctx: WebContext = Depends(context)) -> None:
    """Dependency: refuse (401) a request without the coordinator token."""
    if not ctx.is_coordinator(request):
        raise HTTPException(401, "coordinator token required")
