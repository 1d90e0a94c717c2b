"""A ClickHouse-compatible HTTP server over the in-process chDB engine (the embedded warehouse)."""
