"""Squarespace (Commerce APIs): the site's client (client.py), its `Source`, `Target` and Koppel-owned webhook
subscriptions (connector.py), the order normaliser (normalise.py), the notifications' verifier
(handlers/squarespace.py) and a sandbox (sandbox/). Squarespace issues webhook secrets itself: the
receiver reads the ones Koppel stored (connectors/issued.py)."""

from connectors.contract import Connector
from connectors.squarespace.connector import (
    SquarespaceSettings,
    SquarespaceSource,
    SquarespaceTarget,
    SquarespaceWebhooks,
)
from gateway.config import Endpoint

STOCK_MAPPING = """\
# Default mapping: canonical stock level -> Squarespace inventory of a variant
# (POST /1.0/commerce/inventory/adjustments, setFiniteOperations). Quantity sent: available.
description = "Squarespace inventory (an absolute quantity per variant, found by SKU)"
resource = "inventory"
record = "stock"
default = true

[fields]
quantity = { _expr = "$round(available, 0)", _type = "integer", _required = true }
"""


def _check_endpoint(endpoint: Endpoint) -> list[str]:
    try:
        bytes.fromhex(endpoint.secret.get_secret_value())
    except ValueError:
        return ["secret: a Squarespace webhook secret is hex (as returned when the subscription is created)"]
    return []


CONNECTOR = Connector(
    kind="squarespace",
    title="Squarespace",
    settings=SquarespaceSettings,
    source=SquarespaceSource,
    target=SquarespaceTarget,
    handler="handlers.squarespace:handle",
    sandbox="connectors.squarespace.sandbox.harness:HARNESS",
    check_endpoint=_check_endpoint,
    mappings={"stock/stock": STOCK_MAPPING},
    webhooks=SquarespaceWebhooks,
    issued_secrets=True,
)

__all__ = ["CONNECTOR"]
