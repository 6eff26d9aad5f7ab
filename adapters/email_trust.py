"""Who sent a mail, as far as syncd may believe it, and what that sender may cause. Pure.

Anyone can write to a shared mailbox, and anyone can write any `From:`. Two questions
decide what a message may do:

* **Internal or external.** A sender is internal when the address is one of the people's
  `email` handles or its domain is in `[sources.email] internal_domains`. Everyone else is
  external: a customer, a stranger, a forger.
* **Authenticated.** With `require_authentication = true`, the From address counts as the
  sender only when the receiving MTA said so: the topmost `Authentication-Results` header
  whose authserv-id is the configured `authserv_id` reports `dmarc=pass`, or `dkim=pass`
  with a signing domain (header.d) aligned with the From domain. Headers with any other
  authserv-id were written by someone else, the sender included, and are ignored (RFC 8601
  section 5). Without it, the From header is taken as written.

What each may cause (see adapters/email.py): an authenticated internal sender may declare
identity (a `[OPS-7]` subject, a `Jira: OPS-7` line) and give `/assign`; everyone else's
mail becomes its own request or joins one only through threading or syncd's own `[REQ-42]`
subject tag, and its mentions stay relations.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

# resinfo: method[/version] = result, then properties (ptype.property=value); comments in
# parentheses are dropped first (RFC 8601 allows them almost anywhere).
_COMMENT = re.compile(r"\([^()]{0,500}\)")
_RESINFO = re.compile(r"^\s*([A-Za-z0-9_.-]{1,40})(?:/[0-9]{1,3})?\s*=\s*([A-Za-z0-9_-]{1,20})\b")
_PROPERTY = re.compile(r"\b([A-Za-z0-9_-]{1,20}\.[A-Za-z0-9_-]{1,40})\s*=\s*\"?([^\s;\"]{1,300})")
_MAX_HEADERS = 50  # Authentication-Results headers looked at, topmost first


@dataclass(frozen=True)
class Verdict:
    """Whether the From address is authenticated, and why (for logs and quarantine)."""

    ok: bool
    why: str


@dataclass(frozen=True)
class MethodResult:
    method: str  # "dmarc", "dkim", "spf", lower-cased
    result: str  # "pass", "fail", "none", lower-cased
    properties: dict[str, str]  # "header.d" -> "example.com", keys and values lower-cased


def parse_authentication_results(value: str) -> tuple[str, list[MethodResult]] | None:
    """The authserv-id and results of one Authentication-Results value, or None when it
    is not in that shape. `mx.example.com 1; dkim=pass header.d=example.com; ...`"""
    text = " ".join(value.split())[:8192]
    for _ in range(5):  # nested comments, innermost first
        text = _COMMENT.sub(" ", text)
    head, _, rest = text.partition(";")
    words = head.split()
    if not words:
        return None
    authserv_id = words[0].lower()
    results: list[MethodResult] = []
    for part in rest.split(";"):
        m = _RESINFO.match(part)
        if not m:
            continue
        properties = {k.lower(): v.lower() for k, v in _PROPERTY.findall(part[m.end() :])}
        results.append(MethodResult(m.group(1).lower(), m.group(2).lower(), properties))
    return authserv_id, results


def aligned(signing_domain: str, from_domain: str) -> bool:
    """DMARC's relaxed alignment without a public-suffix list: the same domain, or one a
    subdomain of the other, where the shorter still has a dot (never a bare TLD)."""
    d, f = signing_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if d == f:
        return True
    shorter = d if len(d) < len(f) else f
    longer = f if shorter is d else d
    return "." in shorter and longer.endswith("." + shorter)


def verify_sender(from_address: str | None, headers: Iterable[str], authserv_id: str) -> Verdict:
    """Decide from the Authentication-Results header values, topmost first, whether
    `from_address` is who sent the mail, trusting only headers added by `authserv_id`."""
    if from_address is None or "@" not in from_address:
        return Verdict(False, "no usable From address")
    domain = from_address.rpartition("@")[2]
    wanted = authserv_id.lower()
    for count, value in enumerate(headers):
        if count >= _MAX_HEADERS:
            break
        parsed = parse_authentication_results(value)
        if parsed is None or parsed[0] != wanted:
            continue  # written by someone else: ignored
        return _judge(parsed[1], domain, wanted)
    return Verdict(False, f"no Authentication-Results header from {wanted}")


def _judge(results: list[MethodResult], domain: str, authserv_id: str) -> Verdict:
    for r in results:
        if r.method == "dmarc" and r.result == "pass":
            header_from = r.properties.get("header.from")
            if header_from is None or header_from == domain:
                return Verdict(True, f"dmarc=pass from {authserv_id}")
    for r in results:
        signer = r.properties.get("header.d") or r.properties.get("header.i", "").rpartition("@")[2]
        if r.method == "dkim" and r.result == "pass" and signer and aligned(signer, domain):
            return Verdict(True, f"dkim=pass for {signer} from {authserv_id}")
    said = ", ".join(f"{r.method}={r.result}" for r in results[:6]) or "no results"
    return Verdict(False, f"{authserv_id} says {said}")


def is_internal(
    address: str | None, person_addresses: Collection[str], internal_domains: Collection[str]
) -> bool:
    """A person's email handle, or an address at an internal domain (exactly that domain;
    subdomains are listed separately, so `example.com` does not let in `evil.example.com`)."""
    if address is None or "@" not in address:
        return False
    address = address.lower()
    return address in person_addresses or address.rpartition("@")[2] in internal_domains


@dataclass(frozen=True)
class Sender:
    """What syncd believes about one message's sender."""

    address: str | None
    internal: bool  # by address alone
    authenticated: bool  # the From address is the sender's (or authentication is not asked)
    why: str  # the authentication verdict's reason

    @property
    def trusted(self) -> bool:
        """May declare identity and give commands: internal, and really that sender."""
        return self.internal and self.authenticated


