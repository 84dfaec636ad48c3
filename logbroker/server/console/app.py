"""The web console: server-rendered pages over the broker's own state.

The console runs on the broker's trio loop (``server/http.py``), so views
read the broker directly, on its thread, as request handlers do. Each view
module (``topics``, ``groups``, ``schemas``, ``settings``) contributes its
routes; this module owns what they share: the login, the CSRF check, the
ACL check, rendering, and the rates sampler.

Security: with SASL users configured, every page needs a login with a
broker user's name and password (a signed, HttpOnly, SameSite=Strict
cookie), and every view asks the broker's authorizer as that user.
Mutating requests are POSTs carrying a per-session token and, when the
browser sends one, an Origin of this console; ``read_only`` refuses them all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from logbroker.broker.security import AuthenticationError, new_mechanism
from logbroker.broker.security.acls import CLUSTER
from logbroker.broker.session import RequestContext

if TYPE_CHECKING:
    from logbroker.broker import Broker
    from logbroker.server.metrics import Metrics

__all__ = ["Console", "Viewer", "console_app"]

log = logging.getLogger("logbroker.console")

_HERE = Path(__file__).resolve().parent
_COOKIE = "logbroker_console"
_SESSION_SECONDS = 12 * 3600
_VIEW_MODULES = ("topics", "groups", "schemas", "settings")
_RATE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the principal for ACL checks, the user name to show, and
    the token their forms must carry."""

    principal: str
    user: str | None
    csrf: str


class _Rates:
    """Produce and fetch rates from the broker's running totals, sampled when pages ask."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int, int, int]] = deque()

    def sample(self, broker: Broker) -> tuple[float, float, float]:
        """(records in/s, bytes in/s, bytes out/s) over about the last minute."""
        now = time.monotonic()
        traffic = broker.traffic
        point = (now, sum(traffic.records_in.values()), sum(traffic.bytes_in.values()),
                 sum(traffic.bytes_out.values()))
        self._samples.append(point)
        while len(self._samples) > 2 and now - self._samples[1][0] > _RATE_WINDOW_S:
            self._samples.popleft()
        first = self._samples[0]
        span = now - first[0]
        if span < 0.5:
            return 0.0, 0.0, 0.0
        return ((point[1] - first[1]) / span, (point[2] - first[2]) / span, (point[3] - first[3]) / span)


class Console:
    """What the views share. One per console app."""

    def __init__(self, broker: Broker, *, metrics: Metrics | None, read_only: bool,
                 listeners: Callable[[], list[str]],
                 appended: Callable[[list[tuple[str, int]]], None] = lambda partitions: None) -> None:
        self.broker = broker
        self.appended = appended
        """Wake the fetches waiting on these partitions (records the console produced)."""
        self.listeners = listeners
        self.metrics = metrics
        self.read_only = read_only
        self.started = time.time()
        self.rates = _Rates()
        self._secret = secrets.token_bytes(32)  # sessions end when the broker restarts
        self._logins: dict[bytes, float] = {}
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"), autoescape=True, trim_blocks=True,
            lstrip_blocks=True, undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(size=human_size, number=lambda n: f"{n:,}", quote=lambda s: quote(str(s), ""))
        self.templates.globals["time_text"] = time_text

    @property
    def login_required(self) -> bool:
        return self.broker.config.requires_sasl

    # -- sessions ------------------------------------------------------------------

    def _sign(self, payload: bytes) -> str:
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(payload).decode() + "." + base64.urlsafe_b64encode(mac).decode()

    def _unsign(self, token: str) -> bytes | None:
        body, _, mac = token.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body)
            given = base64.urlsafe_b64decode(mac)
        except (ValueError, TypeError):
            return None
        expected = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return payload if hmac.compare_digest(given, expected) else None

    def session_cookie(self, user: str) -> str:
        return self._sign(json.dumps({"u": user, "e": int(time.time()) + _SESSION_SECONDS,
                                      "n": secrets.token_hex(8)}).encode())

    def viewer(self, request: Request) -> Viewer | None:
        """The logged-in viewer, or None (login needed)."""
        cookie = request.cookies.get(_COOKIE, "")
        if not self.login_required:
            return Viewer("User:ANONYMOUS", None, self._csrf_for(cookie or "anonymous"))
        payload = self._unsign(cookie) if cookie else None
        if payload is None:
            return None
        session = json.loads(payload)
        if session["e"] < time.time() or session["u"] not in self.broker.users.users():
            return None
        return Viewer(f"User:{session['u']}", session["u"], self._csrf_for(cookie))

    def _csrf_for(self, cookie: str) -> str:
        return hmac.new(self._secret, b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()

    def check_password(self, user: str, password: str) -> bool:
        try:
            new_mechanism("PLAIN", self.broker.users.credential).step(f"\0{user}\0{password}".encode())
        except AuthenticationError:
            return False
        return True

    # -- checks --------------------------------------------------------------------

    def allowed(self, viewer: Viewer, operation: str, resource_type: str, name: str) -> bool:
        ctx = RequestContext(principal=viewer.principal, listener="HTTP")
        return self.broker.allowed(ctx, operation, resource_type, name)

    def allowed_on_cluster(self, viewer: Viewer, operation: str) -> bool:
        return self.allowed(viewer, operation, "cluster", CLUSTER)

    async def check_post(self, request: Request, viewer: Viewer) -> dict[str, str]:
        """The form of a mutating request, after the CSRF and read-only checks.

        :raises HTTPException: 403 read-only console, wrong token or foreign origin.
        """
        if self.read_only:
            raise HTTPException(403, "this console is read-only (--console-read-only)")
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            here = f"{request.url.scheme}://{request.url.netloc}"
            if urlsplit(origin)._replace(path="").geturl().rstrip("/") != here:
                raise HTTPException(403, f"cross-site request from {origin} refused")
        elif origin == "null":
            raise HTTPException(403, "cross-site request refused")
        form = await read_form(request)
        token = form.get("csrf", "")
        if not hmac.compare_digest(token, viewer.csrf):
            raise HTTPException(403, "the form's token is missing or stale: reload the page and try again")
        return form

    # -- rendering -----------------------------------------------------------------

    def render(self, request: Request, viewer: Viewer, template: str, status: int = 200, **context: Any) -> Response:
        page = self.templates.get_template(template).render(
            request=request, viewer=viewer, read_only=self.read_only, cluster_id=self.broker.cluster_id,
            login_required=self.login_required, **context,
        )
        return HTMLResponse(page, status_code=status)


Handler = Callable[[Console, Request, Viewer], Awaitable[Response]]


def page(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route endpoint: the login check, then ``handler(console, request, viewer)``."""

    async def endpoint(request: Request) -> Response:
        viewer = console.viewer(request)
        if viewer is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, '')}", status_code=303)
        return await handler(console, request, viewer)

    return endpoint


