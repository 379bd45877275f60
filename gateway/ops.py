"""Operator surface: rq-dashboard mounted under /ops/rq behind Koppel's admin authentication.

rq-dashboard (a Flask app) has no authentication, no CSRF protection and a "requeue all" route that
answers GET, so `OperatorGuard` stands in front of it:

* who: a script sends `Authorization: Bearer <admin token>` (constant-time compare); a browser
  brings the web console's session cookie (log in at /console/login; the console's own session check,
  so logging out there ends access here too). HTTP Basic is refused: a browser caches it and sends it
  along with any cross-site request. A browser that is not logged in is sent to the console's login,
  which brings it back.
* what: a request that changes state must be a POST (or DELETE) from the gateway's own origin:
  `Sec-Fetch-Site`, `Origin` and `Referer`, when sent, must name this host or `gateway.public_url`, and
  a browser's (session) request must carry one of them. rq-dashboard's JavaScript makes its POSTs from
  its own pages, so they pass; a form posted from another site does not. GET on a state-changing route
  (`STATE_CHANGING`) answers 405.
* every answer carries `SECURITY_HEADERS`: a CSP rq-dashboard's pages work under (its scripts are
  inline and its row templates use underscore's compiled templates, hence 'unsafe-inline' and
  'unsafe-eval' for scripts — from this origin only; nothing from elsewhere), frame denial, nosniff,
  a Referrer-Policy, no caching.

Without an admin token configured the operator routes answer 403: there is no unauthenticated mode.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import quote, urlsplit

import redis
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DASHBOARD_PREFIX = "/rq"  # inside the /ops mount; rq-dashboard needs a non-empty blueprint prefix
LOGIN_PATH = "/console/login"

SAFE_METHODS = frozenset({"GET", "HEAD"})
CHANGING_METHODS = frozenset({"POST", "DELETE"})
STATE_CHANGING = re.compile(
    r"^/rq/(job/[^/]+/(delete|requeue)|requeue/[^/]+|queue/[^/]+/[^/]+/empty|queue/[^/]+/compact)/?$"
)
"""rq-dashboard's routes that change state (rq_dashboard/web.py), as paths inside the /ops mount."""

DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; form-action 'self'; base-uri 'self'; "
    "frame-ancestors 'none'"
)
def security_headers(csp: bytes) -> list[tuple[bytes, bytes]]:
    """Every operator page's headers (the console's too): `csp`, no framing, no sniffing, same-origin
    referrers, nothing cached."""
    return [
        (b"content-security-policy", csp),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"cache-control", b"no-store"),
    ]


def sending_with(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """`send`, adding `headers` to the response's start."""

    async def with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *headers]
        await send(message)

    return with_headers


SECURITY_HEADERS = security_headers(DASHBOARD_CSP.encode())

SessionCheck = Callable[[Request], Awaitable[str | None]]
"""The web console's session check: the session id of a request's genuine, live cookie, or None."""


def _refused(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def _origin_of(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.scheme, parts.netloc.lower()


class OperatorGuard:
    """ASGI middleware in front of the operator pages: authentication, same-origin changes, security headers."""

    def __init__(
        self, app: ASGIApp, token: SecretStr | None, session_of: SessionCheck, *, public_url: str | None = None
    ) -> None:
        self.app = app
        self._token = token.get_secret_value().encode() if token is not None else None
        self._session_of = session_of
        self._public = _origin_of(public_url) if public_url else None

    def public_url(self, url: str | None) -> None:
        """The gateway's public address changed (a live reload): same-origin checks name it from now on."""
        self._public = _origin_of(url) if url else None

    def _bearer(self, scope: Scope) -> bytes | None:
        headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", [])
        for name, value in headers:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                return credentials.strip() if scheme.lower() == b"bearer" else b""
        return None

    def _same_origin(self, request: Request) -> bool | None:
        """True when the request's origin headers name this gateway, False when one names another site,
        None when it sends none (a script)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        host = request.headers.get("host", "").lower()
        named = request.headers.get("origin") or request.headers.get("referer")
        if named is None:
            return True if site is not None else None
        origin = _origin_of(named)  # "null" (a sandboxed or privacy-redirected page) is no origin
        return origin is not None and (origin[1] == host or origin == self._public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        with_headers = sending_with(send, SECURITY_HEADERS)
        refusal = await self._check(scope)
        if refusal is not None:
            await refusal(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)

    async def _check(self, scope: Scope) -> Response | None:
        """None when the request may reach the dashboard; otherwise the answer refusing it."""
        if self._token is None:
            return _refused(403, "forbidden", "operator routes are off: set gateway.admin_token in the config")
        request = Request(scope)
        method = request.method
        presented = self._bearer(scope)
        if presented is not None:
            if not presented:
                return _refused(401, "unauthorized", "the operator pages take Authorization: Bearer <admin token> "
                                "(HTTP Basic is not accepted); browsers log in at /console/login")  # fmt: skip
            if not hmac.compare_digest(presented, self._token):
                return _refused(401, "unauthorized", "the Bearer token is not the gateway's admin token")
            by_session = False
        else:
            try:
                session = await self._session_of(request)
            except (redis.RedisError, OSError):
                return _refused(503, "unavailable", "Redis is unreachable: the session cannot be checked; retry soon")
            if session is None:
                if method in SAFE_METHODS:
                    root = scope.get("root_path", "").removesuffix("/ops")
                    return RedirectResponse(f"{root}{LOGIN_PATH}?next={quote(request.url.path, safe='/')}", 303)
                return _refused(401, "unauthorized", "log in at /console/login, or send Authorization: Bearer")
            by_session = True
        path, root = scope.get("path", ""), scope.get("root_path", "")
        inner = (path[len(root) :] if path.startswith(root) else path) or "/"
        if method not in SAFE_METHODS:
            if method not in CHANGING_METHODS:
                return _refused(405, "method_not_allowed", f"{method} is not allowed on the operator pages")
            same = self._same_origin(request)
            if same is False or (same is None and by_session):
                why = "Origin, Sec-Fetch-Site or Referer of another site, or none"
                return _refused(403, "cross_site", f"refused: a change must come from the gateway's own pages ({why})")
        elif STATE_CHANGING.match(inner):
            return _refused(405, "method_not_allowed", f"{method} cannot change anything: this route takes a POST "
                            "from the dashboard's own page", {"Allow": "POST"})  # fmt: skip
        return None


def dashboard_app(redis_url: str) -> ASGIApp:
    """rq-dashboard as an ASGI app (Flask through a2wsgi), reading Koppel's JSON-serialised jobs."""
    import rq_dashboard
    import rq_dashboard.web
    from a2wsgi import WSGIMiddleware
    from flask import Flask
    from rq.serializers import JSONSerializer

    flask_app = Flask("koppel_ops")
    flask_app.config.from_object(rq_dashboard.default_settings)
    flask_app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    rq_dashboard.web.config.serializer = JSONSerializer
    rq_dashboard.web.setup_rq_connection(flask_app)
    flask_app.register_blueprint(rq_dashboard.blueprint, url_prefix=DASHBOARD_PREFIX)
    # a2wsgi types the WSGI environ and the ASGI scope as TypedDicts, Flask and Starlette as a dict and
    # a MutableMapping: the same protocols, which mypy cannot match (a TypedDict is neither).
    return WSGIMiddleware(flask_app)  # type: ignore[arg-type, return-value]
