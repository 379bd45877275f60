"""Microsoft Dynamics 365 Business Central (API v2.0): service-to-service OAuth (auth.py), the API client
(client.py), its `Source` and `Target` (connector.py), normalisers (normalise.py), the webhook
notifications (handlers/businesscentral.py) and a sandbox (sandbox/).

Koppel manages the webhook subscriptions of an endpoint linked to the system (webhooks.py: created,
renewed before their three-day expiry, re-created after BC deleted them); a system without an endpoint is
polled by `lastModifiedDateTime` (`BusinessCentralSource.changes`)."""

from connectors.businesscentral.connector import BusinessCentralSettings, BusinessCentralSource, BusinessCentralTarget
from connectors.businesscentral.webhooks import BusinessCentralWebhooks, check_endpoint
from connectors.contract import Connector

CONNECTOR = Connector(
    kind="businesscentral",
    title="Business Central",
    settings=BusinessCentralSettings,
    source=BusinessCentralSource,
    target=BusinessCentralTarget,
    handler="handlers.businesscentral:handle",
    sandbox="connectors.businesscentral.sandbox.harness:HARNESS",
    webhooks=BusinessCentralWebhooks,
    check_endpoint=check_endpoint,
)

__all__ = ["CONNECTOR"]
