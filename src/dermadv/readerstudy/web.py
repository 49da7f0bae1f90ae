"""What the reader-study routers share: the app's context and the dependencies built on it.

``create_app`` puts one :class:`WebContext` on ``app.state.ctx``; every route gets it through the
:func:`context` dependency, so the routers in ``reader_routes`` and ``coordinator_routes`` hold no
state of their own and can be included in any app built by ``create_app``.

Coordinator authentication: a script sends ``Authorization: Bearer <coordinator token>``; a browser
logs in once and then holds a session cookie (a random session id, stored hashed, never the token).
Every state-changing request made with a session needs that session's CSRF token (form field ``csrf``
or header ``X-CSRF-Token``); the app also refuses unsafe requests from a foreign ``Origin``
(:func:`origin_allowed`). Failed logins are rate-limited per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from dermadv.readerstudy.store import AnswerStore, Reader, StudyRequestError
from dermadv.readerstudy.study import Study

COOKIE = "dermadv_coordinator"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_FORM_SECONDS = 3600
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


class LoginLimiter:
    """At most ``max_failures`` failed coordinator logins per client address in ``window`` seconds."""

    def __init__(self, max_failures: int = 10, window: float = 300.0) -> None:
        self.max_failures, self.window = max_failures, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        q = self._failures.setdefault(client, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: it may now)."""
        now = time.monotonic()
        with self._lock:
            q = self._recent(client, now)
            if len(q) < self.max_failures:
                return 0
            return max(1, int(q[0] + self.window - now) + 1)

    def failed(self, client: str) -> None:
        """Record a failed attempt by ``client``."""
        now = time.monotonic()
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._failures) > 10_000:  # many addresses: forget those with nothing recent
                for key in [k for k, q in self._failures.items() if not q or q[-1] <= now - self.window]:
                    del self._failures[key]


@dataclass(frozen=True)
class Coordinator:
    """An authenticated coordinator request: by bearer token (``session`` None) or by session."""

    session: str | None = None
    csrf: str | None = None


@dataclass(frozen=True)
class WebContext:
    """The study, its answer store, the coordinator token, the templates and the public address.

    ``coordinator_token`` is a fixed token given at start (``--coordinator-token``); without one the
    token stored (hashed) in the study's database is used. ``public_url`` is where readers reach the
    server: invite links are built from it, never from a request's Host header.
    """

    study: Study
    store: AnswerStore
    coordinator_token: str | None
    templates: Jinja2Templates
    public_url: str | None = None
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    flashes: dict[str, tuple[str, str]] = field(default_factory=dict)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def page(self, request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        """Render template ``name`` with the study and its answer choices."""
        return self.templates.TemplateResponse(
            request,
            name,
            {"study": self.study, "choices": self.study.choices, **ctx},
            status_code=status_code,
        )

    def public_base(self) -> str:
        """The address readers use (``public_url``; the loopback default when none was configured)."""
        return (self.public_url or DEFAULT_PUBLIC_URL).rstrip("/")

    def resume_url(self, token: str, reader: Reader) -> str:
        """Where ``reader`` goes on: consent, the first unanswered item, or done."""
        if reader.consented_at is None:
            return f"/r/{token}"
        pos = self.store.next_position(reader)
        return f"/r/{token}/done" if pos >= len(reader.order) else f"/r/{token}/item/{pos + 1}"

    # ----- coordinator credentials ------------------------------------------------------------
    def check_token(self, given: str) -> bool:
        """Whether ``given`` is the coordinator token (the fixed one, else the study's stored one)."""
        if self.coordinator_token is not None:
            return bool(given) and secrets.compare_digest(given.encode(), self.coordinator_token.encode())
        return self.store.check_coordinator_token(given)

    def coordinator(self, request: Request) -> Coordinator | None:
        """The coordinator behind ``request`` (bearer token or live session cookie), or None."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            client = client_address(request)
            if self.limiter.retry_after(client):
                raise StudyRequestError("too many failed coordinator logins; try again later", 429)
            if self.check_token(auth[7:].strip()):
                return Coordinator()
            self.limiter.failed(client)
            return None
        sid = request.cookies.get(COOKIE, "")
        csrf = self.store.session_csrf(sid) if sid else None
        return Coordinator(sid, csrf) if csrf is not None else None

    def is_coordinator(self, request: Request) -> bool:
        """Whether the request carries the coordinator token or a live coordinator session."""
        return self.coordinator(request) is not None

    def login_form_token(self) -> str:
        """A CSRF token for the login form (signed with this process's secret; valid for an hour)."""
        stamp = str(int(time.time()))
        mac = hmac.new(self.secret, f"login:{stamp}".encode(), hashlib.sha256).hexdigest()
        return f"{stamp}.{mac}"

    def login_form_token_ok(self, token: str) -> bool:
        """Whether ``token`` came from :meth:`login_form_token` within the last hour."""
        stamp, _, mac = (token or "").partition(".")
        if not stamp.isdigit() or len(stamp) > 12:
            return False
        expected = hmac.new(self.secret, f"login:{stamp}".encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(mac, expected) and 0 <= time.time() - int(stamp) <= LOGIN_FORM_SECONDS


def client_address(request: Request) -> str:
    """The client's address (as the proxy reported it, when uvicorn trusts the proxy)."""
    return request.client.host if request.client else "unknown"


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (lower case; default ports dropped)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return ""
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def origin_allowed(origin: str | None, referer: str | None, own: str, public_url: str | None) -> bool:
    """Whether an unsafe request with these ``Origin``/``Referer`` headers may be served.

    ``own`` is the origin the request was addressed to (scheme + Host header). A request whose
    ``Origin`` (or, without one, ``Referer``) is neither ``own`` nor ``public_url``'s origin is refused,
    and so is ``Origin: null`` (a sandboxed or opaque page). Requests with neither header come from
    scripts, not browsers (browsers send ``Origin`` with every POST), and are allowed.
    """
    allowed = {origin_of(own)}
    if public_url:
        allowed.add(origin_of(public_url))
    if origin is not None:
        return origin.strip().lower() != "null" and origin_of(origin.strip()) in allowed
    if referer:
        return origin_of(referer.strip()) in allowed
    return True


def context(request: Request) -> WebContext:
    """Dependency: the :class:`WebContext` of the app serving ``request``."""
    ctx: WebContext = request.app.state.ctx
    return ctx


async def require_coordinator(request: Request, ctx: WebContext = Depends(context)) -> Coordinator:
    """Dependency: refuse (401) a request without the coordinator token or session; with a session,
    refuse (403) a state-changing request without the session's CSRF token."""
    who = ctx.coordinator(request)
    if who is None:
        raise HTTPException(401, "coordinator token required")
    if request.method not in SAFE_METHODS and who.session is not None:
        given = request.headers.get(CSRF_HEADER, "")
        if not given and "form" in request.headers.get("content-type", ""):
            value = (await request.form()).get(CSRF_FIELD, "")
            given = value if isinstance(value, str) else ""
        if not (given and who.csrf and secrets.compare_digest(given.encode(), who.csrf.encode())):
            raise StudyRequestError("missing or wrong CSRF token: reload the coordinator page", 403)
    return who
