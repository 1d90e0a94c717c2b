"""Engine errors as ClickHouse reports them: chDB's exception text parsed, exception bodies, error responses."""

from __future__ import annotations

import re
import socket

from starlette.responses import Response

from chserver.compression import encode_body
from chserver.exceptions import EngineError
from chserver.protocol import STD_EXCEPTION, http_status

_CODE = re.compile(r"Code:\s*(\d+)\.\s*")
_REPEATED_PREFIX = re.compile(r"^(Code: \d+\. DB::Exception: )(?:Code: \d+\. DB::Exception: )+")
_VERSION = re.compile(r"\s*\(version [^()]*(?:\([^()]*\)[^()]*)*\)")
_TRAILING_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")
_DOUBLED_NAME = re.compile(r"\s*\(([A-Z][A-Z0-9_]+)\)\.?\s*\(\1\)\s*$")


def parse_engine_error(message: str) -> EngineError:
    """chDB's exception text → ClickHouse's code, message (``Code: N. DB::Exception: …. (NAME)``) and name."""
    text = message.strip()
    match = _CODE.search(text)
    if match is None:
        text = text.rstrip(".")
        return EngineError(STD_EXCEPTION, f"Code: {STD_EXCEPTION}. DB::Exception: {text}. (STD_EXCEPTION)",
                           "STD_EXCEPTION")
    text = text[match.start():]  # drop wrappers such as "Streaming insert finish failed: "
    text = _REPEATED_PREFIX.sub(r"\1", text)
    text = _VERSION.sub("", text)
    text = _DOUBLED_NAME.sub(r" (\1)", text)
    name_match = _TRAILING_NAME.search(text)
    name = name_match.group(1) if name_match else "UNKNOWN_EXCEPTION"
    return EngineError(int(match.group(1)), text, name)


def exception_text(error: EngineError, version: str) -> str:
    """The body of an error response: ``Code: N. DB::Exception: …. (NAME) (version X)``."""
    body = error.message.strip()
    if not body.startswith("Code:"):
        body = f"Code: {error.code}. DB::Exception: {body.rstrip('.')}. ({error.name})"
    return f"{body} (version {version})\n"


def error_response(error: EngineError, version: str, query_id: str, *, server_name: str = "",
                   encoding: str | None = None) -> Response:
    """An exception as ClickHouse reports it: status per code, ``X-ClickHouse-Exception-Code``, text body."""
    body = exception_text(error, version).encode()
    headers = {
        "X-ClickHouse-Exception-Code": str(error.code),
        "X-ClickHouse-Query-Id": query_id,
        "X-ClickHouse-Server-Display-Name": server_name or socket.gethostname(),
    }
    if encoding:
        body = encode_body(body, encoding)
        headers["Content-Encoding"] = encoding
    return Response(body, status_code=http_status(error.code), media_type="text/plain; charset=UTF-8",
                    headers=headers)
