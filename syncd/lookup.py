"""What operators type on the command line, resolved against the ledger.

A request can be named by its id ("REQ-42", "req-42", "42"), by a linked item's tool ref
("OPS-7", "acme/api#1") or by its URL (an issue, a card, a /browse/ link). A person can be
named by id in any case ("Carol"), by any handle configured for them ("github:bob-ok",
"bob-ok"), or as "me": the person whose `unix` handle is the operator's login.

Resolution never guesses: text that could mean two requests or two people is an error that
lists the candidates, since a handoff to the wrong one is the worst outcome.
"""

from __future__ import annotations

import json
from typing import Any

from syncd.config import UNIX, handle_kinds
from syncd.crossref import extract_keys
from syncd.errors import NotFound
from syncd.ledger import Ledger, parse_request_key, request_key

ME = "me"


def _items_named(ledger: Ledger, text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The linked items `text` names, and the tool-level keys found in it."""
    t = text.strip()
    # The exact ref or URL a linked item was stored with (mail Message-IDs, card URLs with
    # a slug, a Jira site under another host name), then the tool-level keys in the text.
    mid = t[1:-1] if t.startswith("<") and t.endswith(">") else t
    cols = "l.id, l.request_id, l.source, l.ref"
    found = ledger.rows(
        f"SELECT {cols} FROM links l WHERE l.ref = ? OR l.ref = ? OR l.url = ? OR l.url = ?",  # noqa: S608
        (t, mid, t, t.rstrip("/")),
    )
    if not found and "@" in mid:
        # Any message of a mail thread: the mailbox adapter records, per Message-ID, the
        # root of the thread it belongs to ("m:<Message-ID>" in adapter_state).
        found = ledger.rows(
            f"SELECT {cols} FROM adapter_state s JOIN links l ON l.source = s.source "  # noqa: S608
            "AND l.ref = json_extract(s.value, '$.root') WHERE s.key = 'm:' || ?",
            (mid,),
        )
    keys = [k for k in extract_keys(t) if not k.startswith("req:")]
    if not found and keys:
        found = ledger.rows(
            f"SELECT DISTINCT {cols} FROM link_keys k JOIN links l ON l.id = k.link_id "  # noqa: S608
            "WHERE k.role = 'self' AND k.key IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),),
        )
    return found, keys


def find_request(ledger: Ledger, text: str) -> str:
    """The request id ("REQ-42") that `text` names."""
    t = text.strip()
    try:
        return request_key(parse_request_key(t))
    except NotFound:
        pass
    items, keys = _items_named(ledger, t)
    found = {r["request_id"] for r in items}
    if len(found) == 1:
        return request_key(found.pop())
    if found:
        names = ", ".join(request_key(i) for i in sorted(found))
        raise NotFound(f"{text!r} names items of several requests ({names}); give the REQ id")
    what = "no linked item" if keys or "/" in t else "not a request id or a linked item"
    raise NotFound(
        f"{text!r}: {what} in the ledger (give REQ-42, a tool ref such as OPS-7 or "
        "acme/api#1, or an item's URL; see `syncd ls`)"
    )


def find_item(ledger: Ledger, text: str) -> int:
    """The linked item (its link id) that `text` names: a tool ref (OPS-7, acme/api#12), an
    issue, browse or card URL, or the Message-ID (with or without <>) of any message of a
    mail thread."""
    items, _ = _items_named(ledger, text)
    if len(items) == 1:
        return int(items[0]["id"])
    if items:
        names = ", ".join(f"{r['source']}:{r['ref']}" for r in items)
        raise NotFound(f"{text!r} names several items ({names}); give the item's URL")
    raise NotFound(
        f"{text!r}: no such item in the ledger (give a tool ref such as OPS-7 or acme/api#12, "
        "an issue, browse or card URL, or a Message-ID of an item syncd has seen)"
    )


def person_for_login(ledger: Ledger, login: str) -> str:
    """The person whose `unix` handle is `login`."""
    rows = ledger.rows(
        "SELECT person_id FROM identities WHERE kind = ? AND handle = ? AND person_id IS NOT NULL",
        (UNIX, login),
    )
    if not rows:
        raise NotFound(
            f"'me': no person has the unix handle {login!r}; add it to your [[people]] entry "
            f'(handles = {{ unix = "{login}", ... }}) and reload the daemon'
        )
    return str(rows[0]["person_id"])


def find_owner(ledger: Ledger, text: str, *, login: str, unmapped: bool = False) -> str:
    """The canonical owner `text` names: a person id, or "kind:handle" for an identity no
    person claims, which is accepted only with `unmapped` (a typo must not become an owner).
    """
    t = text.strip()
    if t.lower() == ME:
        return person_for_login(ledger, login)
    kind, sep, handle = t.partition(":")
    if sep:
        rows = ledger.rows(
            "SELECT handle, person_id FROM identities WHERE kind = ? AND lower(handle) = ?",
            (kind.lower(), handle.lower()),
        )
        people = {r["person_id"] for r in rows if r["person_id"] is not None}
        if len(people) == 1:
            return str(people.pop())
        tools = [k for k in handle_kinds() if k != UNIX]
        if kind.lower() not in tools:
            raise NotFound(f"{t!r}: unknown tool {kind!r} (known: {', '.join(tools)})")
        if unmapped:
            # The spelling the tool uses, when the ledger has seen this handle.
            return f"{kind.lower()}:{rows[0]['handle'] if rows else handle}"
        seen = "seen in a tool but claimed by no person" if rows else "claimed by no person"
        raise NotFound(
            f"{t!r} is {seen}; add it to someone's handles in [[people]], or give --unmapped "
            "to hand the request to that identity as it is (see `syncd people`)"
        )
    person = ledger.rows("SELECT id FROM people WHERE id = ?", (t.lower(),))
    if person:
        return str(person[0]["id"])
    # A bare handle ("bob-ok"): fine when it belongs to exactly one person.
    rows = ledger.rows(
        "SELECT DISTINCT person_id FROM identities WHERE lower(handle) = ? "
        "AND person_id IS NOT NULL AND kind != ?",
        (t.lower(), UNIX),
    )
    if len(rows) == 1:
        return str(rows[0]["person_id"])
    if rows:
        names = ", ".join(sorted(str(r["person_id"]) for r in rows))
        raise NotFound(f"{t!r} is a handle of several people ({names}); give the person id")
    raise NotFound(
        f"no person {t!r} in the ledger (people come from [[people]] in the config once the "
        "daemon has run; see `syncd people`)"
    )
