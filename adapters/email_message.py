"""Reading one incoming mail: what the email adapter needs to know about it. Pure, no I/O.

Mail comes from anyone, so everything here assumes hostile input:

* The adapter fetches only a few header fields and the first `max_body_bytes` of the body
  (see adapters/email.py), so nothing here ever holds a whole message, however large.
* Headers are read with the lenient compat32 parser and decoded field by field. Unknown or
  wrong charsets fall back to UTF-8 and then Latin-1, which cannot fail.
* A value that decodes to CR, LF or NUL (an encoded line break in a Subject or a sender's
  name) is an attempt to smuggle header lines into the replies syncd sends. That message is
  refused with a reason (it becomes a Quarantined item) rather than cleaned up and used.
* Message-IDs and addresses are accepted only in a strict shape, so anything that later goes
  into an outgoing header has already been checked here; a Message-ID that is missing or
  malformed is replaced by a stable synthetic one (see `synthetic_message_id`).
* Broken MIME never stops a message: the body falls back to the raw bytes as text.
* Mail a machine sent in answer to other mail (bounces, read receipts, out-of-office
  replies; see `automatic`) is refused too: a bounce of syncd's own reply must not become a
  request, and quarantine shows it (a bounce means a reply did not arrive).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import parseaddr
from html import unescape

from syncd.crossref import DEFAULT_RULES, Rules, read_references

# The header fields fetched, upper-case as IMAP names them in BODY[HEADER.FIELDS (...)], in
# two groups fetched as two bounded sections, so that a huge Subject cannot push the
# Message-ID and the thread links out of what is read.
THREAD_FIELDS = ("MESSAGE-ID", "IN-REPLY-TO", "REFERENCES")
OTHER_FIELDS = (
    "SUBJECT",
    "FROM",
    "DATE",
    "MIME-VERSION",
    "CONTENT-TYPE",
    "CONTENT-TRANSFER-ENCODING",
    "AUTO-SUBMITTED",
    "X-SYNCD-REQUEST",
    # In message order, topmost first: the receiving MTA prepends its own (see email_trust).
    "AUTHENTICATION-RESULTS",
)
# syncd's own mail carries this header (see adapters/email_reply.py).
OWN_MAIL_HEADER = "X-Syncd-Request"
# Message-IDs: printable ASCII without spaces, angle brackets, quotes or backslashes (so
# they need no quoting in an IMAP search or a header). RFC 5322 asks for an "@", but plenty
# of real mail lacks it, and threading does not need it.
_MSG_ID = re.compile(r"<([!#-;=?-\[\]-~]{1,250})>")
_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*$"
)
# Subject prefixes mail clients add in replies and forwards, in several languages:
# Re, Fwd/Fw, AW (Antwort), WG (Weitergeleitet), SV/VS (Nordic), Antw, TR, RIF, RE[2], Re^2.
_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|antw|tr|rif)(?:\[\d{1,3}\]|\^\d{1,3})?\s*:\s*)+", re.IGNORECASE
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n\x00]")
_FOLD = re.compile(r"\r?\n[ \t]")
_MAX_TITLE = 300
_MAX_REFERENCES = 40  # the first (the root) and the last ones are kept
_MAX_PARTS = 50  # MIME parts looked at for a text part
_MAX_TEXT = 64 * 1024  # characters of body text scanned for commands and cross-references
# syncd's own tag, which it puts in the subject of its replies: "Re: [REQ-42] Printer".
_REQUEST_TAG = re.compile(r"\[REQ-([0-9]{1,12})\]", re.IGNORECASE)
NO_SUBJECT = "(no subject)"


class Refused(Exception):
    """A message syncd will not use; the message says why, for the quarantine."""


AUTOMATIC = "automatic message (bounce/auto-reply); not a request"
# Senders of bounces from MTAs that send them as plain text, without a delivery report.
_BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster"})
_TOKEN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")


@dataclass(frozen=True)
class Fetched:
    """What the adapter fetched for one message: the input to `read_message`."""

    folder: str
    uidvalidity: int
    uid: int
    flags: tuple[str, ...]  # keywords and system flags, as the server spelled them
    modseq: int
    internal_date: datetime  # when the server received it (aware)
    size: int  # RFC822.SIZE: the whole message, of which only a part was fetched
    header: bytes  # the THREAD_FIELDS and OTHER_FIELDS sections, each possibly cut short
    body: bytes  # the first bytes of the body (BODY[TEXT]), possibly cut short
    body_limit: int  # how many body bytes were asked for


@dataclass(frozen=True)
class MailFacts:
    """One message as the thread logic sees it."""

    folder: str
    uid: int
    message_id: str  # without angle brackets
    synthetic_id: bool  # the message had no usable Message-ID; this one is derived
    references: tuple[str, ...]  # parent chain, root first (References, else In-Reply-To)
    subject: str  # decoded, single line, control characters removed
    sender: str | None  # lower-cased address, None when absent or malformed
    sender_name: str | None
    received_at: datetime
    own: bool  # sent by syncd itself
    keywords: tuple[str, ...]  # lower-cased keywords (not system flags)
    modseq: int
    # Every key the subject and text name; `declared` are those the text puts in a declaring
    # place (a "Jira: OPS-7" line), `title_declared` the subject's ("[OPS-7] ..."). They count
    # only from a trusted sender, and the subject's only on the mail that starts a thread.
    mentions: tuple[str, ...] = ()
    declared: tuple[str, ...] = ()
    title_declared: tuple[str, ...] = ()
    relation_kinds: tuple[tuple[str, str], ...] = ()
    command: str | None = None  # the argument of an /assign line, lower-cased
    notes: tuple[str, ...] = ()  # fallbacks taken while reading it
    date: str | None = None  # the Date header as written: with the sender, what makes a
    # Message-ID's owner (a reused Message-ID with another sender or date is another message)
    authentication_results: tuple[str, ...] = ()  # header values, topmost first
    tag: str | None = None  # "req:42" from syncd's own "[REQ-42]" subject tag

    @property
    def title(self) -> str:
        return strip_reply_prefixes(self.subject)


# -- small decisions -----------------------------------------------------------------


def request_tag(subject: str) -> str | None:
    """The request named by syncd's own `[REQ-42]` tag in a subject, as the key "req:42"."""
    m = _REQUEST_TAG.search(subject)
    if m is None or not int(m.group(1)):
        return None
    return f"req:{int(m.group(1))}"


