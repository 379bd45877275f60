"""Winstore (ACA's retail and till system): its client, `Source` (articles and stock, polled) and `Target`
(orders), normalisers and sandbox. Quirks and what is unverified: connectors/winstore/connector.py."""

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
