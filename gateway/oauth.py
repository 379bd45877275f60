"""Connecting Koppel to systems that use OAuth2 authorisation-code consent (connectors/oauth.py).

    koppel connect <system-id>                prints the gateway's start URL (a one-use ticket, 300 s)
    GET /oauth/{system-id}/start?ticket=…     binds the consent to this browser, redirects to the system
    GET /oauth/{system-id}/callback?code&state
                                              where the system sends the browser back; stores the tokens

The `state` is signed with the gateway's admin token and names the system; the callback completes the
consent for the system the state names, and only when it matches the path's system. It is also
**single-use and bound to the browser** that started the consent: the start sets an HttpOnly,
SameSite=Lax cookie (named after the state) holding a random nonce, and Redis keeps the nonce's hash
under the state's hash (`keys.oauth_state`, 600 s). The callback needs that cookie, and takes the
stored hash with GETDEL: a state is used at most once, and a state carried to another browser (a
victim sent a link with the attacker's code) completes nothing. The console's Connect button sends the
browser through the same start URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import httpx
import redis
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from connectors import registry
from connectors.contract import Context
from connectors.oauth import (
    STATE_MAX_AGE,
    TICKET_MAX_AGE,
    CodeFlow,
    InvalidState,
    callback_path,
    read_ticket,
    sign_state,
    sign_ticket,
    start_path,
    verify_state,
)
from gateway import keys
from gateway.config import Config, System
from gateway.errors import KoppelError, PermanentError
from gateway.live import ConfigSource, current

CALLBACK_PATH = "/oauth/{system_id}/callback"
START_PATH = "/oauth/{system_id}/start"
LEGACY_CALLBACK_PATH = "/oauth/exactonline/callback"
"""Where Exact apps registered before callbacks were per system send the browser back (the system is
the one the state names)."""
COOKIE_PREFIX = "koppel_oauth_"


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


def _redirect_uri(config: Config, system_id: str) -> tuple[System, CodeFlow, str]:
    system, flow = code_flow(config, system_id)
    redirect = flow.redirect_uri(system)
    if not redirect:
        raise PermanentError(
            f"systems.{system_id}: settings.redirect_uri is needed: the gateway's URL ending in "
            f"{callback_path(system_id)}, as registered for the app at {registry.get(system.kind).title}"
        )
    return system, flow, redirect


def start_url(config: Config, system_id: str) -> str:
    """The gateway URL that starts a configured system's consent in a browser: a one-use ticket, valid
    `TICKET_MAX_AGE` seconds. It is on the gateway the system's redirect URI names (the callback must see
    the cookie the start sets), so it is the redirect URI's origin and path before `/oauth/`."""
    _, _, redirect = _redirect_uri(config, system_id)
    base = redirect[: redirect.rfind("/oauth/")] if "/oauth/" in redirect else redirect.rstrip("/")
    ticket = sign_ticket(state_secret(config), system_id)
    return f"{base}{start_path(quote(system_id, safe=''))}?ticket={quote(ticket, safe='')}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def cookie_name(state: str) -> str:
    """The binding cookie of one consent (named after its state: two consents at once do not collide)."""
    return COOKIE_PREFIX + _digest(state)[:20]


def _cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/oauth"


def _refusal(text: str, status: int = 400) -> Response:
    return PlainTextResponse(f"connecting failed: {text}", status, headers={"Cache-Control": "no-store"})


def oauth_start(source: ConfigSource, connection: redis.Redis) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of `START_PATH`: a valid, unused ticket for this path's system → a new state
    bound to this browser by a cookie, and a redirect to the system's consent page."""

    def begin(ticket: str, path_system: str) -> tuple[str, str, str]:
        config = current(source)  # the running config (a live reload swaps it, gateway/live.py)
        secret = state_secret(config)
        found = read_ticket(secret, ticket)
        if found.system != path_system:
            raise InvalidState("the start link's ticket was issued for another system than this link's")
        system, flow, _ = _redirect_uri(config, found.system)
        if not connection.set(keys.oauth_ticket(found.id), "1", nx=True, ex=TICKET_MAX_AGE):
            raise InvalidState("this start link was used already (each works once): run koppel connect again")
        state = sign_state(secret, found.system)
        nonce = secrets.token_urlsafe(32)
        connection.set(keys.oauth_state(_digest(state)), _digest(nonce), ex=STATE_MAX_AGE)
        return flow.authorize_url(system, state), state, nonce

    async def start(request: Request) -> Response:
        ticket = request.query_params.get("ticket")
        if not ticket:
            return _refusal("the start link needs its ticket parameter: copy the whole URL koppel connect printed")
        try:
            url, state, nonce = await asyncio.to_thread(begin, ticket, request.path_params["system_id"])
        except PermanentError as exc:
            return _refusal(str(exc))
        except (redis.RedisError, OSError):
            return _refusal("the gateway cannot reach Redis now; try the start link again in a moment", 503)
        response = RedirectResponse(url, 303, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            cookie_name(state), nonce, max_age=STATE_MAX_AGE, path=_cookie_path(request),
            httponly=True, samesite="lax", secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    return start


def oauth_callback(source: ConfigSource, connection: redis.Redis) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of `CALLBACK_PATH` (and `LEGACY_CALLBACK_PATH`)."""

    def take(state: str, nonce: str | None) -> None:
        """The state's binding checked against this browser's cookie, then consumed (GETDEL): once only."""
        key = keys.oauth_state(_digest(state))
        stored = connection.get(key)
        if stored is None:
            raise InvalidState(
                "this consent was completed already or was never started here (an OAuth state works once): "
                "start again with koppel connect or the console's Connect button"
            )
        if not nonce or not hmac.compare_digest(keys.text(stored), _digest(nonce)):
            raise InvalidState(
                "this consent was started in another browser (its cookie is missing here): open the start link "
                "in the browser that will approve, and approve there"
            )
        if connection.getdel(key) is None:  # another callback took it in between
            raise InvalidState("this consent was completed already (an OAuth state works once)")

    def complete(state: str, code: str, path_system: str | None, nonce: str | None) -> str:
        config = current(source)
        secret = state_secret(config)
        system_id = verify_state(secret, state)
        if path_system is not None and path_system != system_id:
            raise InvalidState("OAuth state was issued for another system than this callback's")
        system, flow = code_flow(config, system_id)
        take(state, nonce)
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
        nonce = request.cookies.get(cookie_name(state))
        try:
            system_id = await asyncio.to_thread(complete, state, code, path_system, nonce)
        except PermanentError as exc:  # a bad or used state, the system refused the code, not an OAuth system
            return _refusal(str(exc))
        except KoppelError as exc:  # the system did not answer
            return _refusal(str(exc), 502)
        except (redis.RedisError, OSError):
            return _refusal("the gateway cannot reach Redis now; start the consent again in a moment", 503)
        system = current(source).system(system_id)
        title = registry.get(system.kind).title if system is not None else system_id
        response = PlainTextResponse(f"Koppel is connected to {title} for system {system_id!r}. You can close this.")
        response.delete_cookie(cookie_name(state), path=_cookie_path(request), httponly=True, samesite="lax",
                               secure=request.url.scheme == "https")  # fmt: skip
        return response

    return callback