def strip_reply_prefixes(subject: str) -> str:
    """Drop reply and forward prefixes: "Re: AW: Fwd: Printer" becomes "Printer"."""
    title = _REPLY_PREFIX.sub("", subject).strip()
    return title[:_MAX_TITLE] or NO_SUBJECT


def single_line(text: str) -> str:
    """Text safe to put in one header line: no control characters, spaces collapsed."""
    return " ".join(_CONTROL.sub(" ", _LINE_BREAK.sub(" ", text)).split())


def message_ids(value: str | None, limit: int = _MAX_REFERENCES) -> tuple[str, ...]:
    """The well-formed <id> tokens in a header value, without brackets. Anything between
    or around them is ignored; when there are more than `limit`, the first (the thread's
    root) and the last ones (the nearest parents) are kept."""
    if not value:
        return ()
    found: dict[str, None] = {}
    for m in _MSG_ID.finditer(value[:32768]):
        found.setdefault(m.group(1))
    ids = tuple(found)
    if len(ids) > limit:
        ids = (ids[0], *ids[-(limit - 1) :])
    return ids


def valid_address(address: str | None) -> str | None:
    """A plain addr-spec, lower-cased, or None. Nothing that could break a header line."""
    if not address or len(address) > 254:
        return None
    return address.lower() if _ADDRESS.match(address) else None


