"""Koppel core: settings, config, envelope, queue access, the Starlette app and the CLI."""
