"""A request's public key, REQ-<id>, and reading one back from what an operator typed."""

from __future__ import annotations

from syncd.errors import NotFound


def request_key(request_id: int) -> str:
    return f"REQ-{request_id}"


def parse_request_key(text: str) -> int:
    t = text.strip().upper().removeprefix("REQ-")
    if not t.isdigit():
        raise NotFound(f"{text!r} is not a request id (expected e.g. REQ-42)")
    return int(t)
