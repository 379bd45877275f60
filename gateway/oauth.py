"""Connecting Koppel to systems that use OAuth2 authorisation-code consent (Exact Online).

    koppel connect exactonline --system exact     prints the consent URL to open in a browser
    GET /oauth/exactonline/callback?code&state    where Exact sends the browser back; stores the tokens

The `state` is signed (itsdangerous, time-limited) with the gateway's admin token and names the
system, so a callback only completes a consent this Koppel started. Tokens go to Redis, never to
logs or answers.
"""

from __future__ import annotations

import asyncio

import httpx
import redis
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway.config import Config
from gateway.errors import KoppelError, PermanentError

CALLBACK_PATH = "/oauth/exactonline/callback"


def state_secret(config: Config) -> str:
    if config.gateway.admin_token is None:
        raise PermanentError("connecting a system needs gateway.admin_token (it signs the OAuth state)")
    return config.gateway.admin_token.get_secret_value()


def exact_consent_url(config: Config, system_id: str) -> str:
    """The URL that starts Exact Online's consent for a configured system."""
    from connectors.exactonline.auth import authorize_url, sign_state
    from workers.pollers import exact_system, oauth_app

    app = oauth_app(exact_system(config, system_id))
    if not app.redirect_uri:
        raise PermanentError(
            f"systems.{system_id}: settings.redirect_uri is needed: the gateway's URL ending in {CALLBACK_PATH}, "
            "as registered for the app in Exact's app centre"
        )
    return authorize_url(app.base_url, app.client_id, app.redirect_uri, sign_state(state_secret(config), system_id))


def exact_callback(config: Config, connection: redis.Redis):  # noqa: ANN201 - a Starlette endpoint
    from connectors.exactonline.auth import complete_authorization, verify_state
    from connectors.exactonline.errors import InvalidState
    from workers.pollers import exact_system, oauth_app

    def complete(state: str, code: str) -> str:
        secret = state_secret(config)
        system_id = verify_state(secret, state)
        app = oauth_app(exact_system(config, system_id))
        with httpx.Client(timeout=30) as http:
            return complete_authorization(http, app, connection, secret=secret, state=state, code=code)

    async def callback(request: Request) -> Response:
        refused = request.query_params.get("error")
        code, state = request.query_params.get("code"), request.query_params.get("state")
        if refused:
            return PlainTextResponse("Exact Online did not grant access; start again with koppel connect", 400)
        if not code or not state:
            return PlainTextResponse("the callback needs the code and state parameters Exact Online sends", 400)
        try:
            system_id = await asyncio.to_thread(complete, state, code)
        except InvalidState as exc:
            return PlainTextResponse(str(exc), 400)
        except KoppelError as exc:  # Exact refused the code, or the system is not configured for OAuth
            return PlainTextResponse(f"connecting failed: {exc}", 502 if not isinstance(exc, PermanentError) else 400)
        return PlainTextResponse(f"Koppel is connected to Exact Online for system {system_id!r}. You can close this.")

    return callback
