"""Microsoft Dynamics 365 Business Central (API v2.0): service-to-service OAuth (auth.py), the API client
(client.py), its `Source` and `Target` (connector.py), normalisers (normalise.py), the webhook
notifications (handlers/businesscentral.py) and a sandbox (sandbox/).

Webhook subscriptions are not managed by Koppel yet: a `collection` notification cannot be re-read, and
a system without subscriptions is polled by `lastModifiedDateTime` (`BusinessCentralSource.changes`)."""

from connectors.businesscentral.connector import BusinessCentralSettings, BusinessCentralSource, BusinessCentralTarget
from connectors.contract import Connector

CONNECTOR = Connector(
    kind="businesscentral",
    title="Business Central",
    settings=BusinessCentralSettings,
    source=BusinessCentralSource,
    target=BusinessCentralTarget,
    handler="handlers.businesscentral:handle",
    sandbox="connectors.businesscentral.sandbox.harness:HARNESS",
)

__all__ = ["CONNECTOR"]
