"""Operator surface: rq-dashboard mounted under /ops/rq behind Koppel's admin authentication.

rq-dashboard (a Flask app) has no authentication of its own when mounted, and its
"requeue all failed jobs" route accepts GET, so it must never be reachable unauthenticated.
`AdminAuth` accepts `Authorization: Bearer <admin token>` (scripts) or HTTP Basic with the admin
token as password (browsers), compared in constant time. Without an admin token configured the
operator routes answer 403: there is no unauthenticated mode.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable

from pydantic import SecretStr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

DASHBOARD_PREFIX = "/rq"  # inside the /ops mount; rq-dashboard needs a non-empty blueprint prefix


class AdminAuth:
    """ASGI middleware: only requests carrying the admin token reach the wrapped app."""

    def __init__(self, app: ASGIApp, token: SecretStr | None) -> None:
        self.app = app
        self._token = token.get_secret_value().encode() if token is not None else None

    def _presented(self, scope: Scope) -> bytes | None:
        headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", [])
        for name, value in headers:
            if name != b"authorization":
                continue
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer":
                return credentials.strip()
            if scheme.lower() == b"basic":
                try:
                    decoded = base64.b64decode(credentials.strip(), validate=True)
                except (binascii.Error, ValueError):
                    return None
                return decoded.partition(b":")[2]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._token is None:
            response = JSONResponse(
                {"error": "forbidden", "message": "operator routes are off: set gateway.admin_token in the config"},
                status_code=403,
            )
            await response(scope, receive, send)
            return
        presented = self._presented(scope)
        if presented is None or not hmac.compare_digest(presented, self._token):
            response = JSONResponse(
                {"error": "unauthorized", "message": "admin token required (Bearer, or Basic with it as password)"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="koppel-ops"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


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
