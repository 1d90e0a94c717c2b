"""The HTTP protocol tables: content types per format."""

from __future__ import annotations

from chserver.protocol import content_type


def test_content_types_per_format() -> None:
    assert content_type("TabSeparated") == "text/tab-separated-values; charset=UTF-8"
    assert content_type("tsvwithnames") == "text/tab-separated-values; charset=UTF-8"
    assert content_type("JSON") == "application/json; charset=UTF-8"
    assert content_type("JSONEachRow") == "application/x-ndjson; charset=UTF-8"
    assert content_type("CSVWithNames") == "text/csv; charset=UTF-8; header=present"
    assert content_type("Native") == content_type("Parquet") == "application/octet-stream"
    assert content_type("PrettyCompact") == "text/plain; charset=UTF-8"
