"""WooCommerce (REST API wc/v3): the shop's client, its `Source` and `Target`, normalisers and sandbox."""

from connectors.contract import Connector
from connectors.woocommerce.connector import (
    WooCommerceSettings,
    WooCommerceSource,
    WooCommerceTarget,
    WooCommerceWebhooks,
)

CONNECTOR = Connector(
    kind="woocommerce",
    title="WooCommerce",
    settings=WooCommerceSettings,
    source=WooCommerceSource,
    target=WooCommerceTarget,
    handler="handlers.woocommerce:handle",
    sandbox="connectors.woocommerce.sandbox.harness:HARNESS",
    webhooks=WooCommerceWebhooks,
)

__all__ = ["CONNECTOR"]
