"""Exact Online: OAuth2 consent, a rate-limited OData client, the Sync API reader, its `Source` and
`Target`, normalisers and a sandbox."""

from connectors.contract import Connector
from connectors.exactonline.connector import ExactCodeFlow, ExactSettings, ExactSource, ExactTarget, budget_left
from connectors.exactonline.webhooks import ExactWebhooks

CONNECTOR = Connector(
    kind="exactonline",
    title="Exact Online",
    settings=ExactSettings,
    source=ExactSource,
    target=ExactTarget,
    handler="handlers.exactonline:handle",
    oauth=ExactCodeFlow,
    budget=budget_left,
    webhooks=ExactWebhooks,
    sandbox="connectors.exactonline.sandbox.harness:HARNESS",
)

__all__ = ["CONNECTOR"]
