"""Webhooks as wake-ups: is this delivery really from the tool, and have we seen it before?

A verified hook only tells syncd to poll that source now. Nothing in the payload is read:
state always comes from the tool's API, so a forged or replayed hook that somehow passed
could cause one extra poll and nothing else. Each tool signs differently:

- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, with the hook's
  secret.
- Jira Cloud (admin webhooks with a secret): `X-Hub-Signature: sha256=<hex HMAC-SHA256 of
  the raw body>`.
- Trello: `X-Trello-Webhook: <base64 HMAC-SHA1 of the body followed by the callback URL
  exactly as registered>`, with the API key's application secret.

Pure functions and one small bounded memory; the listener does the I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

# Tools that can send hooks; a mailbox has nothing to send.
HOOK_KINDS = ("github", "jira", "trello")

Outcome = Literal["accepted", "unsigned", "bad_signature", "replay"]

# Headers that name a delivery, when the tool sends one. Not signed, so they can only add
# to the replay check (a retry of a delivery we handled), never vouch for anything.
_DELIVERY_HEADERS = {
    "github": "x-github-delivery",
    "jira": "x-atlassian-webhook-identifier",
}


@dataclass(frozen=True)
class HookTarget:
    """What the listener needs to check a hook for one configured source."""

    source: str
    kind: str  # github | jira | trello
    secret: str
    callback_url: str | None = None  # Trello: the callbackURL as registered


def hub_signature(secret: str, body: bytes) -> str:
    """GitHub's and Jira's form (both follow WebSub): "sha256=" and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def trello_signature(secret: str, body: bytes, callback_url: str) -> str:
    digest = hmac.new(secret.encode(), body + callback_url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_header(kind: str) -> str:
    return {
        "github": "x-hub-signature-256",
        "jira": "x-hub-signature",
        "trello": "x-trello-webhook",
    }[kind]


def expected_signature(target: HookTarget, body: bytes) -> str:
    if target.kind in ("github", "jira"):
        return hub_signature(target.secret, body)
    return trello_signature(target.secret, body, target.callback_url or "")


def verify(target: HookTarget, body: bytes, headers: Mapping[str, str]) -> Outcome:
    """Whether `body` with these (lower-cased) headers was signed with the source's secret."""
    given = headers.get(signature_header(target.kind))
    if not given:
        return "unsigned"
    # compare_digest wants both sides ASCII (str) or bytes; a header can hold anything.
    ok = hmac.compare_digest(
        expected_signature(target, body).encode(), given.strip().encode("utf-8", "replace")
    )
    return "accepted" if ok else "bad_signature"


def delivery_keys(target: HookTarget, body: bytes, headers: Mapping[str, str]) -> list[str]:
    """What identifies one delivery: its signature (which covers the body, so a replayed
    body has the same one) and the tool's delivery id when it sends one."""
    keys = [f"{target.source} sig {expected_signature(target, body)}"]
    header = _DELIVERY_HEADERS.get(target.kind)
    if header and headers.get(header):
        keys.append(f"{target.source} id {headers[header][:200]}")
    return keys


class Seen:
    """The last `size` deliveries, to refuse a replay. In memory: after a restart a replay
    is accepted once, which costs one poll."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, keys: list[str]) -> bool:
        """Record the keys; False when any of them was seen before."""
        with self._lock:
            if any(k in self._keys for k in keys):
                return False
            for k in keys:
                self._keys[k] = None
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)
            return True