def judge_sender(
    address: str | None,
    authentication_results: Iterable[str],
    *,
    person_addresses: Collection[str],
    internal_domains: Collection[str],
    authserv_id: str | None,
) -> Sender:
    """The Sender for a message. `authserv_id` None means authentication is not required:
    the From header is believed as written."""
    internal = is_internal(address, person_addresses, internal_domains)
    if authserv_id is None:
        return Sender(address, internal, True, "authentication not required")
    verdict = verify_sender(address, authentication_results, authserv_id)
    return Sender(address, internal, verdict.ok, verdict.why)


# -- /assign targets ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """An /assign argument checked: the person it names, or why it names nobody."""

    person: str | None
    refused: str | None = None


def assign_target(
    argument: str,
    sender: Sender,
    *,
    people: Collection[str],
    person_of_address: dict[str, str],
    mailbox_addresses: Collection[str],
) -> Target:
    """Who `/assign <argument>` hands the thread to. Only a person id, a person's email
    handle, or `me` (the sender, when the sender is a person) name someone; anything else
    (`..`, `owner-x`, the shared mailbox's own address, an outside address) is refused."""
    if not sender.trusted:
        if not sender.internal:
            return Target(
                None,
                f"/assign from {sender.address or 'an unknown sender'} refused: "
                "not an internal sender",
            )
        return Target(
            None, f"/assign from {sender.address} refused: sender not authenticated ({sender.why})"
        )
    arg = argument.lower()
    if arg == "me":
        person = person_of_address.get(sender.address or "")
        if person is None:
            return Target(
                None,
                f"/assign me from {sender.address} refused: not a person's "
                "email handle in [[people]]",
            )
        return Target(person)
    if arg in mailbox_addresses:
        return Target(None, f"/assign {arg} refused: that is the shared mailbox itself")
    if arg in people:
        return Target(arg)
    if arg in person_of_address:
        return Target(person_of_address[arg])
    return Target(None, f"/assign {arg} refused: not a person id, a person's email handle or 'me'")