def valid_message_id(value: str) -> bool:
    return bool(_MSG_ID.fullmatch(f"<{value}>"))


def synthetic_message_id(fetched: Fetched, header: Message) -> str:
    """A stable id for a message without a usable Message-ID.

    It is derived from what the message says about itself (sender, date, subject, the start
    of the body), not from its folder and UID: those change when the folder is rebuilt
    (a new UIDVALIDITY), and the id must not, or the rescan would duplicate the request.
    Two byte-identical id-less messages get the same id, which is what they are.
    """
    digest = hashlib.sha256()
    for name in ("FROM", "DATE", "SUBJECT"):
        digest.update(str(header.get(name, "")).encode("utf-8", "replace") + b"\0")
    digest.update(fetched.body[:4096])
    return f"{digest.hexdigest()[:32]}@missing-message-id.syncd.invalid"


def is_synthetic(message_id: str) -> bool:
    return message_id.endswith("@missing-message-id.syncd.invalid")


# -- commands ---------------------------------------------------------------------------

_COMMAND = re.compile(r"^/assign[ \t]+(?P<who>[A-Za-z0-9_.@+-]{1,128})[ \t]*$", re.IGNORECASE)
# Where a reply's own text ends and the quoted earlier mail begins. Commands below such a
# line are someone else's earlier words and must not be obeyed again.
_QUOTE_START = re.compile(
    r"^(>|-----\s*original message\s*-----|_{10,}|on .{0,200} wrote:|am .{0,200} schrieb .{0,80}:|"
    r"from:\s|von:\s|-- $)",
    re.IGNORECASE,
)


def own_lines(text: str) -> Iterator[str]:
    """The lines a reply's author wrote: up to the quoted mail or the signature."""
    for line in text.splitlines():
        if _QUOTE_START.match(line):
            return
        yield line


def own_text(text: str) -> str:
    """What the author of a reply wrote, without the quoted mail below it: a declaration
    quoted from someone else's mail is not this sender's."""
    return "\n".join(own_lines(text))


def find_command(text: str) -> str | None:
    """The person named by the first `/assign <who>` line the author wrote, lower-cased.

    Syntax: `/assign` at the very start of a line, one space or tab, then a person id
    (`bob`), an email address (`bob@example.com`) or `me`, and nothing else on the line.
    Indented, quoted (`> /assign bob`) or signature lines don't count.
    """
    for line in own_lines(text):
        m = _COMMAND.match(line)
        if m:
            return m.group("who").lower()
    return None


# -- header decoding --------------------------------------------------------------------


