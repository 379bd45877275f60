"""Connecting Koppel to systems that use OAuth2 authorisation-code consent (connectors/oauth.py).

    koppel connect <system-id>                prints the consent URL to open in a browser
    GET /oauth/{system-id}/callback?code&state
                                              where the system sends the browser back; stores the tokens

The `state` is signed with the gateway's admin token and names the system; the callback completes
the consent for the system the state names, and only when it matches the path's system.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import redis
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from connectors import registry
from connectors.contract import Context
from connectors.oauth import CodeFlow, InvalidState, callback_path, sign_state, verify_state
from gateway.config import Config, System
from gateway.errors import KoppelError, PermanentError

CALLBACK_PATH = "/oauth/{system_id}/callback"
LEGACY_CALLBACK_PATH = "/oauth/exactonline/callback"
"""Where Exact apps registered before callbacks were per system send the browser back (the system is
the one the state names)."""


def state_secret(config: Config) -> str:
    if config.gateway.admin_token is None:
        raise PermanentError("connecting a system needs gateway.admin_token (it signs the OAuth state)")
    return config.gateway.admin_token.get_secret_value()


def code_flow(config: Config, system_id: str) -> tuple[System, CodeFlow]:
    system = config.system(system_id)
    if system is None:
        raise PermanentError(f"no system {system_id!r} in the config")
    connector = registry.get(system.kind)
    if connector.oauth is None:
        raise PermanentError(f"{connector.title} ({system_id}) does not use OAuth consent; nothing to connect")
    return system, connector.oauth()


def consent_url(config: Config, system_id: str) -> str:
    """The URL that starts a configured system's consent."""
    system, flow = code_flow(config, system_id)
    redirect = flow.redirect_uri(system)
    if not redirect:
        raise PermanentError(
            f"systems.{system_id}: settings.redirect_uri is needed: the gateway's URL ending in "
            f"{callback_path(system_id)}, as registered for the app at {registry.get(system.kind).title}"
        )
    return flow.authorize_url(system, sign_state(state_secret(config), system_id))


def oauth_callback(config: Config, connection: redis.Redis) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of `CALLBACK_PATH` (and `LEGACY_CALLBACK_PATH`)."""

    def complete(state: str, code: str, path_system: str | None) -> str:
        secret = state_secret(config)
        system_id = verify_state(secret, state)
        if path_system is not None and path_system != system_id:
            raise InvalidState("OAuth state was issued for another system than this callback's")
        system, flow = code_flow(config, system_id)
        with httpx.Client(timeout=30) as http:
            flow.complete(system, code, http, Context(http=http, redis=connection))
        return system_id

    async def callback(request: Request) -> Response:
        refused = request.query_params.get("error")
        code, state = request.query_params.get("code"), request.query_params.get("state")
        path_system = request.path_params.get("system_id")
        if refused:
            return PlainTextResponse("the system did not grant access; start again with koppel connect", 400)
        if not code or not state:
            return PlainTextResponse("the callback needs the code and state parameters the system sends", 400)
        try:
            system_id = await asyncio.to_thread(complete, state, code, path_system)
        except PermanentError as exc:  # a bad state, the system refused the code, not an OAuth system
            return PlainTextResponse(f"connecting failed: {exc}", 400)
        except KoppelError as exc:  # the system did not answer
            return PlainTextResponse(f"connecting failed: {exc}", 502)
        title = registry.get(config.system(system_id).kind).title  # type: ignore[union-attr]
        return PlainTextResponse(f"Koppel is connected to {title} for system {system_id!r}. You can close this.")

    return callback
