"""Refuse oversize requests before any route runs, and parse query strings strictly.

Limits (ASGI middleware, outermost): a request target longer than MAX_TARGET bytes -> 414, headers
over MAX_HEADER_BYTES in total or more than MAX_HEADERS of them -> 431, a body over MAX_BODY bytes
(declared by Content-Length or counted while it streams) -> 413. The only body the explorer takes is
the empty form that starts an audit, so the limits are small. uvicorn's own parser limit is set above
these (server.py) so that these clear answers, not a bare 400, are what a client sees.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException

MAX_TARGET = 2048
MAX_HEADER_BYTES = 8192
MAX_HEADERS = 64
MAX_BODY = 4096


def _page(status: int, title: str, message: str) -> bytes:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status} {title}</title></head>"
            f"<body><main><h1>{status} {title}</h1><p>{html.escape(message)}</p></main></body></html>").encode()


class RequestLimits:
    """Pure ASGI middleware: checks the request line and headers, and counts the body as it arrives."""

    def __init__(self, app: Any, *, max_target: int = MAX_TARGET, max_header_bytes: int = MAX_HEADER_BYTES,
                 max_headers: int = MAX_HEADERS, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_target, self.max_header_bytes = max_target, max_header_bytes
        self.max_headers, self.max_body = max_headers, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b"")) + 1
        headers = scope.get("headers", [])
        if target > self.max_target:
            await _refuse(send, 414, "URI Too Long", f"the request target has {target} bytes; at most "
                                                     f"{self.max_target} are accepted")
            return
        size = sum(len(k) + len(v) + 4 for k, v in headers)
        if size > self.max_header_bytes or len(headers) > self.max_headers:
            await _refuse(send, 431, "Request Header Fields Too Large",
                          f"{len(headers)} headers, {size} bytes; at most {self.max_headers} headers and "
                          f"{self.max_header_bytes} bytes are accepted")
            return
        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _refuse(send, 400, "Bad Request", "Content-Length is not a number")
                return
            if length > self.max_body:
                await _refuse(send, 413, "Content Too Large", f"the body has {length} bytes; at most "
                                                               f"{self.max_body} are accepted")
                return
        received = 0
        too_large = False
        started = False

        async def counted_receive() -> dict:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _refuse(send, 413, "Content Too Large", f"the body is over {self.max_body} bytes")
        except Exception:
            if too_large and not started:
                await _refuse(send, 413, "Content Too Large", f"the body is over {self.max_body} bytes")
                return
            raise


class _BodyTooLarge(Exception):
    pass


async def _refuse(send: Callable, status: int, title: str, message: str) -> None:
    body = _page(status, title, message)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def query_params(raw: bytes, allowed: dict[str, Callable[[str], Any]]) -> dict[str, Any]:
    """Parse a query string strictly: every field `name=value`, UTF-8, each name once and known to the page,
    each value accepted by its parser. Anything else is a 400 that says what was wrong."""
    if not raw:
        return {}
    try:
        pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=True, errors="strict",
                          max_num_fields=2 * len(allowed) or 1)
    except UnicodeDecodeError:
        raise HTTPException(400, "the query string is not valid percent-encoded UTF-8") from None
    except ValueError as exc:
        raise HTTPException(400, f"malformed query string ({exc}); expected name=value pairs joined by &"
                            + (f" with names among: {', '.join(sorted(allowed))}" if allowed else
                               "; this page takes no query parameters")) from None
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name not in allowed:
            hint = f"it takes: {', '.join(sorted(allowed))}" if allowed else "it takes no query parameters"
            raise HTTPException(400, f"unknown query parameter {name[:40]!r} for this page; {hint}")
        if name in out:
            raise HTTPException(400, f"query parameter {name!r} given twice")
        try:
            out[name] = allowed[name](value)
        except ValueError as exc:
            raise HTTPException(400, f"query parameter {name!r}: {exc}") from None
    return out


def positive_int(limit: int = 10**9) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not text.isascii() or len(text) > 10:
            raise ValueError(f"{text[:20]!r} is not a whole number")
        value = int(text)
        if not 1 <= value <= limit:
            raise ValueError(f"{value} is outside 1..{limit}")
        return value

    return parse
