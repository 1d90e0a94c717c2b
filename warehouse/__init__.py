"""The warehouse: ClickHouse schema (numbered migrations), typed queries, and the embedded server."""
