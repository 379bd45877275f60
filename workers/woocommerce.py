"""The WooCommerce client of a configured shop *system*, one per worker process.

    [[systems]]
    id = "shop"
    kind = "woocommerce"
    base_url = "https://shop.example"           # the WordPress site; the client adds /wp-json/wc/v3
    [systems.credentials]
    consumer_key = "env:WC_CONSUMER_KEY"        # a read/write REST API key
    consumer_secret = "env:WC_CONSUMER_SECRET"

(The Exact Online counterpart, `exact_client`, lives in workers/pollers.py.)
"""

from __future__ import annotations

import httpx

from connectors.woocommerce.client import WooCommerceClient
from gateway.config import Config, System
from gateway.errors import PermanentError
from workers.runtime import Runtime

REQUIRED_CREDENTIALS = ("consumer_key", "consumer_secret")


def woo_system(config: Config, system_id: str) -> System:
    system = config.system(system_id)
    if system is None or system.kind != "woocommerce":
        raise PermanentError(f"no WooCommerce system {system_id!r} in the config")
    return system


def woo_credentials(system: System) -> tuple[str, str, str]:
    """(base_url, consumer key, consumer secret); PermanentError naming every missing key."""
    missing = [] if system.base_url else ["base_url"]
    missing += [f"credentials.{key}" for key in REQUIRED_CREDENTIALS if key not in system.credentials]
    if missing:
        raise PermanentError(
            f"systems.{system.id}: a WooCommerce system needs {', '.join(missing)} "
            "(base_url and credentials consumer_key / consumer_secret as env:NAME)"
        )
    assert system.base_url is not None
    key, secret = (system.credentials[k].get_secret_value() for k in REQUIRED_CREDENTIALS)
    return system.base_url, key, secret


def build_woo_client(system: System, http: httpx.Client | None = None) -> WooCommerceClient:
    """A client for the system (its own HTTP client when `http` is None); PermanentError for a missing
    key or a base_url the client refuses (plain HTTP to a host that is not loopback)."""
    base_url, key, secret = woo_credentials(system)
    return WooCommerceClient(http, base_url=base_url, consumer_key=key, consumer_secret=secret)


def woo_client(rt: Runtime, system_id: str) -> WooCommerceClient:
    """The process's client for a WooCommerce system, on the runtime's shared HTTP client."""
    return rt.cached(f"woo:{system_id}", lambda: build_woo_client(woo_system(rt.config, system_id), rt.http()))


__all__ = ["build_woo_client", "woo_client", "woo_credentials", "woo_system"]