_MAX_FORM_BYTES = 1 << 20


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form (the console's forms are all of that kind;
    the last value wins for a repeated name).

    :raises HTTPException: 413 for a body over 1 MiB, 415 for another encoding.
    """
    kind = request.headers.get("content-type", "application/x-www-form-urlencoded").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, f"forms must be application/x-www-form-urlencoded, not {kind}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise HTTPException(413, "the form is larger than 1 MiB")
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def human_size(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def time_text(ms: int | None) -> str:
    """Epoch milliseconds as ``2026-12-05 10:00:00.123 UTC``."""
    if ms is None or ms < 0:
        return "-"
    seconds = ms / 1000
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{ms % 1000:03d} UTC"


async def _login_page(console: Console, request: Request) -> Response:
    target = request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # only paths of this console: no open redirect
    if not console.login_required:
        return RedirectResponse(target, status_code=303)
    error = None
    if request.method == "POST":
        form = await read_form(request)
        user, password = form.get("username", ""), form.get("password", "")
        if console.check_password(user, password):
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(_COOKIE, console.session_cookie(user), max_age=_SESSION_SECONDS, httponly=True,
                                samesite="strict", secure=request.url.scheme == "https")
            log.info("console: %s logged in from %s", user, request.client.host if request.client else "?")
            return response
        error = "Wrong user name or password."
    anonymous = Viewer("User:ANONYMOUS", None, "")
    return console.render(request, anonymous, "login.html", status=401 if error else 200, error=error,
                          next=target)


async def _logout(console: Console, request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(_COOKIE)
    return response


def console_app(broker: Broker, *, metrics: Metrics | None = None, read_only: bool = False,
                listeners: Callable[[], list[str]] = list,
                appended: Callable[[list[tuple[str, int]]], None] = lambda partitions: None) -> Starlette:
    """The ASGI application of ``--console-port``; ``listeners`` are shown on the overview."""
    console = Console(broker, metrics=metrics, read_only=read_only, listeners=listeners,
                      appended=appended)
    async def login(request: Request) -> Response:
        return await _login_page(console, request)

    async def logout(request: Request) -> Response:
        return await _logout(console, request)

    routes: list[BaseRoute] = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST", "GET"]),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    for name in _VIEW_MODULES:
        module = import_module(f"logbroker.server.console.{name}")
        routes.extend(module.routes(console))

    async def error_page(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "") or "Something went wrong."
        viewer = console.viewer(request) or Viewer("User:ANONYMOUS", None, "")
        return console.render(request, viewer, "error.html", status=status, status_code=status, detail=detail)

    async def failure_page(request: Request, exc: Exception) -> Response:
        log.exception("console: %s %s failed", request.method, request.url.path, exc_info=exc)
        viewer = console.viewer(request) or Viewer("User:ANONYMOUS", None, "")
        return console.render(request, viewer, "error.html", status=500, status_code=500,
                              detail=f"The console failed to answer: {type(exc).__name__}: {exc}")

    return Starlette(routes=routes, exception_handlers={HTTPException: error_page, Exception: failure_page})


def visible(console: Console, viewer: Viewer, names: Iterable[str], operation: str = "describe") -> list[str]:
    """``names`` of topics ``viewer`` may ``operation``, sorted."""
    return sorted(n for n in names if console.allowed(viewer, operation, "topic", n))


def disk_usage(path: str) -> tuple[int, int]:
    """(free, total) bytes of the file system holding ``path``."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize
