"""The Exact sandbox's configuration and state: the administrations (store.py), OAuth, rate limits, the
webhooks (webhooks.py), and the kit's faults and call counters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from connectors.exactonline.sandbox.entities import SPECS
from connectors.exactonline.sandbox.ratelimit import RateLimits
from connectors.exactonline.sandbox.shapes import render
from connectors.exactonline.sandbox.store import Store
from connectors.exactonline.sandbox.webhooks import USER_AGENT, Webhooks
from connectors.sandboxkit import BearerTokens, OAuthServer, Sandbox, WebhookSender
from connectors.sandboxkit.auth import Grant

USER = {"UserID": "0e5f3a38-0000-4000-8000-000000000001", "FullName": "Sandbox User",
        "UserName": "sandbox@example.com"}  # fmt: skip
"""The one user the sandbox's tokens act for (`current/Me`, a subscription's Creator)."""
_SECRETS = ("client_secret", "webhook_secret")


@dataclass
class SandboxConfig:
    client_id: str = "koppel-sandbox"
    client_secret: str = field(default="sandbox-secret", repr=False)
    redirect_uris: tuple[str, ...] = ()
    """Allowed redirect URIs; empty allows any."""
    auto_approve: bool = True
    token_lifetime: int = 600
    refresh_window: int = 30
    """A refresh is refused while the access token has more than this many seconds left; 0 disables."""
    code_lifetime: int = 180
    divisions: tuple[int, ...] = (1234567,)
    per_minute: int = 60
    per_day: int = 5000
    rate_limits: bool = True
    page_size: int = 60
    sync_page_size: int = 1000
    timestamps_as_strings: bool = False
    webhook_secret: str = field(default="sandbox-webhook-secret", repr=False)
    """The app's webhook secret (Exact shows it with the app): the HashCode's key."""
    webhook_timeout: float = 30.0
    """Seconds a callback may take to answer, the validation and a notification (Exact's is not documented)."""
    webhook_retries: int = 10
    retry_minute: float = 60.0
    """Real seconds per minute of the retry back-off (2, 4, … 1 024 minutes); tests shorten it."""
    created_action: str = "Create"
    """The Action of a new record's notification (undocumented; "Update" is the other reading)."""
    webhook_queue_size: int = 10_000


class ExactSandbox(Sandbox):
    """State and behaviour behind the Starlette routes; `app.state.sandbox` in tests."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.config = config
        self.initial = replace(config)
        self.store = Store(config.divisions, clock)
        self.tokens = BearerTokens(clock)
        self.oauth = OAuthServer(config, self.tokens, expires_in_text=True, title="Exact Online sandbox")
        self.rate_limits = RateLimits(clock)
        sender = WebhookSender(user_agent=USER_AGENT, timeout=config.webhook_timeout,
                               queue_size=config.webhook_queue_size, name="exactonline-sandbox-webhooks")  # fmt: skip
        self.webhooks = Webhooks(lambda: self.config, sender, user=USER, clock=clock)
        self.store.on_change = self.webhooks.on_change

    # -- what tests look at -------------------------------------------------------------------------

    @property
    def token_requests(self) -> int:
        return self.oauth.token_requests

    @property
    def refreshes(self) -> int:
        return self.oauth.refreshes

    @property
    def grants(self) -> dict[str, Grant]:
        return self.oauth.grants

    @property
    def spent_refresh_tokens(self) -> set[str]:
        return self.oauth.spent_refresh_tokens

    def expire_tokens(self) -> int:
        return self.tokens.expire_all()

    # -- state ----------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        as_text = self.config.timestamps_as_strings
        entities = {
            str(division): {
                path: [render(self.store, "", division, SPECS[path], r, sorted(r), timestamps_as_strings=as_text)
                       for r in rows.values()]
                for path, rows in tables.items()
            }
            for division, tables in self.store.tables.items()
        }  # fmt: skip
        deleted = {
            str(d): [render(self.store, "", d, None, r, sorted(r), timestamps_as_strings=as_text) for r in rows]
            for d, rows in self.store.deleted.items()
        }
        return {
            "divisions": list(self.config.divisions),
            "timestamp": self.store.timestamp,
            "entities": entities,
            "deleted": deleted,
            "oauth": self.oauth.state(),
            "config": {k: v for k, v in asdict(self.config).items() if k not in _SECRETS},
            "calls": self.call_stats(),
            "webhooks": self.webhooks.state(),
        }

    def call_stats(self) -> dict[str, Any]:
        return {**self.counters.snapshot(), "windows": self.rate_limits.stats()}

    def reset(self, options: Mapping[str, Any] | None = None) -> None:
        """Empty the administrations, the webhook subscriptions and deliveries, the counts and the limits; the
        OAuth grants too with `{"oauth": true}`."""
        super().reset(options)
        self.config = replace(self.initial)
        self.oauth.settings = self.config
        self.store = Store(self.config.divisions, self.clock)
        self.webhooks.reset()
        self.store.on_change = self.webhooks.on_change
        self.rate_limits.clear()
        if (options or {}).get("oauth"):
            self.oauth.reset()

    async def aclose(self) -> None:
        await self.webhooks.aclose()
