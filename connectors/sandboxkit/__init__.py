"""The sandbox kit: what every sandbox — a fake, stateful copy of a platform's API — is built from.

A sandbox is a `Sandbox` (its state: clock, faults, call counters, plus the platform's store) served by
`sandbox_app` from Starlette routes. Its API routes run through a `Pipeline` of steps: `CallCounter.step`,
an auth check (`basic_credentials`, `BearerTokens`, an `OAuthServer` behind them), a rate limit of the
platform's, `Faults.step` (429 storms, 5xx, slow answers, dropped connections). `Control` adds the
`/sandbox/...` routes (state, reset, faults, counters, deliveries). Lists page with `offset_page` and
`link_headers`, or `cursor_page`. Webhooks leave through a `WebhookSender`, signed by a signer such as
`hmac_signer`. What the platform answers — its shapes, its errors, its quirks — stays in its own folder.
"""

from connectors.sandboxkit.app import Sandbox, sandbox_app
from connectors.sandboxkit.auth import (
    BearerTokens,
    OAuthServer,
    OAuthSettings,
    RegisteredApp,
    basic_credentials,
    secret_equals,
)
from connectors.sandboxkit.control import Control
from connectors.sandboxkit.counters import CallCounter
from connectors.sandboxkit.faults import ConnectionDropped, Fault, Faults
from connectors.sandboxkit.paging import (
    CursorPage,
    Page,
    cursor_page,
    decode_cursor,
    encode_cursor,
    link_headers,
    offset_page,
)
from connectors.sandboxkit.routing import ALL_METHODS, Pipeline, add_headers, request_fields, route_name
from connectors.sandboxkit.webhooks import Delivery, WebhookSender, echoes, hmac_signer

__all__ = [
    "ALL_METHODS",
    "BearerTokens",
    "CallCounter",
    "ConnectionDropped",
    "Control",
    "CursorPage",
    "Delivery",
    "Fault",
    "Faults",
    "OAuthServer",
    "OAuthSettings",
    "Page",
    "Pipeline",
    "RegisteredApp",
    "Sandbox",
    "WebhookSender",
    "add_headers",
    "basic_credentials",
    "cursor_page",
    "decode_cursor",
    "echoes",
    "encode_cursor",
    "hmac_signer",
    "link_headers",
    "offset_page",
    "request_fields",
    "route_name",
    "sandbox_app",
    "secret_equals",
]
