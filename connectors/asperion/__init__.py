"""Asperion (bookkeeping with inTrade orders): OAuth2 consent, its client on the HTTP kit, `Source` (polled
by modification date) and `Target`, normalisers and a sandbox. Quirks and what is unverified [U]:
connectors/asperion/connector.py, client.py, normalise.py and docs/configuration.md (Asperion)."""

from connectors.asperion.connector import AsperionCodeFlow, AsperionSettings, AsperionSource, AsperionTarget
from connectors.contract import Connector

CONNECTOR = Connector(
    kind="asperion",
    title="Asperion",
    settings=AsperionSettings,
    source=AsperionSource,
    target=AsperionTarget,
    oauth=AsperionCodeFlow,
    sandbox="connectors.asperion.sandbox.harness:HARNESS",
)

__all__ = ["CONNECTOR"]