def join_headers(*sections: bytes) -> bytes:
    """Header sections as one header block: each one's closing blank line dropped, and a
    section cut short mid-line ended, so no line runs into the next section's first."""
    lines = []
    for section in sections:
        body = section.rstrip(b"\r\n")
        if body:
            lines.append(body + b"\r\n")
    return b"".join(lines) + b"\r\n"


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset when Python knows it, else UTF-8, else Latin-1
    (which maps every byte, so this never fails)."""
    if charset and charset.lower() not in ("unknown-8bit", "x-unknown"):
        try:
            return data.decode(charset, errors="replace")
        except LookupError:
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_field(header: Message, name: str, notes: list[str]) -> str | None:
    """One header field as text, encoded-words decoded, folding removed.

    Raises Refused when an encoded-word decodes to a line break or NUL: a sender cannot put
    those in a header by accident, and they are what a header injection needs. Line breaks
    in the raw text are only folding, and become spaces.
    """
    raw = header.get(name)
    if raw is None:
        return None
    try:
        chunks = decode_header(_FOLD.sub(" ", raw) if isinstance(raw, str) else raw)
    except Exception:  # a malformed encoded-word: keep the raw text
        notes.append(f"{name}: undecodable encoded-word, kept as written")
        chunks = [(str(raw), None)]
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str) or charset in (None, "unknown-8bit"):
            text = chunk if isinstance(chunk, str) else decode_bytes(chunk, None)
            out.append(_LINE_BREAK.sub(" ", _FOLD.sub(" ", text)))
            continue
        text = decode_bytes(chunk, charset)
        if _LINE_BREAK.search(text):
            raise Refused(
                f"header {name.title()} decodes to a line break or NUL byte "
                "(refused as a header injection attempt)"
            )
        out.append(text)
    return "".join(out)


# -- body -------------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]{0,2000}>")
_HTML_QUOTE = re.compile(r"<blockquote|<div[^>]{0,200}(gmail_quote|divRplyFwdMsg)", re.IGNORECASE)
_BLOCK_END = re.compile(r"<\s*(br|/p|/div|/tr|/li)[^>]{0,200}>", re.IGNORECASE)


def html_text(html: str) -> str:
    """Rough text of an HTML part, quoted replies cut off: enough to find commands and
    references, not meant for display."""
    quote = _HTML_QUOTE.search(html)
    if quote:
        html = html[: quote.start()]
    return unescape(_TAG.sub("", _BLOCK_END.sub("\n", html)))


def _text_parts(message: Message) -> Iterator[Message]:
    for count, part in enumerate(message.walk()):
        if count >= _MAX_PARTS:
            return
        if part.get_content_maintype() == "text" and not part.get_filename():
            yield part


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    text = decode_bytes(payload, part.get_content_charset())
    return html_text(text) if part.get_content_subtype() == "html" else text


def body_text(header: Message, body: bytes, notes: list[str]) -> str:
    """The message's own text: the first text/plain part, else the first text/html part
    stripped of tags. Falls back to the raw bytes when the MIME structure is unreadable."""
    mime_header = "".join(
        f"{name}: {header[name]}\r\n"
        for name in ("MIME-Version", "Content-Type", "Content-Transfer-Encoding")
        if header.get(name) is not None and isinstance(header[name], str)
    )
    try:
        message = BytesParser(policy=compat32).parsebytes(mime_header.encode() + b"\r\n" + body)
        parts = list(_text_parts(message))
        plain = [p for p in parts if p.get_content_subtype() == "plain"]
        chosen = (plain or parts)[:1]
        if not chosen and message.is_multipart():
            notes.append("no text part within the fetched bytes")
            return ""
        text = _part_text(chosen[0]) if chosen else decode_bytes(body, None)
    except Exception as exc:  # broken MIME (or nesting too deep): read the raw bytes
        notes.append(f"MIME structure unreadable ({type(exc).__name__}); read as plain text")
        text = decode_bytes(body, None)
    return text[:_MAX_TEXT]


# -- automatic mail ---------------------------------------------------------------------


def _token(value: object) -> str:
    """A header value's first token, lower-cased, or "other": only a token this shape is
    ever quoted in a quarantine reason, never the sender's text."""
    token = str(value).split(";", 1)[0].strip().lower()
    return token if _TOKEN.match(token) else "other"


def automatic(header: Message, address: str) -> str | None:
    """Why this message was sent by a machine in answer to other mail, or None.

    * `Content-Type: multipart/report` (RFC 6522): delivery status notifications, that is
      bounces (report-type=delivery-status, RFC 3464), read receipts
      (disposition-notification) and abuse reports;
    * an `Auto-Submitted` field with any value but "no" (RFC 3834): out-of-office and other
      auto-replies, and most bounces, which also carry it;
    * a sender whose local part is MAILER-DAEMON or postmaster: bounces from MTAs that send
      plain text without a report.

    `address` is the From address as written (it may have no domain). Precedence: bulk or
    list is not a sign: mail forwarded to the shared mailbox through a mailing list or a
    group carries it, and is a request like any other.
    """
    # A Content-Type too broken to read is not a report; the checks below still apply.
    with contextlib.suppress(Exception):
        if header.get_content_type() == "multipart/report":
            kind = _token(header.get_param("report-type", "none"))
            return f"Content-Type multipart/report, report-type {kind}"
    submitted = header.get("Auto-Submitted")
    if submitted is not None and _token(submitted) != "no":
        return f"Auto-Submitted: {_token(submitted)}"
    local = address.rpartition("@")[0] if "@" in address else address
    if local.strip().lower() in _BOUNCE_SENDERS:
        return f"sent by {local.strip().lower()}"
    return None


