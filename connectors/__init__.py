"""Connectors: one package per system (API client, sandbox, normalisers)."""
