"""Winstore (ACA's retail and till system): its client, `Source` (articles, stock, orders and customers, polled)
and `Target` (orders, order statuses), normalisers and sandbox. Quirks and what is unverified:
connectors/winstore/connector.py."""

from connectors.contract import Connector
from connectors.winstore.connector import WinstoreSettings, WinstoreSource, WinstoreTarget

CONNECTOR = Connector(
    kind="winstore",
    title="Winstore",
    settings=WinstoreSettings,
    source=WinstoreSource,
    target=WinstoreTarget,
    sandbox="connectors.winstore.sandbox.harness:HARNESS",
)

__all__ = ["CONNECTOR"]