# -- the whole message ------------------------------------------------------------------


def keywords(flags: Iterable[str]) -> tuple[str, ...]:
    """IMAP keywords, lower-cased; system flags (\\Seen...) are not keywords."""
    return tuple(sorted({f.lower() for f in flags if f and not f.startswith("\\")}))


def read_message(fetched: Fetched, rules: Rules = DEFAULT_RULES) -> MailFacts:
    """Turn what was fetched into MailFacts. Raises Refused with a reason for mail that
    must not be used; never anything else for any input (the caller still guards).
    `rules` say what declares identity (syncd.crossref)."""
    notes: list[str] = []
    header = BytesParser(policy=compat32).parsebytes(fetched.header, headersonly=True)
    if header.defects:
        notes.append("header defects: " + ", ".join(type(d).__name__ for d in header.defects[:5]))
    subject = decode_field(header, "Subject", notes)
    sender_field = decode_field(header, "From", notes)
    name, address = parseaddr(sender_field or "")
    sender = valid_address(address)
    if sender_field and sender is None:
        notes.append("From holds no usable address")
    own = header.get(OWN_MAIL_HEADER) is not None
    # syncd's own replies say Auto-Submitted too; they are skipped as its own, not refused.
    machine = None if own else automatic(header, address)
    if machine is not None:
        raise Refused(f"{AUTOMATIC} ({machine})")
    ids = message_ids(str(header.get("Message-ID", "")), limit=1)
    synthetic = not ids
    message_id = ids[0] if ids else synthetic_message_id(fetched, header)
    if synthetic:
        notes.append("no usable Message-ID; a stable one was derived from the content")
    chain = message_ids(str(header.get("References", "")))
    parent = message_ids(str(header.get("In-Reply-To", "")), limit=1)
    if parent and parent[0] not in chain:
        # Clients that only set In-Reply-To, or cut References short: the parent is last.
        chain = (*chain, *parent)
    references = tuple(r for r in chain if r != message_id)
    subject_line = single_line(subject or "")
    text = body_text(header, fetched.body, notes)
    # The subject apart from the body: a reply inherits its subject, so only the body of a
    # reply is its author's own declaration (see email_thread.MailState._describe).
    head = read_references(strip_reply_prefixes(subject_line), None, rules)
    body = read_references(None, own_text(text), rules)
    if len(fetched.body) >= fetched.body_limit:
        notes.append(
            f"only the first {fetched.body_limit} bytes of a {fetched.size}-byte mail were read"
        )
    return MailFacts(
        folder=fetched.folder,
        uid=fetched.uid,
        message_id=message_id,
        synthetic_id=synthetic,
        references=references,
        subject=subject_line,
        sender=sender,
        sender_name=single_line(name)[:200] or None,
        received_at=fetched.internal_date,
        own=own,
        keywords=keywords(fetched.flags),
        modseq=fetched.modseq,
        mentions=tuple(
            dict.fromkeys((*head.declared, *head.mentions, *body.declared, *body.mentions))
        ),
        declared=body.declared,
        title_declared=head.declared,
        relation_kinds=(*head.relation_kinds, *body.relation_kinds),
        command=find_command(text),
        notes=tuple(notes),
        date=single_line(str(header.get("Date", "")))[:200] or None,
        authentication_results=tuple(
            single_line(str(v)) for v in (header.get_all("Authentication-Results") or [])[:50]
        ),
        tag=request_tag(subject_line),
    )
