"""A stateful, in-memory Asperion (identity server and REST API) for tests and demos; see app.py."""

from connectors.asperion.sandbox.app import AsperionSandbox, SandboxConfig, create_sandbox
from connectors.asperion.sandbox.consent import connect_sandbox

__all__ = ["AsperionSandbox", "SandboxConfig", "connect_sandbox", "create_sandbox"]
