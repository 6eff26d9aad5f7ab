"""The reply syncd sends into a thread when its owner changed elsewhere. Pure, no I/O.

Built with email.message.EmailMessage, never by joining strings, and every value that came
from outside (the thread's subject and Message-IDs, the requester's address, names, the
note) is checked or reduced to a single line first. EmailMessage then refuses any header
value with a line break as a second line of defence, so no incoming mail can add headers
or recipients to an outgoing one.

Replies are audience-aware, as Request Tracker keeps Reply apart from Comment: a reply to
someone outside the team names the request and its new owner's display name and nothing
else (external_text); the shared mailbox and team members get the full record (reply_text):
who had it, where it changed, who changed it, and the note.

The reply marks itself as syncd's own (X-Syncd-Request, Auto-Submitted), so when it lands
in the watched mailbox, as it does by default, the adapter skips it, and auto-responders
that honour RFC 3834 don't answer it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from typing import Literal

from syncd.adapters.email_message import (
    NO_SUBJECT,
    OWN_MAIL_HEADER,
    is_synthetic,
    single_line,
    valid_address,
    valid_message_id,
)
from syncd.models import Handoff
from syncd.safetext import safe_text

_REQUEST_KEY = re.compile(r"^REQ-[0-9]{1,12}$")
_MAX_SUBJECT = 200
_MAX_NOTE = 4000


class UnsafeReply(ValueError):
    """A reply could not be built without putting unchecked text into a header."""


@dataclass(frozen=True)
class ReplyTarget:
    """Where the reply goes and what it answers."""

    sender: str  # syncd's From address
    recipient: str  # the shared mailbox, or the requester when so configured
    title: str  # the thread's subject without Re:/Fwd:
    root_id: str | None  # the thread's root Message-ID
    last_id: str | None  # the Message-ID of the latest message in the thread
    # Who reads it: "internal" (the shared mailbox, a team member) gets the full record;
    # "external" (a requester outside the team) only the request and its owner's name.
    audience: Literal["internal", "external"] = "internal"


def _usable_id(message_id: str | None) -> str | None:
    if message_id is None or is_synthetic(message_id) or not valid_message_id(message_id):
        return None
    return message_id


def thread_headers(root_id: str | None, last_id: str | None) -> dict[str, str]:
    """In-Reply-To and References that keep the reply in its thread. Derived ids (for mail
    that had none) are left out: nothing could thread on them."""
    root, last = _usable_id(root_id), _usable_id(last_id)
    parent = last or root
    if parent is None:
        return {}
    chain = [f"<{root}>"] if root and root != parent else []
    return {"In-Reply-To": f"<{parent}>", "References": " ".join([*chain, f"<{parent}>"])}


def _line(text: str) -> str:
    """Outside text for one line of the reply: no terminal escapes either, since mail is
    also read in terminal clients."""
    return single_line(safe_text(text))


def _who(name: str | None, owner: str | None) -> str:
    if owner is None:
        return "nobody"
    shown = _line(name or owner)
    return shown if shown == owner else f"{shown} ({_line(owner)})"


def _where(origin: str) -> str:
    if origin == "operator":
        return "by an operator, with `syncd assign`"
    return f"in {_line(origin)}"


def reply_text(handoff: Handoff, title: str, prefix: str) -> str:
    """The body: who owns the request now, who had it, where the change was made, and the
    note. Every line that quotes someone's text is indented, so no line of it can read as
    an /assign command if a person quotes this mail back without '>' marks."""
    key = single_line(handoff.request_key)
    title = _line(title)
    if handoff.to_owner is None:
        lines = [f'{key} "{title}" no longer has an owner.']
    else:
        lines = [f'{_who(handoff.to_name, handoff.to_owner)} now owns {key} "{title}".']
    lines.append("")
    if handoff.from_owner is not None:
        lines.append(f"Handed over by: {_who(handoff.from_name, handoff.from_owner)}")
    lines.append(f"Where: {_where(handoff.origin)}")
    if handoff.actor:
        lines.append(f"Changed by: {_line(handoff.actor)}")
    if handoff.note:
        lines.append("Note:")
        note = safe_text(handoff.note[:_MAX_NOTE], keep_newlines=True)
        lines += [f"    {line}" for line in note.splitlines()]
    lines += [
        "",
        "-- ",
        "Sent by syncd, which keeps track of who owns each request.",
        f"To hand this request on, tag the thread {prefix}<person> in your mail client,",
        "or reply with a line that says only: /assign <person>",
    ]
    return "\n".join(lines) + "\n"


def external_text(handoff: Handoff, title: str) -> str:
    """The body for someone outside the team: which request, and the new owner's display
    name. Nothing else: not the note, not who made the change or where, not the previous
    owner, not a login or handle, and no title but the requester's own subject."""
    key = single_line(handoff.request_key)
    title = _line(title)
    if handoff.to_owner is None:
        first = f'Your request {key} "{title}" is waiting for someone to take it on.'
    else:
        first = f'Your request {key} "{title}" is now handled by {_display_name(handoff)}.'
    return (
        "\n".join(
            [
                first,
                "",
                "-- ",
                f"Sent by syncd. Keep [{key}] in the subject when you write about this request.",
            ]
        )
        + "\n"
    )


def _display_name(handoff: Handoff) -> str:
    """A person's name; never a tool handle (an owner nobody in [[people]] claims is shown
    as a handle such as "github:zed", which outsiders must not see)."""
    name = handoff.to_name
    if not name or not handoff.to_owner or name == handoff.to_owner or ":" in handoff.to_owner:
        return "a member of the team"
    return _line(name)[:100] or "a member of the team"


def subject_for(key: str, title: str) -> str:
    """`Re: [REQ-42] <title>`: the tag lets mail about the request find it again even when
    a client drops the thread headers (see email_message.request_tag)."""
    tag = f"[{key}]"
    return f"Re: {title}" if tag.lower() in title.lower() else f"Re: {tag} {title}"


def compose_reply(
    handoff: Handoff, target: ReplyTarget, message_id: str, now: datetime, owner_prefix: str
) -> EmailMessage:
    """The one reply announcing `handoff`. Raises UnsafeReply when an address, id or key
    is not in a shape that is safe to put in a header."""
    sender, recipient = valid_address(target.sender), valid_address(target.recipient)
    if sender is None or recipient is None:
        raise UnsafeReply("the reply's sender or recipient is not a plain email address")
    if not _REQUEST_KEY.match(handoff.request_key):
        raise UnsafeReply(f"unexpected request key {handoff.request_key!r}")
    if not valid_message_id(message_id):
        raise UnsafeReply("the reply's own Message-ID is malformed")
    external = target.audience == "external"
    title = _line(target.title)[:_MAX_SUBJECT]
    if not title:
        # The ledger's title may come from another tool's item: never for outsiders.
        title = NO_SUBJECT if external else _line(handoff.title)[:_MAX_SUBJECT]
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr(("syncd", sender))
    message["To"] = recipient
    message["Subject"] = subject_for(handoff.request_key, title)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{message_id}>"
    for name, value in thread_headers(target.root_id, target.last_id).items():
        message[name] = value
    # RFC 3834: an automatic response; Exchange's own switch against out-of-office replies.
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message[OWN_MAIL_HEADER] = handoff.request_key
    if external:
        message.set_content(external_text(handoff, title))
    else:
        message.set_content(reply_text(handoff, title, owner_prefix))
    return message
