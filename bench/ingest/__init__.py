"""bench/ingest: webhook ingest throughput of the gateway against a no-op Starlette route."""
