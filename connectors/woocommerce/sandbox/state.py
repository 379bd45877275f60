"""The WooCommerce sandbox's configuration and state: the shop's store, the webhook deliverer, and the kit's
faults and call counters."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.sandboxkit import Sandbox, WebhookSender
from connectors.woocommerce.sandbox import seed
from connectors.woocommerce.sandbox.store import ShopSettings, Store
from connectors.woocommerce.sandbox.webhooks import Deliverer, state_of


@dataclass
class SandboxConfig:
    consumer_key: str = "ck_sandbox"
    consumer_secret: str = field(default="cs_sandbox", repr=False)
    permissions: str = "read_write"
    """"read", "write" or "read_write", as on a WooCommerce REST key."""
    site_url: str | None = None
    """Home URL with trailing slash (X-WC-Webhook-Source, `_links`); None: the URL the sandbox is reached on."""
    shop: ShopSettings = field(default_factory=ShopSettings)
    checkout_update: bool = True
    delivery_timeout: float = 60.0
    ping_timeout: float = 5.0
    queue_size: int = 10_000
    seed_products: bool = False
    delivery_concurrency: int = 1
    """Webhook deliveries in flight at once (WooCommerce sends one at a time per queue runner; a shop with
    concurrent Action Scheduler batches sends several): also `POST /sandbox/deliveries/concurrency`."""


class WooCommerceSandbox(Sandbox):
    """State behind the routes; `app.state.sandbox` in tests."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.config = config
        self.store = Store(config.shop, clock)
        if config.site_url:
            self.store.site_url = config.site_url.rstrip("/") + "/"
        agent = f"WooCommerce/{config.shop.wc_version} Hookshot (WordPress/{config.shop.wp_version})"
        sender = WebhookSender(user_agent=agent, timeout=config.delivery_timeout, queue_size=config.queue_size,
                               name="woocommerce-sandbox-webhooks",
                               concurrency=config.delivery_concurrency)  # fmt: skip
        self.deliverer = Deliverer(self.store, sender, salt=secrets.token_bytes(32), ping_timeout=config.ping_timeout,
                                   clock=clock)  # fmt: skip
        if config.seed_products:
            seed.seed_products(self.store)

    @property
    def requests(self) -> int:
        """REST API requests received (unauthenticated and unrouted ones included)."""
        return self.counters.total

    def learn_site_url(self, base_url: str) -> None:
        """Without a configured site URL, links and webhooks name the URL the sandbox is reached on."""
        if self.config.site_url is None:
            self.store.site_url = base_url

    def state(self) -> dict[str, Any]:
        store = self.store
        return {"site_url": store.site_url, "products": len(store.products), "orders": len(store.orders),
                "customers": len(store.customers), "requests": self.requests,
                "webhooks": [state_of(h) for h in store.webhooks.values()],
                "deliveries": self.deliverer.sent, "queued": self.deliverer.queued}  # fmt: skip

    def reset(self, options: Mapping[str, Any] | None = None) -> None:
        super().reset(options)
        self.deliverer.reset()
        self.store.reset()

    async def aclose(self) -> None:
        await self.deliverer.aclose()
