"""Connectors: one package per system (API client, normalisers, a `sandbox` subpackage), and `sandboxkit`,
the parts every sandbox shares."""
