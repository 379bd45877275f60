"""Exact Online: OAuth2 set-up, a rate-limited OData client, the Sync API reader and a sandbox."""
